package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/postern/postern/internal/pluginharness"
	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

// env returns the pluginharness.Inbound envelope with another sender and recipients.
func env(mailFrom string, rcpts ...string) pluginhost.Envelope {
	e := pluginharness.Inbound
	e.MailFrom, e.HasMailFrom, e.Rcpts = mailFrom, true, rcpts
	return e
}

// view is what a reader sees of a message: its decoded Subject, the X-Postern-External header and the decoded
// text of its first text/plain and text/html parts.
type view struct {
	subject, header string
	headers         int
	text, html      string
	malformed       []message.Defect
}

func see(t *testing.T, data []byte) view {
	t.Helper()
	msg, err := message.Parse(bytes.NewReader(data), int64(len(data)), message.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	v := view{malformed: msg.Defects()}
	if s := msg.HeaderValues(0, "Subject", true); len(s) > 0 {
		v.subject = s[0]
	}
	hs := msg.HeaderValues(0, "X-Postern-External", false)
	v.headers = len(hs)
	if len(hs) > 0 {
		v.header = hs[0]
	}
	for _, p := range msg.Parts() {
		if p.Multipart || (p.ContentType != "text/plain" && p.ContentType != "text/html") {
			continue
		}
		r, err := msg.Text(p.ID)
		if err != nil {
			continue // an unknown charset: the reader cannot see it either
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if p.ContentType == "text/plain" && v.text == "" {
			v.text = string(b)
		} else if p.ContentType == "text/html" && v.html == "" {
			v.html = string(b)
		}
	}
	return v
}

func TestExternal(t *testing.T) {
	p := harness.Load(t, `{"internal_domains":["example.com"]}`)
	in := harness.Eml(t, "external.eml")
	o := harness.RunEnv(t, p, in, env("sales@other.test", "alice@example.com"))
	if o.Res.Verdict.Kind != pluginhost.Accept {
		t.Errorf("verdict = %+v, want accept", o.Res.Verdict)
	}
	if want := map[string]string{"external": "yes", "external.domain": "other.test"}; !mapsEqual(o.Res.Tags, want) {
		t.Errorf("tags = %v, want %v", o.Res.Tags, want)
	}
	before, after := see(t, in), see(t, o.Out)
	if after.malformed != nil {
		t.Errorf("the marked message is malformed: %v", after.malformed)
	}
	if after.subject != "[EXTERNAL] Meeting tomorrow" {
		t.Errorf("subject = %q", after.subject)
	}
	if after.header != "yes" || after.headers != 1 {
		t.Errorf("X-Postern-External = %q (%d fields)", after.header, after.headers)
	}
	if !strings.HasPrefix(after.text, before.text) || !strings.Contains(after.text[len(before.text):], "CAUTION: This message came from outside the organisation (other.test)") {
		t.Errorf("text part = %q", after.text)
	}
	if !strings.Contains(after.html, "outside the organisation (other.test)") ||
		strings.Index(after.html, "CAUTION") > strings.Index(after.html, "</body>") {
		t.Errorf("html part = %q", after.html)
	}
	// Everything after the header block is the original body plus the banners, nothing else.
	if o.Res.Score != 0 {
		t.Errorf("score = %v", o.Res.Score)
	}
	// A second pass does not prefix the subject again.
	again := harness.RunEnv(t, p, o.Out, env("sales@other.test", "alice@example.com"))
	if s := see(t, again.Out).subject; s != "[EXTERNAL] Meeting tomorrow" {
		t.Errorf("subject after a second pass = %q", s)
	}
}

// TestEmptyTextPart appends the banner to a text part with an empty body: the banner must end up inside that
// part, and the message must keep its structure, with CRLF and with bare LF line endings.
func TestEmptyTextPart(t *testing.T) {
	crlf := harness.Eml(t, "empty-text-part.eml")
	for name, in := range map[string][]byte{"CRLF": crlf, "LF": bytes.ReplaceAll(crlf, []byte("\r\n"), []byte("\n"))} {
		t.Run(name, func(t *testing.T) {
			o := harness.RunEnv(t, harness.Load(t, `{"internal_domains":["example.com"]}`), in, env("sales@other.test", "alice@example.com"))
			before, after := see(t, in), see(t, o.Out)
			if after.malformed != nil {
				t.Errorf("the marked message is malformed: %v", after.malformed)
			}
			if !strings.Contains(after.text, "CAUTION") || !strings.Contains(after.html, "CAUTION") || before.text != "" ||
				strings.Contains(after.text, "--alt-e") {
				t.Errorf("the banner did not land in the (empty) text part:\n%s", o.Out)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestInternal(t *testing.T) {
	p := harness.Load(t, `{"internal_domains":["example.com"]}`)
	in := harness.Eml(t, "internal.eml")
	o := harness.RunEnv(t, p, in, env("bob@example.com", "alice@example.com"))
	if o.Res.Verdict.Kind != pluginhost.Accept || o.Res.Changes.Len() != 0 || !bytes.Equal(o.Out, in) {
		t.Errorf("verdict %+v, changes %v", o.Res.Verdict, o.Res.Changes.List())
	}
	if want := map[string]string{"external": "no"}; !mapsEqual(o.Res.Tags, want) {
		t.Errorf("tags = %v, want %v", o.Res.Tags, want)
	}
	// A subdomain is internal too.
	o = harness.RunEnv(t, p, in, env("bob@mail.example.com", "alice@example.com"))
	if o.Res.Tags["external"] != "no" {
		t.Errorf("subdomain sender: tags %v", o.Res.Tags)
	}
	// The null sender (a bounce) is judged by its From alone.
	o = harness.RunEnv(t, p, in, env("", "alice@example.com"))
	if o.Res.Tags["external"] != "no" {
		t.Errorf("null sender: tags %v", o.Res.Tags)
	}
}

func TestSpoofs(t *testing.T) {
	p := harness.Load(t, `{"internal_domains":["example.com"]}`)
	for _, tc := range []struct {
		name, file, mailFrom, domain string
	}{
		// From: "ceo@example.com" <ceo.example.com@attacker.test>
		{"display name", "display-name-spoof.eml", "bounce@attacker.test", "attacker.test"},
		// From: bob@example.com, but the envelope sender is outside.
		{"internal From, external envelope", "internal.eml", "bounce@attacker.test", "attacker.test"},
		// The envelope sender looks internal, the From is outside.
		{"external From, internal envelope", "external.eml", "list@example.com", "other.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := harness.RunEnv(t, p, harness.Eml(t, tc.file), env(tc.mailFrom, "alice@example.com"))
			if o.Res.Tags["external"] != "yes" || o.Res.Tags["external.domain"] != tc.domain {
				t.Errorf("tags = %v, want external from %s", o.Res.Tags, tc.domain)
			}
			if v := see(t, o.Out); !strings.HasPrefix(v.subject, "[EXTERNAL] ") || v.header != "yes" {
				t.Errorf("after: %+v", v)
			}
		})
	}
}

func TestForgedHeader(t *testing.T) {
	p := harness.Load(t, `{"internal_domains":["example.com"]}`)
	t.Run("external mail that claims to be internal", func(t *testing.T) {
		o := harness.RunEnv(t, p, harness.Eml(t, "forged-header.eml"), env("sales@other.test", "alice@example.com"))
		if v := see(t, o.Out); v.header != "yes" || v.headers != 1 {
			t.Errorf("X-Postern-External = %q in %d fields, want one, yes", v.header, v.headers)
		}
	})
	t.Run("internal mail with a planted header", func(t *testing.T) {
		in := harness.Eml(t, "internal-forged-header.eml")
		o := harness.RunEnv(t, p, in, env("bob@example.com", "alice@example.com"))
		var ops []message.Op
		for _, c := range o.Res.Changes.List() {
			ops = append(ops, c.Op)
		}
		if !slices.Equal(ops, []message.Op{message.OpRemoveHeader}) {
			t.Errorf("changes = %v, want one remove_header", o.Res.Changes.List())
		}
		if v := see(t, o.Out); v.headers != 0 {
			t.Errorf("the planted header survived: %+v", v)
		}
		// Only that header is gone: everything else is byte-identical.
		want := bytes.Replace(in, []byte("X-Postern-External: yes\r\n"), nil, 1)
		if !bytes.Equal(o.Out, want) {
			t.Errorf("output differs beyond the removed header:\n%s", o.Out)
		}
	})
}

func TestSubjects(t *testing.T) {
	p := harness.Load(t, `{"internal_domains":["example.com"]}`)
	o := harness.RunEnv(t, p, harness.Eml(t, "encoded-subject.eml"), env("sales@other.test", "alice@example.com"))
	if s := see(t, o.Out).subject; s != "[EXTERNAL] Grüße aus Berlin" {
		t.Errorf("subject = %q", s)
	}
	o = harness.RunEnv(t, p, harness.Eml(t, "already-prefixed.eml"), env("sales@other.test", "alice@example.com"))
	if s := see(t, o.Out).subject; s != "[EXTERNAL] Re: Meeting tomorrow" {
		t.Errorf("subject = %q", s)
	}
}

func TestDefaultWithoutInternalDomains(t *testing.T) {
	p := harness.Load(t, `{}`)
	ext, internal := harness.Eml(t, "external.eml"), harness.Eml(t, "internal.eml")
	for _, tc := range []struct {
		name     string
		data     []byte
		e        pluginhost.Envelope
		external string // the "external" tag; "" for no tags at all
	}{
		{"recipient domain differs", ext, env("sales@other.test", "alice@example.com"), "yes"},
		{"recipient domain matches", internal, env("bob@example.com", "alice@example.com"), "no"},
		{"recipient subdomain", internal, env("bob@example.com", "alice@eu.example.com", "carol@example.com"), "no"},
		// A mailbox owner given as a bare login: nothing to compare with, so everything is external.
		{"bare mailbox owner", internal, pluginhost.Envelope{Protocol: "imap", Direction: "retrieval", MailboxUser: "alice"}, "yes"},
		{"outbound", ext, pluginhost.Envelope{Protocol: "submission", Direction: "outbound", AuthUser: "alice",
			MailFrom: "alice@example.com", HasMailFrom: true, Rcpts: []string{"sales@other.test"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := harness.RunEnv(t, p, tc.data, tc.e)
			if got := o.Res.Tags["external"]; got != tc.external {
				t.Errorf("external = %q, want %q (tags %v, logs %v)", got, tc.external, o.Res.Tags, o.Res.Logs)
			}
			if tc.external != "yes" && (o.Res.Changes.Len() != 0 || !bytes.Equal(o.Out, tc.data)) {
				t.Errorf("changes = %v", o.Res.Changes.List())
			}
		})
	}
	t.Run("retrieval uses Return-Path", func(t *testing.T) {
		// internal.eml's Return-Path is bob@example.com; the mailbox owner is alice@example.com.
		o := harness.RunEnv(t, p, internal, pluginhost.Envelope{Protocol: "pop3", Direction: "retrieval", MailboxUser: "alice@example.com"})
		if o.Res.Tags["external"] != "no" {
			t.Errorf("tags = %v", o.Res.Tags)
		}
		spoof := bytes.Replace(internal, []byte("Return-Path: <bob@example.com>"), []byte("Return-Path: <x@attacker.test>"), 1)
		o = harness.RunEnv(t, p, spoof, pluginhost.Envelope{Protocol: "pop3", Direction: "retrieval", MailboxUser: "alice@example.com"})
		if o.Res.Tags["external"] != "yes" || o.Res.Tags["external.domain"] != "attacker.test" {
			t.Errorf("tags = %v", o.Res.Tags)
		}
		// A bounce (Return-Path: <>) is judged by its From.
		bounce := bytes.Replace(internal, []byte("Return-Path: <bob@example.com>"), []byte("Return-Path: <>"), 1)
		o = harness.RunEnv(t, p, bounce, pluginhost.Envelope{Protocol: "pop3", Direction: "retrieval", MailboxUser: "alice@example.com"})
		if o.Res.Tags["external"] != "no" {
			t.Errorf("bounce: tags = %v", o.Res.Tags)
		}
	})
}

func TestConfigKeys(t *testing.T) {
	in := harness.Eml(t, "external.eml")
	e := env("sales@other.test", "alice@example.com")
	t.Run("subject_prefix and header", func(t *testing.T) {
		o := harness.RunEnv(t, harness.Load(t, `{"internal_domains":["example.com"],"subject_prefix":"[EXT] ","header":"X-Ext"}`), in, e)
		msg, err := message.Parse(bytes.NewReader(o.Out), int64(len(o.Out)), message.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if got := msg.HeaderValues(0, "X-Ext", false); !slices.Equal(got, []string{"yes"}) {
			t.Errorf("X-Ext = %q", got)
		}
		if v := see(t, o.Out); v.subject != "[EXT] Meeting tomorrow" || v.headers != 0 {
			t.Errorf("after: %+v", v)
		}
	})
	t.Run("everything off", func(t *testing.T) {
		o := harness.RunEnv(t, harness.Load(t, `{"internal_domains":["example.com"],"subject_prefix":"","banner_text":"","banner_html":"","header":"","score":2}`), in, e)
		if o.Res.Changes.Len() != 0 || !bytes.Equal(o.Out, in) {
			t.Errorf("changes = %v", o.Res.Changes.List())
		}
		if o.Res.Tags["external"] != "yes" || o.Res.Score != 2 {
			t.Errorf("tags %v, score %v", o.Res.Tags, o.Res.Score)
		}
	})
	t.Run("custom banners", func(t *testing.T) {
		o := harness.RunEnv(t, harness.Load(t, `{"internal_domains":["example.com"],"banner_text":"\nFrom {domain}, beware.\n","banner_html":"<p>From <b>{domain}</b>.</p>"}`), in, e)
		v := see(t, o.Out)
		if !strings.Contains(v.text, "From other.test, beware.") || !strings.Contains(v.html, "<p>From <b>other.test</b>.</p>") {
			t.Errorf("after: %+v", v)
		}
	})
	t.Run("tag_outbound", func(t *testing.T) {
		out := pluginhost.Envelope{Protocol: "submission", Direction: "outbound", MailFrom: "sales@other.test", HasMailFrom: true,
			Rcpts: []string{"alice@example.com"}}
		o := harness.RunEnv(t, harness.Load(t, `{"internal_domains":["example.com"],"tag_outbound":true}`), in, out)
		if o.Res.Tags["external"] != "yes" {
			t.Errorf("tags = %v", o.Res.Tags)
		}
	})
}

func TestBadConfig(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"internal_domains":["@example.com"]}`: "not a domain",
		`{"internal_domain":["example.com"]}`:   `unknown key "internal_domain" (known keys: banner_html, banner_text, header, internal_domains,`,
		`{"header":"X:Bad"}`:                    "not allowed",
	} {
		_, err := harness.LoadErr(t, cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s) error = %v, want it to mention %q", cfg, err, want)
		}
	}
}

// TestCorpus runs the plugin over the shared corpus of real and malformed mail: no call may fail, and what the
// plugin changes must leave a message that parses as well as the original did.
func TestCorpus(t *testing.T) {
	p := harness.Load(t, `{"internal_domains":["example.com"]}`)
	for _, f := range pluginharness.Corpus(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		o := harness.Run(t, p, data)
		if o.Res.Tags["external"] == "" {
			t.Errorf("%s: no external tag: %v", f, o.Res.Tags)
		}
		before, err := message.Parse(bytes.NewReader(data), int64(len(data)), message.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		after, err := message.Parse(bytes.NewReader(o.Out), int64(len(o.Out)), message.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(after.Parts()) != len(before.Parts()) {
			var ops []message.Op
			for _, c := range o.Res.Changes.List() {
				ops = append(ops, c.Op)
			}
			t.Errorf("%s: %d parts before, %d after: the changes %v broke the MIME structure", f,
				len(before.Parts()), len(after.Parts()), ops)
		}
	}
}

// TestHostileCorpus runs the plugin on messages of the shared corpus that stress the changes it makes.
func TestHostileCorpus(t *testing.T) {
	p := harness.Load(t, `{"internal_domains":["example.com"]}`)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(testplugins.Root(), "testdata", "corpus", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	e := env("mallory@example.net", "alice@example.com")
	t.Run("header past the limit", func(t *testing.T) {
		in := read("postern/giant-header.eml")
		o := harness.RunEnv(t, p, in, e)
		if o.Res.Tags["external"] != "yes" || o.Res.Tags["external.unmarked"] != "header-limit" {
			t.Errorf("tags = %v", o.Res.Tags)
		}
		if o.Res.Changes.Len() != 0 || !bytes.Equal(o.Out, in) {
			t.Errorf("changes = %v", o.Res.Changes.List())
		}
	})
	t.Run("body in an unknown charset", func(t *testing.T) {
		in := read("postern/unknown-charset.eml")
		o := harness.RunEnv(t, p, in, e)
		v := see(t, o.Out)
		if v.subject != "[EXTERNAL] charset" || v.header != "yes" {
			t.Errorf("after: %+v", v)
		}
		for _, c := range o.Res.Changes.List() {
			if c.Op == message.OpAppendBanner && c.Value != "" {
				t.Errorf("a text banner was added for an undecodable text part: %+v", c)
			}
		}
		if !bytes.HasSuffix(o.Out, []byte("Greetings, earthling.\r\n")) {
			t.Errorf("the body changed:\n%s", o.Out)
		}
	})
	t.Run("bare LF line endings", func(t *testing.T) {
		o := harness.RunEnv(t, p, read("postern/bare-lf.eml"), e)
		if bytes.Contains(o.Out, []byte("\r\n")) {
			t.Errorf("CRLF written into a bare-LF message:\n%s", o.Out)
		}
		if v := see(t, o.Out); !strings.Contains(v.text, "CAUTION") || !strings.Contains(v.html, "CAUTION") {
			t.Errorf("after: %+v", v)
		}
	})
}

// TestBannerHalfUndecodable: the text body cannot be decoded (an unknown charset), the HTML body can. The host refuses
// the banner for the text part when it is asked (ERR_DECODE); the HTML part still gets its banner and the
// subject its prefix, and the message is written.
func TestBannerHalfUndecodable(t *testing.T) {
	in := []byte("From: sales@other.test\r\nTo: alice@example.com\r\nSubject: offer\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=x-martian\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n")
	o := harness.RunEnv(t, harness.Load(t, `{"internal_domains":["example.com"]}`), in, env("sales@other.test", "alice@example.com"))
	var banners []message.Change
	for _, c := range o.Res.Changes.List() {
		if c.Op == message.OpAppendBanner {
			banners = append(banners, c)
		}
	}
	if len(banners) != 1 || banners[0].Value != "" || banners[0].HTML == "" {
		t.Errorf("banner changes %+v, want one HTML-only banner", banners)
	}
	if !bytes.Contains(o.Out, []byte("!!!not base64!!!\r\n--b")) || !bytes.Contains(o.Out, []byte("Subject: [EXTERNAL] offer")) ||
		!bytes.Contains(o.Out, []byte("CAUTION")) {
		t.Errorf("output:\n%s", o.Out)
	}
}
