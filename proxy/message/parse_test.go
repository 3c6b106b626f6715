package message

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

const wellFormed = `From: a@example.net
To: b@example.com
Subject: hello
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

preamble
--outer
Content-Type: text/plain; charset=utf-8

Hello.
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

alt text
--inner
Content-Type: text/html; charset=us-ascii

<p>alt html</p>
--inner--
inner epilogue
--outer
Content-Type: application/pdf; name=a.pdf
Content-Disposition: attachment; filename=a.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer--
epilogue
`

// expectRanges checks every part's header and body against the literal text they must cover.
func expectRanges(t *testing.T, m *Message, raw string, want [][2]string) {
	t.Helper()
	if got := len(m.Parts()); got != len(want) {
		t.Fatalf("%d parts, want %d", got, len(want))
	}
	for i, w := range want {
		p := m.Parts()[i]
		if got := rawOf(m, p.Header); got != w[0] {
			t.Errorf("part %d header = %q, want %q", i, got, w[0])
		}
		if got := rawOf(m, p.Body); got != w[1] {
			t.Errorf("part %d body = %q, want %q", i, got, w[1])
		}
	}
}

func TestParseWellFormed(t *testing.T) {
	for _, eol := range []string{"\r\n", "\n"} {
		t.Run(fmt.Sprintf("eol=%q", eol), func(t *testing.T) {
			raw := strings.ReplaceAll(wellFormed, "\n", eol)
			m := mustParse(t, raw, Limits{})
			if m.Malformed() || m.LimitExceeded() != "" {
				t.Fatalf("defects %v, limit %q", m.Defects(), m.LimitExceeded())
			}
			n := func(s string) string { return strings.ReplaceAll(s, "\n", eol) }
			outerBody := raw[strings.Index(raw, n("preamble")):]
			expectRanges(t, m, raw, [][2]string{
				{n("From: a@example.net\nTo: b@example.com\nSubject: hello\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"outer\"\n"), outerBody},
				{n("Content-Type: text/plain; charset=utf-8\n"), "Hello."},
				{n("Content-Type: multipart/alternative; boundary=inner\n"), n("--inner\nContent-Type: text/plain\n\nalt text\n--inner\nContent-Type: text/html; charset=us-ascii\n\n<p>alt html</p>\n--inner--\ninner epilogue")},
				{n("Content-Type: text/plain\n"), "alt text"},
				{n("Content-Type: text/html; charset=us-ascii\n"), "<p>alt html</p>"},
				{n("Content-Type: application/pdf; name=a.pdf\nContent-Disposition: attachment; filename=a.pdf\nContent-Transfer-Encoding: base64\n"), "JVBERi0xLjQK"},
			})
			type row struct {
				parent, depth int
				ct, charset   string
				enc, disp, fn string
				multipart     bool
			}
			want := []row{
				{-1, 0, "multipart/mixed", "", "7bit", "", "", true},
				{0, 1, "text/plain", "utf-8", "7bit", "", "", false},
				{0, 1, "multipart/alternative", "", "7bit", "", "", true},
				{2, 2, "text/plain", "", "7bit", "", "", false},
				{2, 2, "text/html", "us-ascii", "7bit", "", "", false},
				{0, 1, "application/pdf", "", "base64", "attachment", "a.pdf", false},
			}
			for i, w := range want {
				p := m.Parts()[i]
				got := row{p.Parent, p.Depth, p.ContentType, p.Charset, p.Encoding, p.Disposition, p.Filename, p.Multipart}
				if got != w {
					t.Errorf("part %d = %+v, want %+v", i, got, w)
				}
			}
			if got := fmt.Sprint(m.Parts()[0].Children, m.Parts()[2].Children); got != "[1 2 5] [3 4]" {
				t.Errorf("children = %s", got)
			}
			if m.Parts()[0].Params["boundary"] != "outer" {
				t.Errorf("params = %v", m.Parts()[0].Params)
			}
			if got := m.meta[1].delim; got != int64(strings.Index(raw, n("\n--outer\nContent-Type: text/plain"))) {
				t.Errorf("delimiter of part 1 at %d", got)
			}
		})
	}
}

func TestParseLineEndingStyle(t *testing.T) {
	if m := mustParse(t, crlf("A: b\n\nx\n"), Limits{}); m.eol != "\r\n" {
		t.Errorf("CRLF message: eol %q", m.eol)
	}
	if m := mustParse(t, "A: b\n\nx\n", Limits{}); m.eol != "\n" {
		t.Errorf("LF message: eol %q", m.eol)
	}
}

