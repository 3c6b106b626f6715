package message

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"slices"
	"strings"
	"testing"

	"github.com/postern/postern/internal/mailenc"
)

func TestLenientDecoding(t *testing.T) {
	uu := mailenc.UUEncode("evil.exe", []byte("MZ program"))
	tests := []struct {
		name, cte, body, want string
	}{
		{"base64 outside the alphabet", "base64", "SGVs!bG8s*IHdv\r\ncm-xk\r\n", "Hello, world"},
		{"base64 missing padding", "base64", "SGk", "Hi"},
		{"base64 extra padding", "base64", "SGk====\r\n", "Hi"},
		{"base64 stray =", "base64", "S=Gk=\r\n", "Hi"},
		{"base64 after padding", "base64", "SGk=SGk=\r\n", "HiHi"},
		{"base64 dangling character", "base64", "SGk=x", "Hi"},
		{"base64 in upper-case CTE", " BASE64 ", "SGk=", "Hi"},
		{"quoted base64 CTE", `"base64"`, "SGk=", "Hi"},
		{"qp lower-case hex", "quoted-printable", "a=3db=C3=a9\r\n", "a=b\xc3\xa9\r\n"},
		{"qp bad escape kept", "quoted-printable", "a=ZZb =\x01 c=\r\n", "a=ZZb =\x01 c"},
		{"qp soft break with blanks", "quoted-printable", "ab= \t\r\ncd  \r\n", "abcd\r\n"},
		{"qp bare lf", "quoted-printable", "ab=\ncd\n", "abcd\n"},
		{"x-uuencode", "x-uuencode", uu, "MZ program"},
		{"uuencode without begin", "x-uue", strings.Join(strings.Split(uu, "\r\n")[1:], "\r\n"), "MZ program"},
		{"yenc", "x-yencode", mailenc.YEncode("a.vbs", []byte("=\x00\r\nMsgBox")), "=\x00\r\nMsgBox"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, "Content-Transfer-Encoding: "+tc.cte+"\r\n\r\n"+tc.body, Limits{})
			if got := body(t, m, 0, false); got != tc.want {
				t.Errorf("Decoded = %q, want %q", got, tc.want)
			}
		})
	}
}

// The defects and ambiguities lenient decoding records.
func TestLenientFlags(t *testing.T) {
	tests := []struct {
		name, raw string
		defect    string
		ambiguity string
	}{
		{"base64 outside the alphabet", "Content-Transfer-Encoding: base64\n\nSGVs!bG8=\n", KindBadEncoding, ""},
		{"base64 after padding", "Content-Transfer-Encoding: base64\n\nSGk=\nSGk=\n", KindBadEncoding, AmbiguousBase64},
		{"clean base64", "Content-Transfer-Encoding: base64\n\nSGVsbG8s\nIHdvcmxk\nIQ==\n", "", ""},
		{"uuencode", "Content-Transfer-Encoding: x-uuencode\n\n" + mailenc.UUEncode("a.exe", []byte("x")), KindBadEncoding, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, crlf(tc.raw), Limits{})
			if tc.defect == "" && m.Malformed() || tc.defect != "" && !hasKind(m.Defects(), tc.defect) {
				t.Errorf("defects %v, want %q", m.Defects(), tc.defect)
			}
			if tc.ambiguity == "" && m.Ambiguous() || tc.ambiguity != "" && !hasKind(m.Parts()[0].Ambiguities, tc.ambiguity) {
				t.Errorf("ambiguities %v, want %q", m.Ambiguities(), tc.ambiguity)
			}
		})
	}
}

const zipHeader = "PK\x03\x04 eicar.com"

// find returns the first part with the given file name among its candidates.
func find(m *Message, name string) *Part {
	for i := range m.Parts() {
		if slices.Contains(m.Parts()[i].Filenames, name) {
			return &m.Parts()[i]
		}
	}
	return nil
}

