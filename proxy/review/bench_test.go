package review

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/audit"
)

// BenchmarkPasswordHash is the cost of one login's argon2id verification.
func BenchmarkPasswordHash(b *testing.B) {
	h, _ := HashPassword("correct horse battery")
	b.ResetTimer()
	for b.Loop() {
		verifyPassword(h, "correct horse battery")
	}
}

// BenchmarkMessageView prepares a 2 MiB message of 100 text parts for the message page.
func BenchmarkMessageView(b *testing.B) {
	var m strings.Builder
	m.WriteString("From: a@example.org\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n")
	line := strings.Repeat("lorem ipsum dolor sit amet ", 3) + "\r\n"
	for i := range 100 {
		fmt.Fprintf(&m, "--x\r\nContent-Type: text/%s; charset=utf-8\r\n\r\n", map[bool]string{true: "html", false: "plain"}[i%2 == 0])
		for range 256 {
			m.WriteString(line)
		}
	}
	m.WriteString("--x--\r\n")
	msg := []byte(m.String())
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := newMessageView(bytes.NewReader(msg), int64(len(msg))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLogScan searches a log of 100,000 decision records by sender without an index.
func BenchmarkLogScan(b *testing.B) {
	dir := b.TempDir()
	log, err := audit.Open(audit.Options{Path: filepath.Join(dir, "audit.log"), SyncInterval: time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 100000 {
		from := fmt.Sprintf("user%d@example.org", i%1000)
		log.Append(&audit.Record{Event: audit.EventDecision, Time: time.Unix(int64(i), 0), Listener: "mx",
			MailFrom: &from, Rcpts: []string{"bob@example.com"}, MessageID: fmt.Sprintf("<%d@x>", i), Action: "accept",
			Policies: []audit.Policy{{Name: "content", Matched: true, Plugins: []audit.Plugin{{Name: "dlp", Verdict: "accept"}}}}})
	}
	log.Close()
	s := LogScan{Path: filepath.Join(dir, "audit.log")}
	b.ResetTimer()
	for b.Loop() {
		rows, err := s.Search(context.Background(), DecisionQuery{Sender: "user7@example.org"})
		if err != nil || len(rows) != 100 {
			b.Fatal(len(rows), err)
		}
	}
}