// RFC 2046 §5.1.1: the line ending before a delimiter belongs to the delimiter, so a body that ends with a blank
// line keeps exactly one line ending.
func TestParseBodyEndsBeforeDelimiterLineEnding(t *testing.T) {
	raw := crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nline\n\n--b\n\n--b--\n")
	m := mustParse(t, raw, Limits{})
	if got := rawOf(m, m.Parts()[1].Body); got != "line\r\n" {
		t.Errorf("body 1 = %q", got)
	}
	if got := rawOf(m, m.Parts()[2].Body); got != "" {
		t.Errorf("body 2 = %q", got)
	}
	if m.Malformed() {
		t.Errorf("defects: %v", m.Defects())
	}
}

func TestParseTransportPaddingAndSimilarBoundaries(t *testing.T) {
	// "--a" must not end a part of "ab", and a delimiter may be followed by white space.
	raw := crlf("Content-Type: multipart/mixed; boundary=a\n\n--a \t\nContent-Type: multipart/mixed; boundary=ab\n\n--ab\n\nx\n--abc\n--ab--\t\n--a--  \n")
	m := mustParse(t, raw, Limits{})
	if m.Malformed() {
		t.Fatalf("defects: %v", m.Defects())
	}
	if len(m.Parts()) != 3 || rawOf(m, m.Parts()[2].Body) != "x\r\n--abc" {
		t.Fatalf("parts %d, body %q", len(m.Parts()), rawOf(m, m.Parts()[2].Body))
	}
}

func TestParseMessageRFC822(t *testing.T) {
	raw := readCorpus(t, "postern/forwarded-exe.eml")
	m := mustParse(t, raw, Limits{})
	if m.Malformed() {
		t.Fatalf("defects: %v", m.Defects())
	}
	want := []string{"multipart/mixed", "text/plain", "message/rfc822", "multipart/mixed", "text/plain", "application/x-msdownload"}
	var got []string
	for _, p := range m.Parts() {
		got = append(got, p.ContentType)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("parts %v", got)
	}
	exe := m.Parts()[5]
	if exe.Filename != "setup.exe" || exe.Depth != 3 || exe.Parent != 3 {
		t.Errorf("exe part: %+v", exe)
	}
	fwd, inner := m.Parts()[2], m.Parts()[3]
	if fmt.Sprint(fwd.Children) != "[3]" || inner.Header.Start != fwd.Body.Start || inner.Body.End != fwd.Body.End {
		t.Errorf("message/rfc822 %v/%v, inner %v/%v", fwd.Header, fwd.Body, inner.Header, inner.Body)
	}
	if v := m.HeaderValues(3, "subject", false); fmt.Sprint(v) != "[inner]" {
		t.Errorf("inner subject %v", v)
	}
	if got := body(t, m, 2, false); !strings.HasPrefix(got, "From: someone@example.org\r\n") {
		t.Errorf("decoded message/rfc822 = %q", got)
	}
}

func TestParseDigestDefault(t *testing.T) {
	raw := crlf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nfirst\n--d--\n")
	m := mustParse(t, raw, Limits{})
	if len(m.Parts()) != 3 || m.Parts()[1].ContentType != "message/rfc822" || m.HeaderValues(2, "Subject", false)[0] != "one" {
		t.Fatalf("parts: %+v", m.Parts())
	}
}

func TestParseHeaderOnly(t *testing.T) {
	for _, raw := range []string{"Subject: x\r\n", "Subject: x", "Subject: x\r\n\r\n", ""} {
		m := mustParse(t, raw, Limits{})
		if m.Malformed() {
			t.Errorf("%q: defects %v", raw, m.Defects())
		}
		if raw != "" && m.HeaderValues(0, "subject", false)[0] != "x" {
			t.Errorf("%q: subject %v", raw, m.HeaderValues(0, "subject", false))
		}
	}
}

