package message

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
)

// foldWidth is where formatField folds a header field (RFC 5322 §2.1.1 recommends at most 78 characters).
const foldWidth = 78

// formatField formats "Name: value" followed by eol: non-ASCII words RFC 2047-encoded, folded at white space so
// that lines stay within 78 columns where the value allows (a word longer than a line is not split).
func formatField(name, value, eol string) []byte {
	value = encodeValue(strings.Trim(value, " \t"))
	var b bytes.Buffer
	b.WriteString(name)
	b.WriteByte(':')
	lineLen := b.Len()
	for i, tok := range splitBlanks(value) {
		if i > 0 && lineLen+len(tok) > foldWidth {
			b.WriteString(eol)
			lineLen = 0
		}
		b.WriteString(tok)
		lineLen += len(tok)
	}
	b.WriteString(eol)
	return b.Bytes()
}

// splitBlanks splits v into tokens that each start with their preceding run of white space, so that folding
// before any token but the first keeps the value exactly: "a  b c" gives " a", "  b", " c". The first token
// gets the single space that follows the colon.
func splitBlanks(v string) []string {
	if v == "" {
		return nil
	}
	var toks []string
	start := 0
	for i := 1; i < len(v); i++ {
		if (v[i] == ' ' || v[i] == '\t') && v[i-1] != ' ' && v[i-1] != '\t' {
			toks = append(toks, v[start:i])
			start = i
		}
	}
	toks = append(toks, v[start:])
	toks[0] = " " + toks[0]
	return toks
}

// encodeValue RFC 2047-encodes the runs of words of v that are not ASCII, leaving ASCII words (addresses,
// tokens) as they are. Adjacent non-ASCII words are encoded together, white space included, because white
// space between two encoded words is not displayed.
func encodeValue(v string) string {
	if isASCII(v) {
		return v
	}
	toks := strings.SplitAfter(v, " ")
	var out strings.Builder
	for i := 0; i < len(toks); {
		if isASCII(toks[i]) {
			out.WriteString(toks[i])
			i++
			continue
		}
		j := i
		for j < len(toks) && !isASCII(toks[j]) {
			j++
		}
		run := strings.Join(toks[i:j], "")
		trail := run[len(strings.TrimRight(run, " ")):]
		out.WriteString(encodeWord(strings.TrimRight(run, " ")))
		out.WriteString(trail)
		i = j
	}
	return out.String()
}

// encodeWord encodes s as UTF-8 encoded words: Q, which keeps ASCII letters readable, unless B is clearly
// (a quarter) shorter, as for scripts that are not Latin.
func encodeWord(s string) string {
	q := mime.QEncoding.Encode("utf-8", s)
	b := mime.BEncoding.Encode("utf-8", s)
	if len(b)*4 < len(q)*3 {
		return b
	}
	return q
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// normalizeEOL rewrites every line break of s (CRLF, LF or a lone CR) as eol.
func normalizeEOL(s, eol string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	if eol != "\n" {
		s = strings.ReplaceAll(s, "\n", eol)
	}
	return s
}

// lfWriter rewrites CRLF as LF, for messages that use bare LF line endings; the encoders write CRLF.
type lfWriter struct {
	w  io.Writer
	cr bool // the last byte written was a CR, held back
}

func (l *lfWriter) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p)+1)
	for _, c := range p {
		if l.cr {
			l.cr = false
			if c != '\n' {
				out = append(out, '\r')
			}
		}
		if c == '\r' {
			l.cr = true
			continue
		}
		out = append(out, c)
	}
	if _, err := l.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (l *lfWriter) Close() error {
	if l.cr {
		l.cr = false
		_, err := l.w.Write([]byte{'\r'})
		return err
	}
	return nil
}

// lineWrapper breaks base64 output into lines of 76 characters (RFC 2045 §6.8) ending in eol, without a line
// ending after the last line.
type lineWrapper struct {
	w   io.Writer
	eol []byte
	n   int // characters on the current line
}

func (l *lineWrapper) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if l.n == 76 {
			if _, err := l.w.Write(l.eol); err != nil {
				return written, err
			}
			l.n = 0
		}
		k := min(76-l.n, len(p))
		if _, err := l.w.Write(p[:k]); err != nil {
			return written, err
		}
		l.n += k
		written += k
		p = p[k:]
	}
	return written, nil
}

// encoder returns a writer that transfer-encodes into w with line endings eol. Close flushes it.
func encoder(w io.Writer, enc, eol string) io.WriteCloser {
	switch enc {
	case "base64":
		return base64.NewEncoder(base64.StdEncoding, &lineWrapper{w: w, eol: []byte(eol)})
	case "quoted-printable":
		if eol == "\n" {
			lw := &lfWriter{w: w}
			return &closeBoth{quotedprintable.NewWriter(lw), lw}
		}
		return quotedprintable.NewWriter(w)
	}
	return nopCloser{w}
}

type closeBoth struct {
	io.WriteCloser
	second io.Closer
}

func (c *closeBoth) Close() error {
	if err := c.WriteCloser.Close(); err != nil {
		return err
	}
	return c.second.Close()
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// safe7bit reports whether content can be sent as 7bit text: ASCII without NUL, lines of at most 998 bytes, no
// lone CR.
func safe7bit(content []byte) bool {
	line := 0
	for i, c := range content {
		switch {
		case c >= 0x80 || c == 0:
			return false
		case c == '\r':
			if i+1 >= len(content) || content[i+1] != '\n' {
				return false
			}
		case c == '\n':
			line = 0
			continue
		}
		line++
		if line > maxLine {
			return false
		}
	}
	return true
}
