package review

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/postern/postern/proxy/message"
)

// What a message page shows at most: a quarantined message can be anything, and the page must stay small.
const (
	maxShownHeader = 64 << 10  // bytes of the top-level header
	maxShownText   = 256 << 10 // bytes of one text part, decoded
	maxShownParts  = 200
)

// messageView is a quarantined message prepared for the page: only strings, which html/template escapes.
// Nothing of the message is ever written into the page unescaped, rendered as HTML or fetched by the browser.
type messageView struct {
	Header        string // the top-level header as received (cut at maxShownHeader)
	HeaderCut     bool
	Subject       []string // every Subject field, RFC 2047 decoded
	From          []string
	Parts         []partView
	Defects       []string
	Ambiguities   []string
	LimitExceeded string
	PartsNotShown int
}

type partView struct {
	ID          int
	Depth       int
	ContentType string
	Charset     string
	Encoding    string
	Disposition string
	Filename    string   // as the part names it, shown as text
	Filenames   []string // every name a client may use
	Derived     string   // another reading of the same bytes (uuencode, a second boundary, ...)
	Size        int64    // encoded size
	Multipart   bool
	// Text is the decoded content of a text part (for text/html its source); TextCut when longer than shown.
	Text    string
	IsText  bool
	IsHTML  bool
	TextCut bool
	// Error is why the content cannot be shown (an unknown charset, a bad encoding).
	Error string
}

func newMessageView(src io.ReaderAt, size int64) (*messageView, error) {
	m, err := message.Parse(src, size, message.Limits{})
	if err != nil {
		return nil, fmt.Errorf("reading the message: %w", err)
	}
	v := &messageView{LimitExceeded: m.LimitExceeded()}
	if hr, err := m.RawHeader(0); err == nil {
		b, _ := io.ReadAll(io.LimitReader(hr, maxShownHeader+1))
		if len(b) > maxShownHeader {
			b, v.HeaderCut = b[:maxShownHeader], true
		}
		v.Header = printable(b)
	}
	for _, s := range m.HeaderValues(0, "Subject", true) {
		v.Subject = append(v.Subject, printable([]byte(s)))
	}
	for _, s := range m.HeaderValues(0, "From", true) {
		v.From = append(v.From, printable([]byte(s)))
	}
	for _, d := range m.Defects() {
		v.Defects = append(v.Defects, d.String())
	}
	for _, d := range m.Ambiguities() {
		v.Ambiguities = append(v.Ambiguities, d.String())
	}
	for _, p := range m.Parts() {
		if len(v.Parts) == maxShownParts {
			v.PartsNotShown++
			continue
		}
		pv := partView{ID: p.ID, Depth: p.Depth, ContentType: p.ContentType, Charset: p.Charset, Encoding: p.Encoding,
			Disposition: p.Disposition, Filename: p.Filename, Derived: p.Derived, Size: p.Body.Len(), Multipart: p.Multipart}
		if len(p.Filenames) > 1 {
			pv.Filenames = p.Filenames
		}
		if !p.Multipart && strings.HasPrefix(p.ContentType, "text/") && p.Disposition != "attachment" {
			pv.IsText, pv.IsHTML = true, p.ContentType == "text/html"
			r, err := m.Text(p.ID)
			if err == nil {
				var b []byte
				b, err = io.ReadAll(io.LimitReader(r, maxShownText+1))
				if len(b) > maxShownText {
					b, pv.TextCut = b[:maxShownText], true
				}
				pv.Text = printable(b)
			}
			if err != nil {
				pv.Error = err.Error()
			}
		}
		v.Parts = append(v.Parts, pv)
	}
	return v, nil
}

// printable makes b safe to show as text: invalid UTF-8 becomes U+FFFD, and control characters other than tab
// and line breaks (escape sequences, bidirectional overrides that would make text read backwards) are shown as
// their code points, so what a reviewer reads is what the bytes say.
func printable(b []byte) string {
	var out strings.Builder
	out.Grow(len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n == 1:
			out.WriteRune('\uFFFD')
		case r == '\t' || r == '\n':
			out.WriteRune(r)
		case r == '\r':
			if !bytes.HasPrefix(b[1:], []byte{'\n'}) {
				out.WriteString(`\r`)
			}
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || isBidiControl(r):
			fmt.Fprintf(&out, "\\u%04x", r)
		default:
			out.WriteRune(r)
		}
		b = b[n:]
	}
	return out.String()
}

func isBidiControl(r rune) bool {
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c
}

// partContent returns a part's content, transfer-decoded, for a download.
func partContent(src io.ReaderAt, size int64, id int) (io.Reader, string, error) {
	m, err := message.Parse(src, size, message.Limits{})
	if err != nil {
		return nil, "", err
	}
	p, ok := m.Part(id)
	if !ok || p.Multipart {
		return nil, "", ErrNotFound
	}
	r, err := m.Decoded(id)
	return r, p.Filename, err
}