func TestDefects(t *testing.T) {
	tests := []struct {
		name, raw, kind string
		part            int
	}{
		{"unclosed boundary", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n", KindUnclosedBoundary, 0},
		{"inner unclosed by outer delimiter", "Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--a--\n", KindUnclosedBoundary, 1},
		{"no boundary parameter", "Content-Type: multipart/mixed\n\n--b\n\ntext\n--b--\n", KindMissingBoundary, 0},
		{"boundary never appears", "Content-Type: multipart/mixed; boundary=b\n\ntext\n", KindMissingBoundary, 0},
		{"closed before first part", "Content-Type: multipart/mixed; boundary=b\n\n--b--\n", KindMissingBoundary, 0},
		{"garbage line in header", "Subject: x\nthis is not a header\nTo: y\n\nbody\n", KindBadHeader, 0},
		{"leading continuation", " folded: x\nSubject: y\n\nbody\n", KindBadHeader, 0},
		{"mbox From line", "From someone Mon Jan  1 00:00:00 2024\nSubject: y\n\nbody\n", KindBadHeader, 0},
		{"NUL in header", "Subject: a\x00b\n\nbody\n", KindBadHeader, 0},
		{"8-bit header not UTF-8", "Subject: caf\xe9\n\nbody\n", KindBadHeader, 0},
		{"header ends at delimiter", "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n--b--\n", KindBadHeader, 1},
		{"duplicate Content-Disposition", "Content-Disposition: inline\nContent-Disposition: attachment\n\nx\n", KindBadHeader, 0},
		{"unparsable Content-Type", "Content-Type: <html>\n\nx\n", KindBadContentType, 0},
		{"bad parameter", "Content-Type: text/plain; charset\n\nx\n", KindBadContentType, 0},
		{"duplicate Content-Type", "Content-Type: text/plain\nContent-Type: text/html\n\nx\n", KindBadContentType, 0},
		{"unknown encoding", "Content-Transfer-Encoding: x-martian\n\nx\n", KindUnknownEncoding, 0},
		{"x-uuencode is lenient", "Content-Transfer-Encoding: x-uuencode\n\nx\n", KindBadEncoding, 0},
		{"unknown charset", "Content-Type: text/plain; charset=x-martian\n\nx\n", KindUnknownCharset, 0},
		{"unknown RFC 2231 charset", "Content-Type: text/plain; name*=x-martian''a.txt\n\nx\n", KindUnknownCharset, 0},
		{"multipart with base64", "Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: base64\n\n--b\n\nx\n--b--\n", KindBadEncoding, 0},
		{"message/rfc822 with base64", "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA0KDQp4\n", KindBadEncoding, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, eol := range []string{"\n", "\r\n"} {
				m := mustParse(t, strings.ReplaceAll(tc.raw, "\n", eol), Limits{})
				p, ok := m.Part(tc.part)
				if !ok || !hasKind(p.Defects, tc.kind) || !hasKind(m.Defects(), tc.kind) || !m.Malformed() {
					t.Fatalf("want %s on part %d; defects %v", tc.kind, tc.part, m.Defects())
				}
				if m.LimitExceeded() != "" {
					t.Errorf("limit %q", m.LimitExceeded())
				}
				for _, d := range m.Defects() {
					if !strings.HasPrefix(d.String(), d.Kind+": ") || len(d.Detail) < 10 {
						t.Errorf("defect %q", d)
					}
				}
			}
		})
	}
}

func TestDefectRepeatsAreCounted(t *testing.T) {
	// Three bad-header defects on one part: one is recorded, with a count of the others.
	m := mustParse(t, " a\nSubject: \x00\nTo: \xff\n\nbody\n", Limits{})
	if len(m.Defects()) != 1 || !strings.HasSuffix(m.Defects()[0].Detail, "(and 2 more like this)") ||
		m.Parts()[0].Defects[0] != m.Defects()[0] {
		t.Fatalf("defects %v / %v", m.Defects(), m.Parts()[0].Defects)
	}
	// The same kind on different parts is recorded per part.
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=b\n\n")
	for range 5 {
		b.WriteString("--b\nContent-Type: multipart/mixed\n\nx\n")
	}
	b.WriteString("--b--\n")
	m = mustParse(t, b.String(), Limits{})
	if got := kinds(m.Defects()); len(got) != 5 {
		t.Fatalf("defects %v", m.Defects())
	}
}

func TestDefectsOnMalformedHeaderKeepIndexing(t *testing.T) {
	// A garbage line ends the header (as Postfix and Python's email do); the body is still indexed.
	m := mustParse(t, crlf("Subject: x\nnot a header\nContent-Type: text/html\n\nbody\n"), Limits{})
	p := m.Parts()[0]
	if p.ContentType != "text/plain" || rawOf(m, p.Header) != "Subject: x\r\n" || !strings.HasPrefix(rawOf(m, p.Body), "not a header\r\n") {
		t.Fatalf("part 0: %q / %q (%s)", rawOf(m, p.Header), rawOf(m, p.Body), p.ContentType)
	}
}

