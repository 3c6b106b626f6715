package pluginhost

import (
	"strings"
	"testing"
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
