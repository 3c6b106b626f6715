// Package headersanity_test runs the header-sanity C plugin through the plugin host on the messages in testdata/.
package headersanity_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

const src = "plugins/header-sanity"

func newHost(t testing.TB) *pluginhost.Host {
	t.Helper()
	ctx := context.Background()
	h, err := pluginhost.NewHost(ctx, pluginhost.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(ctx) })
	return h
}

func wasm(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(testplugins.Path(t, src))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func load(t testing.TB, h *pluginhost.Host, config string) (*pluginhost.Plugin, error) {
	t.Helper()
	cfg := pluginhost.Config{Name: "header-sanity", Wasm: wasm(t)}
	if config != "" {
		cfg.Config = []byte(config)
	}
	return h.Load(context.Background(), cfg)
}

func parse(t testing.TB, file string) *message.Message {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	m, err := message.Parse(bytes.NewReader(b), int64(len(b)), message.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func call(t testing.TB, p *pluginhost.Plugin, m *message.Message, protocol string) *pluginhost.Result {
	t.Helper()
	in := &pluginhost.Input{
		Env: pluginhost.Envelope{Protocol: protocol, Direction: "inbound", Listener: "mx", ClientIP: "192.0.2.7",
			MailFrom: "sender@example.org", HasMailFrom: true, Rcpts: []string{"bob@example.com"}},
		Msg: m,
	}
	res := p.Call(context.Background(), pluginhost.HookMessage, in)
	if res.Err != nil {
		t.Fatalf("call failed: %v (logs %v)", res.Err, res.Logs)
	}
	if n := res.Changes.Len(); n != 0 {
		t.Errorf("the plugin changed the message (%d changes); it must only tag and score", n)
	}
	return res
}

type tags = map[string]string

func TestChecks(t *testing.T) {
	h := newHost(t)
	for _, c := range []struct {
		name     string
		file     string
		config   string
		protocol string // "smtp" unless set
		tags     tags
		score    float64
		verdict  pluginhost.Verdict // zero: accept
	}{
		{name: "clean", file: "clean.eml", tags: tags{}},
		{name: "real clean mail", file: "corpus/mail-parser-legacy-000.eml", tags: tags{}},
		{name: "no From", file: "no-from.eml", tags: tags{"header-sanity.from": "missing"}, score: 2},
		{name: "no From, rejected", file: "no-from.eml", config: `{"reject_missing_from": true}`,
			tags: tags{"header-sanity.from": "missing"}, score: 2,
			verdict: pluginhost.Verdict{Kind: pluginhost.Reject, Code: 550, Enhanced: "5.7.1",
				Text: "message has no From header field (RFC 5322 section 3.6)"}},
		{name: "empty From", file: "empty-from.eml", tags: tags{"header-sanity.from": "empty"}, score: 2},
		{name: "empty From, rejected", file: "empty-from.eml", config: `{"reject_missing_from": true}`,
			tags: tags{"header-sanity.from": "empty"}, score: 2,
			verdict: pluginhost.Verdict{Kind: pluginhost.Reject, Code: 550, Enhanced: "5.7.1",
				Text: "message has no From header field (RFC 5322 section 3.6)"}},
		{name: "two From", file: "two-from.eml", tags: tags{"header-sanity.from": "multiple"}, score: 2},
		{name: "two From, missing-From rejection does not apply", file: "two-from.eml",
			config: `{"reject_missing_from": true}`, tags: tags{"header-sanity.from": "multiple"}, score: 2},
		{name: "two From, rejected", file: "two-from.eml", config: `{"reject_multiple_from": true}`,
			tags: tags{"header-sanity.from": "multiple"}, score: 2,
			verdict: pluginhost.Verdict{Kind: pluginhost.Reject, Code: 550, Enhanced: "5.7.1",
				Text: "message has more than one From header field (RFC 5322 section 3.6)"}},
		{name: "no Date", file: "no-date.eml", tags: tags{"header-sanity.date": "missing"}, score: 1},
		{name: "no Date, submission", file: "no-date.eml", protocol: "submission", tags: tags{}},
		{name: "no Date, strict submission", file: "no-date.eml", protocol: "submission",
			config: `{"relaxed_submission": false}`, tags: tags{"header-sanity.date": "missing"}, score: 1},
		{name: "no Message-ID", file: "no-message-id.eml", tags: tags{"header-sanity.message-id": "missing"},
			score: 0.5},
		{name: "no Message-ID, submission", file: "no-message-id.eml", protocol: "submission", tags: tags{}},
		{name: "duplicates", file: "duplicates.eml", tags: tags{"header-sanity.duplicate": "Date,To,Subject"},
			score: 3},
		{name: "8-bit Subject", file: "8bit-subject.eml", tags: tags{"header-sanity.8bit": "Subject"}, score: 1},
		{name: "8-bit in a folded line", file: "8bit-folded.eml", tags: tags{"header-sanity.8bit": "To"}, score: 1},
		// Raw ISO-8859-1 in a folded To: 8-bit without SMTPUTF8, and not even UTF-8 (a parser defect).
		{name: "real 8-bit in a folded To", file: "corpus/mail-parser-legacy-009.eml",
			tags: tags{"header-sanity.8bit": "To", "header-sanity.malformed": "bad-header"}, score: 2},
		{name: "bare", file: "bare.eml", tags: tags{"header-sanity.from": "missing",
			"header-sanity.date": "missing", "header-sanity.message-id": "missing"}, score: 3.5},
		{name: "bare, custom scores", file: "bare.eml",
			config: `{"score_missing_from": 10, "score_missing_date": 0, "score_missing_message_id": -0.25}`,
			tags: tags{"header-sanity.from": "missing", "header-sanity.date": "missing",
				"header-sanity.message-id": "missing"}, score: 9.75},
		{name: "unclosed multipart", file: "unclosed-multipart.eml",
			tags: tags{"header-sanity.malformed": "unclosed-boundary"}, score: 1},
		{name: "real multipart without boundary", file: "corpus/enmime-multipart-wo-boundary.eml",
			tags: tags{"header-sanity.date": "missing", "header-sanity.malformed": "missing-boundary"}, score: 2},
		{name: "real header starting with a folded line", file: "corpus/enmime-bad-header-start.eml",
			tags: tags{"header-sanity.from": "missing", "header-sanity.malformed": "bad-header"}, score: 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := load(t, h, c.config)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(context.Background())
			if p.Hooks() != pluginhost.HookSet(1<<pluginhost.HookMessage) {
				t.Errorf("hooks %v, want message only: a C plugin exports only the hooks it implements", p.Hooks())
			}
			protocol := c.protocol
			if protocol == "" {
				protocol = "smtp"
			}
			res := call(t, p, parse(t, c.file), protocol)
			got := res.Tags
			if got == nil {
				got = tags{}
			}
			if !reflect.DeepEqual(got, c.tags) {
				t.Errorf("tags %v, want %v", got, c.tags)
			}
			if res.Score != c.score {
				t.Errorf("score %v, want %v", res.Score, c.score)
			}
			if c.verdict.Kind == pluginhost.Accept {
				if res.Verdict.Kind != pluginhost.Accept {
					t.Errorf("verdict %+v, want accept", res.Verdict)
				}
			} else if res.Verdict != c.verdict {
				t.Errorf("verdict %+v, want %+v", res.Verdict, c.verdict)
			}
			for _, l := range res.Logs {
				t.Errorf("unexpected log line: %v", l)
			}
		})
	}
}

// TestMalformedTagListsEveryKindOnce checks the malformed tag against the parser's own defects on a message with
// several of them.
func TestMalformedTagListsEveryKindOnce(t *testing.T) {
	raw := "From: a@example.org\r\nDate: Mon, 24 Nov 2025 03:00:00 +0000\r\nMessage-ID: <m@example.org>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n" +
		"--o\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-unknown\r\n\r\none\r\n" +
		"--o\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-other\r\n\r\ntwo\r\n" +
		"--o\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n"
	m := parseString(t, raw)
	var kinds []string
	seen := map[string]bool{}
	for _, d := range m.Defects() {
		if !seen[d.Kind] {
			seen[d.Kind] = true
			kinds = append(kinds, d.Kind)
		}
	}
	if len(m.Defects()) < 3 || len(kinds) < 2 {
		t.Fatalf("the test message should have several defects of several kinds, has %v", m.Defects())
	}
	p, err := load(t, newHost(t), "")
	if err != nil {
		t.Fatal(err)
	}
	res := call(t, p, m, "smtp")
	if got, want := res.Tags["header-sanity.malformed"], strings.Join(kinds, ","); got != want {
		t.Errorf("malformed tag %q, want %q (defects %v)", got, want, m.Defects())
	}
	if res.Score != 1 {
		t.Errorf("score %v, want 1: malformed scores once however many defects", res.Score)
	}
}

// TestEightBitAtEveryOffset moves one 8-bit character through every alignment of the plugin's 64-byte scan, in
// a plain and in a folded line, and checks that the field is always found and named.
func TestEightBitAtEveryOffset(t *testing.T) {
	p, err := load(t, newHost(t), "")
	if err != nil {
		t.Fatal(err)
	}
	const head = "From: a@example.org\r\nDate: Mon, 24 Nov 2025 03:00:00 +0000\r\nMessage-ID: <m@example.org>\r\n"
	for k := 0; k < 140; k++ {
		for _, fold := range []string{"", "\r\n\t"} {
			pad := strings.Repeat("a", k)
			raw := head + "X-Pad: " + pad + fold + "caf\u00e9\r\nSubject: s\r\n\r\nbody\r\n"
			res := call(t, p, parseString(t, raw), "smtp")
			if got := res.Tags["header-sanity.8bit"]; got != "X-Pad" {
				t.Fatalf("8-bit byte after %d bytes of padding (fold %q): tag %q, want X-Pad", k, fold, got)
			}
			clean := strings.Replace(raw, "\u00e9", "e", 1)
			if res := call(t, p, parseString(t, clean), "smtp"); len(res.Tags) != 0 {
				t.Fatalf("ASCII header after %d bytes of padding: tags %v, want none", k, res.Tags)
			}
		}
	}
}

// TestHugeHeader checks the bound of the 8-bit scan: a header past 1 MiB is scanned up to 1 MiB, with a warning.
func TestHugeHeader(t *testing.T) {
	p, err := load(t, newHost(t), "")
	if err != nil {
		t.Fatal(err)
	}
	build := func(eightBitAt int) *message.Message {
		var b strings.Builder
		b.WriteString("From: a@example.org\r\nDate: Mon, 24 Nov 2025 03:00:00 +0000\r\nMessage-ID: <m@example.org>\r\n")
		for i := 0; b.Len() < 1<<20+4096; i++ {
			if b.Len() >= eightBitAt && eightBitAt >= 0 {
				b.WriteString("X-Late: caf\u00e9\r\n")
				eightBitAt = -1
			}
			fmt.Fprintf(&b, "X-Pad-%d: %s\r\n", i, strings.Repeat("a", 990))
		}
		b.WriteString("\r\nbody\r\n")
		raw := b.String()
		lim := message.DefaultLimits()
		lim.MaxHeaderBytes = 2 << 20
		m, err := message.Parse(strings.NewReader(raw), int64(len(raw)), lim)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Defects()) != 0 {
			t.Fatalf("the test message should be well formed: %v", m.Defects())
		}
		return m
	}
	in := func(m *message.Message) *pluginhost.Input {
		return &pluginhost.Input{Env: pluginhost.Envelope{Protocol: "smtp"}, Msg: m}
	}
	ctx := context.Background()

	// Within the first MiB (and past the plugin's first 16 KiB buffer): found.
	res := p.Call(ctx, pluginhost.HookMessage, in(build(900<<10)))
	if res.Err != nil || res.Tags["header-sanity.8bit"] != "X-Late" {
		t.Errorf("8-bit at 900 KiB: err %v tags %v, want header-sanity.8bit=X-Late", res.Err, res.Tags)
	}
	if len(res.Logs) != 1 || res.Logs[0].Level != slog.LevelWarn ||
		!strings.Contains(res.Logs[0].Text, "only its start was checked") {
		t.Errorf("logs %v, want one warning about the unscanned rest", res.Logs)
	}
	// Past it: not scanned, and said so.
	res = p.Call(ctx, pluginhost.HookMessage, in(build(1<<20+100)))
	if res.Err != nil || len(res.Tags) != 0 {
		t.Errorf("8-bit past 1 MiB: err %v tags %v, want no tags", res.Err, res.Tags)
	}
	if len(res.Logs) != 1 || res.Logs[0].Level != slog.LevelWarn {
		t.Errorf("logs %v, want one warning", res.Logs)
	}
	// The big buffer is not kept: a small header after a huge one still works.
	if res := call(t, p, parse(t, "8bit-subject.eml"), "smtp"); res.Tags["header-sanity.8bit"] != "Subject" {
		t.Errorf("after a huge header: tags %v", res.Tags)
	}
}

func parseString(t testing.TB, raw string) *message.Message {
	t.Helper()
	m, err := message.Parse(strings.NewReader(raw), int64(len(raw)), message.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestConfigErrors(t *testing.T) {
	h := newHost(t)
	for _, c := range []struct{ config, err string }{
		{`{"reject_missing_form": true}`, `unknown key "reject_missing_form" (byte 1;`},
		{`{"reject_missing_from": "yes"}`, `reject_missing_from must be true or false (byte 24)`},
		{`{"relaxed_submission": 1}`, `relaxed_submission must be true or false (byte 23)`},
		{`{"score_8bit": "1"}`, `score_8bit must be a number (byte 15)`},
		{`{"score_8bit": 1e9}`, `score_8bit must be between -1000 and 1000 (byte 15)`},
		{`{"score_duplicate": -1001}`, `score_duplicate must be between -1000 and 1000`},
		{`[]`, `configuration: must be a JSON object (byte 0)`},
		{`{"score_8bit": 1,}`, `configuration: expected a string key (byte 17)`},
		{`{"score_8bit": 1} x`, `configuration: unexpected data after the document (byte 18)`},
		{`{"score_8bit": 1`, `configuration: expected ',' or '}' (byte 16)`},
		{`{"score_8bit": 1}` + strings.Repeat(" ", 4096), `configuration: 4113 bytes, more than the 4096`},
	} {
		_, err := load(t, h, c.config)
		if err == nil {
			t.Errorf("%.40q: loaded, want an error containing %q", c.config, c.err)
			continue
		}
		if !strings.Contains(err.Error(), c.err) {
			t.Errorf("%.40q: error %q, want it to contain %q", c.config, err, c.err)
		}
	}
	for _, ok := range []string{"", "{}", " { } ", `{"reject_missing_from": false, "score_8bit": 0, "score_malformed": 1000}`} {
		if _, err := load(t, h, ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// BenchmarkCall measures one message hook call on a clean message (all checks run, nothing found).
//
//	go test -run '^$' -bench . -benchmem ./plugins/header-sanity/
func BenchmarkCall(b *testing.B) {
	p, err := load(b, newHost(b), "")
	if err != nil {
		b.Fatal(err)
	}
	m := parse(b, "clean.eml")
	in := &pluginhost.Input{Env: pluginhost.Envelope{Protocol: "smtp"}, Msg: m}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if res := p.Call(ctx, pluginhost.HookMessage, in); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// BenchmarkLoad measures loading the plugin without a compilation cache: compile, check, instantiate, init.
func BenchmarkLoad(b *testing.B) {
	code := wasm(b)
	ctx := context.Background()
	for b.Loop() {
		h, err := pluginhost.NewHost(ctx, pluginhost.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Load(ctx, pluginhost.Config{Name: "header-sanity", Wasm: code}); err != nil {
			b.Fatal(err)
		}
		h.Close(ctx)
	}
}