func TestLimits(t *testing.T) {
	nested := func(depth int) string {
		var b strings.Builder
		for i := range depth {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i)
		}
		b.WriteString("Content-Type: text/plain\n\nleaf\n")
		for i := depth - 1; i >= 0; i-- {
			fmt.Fprintf(&b, "--b%d--\n", i)
		}
		return b.String()
	}
	many := func(n int) string {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=b\n\n")
		for range n {
			b.WriteString("--b\n\nx\n")
		}
		b.WriteString("--b--\n")
		return b.String()
	}
	tests := []struct {
		name, raw string
		lim       Limits
		kind      string
		parts     int
	}{
		{"size", many(3), Limits{MaxSize: 20}, KindSizeLimit, 1},
		{"depth", nested(4), Limits{MaxDepth: 3}, KindDepthLimit, 4},
		{"parts", many(10), Limits{MaxParts: 5}, KindPartLimit, 5},
		{"header", "Subject: 0123456789\nTo: 0123456789\nFrom: 0123456789\n\nbody\n", Limits{MaxHeaderBytes: 40}, KindHeaderLimit, 1},
		{"child header", "Content-Type: multipart/mixed; boundary=b\n\n--b\nX-A: 0123456789012345678901234\nX-B: 0123456789\n\nx\n--b--\n", Limits{MaxHeaderBytes: 44}, KindHeaderLimit, 2},
		{"line", many(2) + strings.Repeat("y", 100) + "\n", Limits{MaxLineLength: 50}, KindLineLimit, 3},
		{"line in header", "Subject: " + strings.Repeat("y", 100) + "\n\nx\n", Limits{MaxLineLength: 50}, KindLineLimit, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, tc.raw, tc.lim)
			if m.LimitExceeded() != tc.kind || !hasKind(m.Defects(), tc.kind) {
				t.Fatalf("limit %q, defects %v; want %s", m.LimitExceeded(), m.Defects(), tc.kind)
			}
			if len(m.Parts()) != tc.parts {
				t.Errorf("%d parts, want %d", len(m.Parts()), tc.parts)
			}
			// The same message within the limits indexes without that defect.
			if full := mustParse(t, tc.raw, Limits{}); full.LimitExceeded() != "" {
				t.Errorf("with default limits: %q", full.LimitExceeded())
			}
			// Parts still open when indexing stopped cannot be changed; the message still round-trips.
			if m.meta[0].bodyDone {
				t.Errorf("part 0 marked complete after %s", tc.kind)
			}
		})
	}
}

func TestLimitEdges(t *testing.T) {
	// Exactly at a limit is within it.
	line := "Subject: " + strings.Repeat("y", 39) + "\r\n" // 50 bytes
	if m := mustParse(t, line+"\r\nx", Limits{MaxLineLength: 50}); m.LimitExceeded() != "" {
		t.Errorf("50-byte line with a 50-byte limit: %v", m.Defects())
	}
	if m := mustParse(t, line+"\r\nx", Limits{MaxLineLength: 49}); m.LimitExceeded() != KindLineLimit {
		t.Errorf("50-byte line with a 49-byte limit: %v", m.Defects())
	}
	if m := mustParse(t, line+"\r\nx", Limits{MaxHeaderBytes: 50}); m.LimitExceeded() != "" {
		t.Errorf("50-byte header with a 50-byte limit: %v", m.Defects())
	}
	raw := line + "\r\nx"
	if m := mustParse(t, raw, Limits{MaxSize: int64(len(raw))}); m.LimitExceeded() != "" {
		t.Errorf("size at the limit: %v", m.Defects())
	}
	// The size limit still indexes the top header.
	m := mustParse(t, raw, Limits{MaxSize: 10})
	if m.LimitExceeded() != KindSizeLimit || m.HeaderValues(0, "Subject", false) == nil || m.Parts()[0].Defects != nil {
		t.Errorf("size limit: %v, subject %v", m.Defects(), m.HeaderValues(0, "Subject", false))
	}
}

