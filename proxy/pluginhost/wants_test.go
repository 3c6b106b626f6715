package pluginhost

import (
	"context"
	"strings"
	"testing"
	"time"
)

const plainMessage = "From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nJust text.\r\n"

// plainAlternative is a text and an HTML body: still no file.
var plainAlternative = strings.ReplaceAll(`From: a@example.org
To: b@example.com
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b"

--b
Content-Type: text/plain; charset=utf-8

Hello
--b
Content-Type: text/html; charset=utf-8

<p>Hello</p>
--b--
`, "\n", "\r\n")

func TestWantsFilesSkipsPlainMessages(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "wants", func(c *Config) { c.Config = []byte("1") })
	if p.Wants() != WantFiles {
		t.Fatalf("Wants() = %v, want files", p.Wants())
	}
	for name, raw := range map[string]string{"plain": plainMessage, "alternative": plainAlternative} {
		res := call(t, p, HookMessage, &Input{Env: testEnvelope(), Msg: parse(t, raw)})
		wantOK(t, res)
		if res.Skipped == "" || res.Tags != nil || res.Verdict.Kind != Accept {
			t.Errorf("%s: skipped %q, tags %v, verdict %v; want a skipped accept", name, res.Skipped, res.Tags, res.Verdict)
		}
	}
	for name, raw := range map[string]string{
		"attachment":    testMessage,
		"named text":    strings.Replace(plainAlternative, "Content-Type: text/plain; charset=utf-8", "Content-Type: text/plain; name=\"a.txt\"", 1),
		"attached":      strings.Replace(plainAlternative, "Content-Type: text/html; charset=utf-8", "Content-Type: text/html\r\nContent-Disposition: attachment", 1),
		"other type":    strings.Replace(plainMessage, "Subject: hi", "Content-Type: application/octet-stream", 1),
		"uuencoded":     strings.Replace(plainMessage, "Just text.", "begin 644 a.exe\r\n#80``\r\n`\r\nend", 1),
		"ambiguous":     strings.Replace(plainAlternative, `boundary="b"`, `boundary="b"; boundary="c"`, 1),
		"unclosed":      strings.TrimSuffix(plainAlternative, "--b--\r\n"),
		"rfc822 inside": strings.Replace(plainMessage, "Subject: hi", "Content-Type: message/rfc822", 1),
	} {
		res := call(t, p, HookMessage, &Input{Env: testEnvelope(), Msg: parse(t, raw)})
		wantOK(t, res)
		if res.Skipped != "" || res.Tags["ran"] != "1" {
			t.Errorf("%s: skipped %q, tags %v; want the plugin called", name, res.Skipped, res.Tags)
		}
	}
	if st := p.Stats(); st.Skipped != 2 || st.Calls != 8 {
		t.Errorf("stats: %d skipped, %d calls; want 2 and 8", st.Skipped, st.Calls)
	}
}

func TestWantsNothingOrUnknown(t *testing.T) {
	h := newHost(t)
	// No declaration (0), and one with a bit this host does not know: both are called on every message.
	for _, cfg := range []string{"0", "9"} {
		p := load(t, h, "wants", func(c *Config) { c.Config = []byte(cfg) })
		if p.Wants() != 0 {
			t.Errorf("config %s: Wants() = %v, want every message", cfg, p.Wants())
		}
		res := call(t, p, HookMessage, &Input{Env: testEnvelope(), Msg: parse(t, plainMessage)})
		wantOK(t, res)
		if res.Skipped != "" || res.Tags["ran"] != "1" {
			t.Errorf("config %s: skipped %q, tags %v", cfg, res.Skipped, res.Tags)
		}
	}
}

// TestPoolShrinksWhenIdle: instances created for a burst are closed once idle past the timeout, down to one warm
// instance; trimIdle keeps those used since the cutoff.
func TestPoolShrinksWhenIdle(t *testing.T) {
	h, err := NewHost(context.Background(), Options{IdleTimeout: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	p := load(t, h, "header", func(c *Config) { c.PoolSize = 4 })
	burst := func() {
		var held []*instance
		for range 3 {
			in, err := p.acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, in)
		}
		for _, in := range held {
			p.release(in, true)
		}
	}
	burst()
	if st := p.Stats(); st.Live != 3 || st.Idle != 3 {
		t.Fatalf("after the burst: %d live, %d idle; want 3 and 3", st.Live, st.Idle)
	}
	eventually(t, "the pool shrinks to one instance", func() bool { st := p.Stats(); return st.Live == 1 && st.Idle == 1 })
	if st := p.Stats(); st.Trimmed != 2 {
		t.Errorf("trimmed %d, want 2", st.Trimmed)
	}
	wantOK(t, call(t, p, HookMessage, messageInput(t)))

	// trimIdle itself: instances used after the cutoff stay.
	h2 := newHost(t) // the default timeout (10s): its trimmer does not run during the test
	q := load(t, h2, "header", func(c *Config) { c.PoolSize = 4 })
	var held []*instance
	for range 3 {
		in, _ := q.acquire(context.Background())
		held = append(held, in)
	}
	for _, in := range held {
		q.release(in, true)
	}
	if n := q.trimIdle(time.Now().Add(-time.Hour)); n != 0 || q.Stats().Live != 3 {
		t.Errorf("trimmed %d recently used instances, %d live", n, q.Stats().Live)
	}
	if n := q.trimIdle(time.Now().Add(time.Hour)); n != 2 || q.Stats().Live != 1 {
		t.Errorf("trimmed %d, %d live; want 2 and 1", n, q.Stats().Live)
	}
}
