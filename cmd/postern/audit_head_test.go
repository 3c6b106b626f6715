package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/postern/postern/proxy/audit"
)

// runPostern runs the built postern command to its end, in the current directory.
func runPostern(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// TestRunRefusesTruncatedAuditLog cuts records off the audit log of a stopped proxy in the three ways an intruder
// (or an accident) would: the last record, the whole file emptied, the file deleted. Each time `postern run`
// refuses to start and says how to accept the loss, `postern audit verify` reports the chain truncated, and after
// `postern audit accept-truncation` the proxy starts and the chain is intact, with the loss on record.
func TestRunRefusesTruncatedAuditLog(t *testing.T) {
	dir := exampleTree(t)
	cfgPath := filepath.Join(dir, "run.hcl")
	addr := freePort(t)
	runConfig(t, cfgPath, addr, "[EXT] ")
	logPath := filepath.Join(dir, "state", "audit.log")

	serve := func(messages int) {
		t.Helper()
		p := startPostern(t, "-config", cfgPath)
		p.waitLog(t, "postern running")
		for range messages {
			if err := send(addr, "hello", "hello"); err != nil {
				t.Fatal(err)
			}
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t); code != 0 {
			t.Fatalf("exit %d:\n%s", code, p.log.String())
		}
	}
	serve(3)
	if code, out, errs := runPostern(t, "audit", "verify", "-config", cfgPath); code != 0 {
		t.Fatalf("verify before the cut: exit %d\n%s%s", code, out, errs)
	}

	cuts := []struct {
		name string
		cut  func()
		want string
	}{
		{"last record", func() {
			b, _ := os.ReadFile(logPath)
			lines := bytes.SplitAfter(b, []byte("\n"))
			os.WriteFile(logPath, bytes.Join(lines[:len(lines)-2], nil), 0o600)
		}, "ends at seq"},
		{"part of the last record", func() {
			b, _ := os.ReadFile(logPath)
			os.WriteFile(logPath, b[:len(b)-20], 0o600)
		}, "ends at seq"},
		{"truncated", func() { os.Truncate(logPath, 0) }, "has no records"},
		{"deleted", func() { os.Remove(logPath) }, "has no records"},
	}
	for _, c := range cuts {
		c.cut()
		p := startPostern(t, "-config", cfgPath)
		if code := p.wait(t); code != 1 {
			t.Fatalf("%s: postern run exit %d, want 1:\n%s", c.name, code, p.log.String())
		}
		if log := p.log.String(); !strings.Contains(log, c.want) || !strings.Contains(log, "audit.head") ||
			!strings.Contains(log, "postern audit accept-truncation") {
			t.Fatalf("%s: postern run said:\n%s", c.name, log)
		}
		code, out, errs := runPostern(t, "audit", "verify", "-config", cfgPath)
		if code != 1 || !strings.Contains(errs, "truncated") {
			t.Fatalf("%s: verify exit %d\n%s%s", c.name, code, out, errs)
		}
		code, out, errs = runPostern(t, "audit", "accept-truncation", "-config", cfgPath)
		if code != 0 || !strings.Contains(out, "accepted:") {
			t.Fatalf("%s: accept-truncation exit %d\n%s%s", c.name, code, out, errs)
		}
		code, out, errs = runPostern(t, "audit", "accept-truncation", "-config", cfgPath)
		if code != 0 || !strings.Contains(out, "nothing to accept") {
			t.Fatalf("%s: second accept-truncation exit %d\n%s%s", c.name, code, out, errs)
		}
		serve(1)
		code, out, errs = runPostern(t, "audit", "verify", "-config", cfgPath)
		if code != 0 || !strings.Contains(out, "records an accepted truncation") {
			t.Fatalf("%s: verify after accepting: exit %d\n%s%s", c.name, code, out, errs)
		}
	}
}

// Without state_dir the head is kept beside the log, and verify finds it there on its own.
func TestAuditVerifyFindsHeadBesideLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Options{Path: path, HeadPath: path + ".head", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l.Append(&audit.Record{Listener: "mx"})
	}
	l.Close()
	if code, out, errs := run("audit", "verify", path); code != 0 || !strings.Contains(out, "3 records") {
		t.Fatalf("verify: exit %d %s%s", code, out, errs)
	}
	b, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(b, []byte("\n"))
	os.WriteFile(path, bytes.Join(lines[:2], nil), 0o600)
	for _, args := range [][]string{{path}, {"-head", path + ".head", path}, {filepath.Dir(path)}} {
		if code, _, errs := run(append([]string{"audit", "verify"}, args...)...); code != 1 || !strings.Contains(errs, "truncated") {
			t.Fatalf("verify %v of a cut log: exit %d %s", args, code, errs)
		}
	}
	if code, out, errs := run("audit", "accept-truncation", path); code != 0 || !strings.Contains(out, "accepted") {
		t.Fatalf("accept: exit %d %s%s", code, out, errs)
	}
	if code, out, errs := run("audit", "verify", path); code != 0 || !strings.Contains(out, "accepted truncation") {
		t.Fatalf("verify after accepting: exit %d %s%s", code, out, errs)
	}
}

func TestAuditVerifyNotesUnfinishedPending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Options{Path: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.AppendPending(&audit.Record{Listener: "mx", Action: "accept"})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	code, out, errs := run("audit", "verify", path)
	want := fmt.Sprintf("note: seq %d is a pending decision without an outcome", p.Seq())
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errs)
	}
}