func TestDefaultLimits(t *testing.T) {
	d := DefaultLimits()
	if d != (Limits{MaxSize: 64 << 20, MaxHeaderBytes: 256 << 10, MaxDepth: 32, MaxParts: 1000, MaxLineLength: 64 << 10, MaxDecodedBytes: 32 << 20}) {
		t.Fatalf("DefaultLimits() = %+v", d)
	}
	if (Limits{MaxDepth: -1}).withDefaults() != d {
		t.Errorf("negative fields do not take the defaults")
	}
}

// nestingBomb returns a message whose multiparts nest depth levels deep.
func nestingBomb(depth int) string {
	var b strings.Builder
	b.WriteString("From: a@example.net\r\nSubject: bomb\r\n")
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%d\"\r\n\r\n--%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nboom\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--%d--\r\n", i)
	}
	return b.String()
}

func TestNestingBomb(t *testing.T) {
	raw := nestingBomb(5000)
	m := mustParse(t, raw, Limits{})
	if m.LimitExceeded() != KindDepthLimit || len(m.Parts()) != 33 {
		t.Fatalf("limit %q, %d parts", m.LimitExceeded(), len(m.Parts()))
	}
	if d := m.Defects()[len(m.Defects())-1]; !strings.HasPrefix(d.String(), "depth-limit: MIME nesting deeper than 32 (a part at offset ") || d.Part != 32 {
		t.Errorf("defect %+v", d)
	}
	// With the limits raised, the whole bomb is indexed in one pass.
	m = mustParse(t, raw, Limits{MaxDepth: 6000, MaxParts: 6000})
	if m.LimitExceeded() != "" || len(m.Parts()) != 5001 || m.Malformed() {
		t.Fatalf("limit %q, %d parts, defects %d", m.LimitExceeded(), len(m.Parts()), len(m.Defects()))
	}
	if got := rawOf(m, m.Parts()[5000].Body); got != "boom" {
		t.Errorf("innermost body %q", got)
	}
}

type failingReaderAt struct{ err error }

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) { return 0, f.err }

func TestParseIOErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	if _, err := Parse(failingReaderAt{boom}, 100, Limits{}); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	if _, err := Parse(strings.NewReader("Subject: x\r\n"), 100, Limits{}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short source: %v", err)
	}
	if _, err := Parse(strings.NewReader(""), -1, Limits{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative size: %v", err)
	}
	m, err := Parse(strings.NewReader(""), 0, Limits{})
	if err != nil || len(m.Parts()) != 1 || m.Malformed() {
		t.Errorf("empty message: %v %v", err, m)
	}
}

func TestPartAccessors(t *testing.T) {
	m := mustParse(t, crlf(wellFormed), Limits{})
	if _, ok := m.Part(-1); ok {
		t.Error("Part(-1) found")
	}
	if _, ok := m.Part(6); ok {
		t.Error("Part(6) found")
	}
	if p, ok := m.Part(5); !ok || p.ID != 5 {
		t.Error("Part(5) not found")
	}
	if _, err := m.RawBody(6); !errors.Is(err, ErrInvalid) {
		t.Errorf("RawBody(6): %v", err)
	}
	r, err := m.RawBody(5)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r); string(b) != "JVBERi0xLjQK" {
		t.Errorf("RawBody(5) = %q", b)
	}
	if m.Size() != int64(len(crlf(wellFormed))) {
		t.Errorf("Size() = %d", m.Size())
	}
	if m.HeaderValues(9, "Subject", false) != nil || m.HeaderValues(0, "X-None", false) != nil {
		t.Error("HeaderValues of nothing is not nil")
	}
}

// An empty last part of an unclosed inner multipart (its blank separator line is also the line ending before
// the outer delimiter) must still lie inside its parent (mail-parser malformed/020.eml).
func TestParseEmptyPartBeforeOuterDelimiter(t *testing.T) {
	raw := crlf("Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/alternative; boundary=b\n\n--b\n\nx\n--b\n\n--a--\n")
	m := mustParse(t, raw, Limits{}) // checks that every part lies inside its parent
	if len(m.Parts()) != 4 || !hasKind(m.Parts()[1].Defects, KindUnclosedBoundary) {
		t.Fatalf("%d parts, defects %v", len(m.Parts()), m.Defects())
	}
	if p, par := m.Parts()[3], m.Parts()[1]; p.Body.End > par.Body.End || p.Body.Len() != 0 {
		t.Errorf("part 3 body %v, parent body %v", p.Body, par.Body)
	}
}
