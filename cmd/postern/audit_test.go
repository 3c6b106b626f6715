package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/audit"
)

// auditLog writes n records to dir/audit.log, two per file, and returns the
// path and the chain head.
func auditLog(t *testing.T, dir string, n int) (path, head string) {
	t.Helper()
	path = filepath.Join(dir, "audit.log")
	l, err := audit.Open(audit.Options{Path: path, MaxBytes: 700, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := &audit.Record{Listener: "mx", Protocol: "smtp", MessageID: fmt.Sprintf("<%d@example.org>", i), Action: "accept",
			Reply: &audit.Reply{Code: 250, Text: "ok"}}
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, head = l.Head()
	return path, head
}

func runVerify(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = dispatch(append([]string{"audit", "verify"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestAuditVerifyIntact(t *testing.T) {
	dir := t.TempDir()
	path, head := auditLog(t, dir, 12)
	files, _ := audit.ChainFiles(path)
	if len(files) < 3 {
		t.Fatalf("fixture should span rotated files, got %d", len(files))
	}
	want := fmt.Sprintf("ok: 12 records in %d files, chain intact (seq 1-12), last hash %s\n", len(files), head)
	for _, arg := range []string{path, dir} {
		code, out, errs := runVerify(arg)
		if code != 0 || out != want || errs != "" {
			t.Fatalf("verify %s: exit %d\nstdout %q\nstderr %q\nwant %q", arg, code, out, errs, want)
		}
	}
	// Explicit files in chain order, and with an anchor.
	if code, _, errs := runVerify(append([]string{"-anchor", head}, files...)...); code != 0 {
		t.Fatalf("explicit files: exit %d: %s", code, errs)
	}
}

func TestAuditVerifyBroken(t *testing.T) {
	dir := t.TempDir()
	path, head := auditLog(t, dir, 5)
	files, _ := audit.ChainFiles(path)
	if len(files) != 3 {
		t.Fatalf("fixture: %d files, want 3", len(files))
	}
	// Edit the active file's record.
	last := files[len(files)-1]
	b, _ := os.ReadFile(last)
	os.WriteFile(last, bytes.Replace(b, []byte(`"accept"`), []byte(`"reject"`), 1), 0o600)
	code, out, errs := runVerify(path)
	if code != 1 || out != "" || !strings.HasPrefix(errs, "broken: "+last+":1 (seq 5): hash mismatch") ||
		!strings.Contains(errs, "the 4 records before it are intact (seq 1-4") {
		t.Fatalf("edited: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
	// Files out of order.
	os.WriteFile(last, b, 0o600)
	if code, _, errs := runVerify(files[1], files[0], files[2]); code != 1 || !strings.Contains(errs, "not the chain's start") {
		t.Fatalf("reordered files: exit %d: %s", code, errs)
	}
	// Records cut off the end: only the anchor notices.
	os.Remove(last)
	if code, _, _ := runVerify(path); code != 0 {
		t.Fatal("a shortened chain is still a chain")
	}
	if code, _, errs := runVerify("-anchor", head, dir); code != 1 || !strings.Contains(errs, "anchor missing") {
		t.Fatalf("anchor: exit %d: %s", code, errs)
	}
}

func TestAuditVerifyPrev(t *testing.T) {
	dir := t.TempDir()
	path, _ := auditLog(t, dir, 6)
	files, _ := audit.ChainFiles(path)
	os.Remove(files[0]) // retention removed the oldest file
	code, _, errs := runVerify(path)
	if code != 1 || !strings.Contains(errs, "-prev any") {
		t.Fatalf("without -prev: exit %d: %s", code, errs)
	}
	code, out, errs := runVerify("-prev", "any", path)
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("-prev any: exit %d: %s%s", code, out, errs)
	}
}

func TestAuditVerifyRecoveryNote(t *testing.T) {
	dir := t.TempDir()
	path, _ := auditLog(t, dir, 2)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"v":1,"seq":3,"event":"deci`) // a crash mid-write
	f.Close()
	if code, _, errs := runVerify(path); code != 1 || !strings.Contains(errs, "incomplete") {
		t.Fatalf("interrupted write: exit %d: %s", code, errs)
	}
	l, err := audit.Open(audit.Options{Path: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	code, out, errs := runVerify(path)
	if code != 0 || !strings.Contains(out, "records an interrupted write: 28 bytes removed from audit.log") {
		t.Fatalf("after recovery: exit %d\n%s%s", code, out, errs)
	}
}

func TestAuditVerifyUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-nosuchflag", "x"},
		{filepath.Join(t.TempDir(), "nothing-here.log")},
		{"-prev", "zz", "x"},
	} {
		if code, _, errs := runVerify(args...); code != 2 || errs == "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, errs)
		}
	}
	if code, out, errs := runVerify("-h"); code != 0 || !strings.Contains(out, "usage: postern audit verify") || errs != "" {
		t.Errorf("-h: exit %d: stdout %q, stderr %q", code, out, errs)
	}
	empty := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(empty, nil, 0o600)
	if code, out, _ := runVerify(empty); code != 0 || out != "ok: no records in 1 file\n" {
		t.Errorf("empty log: exit %d: %q", code, out)
	}
}
