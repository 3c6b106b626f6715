package pluginhost

import (
	"context"
	"math/rand"
	"os"
	"strings"
	"testing"
)

// scanPatterns is goscan's pattern set (testdata/goscan/main.go): two DLP shapes, two keywords, EICAR.
const scanPatterns = `\b(?:\d[ -]?){12,18}\d\b` + "\n" +
	`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b` + "\n" +
	`(?i)password` + "\n" +
	`(?i)confidential` + "\n" +
	`X5O!P%@AP\[4\\PZX54\(P\^\)7CC\)7\}\$EICAR`

// mailText is n bytes of mail-like text (words, dates, phone numbers, line breaks) with a few planted matches.
func mailText(n int) string {
	r := rand.New(rand.NewSource(1))
	words := strings.Fields("the quick brown fox jumps over lazy dog invoice payment account number please find " +
		"attached regards meeting tomorrow 2024 call me at 555 1234 Über größe café Dear Team, Thanks! (see below)")
	planted := []string{"4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "Password", "CONFIDENTIAL"}
	var b strings.Builder
	for b.Len() < n {
		if r.Intn(2000) == 0 {
			b.WriteString(planted[r.Intn(len(planted))])
		} else {
			b.WriteString(words[r.Intn(len(words))])
		}
		if r.Intn(12) == 0 {
			b.WriteString("\r\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()[:n]
}

func bigMessage(size int) string {
	return "From: a@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n" + mailText(size) + "\r\n--b--\r\n"
}

func BenchmarkCallEmpty(b *testing.B) {
	h := newHost(b)
	p := load(b, h, "empty", nil)
	in := messageInput(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := p.Call(ctx, HookMessage, in); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

func BenchmarkCallHeaderOnly(b *testing.B) {
	for _, name := range []string{"header", "goheader"} {
		b.Run(map[string]string{"header": "wat", "goheader": "go"}[name], func(b *testing.B) {
			h := newHost(b)
			p := load(b, h, name, nil)
			in := messageInput(b)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				res := p.Call(ctx, HookMessage, in)
				if res.Err != nil || res.Tags["subject"] != "Grüße aus Köln" {
					b.Fatal(res.Err, res.Tags)
				}
			}
			s := p.Stats()
			b.ReportMetric(float64(s.MemoryBytes)/float64(s.Live), "mem-bytes/instance")
			b.ReportMetric(float64(s.Created), "instances")
		})
	}
}

// BenchmarkScan1MiB compares five patterns over a 1 MiB text part scanned by Go's regexp inside a Go guest with
// the same guest asking the host's part_match. Each iteration is a new message (a new Input: decoding included).
func BenchmarkScan1MiB(b *testing.B) {
	msg := parse(b, bigMessage(1<<20))
	for _, mode := range []string{"guest", "host"} {
		b.Run(mode, func(b *testing.B) {
			h := newHost(b)
			p := load(b, h, "goscan", func(c *Config) { c.Config = []byte(mode); c.Timeout = 60e9; c.Name = mode })
			ctx := context.Background()
			b.SetBytes(1 << 20)
			var matches string
			for b.Loop() {
				res := p.Call(ctx, HookMessage, &Input{Msg: msg})
				if res.Err != nil {
					b.Fatal(res.Err)
				}
				matches = res.Tags["matches"]
			}
			b.Logf("%s: %s matches", mode, matches)
		})
	}
}

// BenchmarkPartMatch1MiB is the host helper alone: five patterns over 1 MiB of text (goal: 5 ms).
func BenchmarkPartMatch1MiB(b *testing.B) {
	ps, err := compilePatternSet(scanPatterns)
	if err != nil {
		b.Fatal(err)
	}
	data := []byte(mailText(1 << 20))
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		ms, err := ps.search(ctx, data, maxMatches)
		if err != nil {
			b.Fatal(err)
		}
		n = len(ms)
	}
	b.ReportMetric(float64(n), "matches")
}

// BenchmarkLoadCold loads a Go guest into a new host with no compilation cache: compile, check, first instance.
func BenchmarkLoadCold(b *testing.B) {
	code := wasm(b, "goheader")
	ctx := context.Background()
	for b.Loop() {
		h, err := NewHost(ctx, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Load(ctx, Config{Name: "cold", Wasm: code}); err != nil {
			b.Fatal(err)
		}
		_ = h.Close(ctx)
	}
}

// BenchmarkLoadCached is BenchmarkLoadCold with a warm on-disk cache (a new process's start).
func BenchmarkLoadCached(b *testing.B) {
	code := wasm(b, "goheader")
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "pluginhost-bench-cache")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	warm := func() {
		h, err := NewHost(ctx, Options{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Load(ctx, Config{Name: "cached", Wasm: code}); err != nil {
			b.Fatal(err)
		}
		_ = h.Close(ctx)
	}
	warm()
	for b.Loop() {
		warm()
	}
}
