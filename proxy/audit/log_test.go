package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAppendFillsChainFields(t *testing.T) {
	l := openLog(t, Options{Path: filepath.Join(t.TempDir(), "audit.log")})
	defer l.Close()
	var prev string = genesis
	for i := range 3 {
		r := &Record{Listener: "mx"}
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
		if r.V != Version || r.Seq != uint64(i+1) || r.Prev != prev || len(r.Hash) != 64 || r.Event != EventDecision ||
			r.Time.IsZero() || r.Time.Location() != time.UTC {
			t.Fatalf("record %d: %+v", i, r)
		}
		if seq, hash := l.Head(); seq != r.Seq || hash != r.Hash {
			t.Fatalf("head %d %s, record %d %s", seq, hash, r.Seq, r.Hash)
		}
		prev = r.Hash
	}
}

func TestOpenOptions(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Fatal("no path accepted")
	}
	if _, err := Open(Options{Path: filepath.Join(t.TempDir(), "a.log"), SyncInterval: -time.Second}); err == nil {
		t.Fatal("negative sync interval accepted")
	}
	// The directory is created, private.
	path := filepath.Join(t.TempDir(), "sub", "dir", "audit.log")
	l := openLog(t, Options{Path: path})
	l.Append(sampleRecord(1))
	l.Close()
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700 | os.ModeDir, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Fatalf("%s: %v %v, want %v", p, fi.Mode(), err, want)
		}
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	line := len(readLines(t, writeChain(t, t.TempDir(), 1, Options{}))[0])
	// Three records fit per file.
	l := openLog(t, Options{Path: path, MaxBytes: int64(3*line + line/2)})
	for i := range 10 {
		if err := l.Append(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	files, err := ChainFiles(path)
	if err != nil || len(files) != 4 {
		t.Fatalf("%d files (%q), %v; want 4", len(files), files, err)
	}
	for i, f := range files {
		if n := len(readLines(t, f)); n != 3 && !(i == 3 && n == 1) {
			t.Fatalf("%s has %d records", f, n)
		}
	}
	s := mustIntact(t, path, 10)
	if s.Files != 4 {
		t.Fatalf("summary %+v", s)
	}
	// A deleted rotated file in the middle is a gap.
	os.Remove(files[1])
	_, err = verifyPath(t, path, "")
	ce := chainErr(t, err, ProblemMissing, 1, 7)
	if ce.File != files[2] {
		t.Fatalf("broken record in %s, want %s", ce.File, files[2])
	}
	// Deleted oldest files (retention) verify from where they start on.
	os.Remove(files[0])
	_, err = verifyPath(t, path, "")
	chainErr(t, err, ProblemStart, 1, 7)
	if s, err := verifyPath(t, path, AnyPrev); err != nil || s.Records != 4 || s.FirstSeq != 7 {
		t.Fatalf("%+v %v", s, err)
	}
}

// TestRotationClockBack: rotated names come from the clock, the order from the records. A clock standing still
// or going back neither overwrites a rotated file nor misorders the chain.
func TestRotationClockBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path, MaxBytes: 1})
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	var calls atomic.Int64
	l.now = func() time.Time { return base.Add(-time.Duration(calls.Add(1)) * time.Hour) }
	for i := range 6 {
		if err := l.Append(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.now = func() time.Time { return base } // and now standing still
	for i := range 3 {
		if err := l.Append(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	files, _ := ChainFiles(path)
	if len(files) != 9 {
		t.Fatalf("%d files, want 9 (one record each)", len(files))
	}
	mustIntact(t, path, 9)
}

func TestRestartContinuesChain(t *testing.T) {
	dir := t.TempDir()
	path := writeChain(t, dir, 5, Options{})
	l := openLog(t, Options{Path: path})
	seq, hash := l.Head()
	if seq != 5 {
		t.Fatalf("head after restart: seq %d", seq)
	}
	r := sampleRecord(9)
	if err := l.Append(r); err != nil {
		t.Fatal(err)
	}
	if r.Seq != 6 || r.Prev != hash {
		t.Fatalf("record after restart: seq %d prev %s, want 6 %s", r.Seq, r.Prev, hash)
	}
	l.Close()
	mustIntact(t, path, 6)
}

// TestRestartAfterRotation: the active file is missing or empty (a crash right after rotating); the chain
// continues from the newest rotated file.
func TestRestartAfterRotation(t *testing.T) {
	for _, tc := range []string{"missing", "empty"} {
		t.Run(tc, func(t *testing.T) {
			dir := t.TempDir()
			path := writeChain(t, dir, 4, Options{MaxBytes: 1})
			os.Rename(path, path+".29991231T000000.000000000Z")
			if tc == "empty" {
				os.WriteFile(path, nil, 0o600)
			}
			l := openLog(t, Options{Path: path})
			if seq, _ := l.Head(); seq != 4 {
				t.Fatalf("head seq %d, want 4", seq)
			}
			l.Append(sampleRecord(5))
			l.Close()
			mustIntact(t, path, 5)
		})
	}
}

func TestOpenRecoversInterruptedWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(next []byte) []byte
	}{
		{"half a record", func(next []byte) []byte { return next[:len(next)/2] }},
		{"record without newline", func(next []byte) []byte { return next[:len(next)-1] }},
		{"zeros", func([]byte) []byte { return make([]byte, 4096) }}, // what a filesystem can show after power loss
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeChain(t, dir, 4, Options{})
			lines := readLines(t, path)
			other := readLines(t, writeChain(t, t.TempDir(), 5, Options{}))
			tail := tc.tail(other[4])
			before := bytes.Join(lines, nil)
			writeLines(t, path, append(lines, tail))
			_, err := verifyPath(t, path, "")
			chainErr(t, err, ProblemIncomplete, 5, 0)

			var logs logBuf
			l := openLog(t, Options{Path: path, Logger: slogTo(&logs)})
			if seq, _ := l.Head(); seq != 5 {
				t.Fatalf("after recovery head seq %d, want 5 (the recovery record)", seq)
			}
			if err := l.Append(sampleRecord(7)); err != nil {
				t.Fatal(err)
			}
			l.Close()
			s := mustIntact(t, path, 6)
			sum := sha256.Sum256(tail)
			want := Recovered{File: path, Line: 5, Seq: 5, Recovery: Recovery{File: "audit.log", Offset: int64(len(before)),
				Bytes: int64(len(tail)), SHA256: hex.EncodeToString(sum[:])}}
			if len(s.Recoveries) != 1 || s.Recoveries[0] != want {
				t.Fatalf("recoveries %+v, want %+v", s.Recoveries, want)
			}
			if got, _ := os.ReadFile(path); !bytes.HasPrefix(got, before) {
				t.Fatal("records before the interrupted write changed")
			}
			if !strings.Contains(logs.String(), "removed an interrupted write") {
				t.Fatalf("no warning logged: %s", logs.String())
			}
		})
	}
}

