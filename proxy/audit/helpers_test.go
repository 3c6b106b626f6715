package audit

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// logBuf collects log output so tests can check what an operator would see.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func openLog(t testing.TB, opts Options) *Log {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	l, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// sampleRecord is a decision record like the SMTP proxy writes.
func sampleRecord(i int) *Record {
	from := "alice@example.org"
	return &Record{
		Time:          time.Date(2026, 1, 2, 3, 4, 5, i, time.UTC),
		Session:       fmt.Sprintf("s%d", i),
		Listener:      "mx",
		Protocol:      "smtp",
		Direction:     "inbound",
		ClientIP:      "192.0.2.7",
		TLS:           "TLS1.3",
		Hook:          "message",
		MailFrom:      &from,
		Rcpts:         []string{"bob@example.com", "carol@example.com"},
		MessageID:     fmt.Sprintf("<%d@example.org>", i),
		Size:          int64(1000 + i),
		SHA256In:      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		ConfigVersion: "4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce",
		Action:        "accept",
		Reply:         &Reply{Code: 250, Enhanced: "2.0.0", Text: "queued as ABC123"},
		Score:         1.5,
		Tags:          map[string]string{"external": "yes"},
		Policies: []Policy{{
			Name: "inbound", Mode: "enforce", Matched: true, Action: "accept", Score: 1.5,
			Plugins: []Plugin{
				{Name: "attachment-guard", SHA256: "aa", Verdict: "accept", DurationNS: 41000},
				{Name: "external-tag", SHA256: "bb", Verdict: "accept", Score: 1.5, Tags: map[string]string{"external": "yes"},
					Changes: []Change{{Op: "prefix_subject", Bytes: 11}}, DurationNS: 12000},
			},
		}, {Name: "outbound-dlp", Matched: false}},
		DurationNS: 70000,
	}
}

// writeChain appends n sample records to a fresh log at dir/audit.log and returns its path.
func writeChain(t testing.TB, dir string, n int, opts Options) string {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(dir, "audit.log")
	}
	l := openLog(t, opts)
	for i := range n {
		if err := l.Append(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return opts.Path
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func verifyPath(t testing.TB, path string, prev string, anchors ...string) (Summary, error) {
	t.Helper()
	files, err := ChainFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	return VerifyFiles(files, prev, anchors...)
}

func mustIntact(t testing.TB, path string, records int) Summary {
	t.Helper()
	s, err := verifyPath(t, path, "")
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if s.Records != records {
		t.Fatalf("verify: %d records, want %d", s.Records, records)
	}
	return s
}

// chainErr asserts that err is a *ChainError with problem p at line (and seq, when not 0).
func chainErr(t testing.TB, err error, p Problem, line int, seq uint64) *ChainError {
	t.Helper()
	var ce *ChainError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want a *ChainError %q", err, err, p)
	}
	if ce.Problem != p || ce.Line != line || (seq != 0 && ce.Seq != seq) {
		t.Fatalf("got %q at line %d seq %d (%v), want %q at line %d seq %d", ce.Problem, ce.Line, ce.Seq, ce, p, line, seq)
	}
	return ce
}

func slogTo(w *logBuf) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
