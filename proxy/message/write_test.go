package message

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// whole returns a part's bytes from its header to the end of its body.
func whole(m *Message, id int) string {
	p := m.Parts()[id]
	b := make([]byte, p.Body.End-p.Header.Start)
	_, _ = m.source(id).ReadAt(b, p.Header.Start)
	return string(b)
}

func changes(t *testing.T, fns ...func(c *Changes) error) *Changes {
	t.Helper()
	c := &Changes{}
	for _, f := range fns {
		if err := f(c); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestWriteUnchanged(t *testing.T) {
	raw := crlf(wellFormed)
	m := mustParse(t, raw, Limits{})
	rcpt := changes(t, func(c *Changes) error { return c.AddRecipient("x@example.com") })
	noop := changes(t, func(c *Changes) error { return c.PrefixSubject("hello") }) // already starts with it
	for name, c := range map[string]*Changes{"nil": nil, "empty": {}, "recipient only": rcpt, "no-op prefix": noop} {
		if got := write(t, m, c); got != raw {
			t.Errorf("%s: output differs", name)
		}
	}
}

func TestAddHeader(t *testing.T) {
	for _, eol := range []string{"\r\n", "\n"} {
		raw := strings.ReplaceAll(wellFormed, "\n", eol)
		m := mustParse(t, raw, Limits{})
		out := write(t, m, changes(t,
			func(c *Changes) error { return c.AddHeader("X-First", "1") },
			func(c *Changes) error { return c.AddHeader("X-Second", "2") }))
		want := "X-Second: 2" + eol + "X-First: 1" + eol + raw
		if out != want {
			t.Errorf("eol %q: got\n%q", eol, out[:60])
		}
		reparse(t, out)
	}
}

func TestAddHeaderAfterLeadingNonFields(t *testing.T) {
	for _, lead := range []string{"From someone@example.net Mon Jan  1 00:00:00 2024\n", " stray continuation\n"} {
		raw := crlf(lead + "Subject: x\n\nbody\n")
		m := mustParse(t, raw, Limits{})
		out := write(t, m, changes(t, func(c *Changes) error { return c.AddHeader("X-A", "1") }))
		if want := crlf(lead + "X-A: 1\nSubject: x\n\nbody\n"); out != want {
			t.Errorf("got %q, want %q", out, want)
		}
		m2 := mustParse(t, out, Limits{})
		if fmt.Sprint(m2.HeaderValues(0, "X-A", false), m2.HeaderValues(0, "Subject", false)) != "[1] [x]" {
			t.Errorf("%q: fields %v %v", lead, m2.HeaderValues(0, "X-A", false), m2.HeaderValues(0, "Subject", false))
		}
	}
	// A message with no header at all gets a blank line after the added field.
	m := mustParse(t, crlf("just text\nmore\n"), Limits{})
	if out := write(t, m, changes(t, func(c *Changes) error { return c.AddHeader("X-A", "1") })); out != crlf("X-A: 1\n\njust text\nmore\n") {
		t.Errorf("no header: %q", out)
	}
}

func TestFormatField(t *testing.T) {
	long := strings.Repeat("word ", 40) + "end"
	values := []string{
		"simple",
		long,
		"Gr\u00fc\u00dfe aus K\u00f6ln, sch\u00f6ne Gr\u00fc\u00dfe",
		"J\u00f6rg M\u00fcller <joerg@example.de>",
		strings.TrimSpace(strings.Repeat("\u65e5\u672c\u8a9e ", 30)),
		"spaces  kept\tand tabs",
		strings.Repeat("x", 120), // no white space: cannot be folded
	}
	for _, v := range values {
		field := string(formatField("X-Test", v, "\r\n"))
		for i, line := range strings.Split(strings.TrimSuffix(field, "\r\n"), "\r\n") {
			if len(line) > foldWidth && strings.ContainsAny(strings.TrimLeft(strings.TrimPrefix(line, "X-Test:"), " \t"), " \t") {
				t.Errorf("%.20q: line %d is %d long and could have been folded: %q", v, i, len(line), line)
			}
			if i > 0 && line[0] != ' ' && line[0] != '\t' {
				t.Errorf("%.20q: continuation line %d does not start with white space", v, i)
			}
		}
		if !isASCII(field) {
			t.Errorf("%.20q: output not ASCII: %q", v, field)
		}
		m := mustParse(t, field+"\r\nbody", Limits{})
		if got := m.HeaderValues(0, "X-Test", true); len(got) != 1 || got[0] != v {
			t.Errorf("round trip of %q gave %q", v, got)
		}
		if m.Malformed() {
			t.Errorf("%.20q: %v", v, m.Defects())
		}
	}
	if got := string(formatField("X-Empty", "", "\n")); got != "X-Empty:\n" {
		t.Errorf("empty value: %q", got)
	}
	// An address keeps its ASCII parts out of the encoded word.
	if got := string(formatField("To", "J\u00f6rg <j@example.de>", "\r\n")); got != "To: =?utf-8?q?J=C3=B6rg?= <j@example.de>\r\n" {
		t.Errorf("address: %q", got)
	}
}

const headerTest = `Received: from a by b
Subject: old subject
X-Tag: one
x-tag: two
To: alice@example.com
X-Tag: three
Content-Type: text/plain

body line 1
body line 2
`

func TestSetAndRemoveHeader(t *testing.T) {
	raw := crlf(headerTest)
	m := mustParse(t, raw, Limits{})
	bodyStart := m.Parts()[0].Header.End

	out := write(t, m, changes(t, func(c *Changes) error { return c.SetHeader("X-Tag", "new") }))
	want := crlf("Received: from a by b\nSubject: old subject\nX-Tag: new\nTo: alice@example.com\nContent-Type: text/plain\n\nbody line 1\nbody line 2\n")
	if out != want {
		t.Errorf("set:\n%s", out)
	}
	out = write(t, m, changes(t, func(c *Changes) error { return c.SetHeader("X-Absent", "v") }))
	if out != "X-Absent: v\r\n"+raw {
		t.Errorf("set absent:\n%s", out)
	}
	out = write(t, m, changes(t, func(c *Changes) error { return c.RemoveHeader("x-TAG") }))
	want = crlf("Received: from a by b\nSubject: old subject\nTo: alice@example.com\nContent-Type: text/plain\n\nbody line 1\nbody line 2\n")
	if out != want {
		t.Errorf("remove:\n%s", out)
	}
	if !strings.HasSuffix(out, raw[bodyStart:]) {
		t.Error("body changed")
	}
	// Changes compose in order: an added field can be set, then removed.
	out = write(t, m, changes(t,
		func(c *Changes) error { return c.AddHeader("X-New", "1") },
		func(c *Changes) error { return c.SetHeader("x-new", "2") },
		func(c *Changes) error { return c.AddHeader("X-Keep", "k") },
		func(c *Changes) error { return c.RemoveHeader("X-Tag") },
		func(c *Changes) error { return c.SetHeader("Subject", "newer") },
	))
	want = crlf("X-Keep: k\nx-new: 2\nReceived: from a by b\nSubject: newer\nTo: alice@example.com\nContent-Type: text/plain\n\nbody line 1\nbody line 2\n")
	if out != want {
		t.Errorf("composed:\n%s", out)
	}
	out = write(t, m, changes(t,
		func(c *Changes) error { return c.AddHeader("X-Gone", "1") },
		func(c *Changes) error { return c.RemoveHeader("X-Gone") }))
	if out != raw {
		t.Errorf("add then remove:\n%s", out)
	}
}

func TestPrefixSubject(t *testing.T) {
	tests := []struct {
		name, subject, prefix, want string
		decoded                     string
	}{
		{"plain", "Subject: hello\n", "[SPAM]", "Subject: [SPAM] hello\n", "[SPAM] hello"},
		{"prefix with space", "Subject: hello\n", "[SPAM] ", "Subject: [SPAM] hello\n", "[SPAM] hello"},
		{"already prefixed", "Subject: [SPAM] hello\n", "[SPAM]", "Subject: [SPAM] hello\n", "[SPAM] hello"},
		{"already prefixed, encoded", "Subject: =?utf-8?q?=5BSPAM=5D_hi?=\n", "[SPAM]", "Subject: =?utf-8?q?=5BSPAM=5D_hi?=\n", "[SPAM] hi"},
		{"encoded word kept", "Subject: =?utf-8?q?caf=C3=A9?=\n", "[SPAM]", "Subject: [SPAM] =?utf-8?q?caf=C3=A9?=\n", "[SPAM] caf\u00e9"},
		{"folded", "Subject:\n =?utf-8?q?caf=C3=A9?=\n", "[SPAM]", "Subject: [SPAM]\n =?utf-8?q?caf=C3=A9?=\n", "[SPAM] caf\u00e9"},
		{"non-ascii prefix before word", "Subject: =?utf-8?q?caf=C3=A9?=\n", "\u26a0", "Subject: =?utf-8?q?=E2=9A=A0_?= =?utf-8?q?caf=C3=A9?=\n", "\u26a0 caf\u00e9"},
		{"non-ascii prefix before folded word", "Subject:\n =?utf-8?q?caf=C3=A9?=\n", "\u26a0", "Subject: =?utf-8?q?=E2=9A=A0_?=\n =?utf-8?q?caf=C3=A9?=\n", "\u26a0 caf\u00e9"},
		{"non-ascii prefix before text", "Subject: hello\n", "\u26a0", "Subject: =?utf-8?q?=E2=9A=A0?= hello\n", "\u26a0 hello"},
		{"empty subject", "Subject:\n", "[SPAM]", "Subject: [SPAM]\n", "[SPAM]"},
		{"no subject", "", "[SPAM]", "Subject: [SPAM]\n", "[SPAM]"},
		{"8-bit subject kept", "Subject: Gr\u00fc\u00dfe\n", "[SPAM]", "Subject: [SPAM] Gr\u00fc\u00dfe\n", "[SPAM] Gr\u00fc\u00dfe"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := crlf("From: a@example.net\n" + tc.subject + "To: b@example.com\n\nbody\n")
			m := mustParse(t, raw, Limits{})
			out := write(t, m, changes(t, func(c *Changes) error { return c.PrefixSubject(tc.prefix) }))
			want := crlf("From: a@example.net\n" + tc.subject + "To: b@example.com\n\nbody\n")
			if tc.subject == "" {
				want = crlf(tc.want) + raw
			} else {
				want = strings.Replace(want, crlf(tc.subject), crlf(tc.want), 1)
			}
			if out != want {
				t.Errorf("got\n%q\nwant\n%q", out, want)
			}
			m2 := mustParse(t, out, Limits{})
			if got := m2.HeaderValues(0, "Subject", true); len(got) != 1 || got[0] != tc.decoded {
				t.Errorf("decoded subject %q, want %q", got, tc.decoded)
			}
		})
	}
	// Twice, with different prefixes; and after a SetHeader.
	m := mustParse(t, crlf("Subject: hello\n\nbody\n"), Limits{})
	out := write(t, m, changes(t,
		func(c *Changes) error { return c.PrefixSubject("[A]") },
		func(c *Changes) error { return c.PrefixSubject("[B]") },
		func(c *Changes) error { return c.PrefixSubject("[B]") }))
	if out != crlf("Subject: [B] [A] hello\n\nbody\n") {
		t.Errorf("twice: %q", out)
	}
	out = write(t, m, changes(t,
		func(c *Changes) error { return c.SetHeader("Subject", "caf\u00e9") },
		func(c *Changes) error { return c.PrefixSubject("[B]") }))
	if out != crlf("Subject: [B] =?utf-8?q?caf=C3=A9?=\n\nbody\n") {
		t.Errorf("after set: %q", out)
	}
}

func TestAppendBannerSplice(t *testing.T) {
	raw := crlf(wellFormed)
	m := mustParse(t, raw, Limits{})
	out := write(t, m, changes(t, func(c *Changes) error {
		return c.AppendBanner("-- \nScanned by Postern\n", "<p>Scanned</p>")
	}))
	m2 := mustParse(t, out, Limits{})
	if got := rawOf(m2, m2.Parts()[1].Body); got != "Hello.\r\n-- \r\nScanned by Postern" {
		t.Errorf("text body %q", got)
	}
	// The first text/html leaf had no </body>: the banner goes at the end.
	if got := rawOf(m2, m2.Parts()[4].Body); got != "<p>alt html</p>\r\n<p>Scanned</p>" {
		t.Errorf("html body %q", got)
	}
	// Only the first text/plain part gets the banner; everything else is byte-identical.
	for _, id := range []int{3, 5} {
		if whole(m, id) != whole(m2, id) {
			t.Errorf("part %d changed", id)
		}
	}
	if rawOf(m, m.Parts()[0].Header) != rawOf(m2, m2.Parts()[0].Header) {
		t.Error("message header changed")
	}
	reparse(t, out)
}

func TestAppendBannerHTMLBody(t *testing.T) {
	raw := crlf("Content-Type: text/html\n\n<html><body>\n<p>hi</p>\n</BODY>\n</html>\n")
	m := mustParse(t, raw, Limits{})
	out := write(t, m, changes(t, func(c *Changes) error { return c.AppendBanner("", "<p>banner</p>\n") }))
	if want := crlf("Content-Type: text/html\n\n<html><body>\n<p>hi</p>\n<p>banner</p></BODY>\n</html>\n"); out != want {
		t.Errorf("got %q", out)
	}
	// A text banner on an HTML-only message goes nowhere.
	if out := write(t, m, changes(t, func(c *Changes) error { return c.AppendBanner("text", "") })); out != raw {
		t.Errorf("text banner changed an HTML-only message")
	}
}

func TestAppendBannerEndOfLine(t *testing.T) {
	tests := []struct{ body, want string }{
		{"Hello\n", "Hello\nBANNER\n"},
		{"Hello", "Hello\nBANNER"},
		{"", "BANNER"},
	}
	for _, tc := range tests {
		m := mustParse(t, crlf("Subject: x\n\n"+tc.body), Limits{})
		out := write(t, m, changes(t, func(c *Changes) error { return c.AppendBanner("BANNER\n\n", "") }))
		if want := crlf("Subject: x\n\n" + tc.want); out != want {
			t.Errorf("body %q: got %q, want %q", tc.body, out, want)
		}
	}
}

func TestAppendBannerTargets(t *testing.T) {
	raw := crlf(`Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain
Content-Disposition: attachment; filename=notes.txt

attached notes
--b
Content-Type: multipart/signed; boundary=s; protocol="application/pgp-signature"

--s
Content-Type: text/plain

signed text
--s
Content-Type: application/pgp-signature

sig
--s--
--b
Content-Type: message/rfc822

Subject: inner

inner text
--b
Content-Type: text/plain; name=readme.txt

a named file, shown as an attachment by some clients
--b
Content-Type: text/plain

the real body
--b--
`)
	m := mustParse(t, raw, Limits{})
	out := write(t, m, changes(t, func(c *Changes) error { return c.AppendBanner("BANNER", "") }))
	m2 := mustParse(t, out, Limits{})
	last := len(m2.Parts()) - 1
	if got := rawOf(m2, m2.Parts()[last].Body); got != "the real body\r\nBANNER" {
		t.Errorf("body %q", got)
	}
	for id := 1; id < last; id++ {
		if whole(m, id) != whole(m2, id) {
			t.Errorf("part %d (%s) changed", id, m.Parts()[id].ContentType)
		}
	}
}

func TestAppendBannerReencode(t *testing.T) {
	raw := readCorpus(t, "postern/qp-and-base64-text.eml")
	m := mustParse(t, raw, Limits{})
	beforeText := body(t, m, 2, true)
	beforeHTML := body(t, m, 3, true)
	out := write(t, m, changes(t, func(c *Changes) error {
		return c.AppendBanner("Gepr\u00fcft von Postern", "<p>Gepr\u00fcft</p>")
	}))
	reparse(t, out)
	m2 := mustParse(t, out, Limits{})
	if m2.Malformed() {
		t.Fatalf("defects %v", m2.Defects())
	}
	qp, b64 := m2.Parts()[2], m2.Parts()[3]
	if qp.Encoding != "quoted-printable" || qp.Charset != "utf-8" || b64.Encoding != "base64" || b64.Charset != "utf-8" {
		t.Errorf("encodings %s/%s %s/%s", qp.Encoding, qp.Charset, b64.Encoding, b64.Charset)
	}
	if got := body(t, m2, 2, true); got != beforeText+"\r\nGepr\u00fcft von Postern" {
		t.Errorf("text %q", got)
	}
	if got, want := body(t, m2, 3, true), strings.Replace(beforeHTML, "</BODY>", "<p>Gepr\u00fcft</p></BODY>", 1); got != want {
		t.Errorf("html %q, want %q", got, want)
	}
	for _, line := range strings.Split(rawOf(m2, b64.Body), "\r\n") {
		if len(line) > 76 {
			t.Errorf("base64 line of %d", len(line))
		}
	}
	// Other header fields of the re-encoded parts stay; the attachment and the message header are untouched.
	if got := m2.HeaderValues(2, "Content-Transfer-Encoding", false); fmt.Sprint(got) != "[quoted-printable]" {
		t.Errorf("CTE %v", got)
	}
	if whole(m, 4) != whole(m2, 4) || rawOf(m, m.Parts()[0].Header) != rawOf(m2, m2.Parts()[0].Header) {
		t.Error("untouched parts changed")
	}
}

func TestAppendBannerCharsetRules(t *testing.T) {
	tests := []struct {
		name, fields, body, banner string
		wantEnc, wantCharset       string
		wantText                   string
		spliced                    bool
	}{
		{"ascii banner on us-ascii", "Content-Type: text/plain; charset=us-ascii", "hi\r\n", "ok", "7bit", "us-ascii", "hi\r\nok\r\n", true},
		{"utf-8 banner on 7bit", "Content-Type: text/plain", "hi\r\n", "\u00fc", "quoted-printable", "utf-8", "hi\r\n\u00fc\r\n", false},
		{"utf-8 banner on 8bit utf-8", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit", "h\u00e9\r\n", "\u00fc", "8bit", "utf-8", "h\u00e9\r\n\u00fc\r\n", true},
		{"utf-8 banner on 8bit unlabelled", "Content-Transfer-Encoding: 8bit", "hi\r\n", "\u00fc", "8bit", "utf-8", "hi\r\n\u00fc\r\n", true},
		{"latin-1 8bit", "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit", "caf\xe9\r\n", "\u00fc", "8bit", "utf-8", "caf\u00e9\r\n\u00fc\r\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := "Subject: s\r\n" + tc.fields + "\r\n\r\n" + tc.body
			m := mustParse(t, raw, Limits{})
			out := write(t, m, changes(t, func(c *Changes) error { return c.AppendBanner(tc.banner, "") }))
			m2 := mustParse(t, out, Limits{})
			p := m2.Parts()[0]
			if p.Encoding != tc.wantEnc || p.Charset != tc.wantCharset {
				t.Errorf("encoding %s charset %q", p.Encoding, p.Charset)
			}
			if got := body(t, m2, 0, true); got != tc.wantText {
				t.Errorf("text %q, want %q", got, tc.wantText)
			}
			if tc.spliced && !strings.HasPrefix(rawOf(m2, p.Body), tc.body) {
				t.Errorf("body not spliced: %q", rawOf(m2, p.Body))
			}
			if m2.HeaderValues(0, "Subject", false)[0] != "s" {
				t.Error("subject lost")
			}
			reparse(t, out)
		})
	}
}

func TestAppendBannerDecodeFailure(t *testing.T) {
	m := mustParse(t, readCorpus(t, "postern/unknown-charset.eml"), Limits{})
	var b bytes.Buffer
	c := changes(t, func(c *Changes) error { return c.AppendBanner("banner", "") })
	_, err := m.WriteTo(&b, c)
	var de *DecodeError
	if !errors.As(err, &de) || de.Kind != KindUnknownCharset || !errors.Is(err, ErrDecode) || b.Len() != 0 {
		t.Errorf("error %v, wrote %d bytes", err, b.Len())
	}
	// Validate tells the same before anything is written, and passes what WriteTo can apply.
	if err := m.Validate(c); !errors.Is(err, ErrDecode) {
		t.Errorf("Validate: %v, want ErrDecode", err)
	}
	ok := changes(t, func(c *Changes) error { return c.AddHeader("X-Test", "1") })
	if err := m.Validate(ok); err != nil {
		t.Errorf("Validate(add_header): %v", err)
	}
	if err := m.Validate(nil); err != nil {
		t.Errorf("Validate(nil): %v", err)
	}
}

func TestBareLFChanges(t *testing.T) {
	raw := readCorpus(t, "postern/bare-lf.eml")
	m := mustParse(t, raw, Limits{})
	out := write(t, m, changes(t,
		func(c *Changes) error { return c.AddHeader("X-Scanned", strings.Repeat("long value ", 12)) },
		func(c *Changes) error { return c.AppendBanner("text\r\nbanner", "<p>html banner</p>") },
	))
	if strings.Contains(out, "\r") {
		t.Errorf("CR in the output of a bare-LF message:\n%q", out)
	}
	m2 := mustParse(t, out, Limits{})
	if got := rawOf(m2, m2.Parts()[1].Body); got != "Plain with bare LF line endings.\ntext\nbanner" {
		t.Errorf("text body %q", got)
	}
	if got := rawOf(m2, m2.Parts()[2].Body); got != "<html><body><p>HTML with bare LF</p><p>html banner</p></body></html>" {
		t.Errorf("html body %q", got)
	}
	reparse(t, out)
}

// A re-encoded part of a bare-LF message keeps bare LF: the quoted-printable encoder writes CRLF.
func TestBareLFReencode(t *testing.T) {
	m := mustParse(t, readCorpus(t, "postern/bare-lf.eml"), Limits{})
	out := write(t, m, changes(t, func(c *Changes) error {
		return c.AppendBanner("Gepr\u00fcft\nZeile zwei "+strings.Repeat("lang ", 20), "<p>Gepr\u00fcft</p>")
	}))
	if strings.Contains(out, "\r") {
		t.Fatalf("CR in the output:\n%q", out)
	}
	m2 := mustParse(t, out, Limits{})
	p := m2.Parts()[1]
	if p.Encoding != "quoted-printable" || p.Charset != "utf-8" {
		t.Errorf("text part %s %s", p.Encoding, p.Charset)
	}
	// The trailing space survives: quoted-printable encodes it.
	if got, want := body(t, m2, 1, true), "Plain with bare LF line endings.\nGepr\u00fcft\nZeile zwei "+strings.Repeat("lang ", 20); got != want {
		t.Errorf("text %q, want %q", got, want)
	}
	if got := body(t, m2, 2, true); got != "<html><body><p>HTML with bare LF</p><p>Gepr\u00fcft</p></body></html>" {
		t.Errorf("html %q", got)
	}
	reparse(t, out)
}

func TestLFWriter(t *testing.T) {
	var b strings.Builder
	w := &lfWriter{w: &b}
	for _, s := range []string{"a\r", "\nb\r\r\n", "c\rd\r"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b.String() != "a\nb\r\nc\rd\r" {
		t.Errorf("got %q", b.String())
	}
}

func TestRemovePart(t *testing.T) {
	raw := crlf(wellFormed)
	m := mustParse(t, raw, Limits{})
	out := write(t, m, changes(t, func(c *Changes) error { return c.RemovePart(5) }))
	want := strings.Replace(raw, crlf("\n--outer\nContent-Type: application/pdf; name=a.pdf\nContent-Disposition: attachment; filename=a.pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK"), "", 1)
	if out != want {
		t.Errorf("got\n%s", out)
	}
	reparse(t, out)
	// The first part, with no line ending before its delimiter in the body... and nested ones.
	out = write(t, m, changes(t,
		func(c *Changes) error { return c.RemovePart(1) },
		func(c *Changes) error { return c.RemovePart(3) },
		func(c *Changes) error { return c.RemovePart(3) }, // twice is once
	))
	m2 := mustParse(t, out, Limits{})
	var got []string
	for _, p := range m2.Parts() {
		got = append(got, p.ContentType)
	}
	if fmt.Sprint(got) != "[multipart/mixed multipart/alternative text/html application/pdf]" || m2.Malformed() {
		t.Errorf("parts %v, defects %v", got, m2.Defects())
	}
	if !strings.Contains(out, "\r\npreamble\r\n--outer\r\nContent-Type: multipart/alternative") || !strings.HasSuffix(out, "--outer--\r\nepilogue\r\n") {
		t.Errorf("preamble or epilogue lost:\n%s", out)
	}
	reparse(t, out)
	// Removing every part of a multipart leaves an empty text part: RFC 2046 needs at least one.
	out = write(t, m, changes(t,
		func(c *Changes) error { return c.RemovePart(3) },
		func(c *Changes) error { return c.RemovePart(4) }))
	m2 = mustParse(t, out, Limits{})
	if len(m2.Parts()) != 5 || m2.Parts()[3].ContentType != "text/plain" || m2.Parts()[3].Body.Len() != 0 || m2.Malformed() {
		t.Errorf("placeholder: %v", m2.Parts())
	}
	reparse(t, out)
	// A removed multipart takes its parts with it; changes to them are moot.
	out = write(t, m, changes(t,
		func(c *Changes) error { return c.RemovePart(2) },
		func(c *Changes) error { return c.RemovePart(4) },
		func(c *Changes) error { return c.ReplacePart(3, "text/plain", []byte("x")) }))
	if m2 = mustParse(t, out, Limits{}); len(m2.Parts()) != 3 {
		t.Errorf("%d parts", len(m2.Parts()))
	}
}

func TestRemovePartInvalid(t *testing.T) {
	m := mustParse(t, readCorpus(t, "postern/forwarded-exe.eml"), Limits{})
	for name, c := range map[string]*Changes{
		"no such part":  changes(t, func(c *Changes) error { return c.RemovePart(6) }),
		"embedded":      changes(t, func(c *Changes) error { return c.RemovePart(3) }),
		"replace multi": changes(t, func(c *Changes) error { return c.ReplacePart(0, "text/plain", nil) }),
		"replace embed": changes(t, func(c *Changes) error { return c.ReplacePart(3, "text/plain", nil) }),
		"replace none":  changes(t, func(c *Changes) error { return c.ReplacePart(60, "text/plain", nil) }),
	} {
		var b bytes.Buffer
		if _, err := m.WriteTo(&b, c); !errors.Is(err, ErrInvalid) || b.Len() != 0 {
			t.Errorf("%s: %v, wrote %d bytes", name, err, b.Len())
		}
	}
	// Replacing the attached message as a whole is fine; its parts go with it.
	out := write(t, m, changes(t,
		func(c *Changes) error { return c.ReplacePart(2, "text/plain", []byte("Forwarded message removed.")) },
		func(c *Changes) error { return c.RemovePart(5) }))
	m2 := mustParse(t, out, Limits{})
	if len(m2.Parts()) != 3 || m2.Malformed() || body(t, m2, 2, true) != "Forwarded message removed." {
		t.Errorf("parts %d, defects %v", len(m2.Parts()), m2.Defects())
	}
	reparse(t, out)
	// Removing the attached exe inside the forwarded message is fine.
	out = write(t, m, changes(t, func(c *Changes) error { return c.RemovePart(5) }))
	m2 = mustParse(t, out, Limits{})
	if len(m2.Parts()) != 5 || m2.Malformed() || !strings.HasSuffix(out, "--outer--\r\nThis is the epilogue.\r\n") {
		t.Errorf("parts %d, defects %v", len(m2.Parts()), m2.Defects())
	}
	reparse(t, out)
}

func TestReplacePart(t *testing.T) {
	raw := crlf(wellFormed)
	m := mustParse(t, raw, Limits{})
	notice := "The attachment a.pdf was removed.\nPolicy: no PDFs.\n"
	bin := []byte{0, 1, 2, 0xff, 'M', 'Z'}
	out := write(t, m, changes(t,
		func(c *Changes) error { return c.ReplacePart(5, "text/plain", []byte(notice)) },
		func(c *Changes) error { return c.ReplacePart(3, "application/octet-stream", bin) },
		func(c *Changes) error { return c.ReplacePart(4, "text/html", []byte("<p>caf\u00e9</p>")) },
	))
	reparse(t, out)
	m2 := mustParse(t, out, Limits{})
	if m2.Malformed() || len(m2.Parts()) != 6 {
		t.Fatalf("%d parts, defects %v", len(m2.Parts()), m2.Defects())
	}
	checks := []struct {
		id                    int
		ct, enc, cs, fn, disp string
		text                  string
	}{
		{5, "text/plain", "7bit", "", "", "", crlf(notice)},
		{3, "application/octet-stream", "base64", "", "", "", string(bin)},
		{4, "text/html", "quoted-printable", "utf-8", "", "", "<p>caf\u00e9</p>"},
	}
	for _, c := range checks {
		p := m2.Parts()[c.id]
		if p.ContentType != c.ct || p.Encoding != c.enc || p.Charset != c.cs || p.Filename != c.fn || p.Disposition != c.disp {
			t.Errorf("part %d: %s %s %q %q %q", c.id, p.ContentType, p.Encoding, p.Charset, p.Filename, p.Disposition)
		}
		if got := body(t, m2, c.id, true); got != c.text {
			t.Errorf("part %d content %q, want %q", c.id, got, c.text)
		}
	}
	for _, id := range []int{1} {
		if whole(m, id) != whole(m2, id) {
			t.Errorf("part %d changed", id)
		}
	}
	if !strings.HasPrefix(out, rawOf(m, Range{0, m.Parts()[3].Header.Start})) || !strings.HasSuffix(out, "--outer--\r\nepilogue\r\n") {
		t.Error("bytes around the replaced parts changed")
	}
}

func TestReplacePartZero(t *testing.T) {
	raw := crlf("From: a@example.net\nSubject: scan\nContent-Type: application/x-msdownload; name=x.exe\nContent-Disposition: attachment; filename=x.exe\nContent-Transfer-Encoding: base64\nContent-MD5: abc\n\nTVqQAAMAAAAEAAAA\n")
	m := mustParse(t, raw, Limits{})
	out := write(t, m, changes(t,
		func(c *Changes) error { return c.ReplacePart(0, "text/plain; charset=utf-8", []byte("Removed.\n")) },
		func(c *Changes) error { return c.AddHeader("X-Postern", "replaced") }))
	want := crlf("X-Postern: replaced\nFrom: a@example.net\nSubject: scan\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\nMIME-Version: 1.0\n\nRemoved.\n")
	if out != want {
		t.Errorf("got\n%q\nwant\n%q", out, want)
	}
	reparse(t, out)
	// A message whose header ends without a blank line gets one before the new body.
	m = mustParse(t, crlf("Subject: x\ngarbage line\nmore\n"), Limits{})
	out = write(t, m, changes(t, func(c *Changes) error { return c.ReplacePart(0, "text/plain", []byte("new")) }))
	if want := crlf("Subject: x\nContent-Type: text/plain\nContent-Transfer-Encoding: 7bit\nMIME-Version: 1.0\n\nnew\n"); out != want {
		t.Errorf("no separator: got %q", out)
	}
}

// Several changes in one WriteTo: header edits, a re-encoded banner, a removal and a replacement.
func TestComposedChanges(t *testing.T) {
	raw := readCorpus(t, "postern/qp-and-base64-text.eml")
	m := mustParse(t, raw, Limits{})
	c := changes(t,
		func(c *Changes) error { return c.AddHeader("X-Postern-Verdict", "quarantine-exempt") },
		func(c *Changes) error { return c.SetHeader("To", "J\u00f6rg <joerg@example.de>") },
		func(c *Changes) error { return c.PrefixSubject("[EXT]") },
		func(c *Changes) error { return c.AppendBanner("Extern", "<p>Extern</p>") },
		func(c *Changes) error { return c.ReplacePart(4, "text/plain", []byte("PDF removed")) },
		func(c *Changes) error { return c.AddRecipient("archive@example.com") },
	)
	out := write(t, m, c)
	reparse(t, out)
	m2 := mustParse(t, out, Limits{})
	if m2.Malformed() {
		t.Fatalf("defects %v", m2.Defects())
	}
	if v := m2.HeaderValues(0, "Subject", true); v[0] != "[EXT] banner targets" {
		t.Errorf("subject %q", v)
	}
	if v := m2.HeaderValues(0, "To", true); v[0] != "J\u00f6rg <joerg@example.de>" {
		t.Errorf("to %q", v)
	}
	if v := m2.HeaderValues(0, "X-Postern-Verdict", false); len(v) != 1 {
		t.Errorf("verdict %q", v)
	}
	if !strings.HasSuffix(body(t, m2, 2, true), "Extern") || !strings.Contains(body(t, m2, 3, true), "<p>Extern</p></BODY>") {
		t.Error("banners missing")
	}
	if body(t, m2, 4, true) != "PDF removed" {
		t.Error("replacement missing")
	}
	// The header fields no change named are byte-identical, in order.
	for _, name := range []string{"From", "Date", "Message-ID", "MIME-Version", "Content-Type"} {
		if fmt.Sprint(m.HeaderValues(0, name, false)) != fmt.Sprint(m2.HeaderValues(0, name, false)) {
			t.Errorf("%s changed", name)
		}
	}
	if rawOf(m, Range{m.Parts()[0].Body.Start, m.Parts()[2].Header.Start}) != rawOf(m2, Range{m2.Parts()[0].Body.Start, m2.Parts()[2].Header.Start}) {
		t.Error("bytes between the header and the first text part changed")
	}
}

func TestChangesOnIncompleteIndex(t *testing.T) {
	// Indexing stopped at the depth limit inside part 2: part 1 is complete, parts 0 and 2 are not.
	raw := crlf("Subject: deep\nContent-Type: multipart/mixed; boundary=a\n\n--a\n\nfirst\n--a\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n--a--\n")
	m := mustParse(t, raw, Limits{MaxDepth: 1})
	if m.LimitExceeded() != KindDepthLimit || len(m.Parts()) != 3 {
		t.Fatalf("limit %q, %d parts", m.LimitExceeded(), len(m.Parts()))
	}
	out := write(t, m, changes(t,
		func(c *Changes) error { return c.AddHeader("X-Limit", m.LimitExceeded()) },
		func(c *Changes) error { return c.PrefixSubject("[X]") },
		func(c *Changes) error { return c.RemovePart(1) }))
	if !strings.HasPrefix(out, "X-Limit: depth-limit\r\nSubject: [X] deep\r\n") || strings.Contains(out, "first") {
		t.Errorf("got %q", out)
	}
	for name, c := range map[string]*Changes{
		"remove open part":  changes(t, func(c *Changes) error { return c.RemovePart(2) }),
		"replace open part": changes(t, func(c *Changes) error { return c.ReplacePart(2, "text/plain", nil) }),
	} {
		if _, err := m.WriteTo(&bytes.Buffer{}, c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A header cut by the header limit cannot be edited (its other fields were not seen).
	m = mustParse(t, crlf("Subject: a\nX-Long: "+strings.Repeat("x", 100)+"\n\nbody\n"), Limits{MaxHeaderBytes: 50})
	if _, err := m.WriteTo(&bytes.Buffer{}, changes(t, func(c *Changes) error { return c.SetHeader("Subject", "b") })); !errors.Is(err, ErrInvalid) {
		t.Errorf("set header past the header limit: %v", err)
	}
	// A banner has nowhere to go when the only text part is still open.
	m = mustParse(t, crlf("Subject: a\n\n"+strings.Repeat("y", 100)+"\n"), Limits{MaxLineLength: 50})
	if out := write(t, m, changes(t, func(c *Changes) error { return c.AppendBanner("b", "") })); out != rawOf(m, Range{0, m.Size()}) {
		t.Error("banner written into a part whose end is unknown")
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("broken pipe")
	}
	f.n--
	return len(p), nil
}

func TestWriteErrors(t *testing.T) {
	m := mustParse(t, crlf(wellFormed), Limits{})
	if _, err := m.WriteTo(&failWriter{}, nil); err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Errorf("unchanged: %v", err)
	}
	c := changes(t, func(c *Changes) error { return c.AddHeader("X", "y") })
	for n := range 2 { // the inserted field, then the rest of the message
		if _, err := m.WriteTo(&failWriter{n: n}, c); err == nil || !strings.Contains(err.Error(), "broken pipe") {
			t.Errorf("after %d writes: %v", n, err)
		}
	}
}

// A Message is read-only after Parse: several goroutines may decode and write it at once (run with -race).
func TestConcurrentUse(t *testing.T) {
	m := mustParse(t, readCorpus(t, "postern/qp-and-base64-text.eml"), Limits{})
	c := changes(t, func(c *Changes) error { return c.AppendBanner("banner", "<p>banner</p>") })
	want := write(t, m, c)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			var b bytes.Buffer
			if _, err := m.WriteTo(&b, c); err != nil || b.String() != want {
				t.Errorf("concurrent WriteTo: %v", err)
			}
			r, err := m.Text(3)
			if err == nil {
				_, err = io.Copy(io.Discard, r)
			}
			if err != nil {
				t.Errorf("concurrent Text: %v", err)
			}
		})
	}
	wg.Wait()
}

