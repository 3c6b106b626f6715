package auditindex

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/audit"
)

// runFeeder runs f until the test ends.
func runFeeder(t *testing.T, f *Feeder) {
	t.Helper()
	f.retry, f.minRetry = 10*time.Millisecond, 10*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, time.Second)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitIndexed waits until the index holds node's chain up to seq.
func waitIndexed(t *testing.T, ix *Index, node string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _, err := ix.Last(context.Background(), node)
		if err == nil && got >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("index at seq %d (%v) after 30s, want %d", got, err, seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendN(t *testing.T, l *audit.Log, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := l.Append(decision(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFeederLive: records are indexed as they are written, through the log's write hook.
func TestFeederLive(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) *Index) { testFeederLive(t, open(t)) })
}

func testFeederLive(t *testing.T, ix *Index) {
	path := filepath.Join(t.TempDir(), "audit.log")
	f := NewFeeder(FeedOptions{Index: ix, Node: "mx1", LogPath: path, Logger: quiet})
	l := openLog(t, path, f.Written)
	runFeeder(t, f)
	appendN(t, l, 1, 20)
	waitIndexed(t, ix, "mx1", 20)
	if got := search(t, ix, Query{MessageID: "<17.msg@example.org>"}); len(got) != 1 || got[0] != 17 {
		t.Fatalf("search %v", got)
	}
	if s := f.Stats(); s.Indexed != 20 || s.Dropped != 0 || s.Failures != 0 || s.Last != 20 {
		t.Fatalf("stats %+v", s)
	}
}

// TestFeederQueueFull: past its bound the queue drops records instead of blocking the writer; they are read
// from the log.
func TestFeederQueueFull(t *testing.T) {
	ix := openSQLite(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	f := NewFeeder(FeedOptions{Index: ix, Node: "mx1", LogPath: path, Logger: quiet, QueueRecords: 5})
	l := openLog(t, path, f.Written)
	appendN(t, l, 1, 50) // nothing consumes yet: Append must not block
	if s := f.Stats(); s.Dropped != 45 {
		t.Fatalf("dropped %d, want 45", s.Dropped)
	}
	runFeeder(t, f)
	waitIndexed(t, ix, "mx1", 50)
	if n, err := ix.Count(context.Background(), Query{}); err != nil || n != 50 {
		t.Fatalf("count %d, %v", n, err)
	}
	// A bound in bytes too: one record larger than it is dropped and read from the log.
	g := NewFeeder(FeedOptions{Index: ix, Node: "mx1", LogPath: path, Logger: quiet, QueueBytes: 10})
	g.Written(51, []byte(strings.Repeat("x", 11)))
	if s := g.Stats(); s.Dropped != 1 {
		t.Fatalf("a record larger than QueueBytes: dropped %d", s.Dropped)
	}
}

// TestFeederIndexFailure: while the database refuses writes, mail is recorded in the log as usual; the failure is
// counted and retried, and the index catches up once it works again.
func TestFeederIndexFailure(t *testing.T) {
	ctx := context.Background()
	ix := openSQLite(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	f := NewFeeder(FeedOptions{Index: ix, Node: "mx1", LogPath: path, Logger: quiet})
	l := openLog(t, path, f.Written)
	runFeeder(t, f)
	appendN(t, l, 1, 3)
	waitIndexed(t, ix, "mx1", 3)
	if _, err := ix.db.ExecContext(ctx, `DROP TABLE audit_terms`); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 4, 10) // the log takes them whatever the index does
	deadline := time.Now().Add(30 * time.Second)
	for f.Stats().Failures < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no failures counted: %+v", f.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := ix.createSchema(ctx); err != nil {
		t.Fatal(err)
	}
	waitIndexed(t, ix, "mx1", 10)
	if got := search(t, ix, Query{Recipient: "user7@example.net"}); len(got) != 1 || got[0] != 7 {
		t.Fatalf("search after the recovery: %v", got)
	}
}

// TestFeederOpensLater: an index that cannot be opened at start is opened by Run when it can be.
func TestFeederOpensLater(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "ix")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil { // a file where the index's directory must go
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.log")
	f := NewFeeder(FeedOptions{Open: Options{Driver: DriverSQLite, DSN: filepath.Join(blocker, "index.db")},
		Node: "mx1", LogPath: path, Logger: quiet})
	l := openLog(t, path, f.Written)
	runFeeder(t, f)
	appendN(t, l, 1, 4)
	for f.Stats().Failures == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for f.Stats().Last < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("not indexed: %+v", f.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFeederRestart: a feeder started on an index that is behind catches up from the log, reading only the
// rotated files it needs; one started on an index of another chain (the log was replaced) rebuilds the node.
func TestFeederRestart(t *testing.T) {
	ctx := context.Background()
	ix := openSQLite(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := audit.Open(audit.Options{Path: path, Logger: quiet, MaxBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1, 30)
	l.Close()
	if files, _ := audit.ChainFiles(path); len(files) < 5 {
		t.Fatalf("want several rotated files, got %d", len(files))
	}
	if n, err := Reindex(ctx, ix, "mx1", path); err != nil || n != 30 {
		t.Fatalf("Reindex %d, %v", n, err)
	}
	l2, err := audit.Open(audit.Options{Path: path, Logger: quiet, MaxBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l2, 31, 40)
	l2.Close()
	f := NewFeeder(FeedOptions{Index: ix, Node: "mx1", LogPath: path, Logger: quiet})
	runFeeder(t, f)
	waitIndexed(t, ix, "mx1", 40)
	if s := f.Stats(); s.Indexed != 10 {
		t.Fatalf("catch-up indexed %d, want the 10 new records", s.Indexed)
	}

	// Another chain in the log's place: the node's rows are rebuilt from it.
	for _, p := range mustFiles(t, path) {
		os.Remove(p)
	}
	l3, err := audit.Open(audit.Options{Path: path, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l3, 100, 104)
	l3.Close()
	g := NewFeeder(FeedOptions{Index: ix, Node: "mx1", LogPath: path, Logger: quiet})
	runFeeder(t, g)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, _ := ix.Count(ctx, Query{}); n == 5 {
			break
		}
		if time.Now().After(deadline) {
			n, _ := ix.Count(ctx, Query{})
			t.Fatalf("after the log was replaced the index has %d records, want 5", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := search(t, ix, Query{MessageID: "102.msg@example.org"}); len(got) != 1 || got[0] != 3 {
		t.Fatalf("search in the rebuilt index: %v", got)
	}
}

func mustFiles(t *testing.T, path string) []string {
	t.Helper()
	files, err := audit.ChainFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestReindexStopsAtDamage: a record changed in the log stops the reindex there, with the records before it
// indexed and the error naming the record.
func TestReindexStopsAtDamage(t *testing.T) {
	ix := openSQLite(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, nil)
	appendN(t, l, 1, 5)
	l.Close()
	b, _ := os.ReadFile(path)
	b = []byte(strings.Replace(string(b), "<4.msg@", "<4.MSG@", 1))
	os.WriteFile(path, b, 0o600)
	n, err := Reindex(context.Background(), ix, "mx1", path)
	var ce *audit.ChainError
	if !errors.As(err, &ce) || ce.Seq != 4 || ce.Problem != audit.ProblemEdited || n != 3 {
		t.Fatalf("Reindex = %d, %v; want 3 and a hash mismatch at seq 4", n, err)
	}
}

// TestFeederDrainsAtStop: what is queued when Run is stopped is indexed before it returns.
func TestFeederDrainsAtStop(t *testing.T) {
	ix := openSQLite(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	f := NewFeeder(FeedOptions{Index: ix, Node: "mx1", LogPath: path, Logger: quiet})
	l := openLog(t, path, f.Written)
	appendN(t, l, 1, 30)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // stopped before it started: only the drain runs
	f.Run(ctx, 30*time.Second)
	if seq, _, err := ix.Last(context.Background(), "mx1"); err != nil || seq != 30 {
		t.Fatalf("after Run returned: last indexed %d, %v; want 30", seq, err)
	}
	if s := f.Stats(); s.Failures != 0 {
		t.Fatalf("stopping counted as a failure: %+v", s)
	}
}
