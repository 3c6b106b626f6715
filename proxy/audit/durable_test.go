package audit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// AppendDurable fsyncs before it returns even when the log fsyncs in the background.
func TestAppendDurableSyncsWhateverTheInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path, SyncInterval: time.Hour})
	defer l.Close()
	cf := wrap(l)
	if err := l.Append(sampleRecord(1)); err != nil {
		t.Fatal(err)
	}
	if n := cf.syncs.Load(); n != 0 {
		t.Fatalf("Append with an hour's interval fsynced %d times", n)
	}
	r := sampleRecord(2)
	if err := l.AppendDurable(r); err != nil {
		t.Fatal(err)
	}
	if n := cf.syncs.Load(); n != 1 {
		t.Fatalf("AppendDurable: %d fsyncs, want 1", n)
	}
	if got := l.synced.Load(); got != r.Seq {
		t.Fatalf("synced up to %d, want %d", got, r.Seq)
	}
}

// A failed fsync is reported by AppendDurable, wrapping ErrNotRecorded, even with a background interval.
func TestAppendDurableReportsFsyncFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path, SyncInterval: time.Hour})
	cf := wrap(l)
	cf.failSync.Store(true)
	err := l.AppendDurable(sampleRecord(1))
	if !errors.Is(err, ErrNotRecorded) || !strings.Contains(err.Error(), "fsync") {
		t.Fatalf("AppendDurable with a failing fsync: %v", err)
	}
	if err := l.AppendDurable(sampleRecord(2)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	mustIntact(t, path, 2)
}

func TestAppendDurableInjectedFullDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path, SyncInterval: time.Hour})
	if err := l.AppendDurable(sampleRecord(1)); err != nil {
		t.Fatal(err)
	}
	cf := wrap(l)
	cf.failWrite.Store(50)
	err := l.AppendDurable(sampleRecord(2))
	if !errors.Is(err, ErrNotRecorded) {
		t.Fatalf("AppendDurable on a full disk: %v, want ErrNotRecorded", err)
	}
	if err := l.AppendDurable(sampleRecord(3)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	s := mustIntact(t, path, 3) // 1, the recovery of the 50 bytes, 3
	if len(s.Recoveries) != 1 || s.Recoveries[0].Recovery.Bytes != 50 {
		t.Fatalf("recoveries %+v", s.Recoveries)
	}
}

// mountFull mounts a 64 KiB tmpfs at a new directory, or skips when this is not root.
func mountFull(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "postern-test", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fill writes to path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 512)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// Whatever bytes were left: fill them one at a time.
	for {
		if _, err := f.Write(block[:1]); err != nil {
			return
		}
	}
}

// On a real full disk every kind of append reports ErrNotRecorded with ENOSPC, a pending record is not
// created, and once space is freed the log goes on with an intact chain.
func TestFullDisk(t *testing.T) {
	dir := mountFull(t)
	path := filepath.Join(dir, "audit.log")
	l := openLog(t, Options{Path: path, SyncInterval: time.Hour, MaxBytes: -1})
	for i := range 3 {
		if err := l.AppendDurable(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	filler := filepath.Join(dir, "filler")
	fill(t, filler)

	err := l.AppendDurable(sampleRecord(10))
	if !errors.Is(err, ErrNotRecorded) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("AppendDurable on a full disk: %v, want ErrNotRecorded and ENOSPC", err)
	}
	if p, err := l.AppendPending(sampleRecord(11)); !errors.Is(err, ErrNotRecorded) || p != nil {
		t.Fatalf("AppendPending on a full disk: %v %v", p, err)
	}
	if err := l.Append(sampleRecord(12)); !errors.Is(err, ErrNotRecorded) {
		t.Fatalf("Append on a full disk: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p, err := l.AppendPending(sampleRecord(13))
	if err != nil {
		t.Fatalf("AppendPending after space was freed: %v", err)
	}
	if err := p.Outcome(Reply{Code: 250, Enhanced: "2.0.0", Text: "queued"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Outcome(Reply{Code: 250}); !errors.Is(err, ErrNotRecorded) {
		t.Fatalf("a second outcome: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := verifyPath(t, path, "")
	if err != nil {
		t.Fatalf("chain after a full disk: %v", err)
	}
	if s.LastSeq < 5 {
		t.Fatalf("summary %+v", s)
	}
	lines := readLines(t, path)
	pending, outcome := string(lines[len(lines)-2]), string(lines[len(lines)-1])
	if !strings.Contains(pending, `"event":"pending"`) || !strings.Contains(outcome, `"event":"outcome"`) ||
		!strings.Contains(outcome, `"reply":{"code":250`) {
		t.Fatalf("last two records:\n%s%s", pending, outcome)
	}
	if want := `"pending":` + strconv.FormatUint(p.Seq(), 10) + `,`; !strings.Contains(outcome, want) {
		t.Fatalf("outcome %s does not name its pending record (%s)", outcome, want)
	}
}

// Verify lists the pending records that no outcome completes, and refuses an outcome that names no earlier record.
func TestVerifyUnfinishedPending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path})
	done, err := l.AppendPending(sampleRecord(1))
	if err != nil {
		t.Fatal(err)
	}
	open, err := l.AppendPending(sampleRecord(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := done.Outcome(Reply{Code: 250}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	s := mustIntact(t, path, 3)
	if len(s.Unfinished) != 1 || s.Unfinished[0] != open.Seq() {
		t.Fatalf("unfinished %v, want [%d]", s.Unfinished, open.Seq())
	}

	l = openLog(t, Options{Path: path})
	if err := l.Append(&Record{Event: EventOutcome, Pending: 99, Reply: &Reply{Code: 250}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, err = verifyPath(t, path, "")
	chainErr(t, err, ProblemMalformed, 4, 4)
}
