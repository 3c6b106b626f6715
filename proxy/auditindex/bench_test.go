package auditindex

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/postern/postern/proxy/audit"
)

// benchRecords is the size of the index BenchmarkSearch queries: an index of a million decisions.
const benchRecords = 1_000_000

// benchLine is the line of record seq as the relay writes it: about 900 bytes, with policies, plugins and tags.
// The hash is not a real one: Add does not check the chain, and the search does not depend on it.
func benchLine(seq int) []byte {
	from := fmt.Sprintf("sender%d@domain%d.example", seq%50000, seq%1000)
	r := &audit.Record{
		V: audit.Version, Seq: uint64(seq), Event: audit.EventPending,
		Time:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(seq) * 3 * time.Second),
		Session: fmt.Sprintf("S%012d", seq), Listener: "mx", Protocol: "smtp", Direction: "inbound",
		ClientIP: fmt.Sprintf("192.0.2.%d", seq%250), TLS: "TLS1.3", Hook: "message", MailFrom: &from,
		Rcpts:     []string{fmt.Sprintf("user%d@example.com", seq%20000)},
		MessageID: fmt.Sprintf("<%d.%x@mail.domain%d.example>", seq, seq*2654435761, seq%1000),
		Size:      int64(2000 + seq%50000), SHA256In: fmt.Sprintf("%064x", seq),
		ConfigVersion: "4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce",
		Action:        []string{"accept", "accept", "accept", "reject", "quarantine"}[seq%5], Score: float64(seq % 20),
		Tags: map[string]string{"external": "yes"},
		Policies: []audit.Policy{{Name: "inbound", Mode: "enforce", Matched: true, Action: "accept", Score: float64(seq % 20),
			Plugins: []audit.Plugin{
				{Name: "attachment-guard", SHA256: "aa", Verdict: "accept", DurationNS: 41000},
				{Name: "external-tag", SHA256: "bb", Verdict: "accept", Tags: map[string]string{"external": "yes"}, DurationNS: 12000},
			}}},
		DurationNS: 70000,
		Prev:       fmt.Sprintf("%064x", seq-1), Hash: fmt.Sprintf("%064x", seq),
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return b
}

// benchIndex opens the million-record index, building it once: it is kept at $POSTERN_BENCH_INDEX (default: the
// temporary directory), so repeated runs measure queries only.
func benchIndex(b *testing.B) *Index {
	path := os.Getenv("POSTERN_BENCH_INDEX")
	if path == "" {
		path = filepath.Join(os.TempDir(), "postern-auditindex-bench-1m.db")
	}
	ctx := context.Background()
	ix, err := Open(ctx, Options{Driver: DriverSQLite, DSN: path, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ix.Close() })
	last, _, err := ix.Last(ctx, "mx1")
	if err != nil {
		b.Fatal(err)
	}
	if last == benchRecords {
		return ix
	}
	b.Logf("building the index of %d records at %s (once)", benchRecords, path)
	start := time.Now()
	batch := make([]Line, 0, 5000)
	for seq := int(last) + 1; seq <= benchRecords; seq++ {
		batch = append(batch, Line{Seq: uint64(seq), Data: benchLine(seq)})
		if len(batch) == cap(batch) || seq == benchRecords {
			if err := ix.Add(ctx, "mx1", batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.Logf("built in %v", time.Since(start))
	return ix
}

// BenchmarkSearch1M queries an index of a million records the way an operator does: one sender's mail, one
// Message-ID, one recipient, a whole sender domain, and the last hour's rejections.
func BenchmarkSearch1M(b *testing.B) {
	ix := benchIndex(b)
	ctx := context.Background()
	end := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(benchRecords * 3 * time.Second)
	for _, c := range []struct {
		name string
		q    func(i int) Query
	}{
		{"sender", func(i int) Query { return Query{Sender: fmt.Sprintf("sender%d@domain%d.example", i%50000, i%1000)} }},
		{"message-id", func(i int) Query {
			seq := 1 + (i*7919)%benchRecords
			return Query{MessageID: fmt.Sprintf("%d.%x@mail.domain%d.example", seq, seq*2654435761, seq%1000)}
		}},
		{"recipient", func(i int) Query { return Query{Recipient: "user" + strconv.Itoa(i%20000) + "@example.com"} }},
		{"sender-domain", func(i int) Query { return Query{Sender: fmt.Sprintf("@domain%d.example", i%1000)} }},
		{"last-hour-rejects", func(int) Query { return Query{From: end.Add(-time.Hour), To: end, Action: "reject"} }},
	} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				rows, err := ix.Search(ctx, c.q(i))
				if err != nil || len(rows) == 0 {
					b.Fatalf("%+v: %d rows, %v", c.q(i), len(rows), err)
				}
				i++
			}
		})
	}
}

// BenchmarkAdd measures indexing: records per second in batches as the feeder writes them.
func BenchmarkAdd(b *testing.B) {
	ix, err := Open(context.Background(), Options{Driver: DriverSQLite, DSN: filepath.Join(b.TempDir(), "ix.db"), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	ctx := context.Background()
	batch := make([]Line, 0, batchRecords)
	seq := 0
	for b.Loop() {
		seq++
		batch = append(batch, Line{Seq: uint64(seq), Data: benchLine(seq)})
		if len(batch) == cap(batch) {
			if err := ix.Add(ctx, "mx1", batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := ix.Add(ctx, "mx1", batch); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