func TestDerivedParts(t *testing.T) {
	inner := crlf("Subject: inner\nContent-Type: multipart/mixed; boundary=in\n\n--in\n\nhi\n--in\n" +
		"Content-Type: application/octet-stream; name=\"evil.exe\"\nContent-Transfer-Encoding: base64\n\n" +
		base64.StdEncoding.EncodeToString([]byte(zipHeader)) + "\n--in--\n")
	b64 := base64.StdEncoding.EncodeToString([]byte(inner))
	tests := []struct {
		name, raw, file, derived, ambiguity string
	}{
		{"rfc822 in base64", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nsee attached\n--b\n" +
			"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n" + b64 + "\n--b--\n",
			"evil.exe", DerivedDecoded, AmbiguousEncapsulated},
		{"rfc822 in quoted-printable", "Content-Type: message/rfc822\nContent-Transfer-Encoding: quoted-printable\n\n" +
			strings.ReplaceAll(strings.ReplaceAll(inner, "=", "=3D"), "\r\n", "=0D=0A=\n"),
			"evil.exe", DerivedDecoded, AmbiguousEncapsulated},
		{"uuencode in text", "Content-Type: text/plain\n\nHello\n\n" + mailenc.UUEncode("evil.exe", []byte(zipHeader)) + "bye\n",
			"evil.exe", DerivedUUEncode, AmbiguousEmbedded},
		{"yenc in text", "Content-Type: text/plain\n\nHello\n" + mailenc.YEncode("evil.exe", []byte(zipHeader)) + "bye\n",
			"evil.exe", DerivedYEnc, AmbiguousEmbedded},
		{"uuencode in base64 text", "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n" +
			base64.StdEncoding.EncodeToString([]byte("Hello\r\n\r\n"+mailenc.UUEncode("evil.exe", []byte(zipHeader))+"bye\r\n")) + "\n",
			"evil.exe", DerivedUUEncode, AmbiguousEmbedded},
		{"yenc in quoted-printable text", "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n" +
			qpEncode("Hello\r\n"+mailenc.YEncode("evil.exe", []byte(zipHeader))+"bye\r\n"),
			"evil.exe", DerivedYEnc, AmbiguousEmbedded},
		{"second boundary", "Content-Type: multipart/mixed; boundary=a; boundary=b\n\n--a\n\nnothing here\n--a--\n--b\n" +
			"Content-Type: application/zip; name=evil.exe\nContent-Transfer-Encoding: base64\n\n" +
			base64.StdEncoding.EncodeToString([]byte(zipHeader)) + "\n--b--\n",
			"evil.exe", DerivedBoundary, AmbiguousBoundary},
		{"second Content-Type", "Content-Type: text/plain\nContent-Type: multipart/mixed; boundary=b\n\n--b\n" +
			"Content-Type: application/zip; name=evil.exe\nContent-Transfer-Encoding: base64\n\n" +
			base64.StdEncoding.EncodeToString([]byte(zipHeader)) + "\n--b--\n",
			"evil.exe", DerivedBoundary, AmbiguousField},
		{"second Content-Transfer-Encoding", "Content-Type: application/zip; name=evil.exe\nContent-Transfer-Encoding: 7bit\n" +
			"Content-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString([]byte(zipHeader)) + "\n",
			"evil.exe", DerivedField, AmbiguousField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := crlf(tc.raw)
			m := mustParse(t, raw, Limits{})
			var p *Part
			for i := range m.Parts() {
				if q := &m.Parts()[i]; q.Derived == tc.derived && slices.Contains(q.Filenames, tc.file) {
					p = q
				}
			}
			if p == nil {
				t.Fatalf("no %s part named %s in %+v", tc.derived, tc.file, m.Parts())
			}
			if got := body(t, m, p.ID, false); !strings.HasPrefix(got, zipHeader) {
				t.Errorf("content %q", got)
			}
			if !m.Ambiguous() || !slices.ContainsFunc(m.Ambiguities(), func(d Defect) bool { return d.Kind == tc.ambiguity }) {
				t.Errorf("ambiguities %v, want %s", m.Ambiguities(), tc.ambiguity)
			}
			// The structure's parts keep their ids, come first, and the message is written back as it was.
			if out := write(t, m, nil); out != raw {
				t.Error("WriteTo(nil) changed the message")
			}
			// A derived part cannot be changed; its host part can.
			host := p.Parent
			for m.Parts()[host].Derived != "" {
				host = m.Parts()[host].Parent
			}
			c := &Changes{}
			if err := c.RemovePart(p.ID); err == nil {
				if err := m.Validate(c); !errors.Is(err, ErrInvalid) {
					t.Errorf("removing derived part %d: %v", p.ID, err)
				}
			}
			if host != 0 {
				c := &Changes{}
				if err := c.RemovePart(host); err != nil {
					t.Fatal(err)
				}
				if out := write(t, m, c); strings.Contains(out, "evil.exe") {
					t.Errorf("removing host part %d left the file:\n%s", host, out)
				}
			}
		})
	}
}

