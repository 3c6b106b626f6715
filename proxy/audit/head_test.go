package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// headChain writes n records to dir/log/audit.log with the head kept in dir/state/audit.head.
func headChain(t *testing.T, n int) (opts Options) {
	t.Helper()
	dir := t.TempDir()
	opts = Options{Path: filepath.Join(dir, "log", "audit.log"), HeadPath: filepath.Join(dir, "state", "audit.head"),
		Logger: quietLogger()}
	writeChain(t, dir, n, opts)
	return opts
}

func refused(t *testing.T, opts Options, want string) {
	t.Helper()
	l, err := Open(opts)
	if err == nil {
		l.Close()
		t.Fatal("Open accepted a log shorter than its chain head")
	}
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), want) ||
		!strings.Contains(err.Error(), "postern audit accept-truncation") {
		t.Fatalf("Open: %v; want ErrTruncated mentioning %q and the way to accept", err, want)
	}
}

func TestHeadKeptAndContinued(t *testing.T) {
	opts := headChain(t, 3)
	h, ok, err := ReadHead(opts.HeadPath)
	if err != nil || !ok || h.Seq != 3 {
		t.Fatalf("head %+v %v %v", h, ok, err)
	}
	lines := readLines(t, opts.Path)
	if !bytes.Contains(lines[2], []byte(h.Hash)) {
		t.Fatalf("head hash %s is not the last record's", h.Hash)
	}
	l := openLog(t, opts)
	if err := l.Append(sampleRecord(4)); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := ReadHead(opts.HeadPath); h.Seq != 4 {
		t.Fatalf("head after a synced Append: %+v", h)
	}
	l.Close()
}

func TestHeadRefusesCutLastRecord(t *testing.T) {
	opts := headChain(t, 3)
	lines := readLines(t, opts.Path)
	writeLines(t, opts.Path, lines[:2])
	refused(t, opts, "ends at seq 2")
	// Refusing changed nothing: the evidence is as it was.
	if got := readLines(t, opts.Path); len(got) != 2 {
		t.Fatalf("%d lines after the refusal", len(got))
	}
}

// Cutting the last record's newline used to pass as an interrupted write, and Open dropped the record.
func TestHeadRefusesCutRecordAsInterruptedWrite(t *testing.T) {
	opts := headChain(t, 3)
	b, _ := os.ReadFile(opts.Path)
	if err := os.WriteFile(opts.Path, b[:len(b)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	refused(t, opts, "ends at seq 2")
	if b2, _ := os.ReadFile(opts.Path); len(b2) != len(b)-10 {
		t.Fatal("the refused file was changed")
	}
}

func TestHeadRefusesTruncatedFile(t *testing.T) {
	opts := headChain(t, 3)
	if err := os.Truncate(opts.Path, 0); err != nil {
		t.Fatal(err)
	}
	refused(t, opts, "has no records")
}

func TestHeadRefusesDeletedFile(t *testing.T) {
	opts := headChain(t, 3)
	if err := os.Remove(opts.Path); err != nil {
		t.Fatal(err)
	}
	refused(t, opts, "has no records")
	if _, err := os.Lstat(opts.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open recreated the deleted log: %v", err)
	}
}

func TestHeadRefusesReplacedLog(t *testing.T) {
	opts := headChain(t, 3)
	// A longer chain with other records in place of the log.
	if err := os.Remove(opts.Path); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, Options{Path: opts.Path})
	for i := range 4 {
		r := sampleRecord(i)
		r.Session = "forged"
		l.Append(r)
	}
	l.Close()
	refused(t, opts, "rewritten")
}

// A crash can leave records on disk after the kept head (it is saved after their fsync): that is no loss.
func TestHeadBehindTheLogIsFine(t *testing.T) {
	opts := headChain(t, 5)
	lines := readLines(t, opts.Path)
	var h Head
	for _, line := range lines[1:2] {
		hd, err := parseLine(line[:len(line)-1])
		if err != nil {
			t.Fatal(err)
		}
		h = Head{hd.seq, hd.hash}
	}
	if err := os.WriteFile(opts.HeadPath, formatHead(h), 0o600); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, opts)
	if seq, _ := l.Head(); seq != 5 {
		t.Fatalf("head %d", seq)
	}
	l.Close()
	if h, _, _ := ReadHead(opts.HeadPath); h.Seq != 5 {
		t.Fatalf("head not brought up to date: %+v", h)
	}
}

func TestHeadAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	line := len(readLines(t, writeChain(t, t.TempDir(), 1, Options{}))[0])
	opts := Options{Path: filepath.Join(dir, "audit.log"), HeadPath: filepath.Join(dir, "state", "audit.head"),
		MaxBytes: int64(2*line + line/2), Logger: quietLogger()}
	writeChain(t, dir, 7, opts)
	files, _ := ChainFiles(opts.Path)
	if len(files) < 3 {
		t.Fatalf("files %v", files)
	}
	// The active file deleted: the newest rotated file ends before the head.
	if err := os.Remove(opts.Path); err != nil {
		t.Fatal(err)
	}
	refused(t, opts, "ends at seq 6")
}

func TestHeadTornFileRefused(t *testing.T) {
	opts := headChain(t, 2)
	b, _ := os.ReadFile(opts.HeadPath)
	b[len(headMagic)+10] ^= 1
	os.WriteFile(opts.HeadPath, b, 0o600)
	if _, err := Open(opts); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("Open with a torn head: %v", err)
	}
}

func TestHeadNotRegularRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "audit.head")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Open(Options{Path: filepath.Join(dir, "audit.log"), HeadPath: fifo, Logger: quietLogger()})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("Open with a FIFO as head: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Open blocked on a FIFO")
	}
}

func TestAcceptTruncation(t *testing.T) {
	opts := headChain(t, 3)
	lines := readLines(t, opts.Path)
	writeLines(t, opts.Path, lines[:1])
	kept, _, _ := ReadHead(opts.HeadPath)

	a := opts
	a.AcceptTruncation = true
	l := openLog(t, a)
	lost := l.Accepted()
	if lost == nil || lost.KeptSeq != 3 || lost.KeptHash != kept.Hash || lost.FoundSeq != 1 {
		t.Fatalf("accepted %+v", lost)
	}
	if err := l.Append(sampleRecord(9)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// The chain is whole again, and says what was lost.
	mustIntact(t, opts.Path, 3)
	got := readLines(t, opts.Path)
	if !bytes.Contains(got[1], []byte(`"event":"truncation"`)) || !bytes.Contains(got[1], []byte(`"kept_seq":3`)) {
		t.Fatalf("record 2: %s", got[1])
	}
	// From now on the log opens normally, and an accept with nothing to accept records nothing.
	l = openLog(t, a)
	if l.Accepted() != nil {
		t.Fatalf("accepted again: %+v", l.Accepted())
	}
	l.Close()
	mustIntact(t, opts.Path, 3)
}

// A log without a head file (an upgrade, or a new state_dir) starts one from its last record.
func TestHeadStartedFromExistingLog(t *testing.T) {
	dir := t.TempDir()
	path := writeChain(t, dir, 4, Options{})
	var logs logBuf
	opts := Options{Path: path, HeadPath: filepath.Join(dir, "audit.head"), Logger: slogTo(&logs)}
	l := openLog(t, opts)
	l.Close()
	if h, ok, _ := ReadHead(opts.HeadPath); !ok || h.Seq != 4 {
		t.Fatalf("head %+v %v", h, ok)
	}
	if !strings.Contains(logs.String(), "no chain head was kept") {
		t.Fatalf("log: %s", logs.String())
	}
}

func TestCheckHeadForVerify(t *testing.T) {
	opts := headChain(t, 3)
	kept, _, _ := ReadHead(opts.HeadPath)
	lines := readLines(t, opts.Path)
	writeLines(t, opts.Path, lines[:2])
	s, err := verifyPath(t, opts.Path, "")
	if err != nil {
		t.Fatal(err)
	}
	err = CheckHead(s, opts.HeadPath, kept, opts.Path)
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Problem != ProblemTruncated {
		t.Fatalf("CheckHead on a cut chain: %v", err)
	}
	writeLines(t, opts.Path, lines)
	s, _ = verifyPath(t, opts.Path, "")
	if err := CheckHead(s, opts.HeadPath, kept, opts.Path); err != nil {
		t.Fatal(err)
	}
}
