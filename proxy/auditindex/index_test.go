package auditindex

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testpostgres"
	"github.com/postern/postern/proxy/audit"
)

var quiet = slog.New(slog.DiscardHandler)

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

// decision is a record like the relay writes for message i.
func decision(i int) *audit.Record {
	return &audit.Record{
		Event:     audit.EventDecision,
		Time:      t0.Add(time.Duration(i) * time.Minute),
		Listener:  "mx",
		Protocol:  "smtp",
		Direction: "inbound",
		ClientIP:  "192.0.2.7",
		Hook:      "message",
		MailFrom:  ptr(fmt.Sprintf("Sender%d@Example.org", i%3)),
		Rcpts:     []string{"bob@example.com", fmt.Sprintf("user%d@example.net", i)},
		MessageID: fmt.Sprintf("<%d.msg@example.org>", i),
		SHA256In:  fmt.Sprintf("%064x", i),
		Action:    "accept",
		Score:     float64(i),
		Policies: []audit.Policy{{Name: "inbound", Matched: true, Action: "accept",
			Plugins: []audit.Plugin{{Name: "external-tag", Verdict: "accept", Tags: map[string]string{"external": "yes"}}}},
			{Name: "outbound-dlp"}},
	}
}

func openSQLite(t testing.TB) *Index {
	t.Helper()
	ix, err := Open(context.Background(), Options{Driver: DriverSQLite, DSN: filepath.Join(t.TempDir(), "index.db"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// writeLog appends records to a new log at path and returns it open (closed at cleanup), with written as its
// Written hook.
func openLog(t testing.TB, path string, written func(uint64, []byte)) *audit.Log {
	t.Helper()
	l, err := audit.Open(audit.Options{Path: path, Logger: quiet, Written: written, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendLine appends a record given as JSON (without v, seq, prev, hash) to the log at path, sealed as the
// writer seals it: through a Log, from a Record that keeps the members it knows and the rest as-is.
func appendLine(t *testing.T, path, body string) {
	t.Helper()
	last, hash := lastRecord(t, path)
	line := fmt.Sprintf(`{"v":1,"seq":%d,%s,"prev":"%s"}`, last+1, body[1:len(body)-1], hash)
	sum := sha256.Sum256([]byte(line))
	line = line[:len(line)-1] + `,"hash":"` + hex.EncodeToString(sum[:]) + `"}` + "\n"
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		t.Fatal(err)
	}
}

func lastRecord(t *testing.T, path string) (uint64, string) {
	t.Helper()
	var seq uint64
	var hash string
	if _, err := audit.ReadFrom(path, 0, func(s uint64, line []byte) error {
		seq, hash = s, lineHash(line)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return seq, hash
}

func seqs(rows []Row) []uint64 {
	var out []uint64
	for _, r := range rows {
		out = append(out, r.Seq)
	}
	return out
}

func search(t *testing.T, ix *Index, q Query) []uint64 {
	t.Helper()
	rows, err := ix.Search(context.Background(), q)
	if err != nil {
		t.Fatalf("Search(%+v): %v", q, err)
	}
	n, err := ix.Count(context.Background(), q)
	if err != nil || n != int64(len(rows)) && q.Limit == 0 {
		t.Fatalf("Count(%+v) = %d, %v; Search found %d", q, n, err, len(rows))
	}
	return seqs(rows)
}

// backends runs fn against an index of each kind: SQLite, and PostgreSQL where testpostgres can start one.
func backends(t *testing.T, fn func(t *testing.T, open func(t *testing.T) *Index)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, func(t *testing.T) *Index { return openSQLite(t) }) })
	t.Run("postgres", func(t *testing.T) {
		c := testpostgres.Start(t)
		fn(t, func(t *testing.T) *Index { return openPostgres(t, c.NewDatabase()) })
	})
}

func openPostgres(t testing.TB, dsn string) *Index {
	t.Helper()
	ix, err := Open(context.Background(), Options{Driver: DriverPostgres, DSN: dsn, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func TestSearchFilters(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) *Index) { testSearchFilters(t, open(t)) })
}

func testSearchFilters(t *testing.T, ix *Index) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, nil)
	for i := 1; i <= 9; i++ {
		if err := l.Append(decision(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A retrieval decision, a quarantine, a pending decision with its outcome, a null sender.
	pop := &audit.Record{Time: t0.Add(time.Hour), Listener: "pop", Protocol: "pop3", MailboxUser: "Dave",
		Mailbox: "INBOX", UIDL: "u1", Command: "retr", MessageID: "<pop@x>", Action: "quarantine",
		Withheld: "20260304-abc", SHA256Served: strings.Repeat("ab", 32), Score: -2,
		Tags: map[string]string{"dlp": "card"}, Policies: []audit.Policy{{Name: "dlp", Matched: true, Action: "quarantine",
			Plugins: []audit.Plugin{{Name: "dlp-scan", Verdict: "quarantine"}}}}}
	l.Append(pop) // seq 10
	p, err := l.AppendPending(&audit.Record{Time: t0.Add(2 * time.Hour), Listener: "submission", Protocol: "submission",
		AuthUser: "Erin@Example.com", MailFrom: ptr(""), Rcpts: []string{"x@y.z"}, Action: "accept"}) // seq 11
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Outcome(audit.Reply{Code: 250, Text: "queued"}); err != nil { // seq 12
		t.Fatal(err)
	}
	l.Close()
	// A quarantine event as the quarantine writes it (seq 13): an entry of the decision at seq 9 released. The
	// index reads it by its JSON names.
	appendLine(t, path, `{"event":"quarantine_release","time":"2026-03-04T13:00:00Z","listener":"mx","action":"",`+
		`"quarantine":{"id":"Q-9","actor":"erin","via":"cli","decision_seq":9,"decision_hash":"x"}}`)
	n, err := Reindex(ctx, ix, "mx1", path)
	if err != nil || n != 13 {
		t.Fatalf("Reindex = %d, %v; want 13", n, err)
	}

	all := []uint64{13, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	for _, c := range []struct {
		name string
		q    Query
		want []uint64
	}{
		{"everything but outcomes, newest first", Query{}, all},
		{"outcome records when asked", Query{Event: "outcome"}, []uint64{12}},
		{"sender, any case", Query{Sender: "sender1@EXAMPLE.org"}, []uint64{7, 4, 1}},
		{"sender in brackets", Query{Sender: "<sender2@example.org>"}, []uint64{8, 5, 2}},
		{"sender domain", Query{Sender: "@example.org"}, []uint64{9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"null sender", Query{Sender: "<>"}, []uint64{11}},
		{"unknown sender", Query{Sender: "nobody@example.org"}, nil},
		{"recipient", Query{Recipient: "user5@example.net"}, []uint64{5}},
		{"recipient domain", Query{Recipient: "@example.com"}, []uint64{9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"recipient in brackets and case", Query{Recipient: "<X@Y.Z>"}, []uint64{11}},
		{"mailbox user", Query{User: "dave"}, []uint64{10}},
		{"authenticated user", Query{User: "erin@example.com"}, []uint64{11}},
		{"mailbox", Query{Mailbox: "INBOX"}, []uint64{10}},
		{"message-id with brackets", Query{MessageID: "<3.msg@example.org>"}, []uint64{3}},
		{"message-id without", Query{MessageID: "3.msg@example.org"}, []uint64{3}},
		{"digest in", Query{Digest: fmt.Sprintf("%064X", 4)}, []uint64{4}},
		{"digest served", Query{Digest: strings.Repeat("ab", 32)}, []uint64{10}},
		{"action", Query{Action: "quarantine"}, []uint64{10}},
		{"policy that matched", Query{Policy: "dlp"}, []uint64{10}},
		{"policy only considered", Query{Policy: "outbound-dlp"}, nil},
		{"plugin", Query{Plugin: "dlp-scan"}, []uint64{10}},
		{"tag name", Query{Tag: "dlp"}, []uint64{10}},
		{"tag name=value", Query{Tag: "dlp=card"}, []uint64{10}},
		{"tag wrong value", Query{Tag: "dlp=iban"}, nil},
		{"plugin tag", Query{Tag: "external=yes", Sender: "@example.org", MaxScore: ptr(2.0)}, []uint64{2, 1}},
		{"score range", Query{MinScore: ptr(3.0), MaxScore: ptr(5.0)}, []uint64{5, 4, 3}},
		{"negative score", Query{MaxScore: ptr(-1.0)}, []uint64{10}},
		{"time range", Query{From: t0.Add(2 * time.Minute), To: t0.Add(4 * time.Minute)}, []uint64{3, 2}},
		{"listener", Query{Listener: "pop"}, []uint64{10}},
		{"protocol", Query{Protocol: "submission"}, []uint64{11}},
		{"withheld", Query{Withheld: "20260304-abc"}, []uint64{10}},
		{"quarantine entry withheld", Query{Quarantine: "20260304-abc"}, []uint64{10}},
		{"quarantine entry and its decision", Query{Quarantine: "Q-9"}, []uint64{13, 9}},
		{"quarantine event", Query{Event: "quarantine_release"}, []uint64{13}},
		{"node", Query{Node: "mx1", Action: "quarantine"}, []uint64{10}},
		{"other node", Query{Node: "mx2"}, nil},
		{"page 2", Query{Limit: 3, Offset: 3}, []uint64{9, 8, 7}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := search(t, ix, c.q); !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}

	// The pending record carries its outcome; the row is the line as written.
	row, err := ix.Get(ctx, "mx1", 11)
	if err != nil {
		t.Fatal(err)
	}
	if row.Outcome == nil || row.Outcome.Code != 250 || row.OutcomeSeq != 12 || row.Record.AuthUser != "Erin@Example.com" {
		t.Fatalf("pending row %+v outcome %+v", row.Record, row.Outcome)
	}
	if row.Record.Seq != 11 || !strings.HasSuffix(string(row.Line), `"hash":"`+row.Record.Hash+`"}`) {
		t.Fatalf("row line %s", row.Line)
	}
	if _, err := ix.Get(ctx, "mx1", 99); err == nil || !strings.Contains(err.Error(), "no such record") {
		t.Fatalf("Get of a missing record: %v", err)
	}
}

// TestSQLiteFileMode: the index file and its WAL are private, as the log is.
func TestSQLiteFileMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	path := filepath.Join(dir, "index.db")
	ix, err := Open(context.Background(), Options{Driver: DriverSQLite, DSN: path, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.Add(context.Background(), "mx1", []Line{{Seq: 1, Data: benchLine(1)}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v", p, fi.Mode().Perm())
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, o := range []Options{{Driver: "mysql", DSN: "x"}, {Driver: DriverSQLite}, {Driver: DriverPostgres}} {
		if _, err := Open(ctx, o); err == nil {
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
	// A database that is not there: the error names it, without the password.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := Open(cctx, Options{Driver: DriverPostgres, DSN: "postgres://postern:secret@127.0.0.1:1/postern?connect_timeout=5"})
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Open of an unreachable database: %v", err)
	}
}