func TestFilenameReadings(t *testing.T) {
	utf16 := ""
	for _, c := range "evil.exe" {
		utf16 += fmt.Sprintf("%%00%%%02X", c)
	}
	tests := []struct {
		name, fields string
		want         []string // every candidate, in order
		ambiguity    string
	}{
		{"duplicate filename", `Content-Disposition: attachment; filename="a.txt"; filename="a.vbs"`, []string{"a.txt", "a.vbs"}, AmbiguousParameter},
		{"name and filename", "Content-Type: application/pdf; name=\"a.pdf\"\nContent-Disposition: attachment; filename=\"a.exe\"", []string{"a.exe", "a.pdf"}, AmbiguousNames},
		{"extended and plain", `Content-Disposition: attachment; filename="a.txt"; filename*=utf-8''a.exe`, []string{"a.exe", "a.txt"}, AmbiguousContinuation},
		{"continuation gap", `Content-Disposition: attachment; filename*0=a; filename*2=.exe`, []string{"a.exe", "a"}, AmbiguousContinuation},
		{"utf-16", `Content-Disposition: attachment; filename*=utf-16be''` + utf16, []string{"evil.exe"}, AmbiguousCharset},
		{"two dispositions", "Content-Disposition: attachment; filename=a.txt\nContent-Disposition: attachment; filename=a.exe", []string{"a.txt", "a.exe"}, AmbiguousField},
		{"name on a uuencode part", "Content-Type: application/octet-stream; name=a.txt\nContent-Transfer-Encoding: x-uuencode", []string{"a.txt", "a.exe"}, AmbiguousNames},
		{"one name", `Content-Disposition: attachment; filename="a.pdf"`, []string{"a.pdf"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := "x\n"
			if strings.Contains(tc.fields, "uuencode") {
				body = mailenc.UUEncode("a.exe", []byte("x"))
			}
			m := mustParse(t, crlf(tc.fields+"\n\n"+body), Limits{})
			p := m.Parts()[0]
			if !slices.Equal(p.Filenames, tc.want) || p.Filename != tc.want[0] {
				t.Errorf("Filenames %q (Filename %q), want %q", p.Filenames, p.Filename, tc.want)
			}
			if tc.ambiguity == "" && p.Ambiguities != nil || tc.ambiguity != "" && !hasKind(p.Ambiguities, tc.ambiguity) {
				t.Errorf("ambiguities %v, want %q", p.Ambiguities, tc.ambiguity)
			}
		})
	}
}

// Lenient readings are bounded: their parts count against MaxParts and MaxDepth, decoded content against
// MaxDecodedBytes, and a reading past a bound flags it like the scan does.
func TestDerivedBounds(t *testing.T) {
	nested := crlf("Content-Type: application/octet-stream; name=evil.exe\n\nMZ\n")
	for i := 0; i < 5; i++ {
		nested = crlf("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n") +
			base64.StdEncoding.EncodeToString([]byte(nested)) + "\r\n"
	}
	m := mustParse(t, nested, Limits{})
	if p := find(m, "evil.exe"); p == nil || p.Depth != 5 || m.LimitExceeded() != "" {
		t.Fatalf("nested base64 messages: %v, limit %q", p, m.LimitExceeded())
	}
	for _, tc := range []struct {
		lim  Limits
		kind string
	}{
		{Limits{MaxDepth: 3}, KindDepthLimit},
		{Limits{MaxParts: 4}, KindPartLimit},
		{Limits{MaxDecodedBytes: 200}, KindDecodeLimit},
	} {
		m := mustParse(t, nested, tc.lim)
		if m.LimitExceeded() != tc.kind || !hasKind(m.Defects(), tc.kind) || find(m, "evil.exe") != nil {
			t.Errorf("%+v: limit %q, defects %v", tc.lim, m.LimitExceeded(), m.Defects())
		}
		if m.Parts()[0].Incomplete != tc.kind {
			t.Errorf("%+v: part 0 incomplete %q", tc.lim, m.Parts()[0].Incomplete)
		}
	}
	// A uuencoded block in an encoded text part is kept in memory only within the bound.
	text := crlf("Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n") +
		base64.StdEncoding.EncodeToString([]byte("hi\r\n"+mailenc.UUEncode("evil.exe", bytes.Repeat([]byte("MZ"), 1000)))) + "\r\n"
	if m := mustParse(t, text, Limits{}); find(m, "evil.exe") == nil || m.LimitExceeded() != "" {
		t.Errorf("block in base64 text: limit %q", m.LimitExceeded())
	}
	if m := mustParse(t, text, Limits{MaxDecodedBytes: 500}); find(m, "evil.exe") != nil || m.LimitExceeded() != KindDecodeLimit ||
		m.Parts()[0].Incomplete != KindDecodeLimit {
		t.Errorf("block in base64 text past the bound: limit %q", m.LimitExceeded())
	}
	// A thousand boundary parameters do not buy a thousand scans of the body.
	var hdr strings.Builder
	hdr.WriteString("Content-Type: multipart/mixed; boundary=b0")
	for i := 1; i < 1000; i++ {
		fmt.Fprintf(&hdr, "; boundary=b%d", i)
	}
	raw := crlf(hdr.String() + "\n\n--b0\n\n" + strings.Repeat("x", 10<<10) + "\n--b0--\n")
	m = mustParse(t, raw, Limits{MaxDecodedBytes: 100 << 10})
	if m.LimitExceeded() != KindDecodeLimit || !hasKind(m.Ambiguities(), AmbiguousBoundary) {
		t.Errorf("1000 boundaries: limit %q", m.LimitExceeded())
	}
	// Many uuencoded blocks stop at the part limit.
	var b strings.Builder
	b.WriteString("Content-Type: text/plain\r\n\r\n")
	for i := 0; i < 50; i++ {
		b.WriteString(mailenc.UUEncode(fmt.Sprintf("f%d.exe", i), []byte("x")))
	}
	m = mustParse(t, b.String(), Limits{MaxParts: 10})
	if m.LimitExceeded() != KindPartLimit || len(m.Parts()) != 10 {
		t.Errorf("50 blocks, 10 parts: limit %q, %d parts", m.LimitExceeded(), len(m.Parts()))
	}
}