// TestAppendBannerEmptyPart appends to an empty text part inside a multipart, where the part's blank header line
// also served as the delimiter's line break: the banner must end with its own, in both the splice path and the
// re-encode path, or the next delimiter is glued to it and the structure is lost.
func TestAppendBannerEmptyPart(t *testing.T) {
	for name, cte := range map[string]string{"splice": "", "reencode": "Content-Transfer-Encoding: base64\n"} {
		t.Run(name, func(t *testing.T) {
			raw := crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n" + cte +
				"\n--b\nContent-Type: text/html\n\n<p>x</p>\n--b--\n")
			m := mustParse(t, raw, Limits{})
			out := write(t, m, changes(t, func(c *Changes) error { return c.AppendBanner("BANNER", "") }))
			m2 := mustParse(t, out, Limits{})
			if n := len(m2.Parts()); n != 3 || len(m2.Defects()) != 0 {
				t.Fatalf("%d parts, defects %v:\n%s", n, m2.Defects(), out)
			}
			if got := body(t, m2, 1, true); strings.TrimRight(got, "\r\n") != "BANNER" {
				t.Errorf("text body %q", got)
			}
			if whole(m, 2) != whole(m2, 2) {
				t.Errorf("the html part changed:\n%s", out)
			}
			reparse(t, out)
		})
	}
}