func TestOpenRefusesDamagedLog(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(path string, lines [][]byte)
	}{
		{"last record edited", func(path string, l [][]byte) {
			l[2] = bytes.Replace(l[2], []byte(`"accept"`), []byte(`"reject"`), 1)
			writeLines(t, path, l)
		}},
		{"last line garbage", func(path string, l [][]byte) { writeLines(t, path, append(l, []byte("garbage\n"))) }},
		{"newest rotated file damaged", func(path string, l [][]byte) {
			l[2] = bytes.Replace(l[2], []byte(`"accept"`), []byte(`"reject"`), 1)
			writeLines(t, path+".20260101T000000.000000000Z", l)
			os.Remove(path)
		}},
		{"giant last line", func(path string, l [][]byte) {
			writeLines(t, path, append(l, append(bytes.Repeat([]byte("x"), 3*maxLine), '\n')))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeChain(t, t.TempDir(), 3, Options{})
			tc.damage(path, readLines(t, path))
			l, err := Open(Options{Path: path, Logger: quietLogger()})
			if !errors.Is(err, ErrDamaged) {
				if l != nil {
					l.Close()
				}
				t.Fatalf("Open = %v, want ErrDamaged", err)
			}
			t.Log(err)
			// The lock was released: fixing the log and opening again works.
			os.Remove(path)
			os.Remove(path + ".20260101T000000.000000000Z")
			openLog(t, Options{Path: path}).Close()
		})
	}
}

func TestSecondWriterRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path})
	if l2, err := Open(Options{Path: path, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "in use") {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("second writer: %v", err)
	}
	l.Close()
	openLog(t, Options{Path: path}).Close()
}

func TestAppendAfterClose(t *testing.T) {
	l := openLog(t, Options{Path: filepath.Join(t.TempDir(), "audit.log"), SyncInterval: time.Hour})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := l.Append(sampleRecord(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
}

func TestConcurrentAppends(t *testing.T) {
	for _, interval := range []time.Duration{0, time.Millisecond} {
		t.Run(interval.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			line := len(readLines(t, writeChain(t, t.TempDir(), 1, Options{}))[0])
			l := openLog(t, Options{Path: path, SyncInterval: interval, MaxBytes: int64(50 * line)})
			const workers, each = 8, 60
			var wg sync.WaitGroup
			seqs := make([][]uint64, workers)
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						r := sampleRecord(w*1000 + i)
						if err := l.Append(r); err != nil {
							t.Error(err)
							return
						}
						if interval == 0 && l.synced.Load() < r.Seq {
							t.Errorf("Append returned before seq %d was synced", r.Seq)
						}
						seqs[w] = append(seqs[w], r.Seq)
					}
				})
			}
			wg.Wait()
			l.Close()
			seen := map[uint64]bool{}
			for _, s := range seqs {
				for _, q := range s {
					if seen[q] {
						t.Fatalf("seq %d given twice", q)
					}
					seen[q] = true
				}
			}
			s := mustIntact(t, path, workers*each)
			if s.Files < 2 {
				t.Fatalf("expected rotation under load, %d files", s.Files)
			}
		})
	}
}

// countingFile counts fsyncs and can be told to fail.
type countingFile struct {
	*os.File
	syncs     atomic.Int64
	failSync  atomic.Bool
	failWrite atomic.Int64 // when > 0: write that many bytes of the next write, then fail
}

func (f *countingFile) Sync() error {
	if f.failSync.Load() {
		return errors.New("injected fsync failure")
	}
	f.syncs.Add(1)
	return f.File.Sync()
}

func (f *countingFile) Write(p []byte) (int, error) {
	if n := f.failWrite.Swap(0); n > 0 {
		w, _ := f.File.Write(p[:n])
		return w, errors.New("injected: no space left on device")
	}
	return f.File.Write(p)
}

func wrap(l *Log) *countingFile {
	l.mu.Lock()
	defer l.mu.Unlock()
	cf := &countingFile{File: l.f.(*os.File)}
	l.f = cf
	return cf
}

func TestSyncInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path, SyncInterval: 5 * time.Millisecond})
	cf := wrap(l)
	for i := range 3 {
		if err := l.Append(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.synced.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("background sync never covered the records")
		}
		time.Sleep(time.Millisecond)
	}
	if cf.syncs.Load() == 0 {
		t.Fatal("synced without an fsync")
	}
	l.Close()
	mustIntact(t, path, 3)
}

func TestSyncEveryRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path})
	cf := wrap(l)
	for i := range 5 {
		if err := l.Append(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := cf.syncs.Load(); n != 5 {
		t.Fatalf("%d fsyncs for 5 sequential records, want 5", n)
	}
	l.Close()
}

func TestWriteFailureThenReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var logs logBuf
	l := openLog(t, Options{Path: path, Logger: slogTo(&logs)})
	l.Append(sampleRecord(1))
	cf := wrap(l)
	if err := l.Writable(); err != nil {
		t.Fatalf("Writable before the failure: %v", err)
	}
	cf.failWrite.Store(100) // a full disk after 100 bytes
	if err := l.Append(sampleRecord(2)); err == nil || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("Append on a failing disk: %v", err)
	}
	if err := l.Writable(); err == nil || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("Writable after a failed write = %v, want the failure", err)
	}
	// The next Append reopens, removes the 100 bytes with a recovery record and goes on.
	r := sampleRecord(3)
	if err := l.Append(r); err != nil {
		t.Fatal(err)
	}
	if r.Seq != 3 {
		t.Fatalf("seq %d, want 3 (1, the recovery record, this)", r.Seq)
	}
	if err := l.Writable(); err != nil {
		t.Fatalf("Writable after the reopen: %v", err)
	}
	l.Close()
	if err := l.Writable(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Writable after Close = %v, want ErrClosed", err)
	}
	s := mustIntact(t, path, 3)
	if len(s.Recoveries) != 1 || s.Recoveries[0].Recovery.Bytes != 100 {
		t.Fatalf("recoveries %+v", s.Recoveries)
	}
	if !strings.Contains(logs.String(), "reopened after a failure") {
		t.Fatalf("log: %s", logs.String())
	}
}

func TestFsyncFailureThenReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path})
	cf := wrap(l)
	cf.failSync.Store(true)
	if err := l.Append(sampleRecord(1)); err == nil || !strings.Contains(err.Error(), "fsync") {
		t.Fatalf("Append with failing fsync: %v", err)
	}
	// The record was written (only its durability is unknown): the chain continues after it.
	if err := l.Append(sampleRecord(2)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	mustIntact(t, path, 2)
}

func TestReopenRefusesChangedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path})
	for i := range 3 {
		l.Append(sampleRecord(i))
	}
	cf := wrap(l)
	cf.failSync.Store(true)
	l.Append(sampleRecord(4)) // fails, the log reopens on the next Append
	lines := readLines(t, path)
	writeLines(t, path, lines[:2]) // meanwhile someone removed records
	err := l.Append(sampleRecord(5))
	if err == nil || !strings.Contains(err.Error(), "changed while open") {
		t.Fatalf("Append after the file changed: %v", err)
	}
	l.Close()
}

func TestOversizeRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path})
	defer l.Close()
	r := sampleRecord(1)
	r.Policies[0].Plugins[1].Tags = map[string]string{}
	for i := range 1500 {
		r.Policies[0].Plugins[1].Tags[strings.Repeat("k", 60)+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676))] = strings.Repeat("v", 1024)
	}
	if err := l.Append(r); err != nil {
		t.Fatal(err)
	}
	var got Record
	json.Unmarshal(readLines(t, path)[0], &got)
	if !got.Truncated || got.Policies[0].Plugins[1].Tags != nil || got.Policies[0].Plugins[1].Verdict != "accept" || got.MessageID == "" {
		t.Fatalf("oversize record not degraded as documented: truncated=%v", got.Truncated)
	}
	if r.Policies[0].Plugins[1].Tags == nil {
		t.Fatal("Append changed the caller's tags")
	}
	// A recipient list too long for a line is cut to its first entries.
	many := sampleRecord(2)
	for i := range 20000 {
		many.Rcpts = append(many.Rcpts, strings.Repeat("r", 90)+"@example.com"+strings.Repeat("x", i%7))
	}
	if err := l.Append(many); err != nil {
		t.Fatal(err)
	}
	got = Record{}
	json.Unmarshal(readLines(t, path)[1], &got)
	if !got.Truncated || len(got.Rcpts) != truncatedRcpts || got.Rcpts[0] != many.Rcpts[0] || len(many.Rcpts) != 20002 {
		t.Fatalf("long recipient list: truncated=%v, %d recipients", got.Truncated, len(got.Rcpts))
	}
	// Beyond help: a record too large even without tags is an error, and nothing is written.
	huge := &Record{}
	for range 2000 {
		huge.Policies = append(huge.Policies, Policy{Name: strings.Repeat("p", 1000)})
	}
	if err := l.Append(huge); !errors.Is(err, errTooLarge) {
		t.Fatalf("huge record: %v", err)
	}
	if n := len(readLines(t, path)); n != 2 {
		t.Fatalf("%d lines after a refused record", n)
	}
	// The log still works.
	if err := l.Append(sampleRecord(2)); err != nil {
		t.Fatal(err)
	}
}