func TestAttachments(t *testing.T) {
	for raw, want := range map[string]int{
		"Subject: x\n\nplain text\n": 0,
		"Content-Type: multipart/alternative; boundary=b\n\n--b\n\ntext\n--b\nContent-Type: text/html\n\n<p>x</p>\n--b--\n": 0,
		"Content-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n--b\nContent-Type: application/pdf\n\n%PDF\n--b--\n":     1,
		"Content-Type: text/plain\nContent-Disposition: attachment\n\nx\n":                                                  1,
		"Content-Type: text/plain; name=a.txt\n\nx\n":                                                                       1,
		"Content-Type: text/plain\n\nsee\n" + mailenc.UUEncode("a.exe", []byte("x")):                                        1,
	} {
		if got := mustParse(t, crlf(raw), Limits{}).Attachments(); got != want {
			t.Errorf("%q: %d attachments, want %d", raw, got, want)
		}
	}
}

// Header mistakes mail clients read through: a parameter without the ';' before it, a folded parameter whose
// line lost its indentation.
func TestLenientHeaders(t *testing.T) {
	m := mustParse(t, crlf("Content-Type: multipart/mixed\n\tboundary=\"b\"\n\n--b\nContent-Type: image/png\n"+
		"Content-Disposition: ;\n  filename=\"image001.png\"\n\nx\n--b--\n"), Limits{})
	if len(m.Parts()) != 2 || m.Parts()[1].Filename != "image001.png" || !hasKind(m.Defects(), KindBadContentType) {
		t.Errorf("missing ';': %d parts, defects %v", len(m.Parts()), m.Defects())
	}
	m = mustParse(t, crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/zip; x-unix-mode=0600;\n"+
		"name=\"a.zip\"\nContent-Disposition: attachment; filename=\"a.zip\"\n\nx\n--b--\n"), Limits{})
	p := m.Parts()[1]
	if p.Filename != "a.zip" || p.Disposition != "attachment" || p.ContentType != "application/zip" || !hasKind(p.Defects, KindBadHeader) {
		t.Errorf("unindented continuation: %q %q %q, defects %v", p.Filename, p.Disposition, p.ContentType, p.Defects)
	}
	// A line without a colon after a field that does not end with ';' still ends the header.
	m = mustParse(t, crlf("Subject: x\nnot a field\n\nbody\n"), Limits{})
	if got := rawOf(m, m.Parts()[0].Body); !strings.HasPrefix(got, "not a field") {
		t.Errorf("body %q", got)
	}
}

// The chunked base64 decoder agrees with a byte-at-a-time reading of the same rules, whatever the chunk size
// and wherever padding, junk and line breaks fall.
func TestBase64ReaderChunks(t *testing.T) {
	ref := func(in []byte) []byte {
		var out, q []byte
		flush := func() {
			if len(q) >= 2 {
				b, _ := base64.RawStdEncoding.DecodeString(string(q))
				out = append(out, b...)
			}
			q = q[:0]
		}
		for _, c := range in {
			switch {
			case base64Bad[c] == 0:
				q = append(q, c)
				if len(q) == 4 {
					flush()
				}
			case c == '=' && len(q) >= 2:
				flush()
			}
		}
		flush()
		return out
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/==\r\n *!-"
	for n := 0; n < 300; n++ {
		in := make([]byte, rng.IntN(400))
		for i := range in {
			in[i] = alphabet[rng.IntN(len(alphabet))]
		}
		want := ref(in)
		for _, chunk := range []int{64, 65, 100, 4096} {
			got, err := io.ReadAll(newBase64Reader(bytes.NewReader(in), chunk))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("chunk %d, input %q: got %x (%v), want %x", chunk, in, got, err, want)
			}
		}
	}
}

func qpEncode(s string) string {
	var b strings.Builder
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}
