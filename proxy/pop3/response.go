package pop3

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/postern/postern/proxy/mailflow"
)

// Response codes (RFC 2449 §8, RFC 3206, RFC 5034 §9) the proxy sends or recognises.
const (
	CodeInUse    = "IN-USE"
	CodeLoginDly = "LOGIN-DELAY"
	CodeSysTemp  = "SYS/TEMP"
	CodeSysPerm  = "SYS/PERM"
	CodeAuth     = "AUTH"
)

// Response is a status line: +OK or -ERR, an optional response code in brackets, and the text.
type Response struct {
	OK bool
	// Code is the response code without its brackets ("SYS/TEMP"), "" when none.
	Code string
	// Text is the rest of the line after the status and the code, without leading space.
	Text string
}

// Status is "+OK" or "-ERR".
func (r Response) Status() string {
	if r.OK {
		return "+OK"
	}
	return "-ERR"
}

// Line renders the response without line end.
func (r Response) Line() string {
	var b strings.Builder
	b.WriteString(r.Status())
	if r.Code != "" {
		b.WriteString(" [" + r.Code + "]")
	}
	if r.Text != "" {
		b.WriteString(" " + r.Text)
	}
	return b.String()
}

// Detail is the line after the status: the code in brackets and the text, as an audit record keeps it.
func (r Response) Detail() string {
	return strings.TrimPrefix(strings.TrimPrefix(r.Line(), r.Status()), " ")
}

// OK and Err build responses.
func OK(text string) Response                { return Response{OK: true, Text: text} }
func Err(code, text string) Response         { return Response{Code: code, Text: text} }
func Errf(code, f string, a ...any) Response { return Response{Code: code, Text: fmt.Sprintf(f, a...)} }

// ParseResponse parses a status line (without line end). A line that starts with neither +OK nor -ERR is an
// error: the upstream is not speaking POP3 (or the session is out of step).
func ParseResponse(line []byte) (Response, error) {
	var r Response
	switch {
	case bytes.HasPrefix(line, []byte("+OK")):
		r.OK, line = true, line[3:]
	case bytes.HasPrefix(line, []byte("-ERR")):
		line = line[4:]
	default:
		return r, fmt.Errorf("pop3: not a status line: %q", clip(line))
	}
	if len(line) > 0 && line[0] != ' ' {
		return r, fmt.Errorf("pop3: not a status line: %q", clip(line))
	}
	line = bytes.TrimLeft(line, " ")
	if len(line) > 0 && line[0] == '[' {
		if end := bytes.IndexByte(line, ']'); end > 0 {
			r.Code = string(line[1:end])
			line = bytes.TrimLeft(line[end+1:], " ")
		}
	}
	r.Text = string(line)
	return r, nil
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// SafeText makes a text safe for one response line: no CR, LF or other control characters, at most 512 bytes (mailflow.ReplyText).
func SafeText(s string) string { return mailflow.ReplyText(s) }

// WriteResponse writes one status line with CRLF.
func WriteResponse(w *bufio.Writer, r Response) error {
	if _, err := w.WriteString(r.Line()); err != nil {
		return err
	}
	_, err := w.WriteString("\r\n")
	return err
}

// WriteLines writes a multi-line response body: each line with CRLF, dot-stuffed, then the terminating ".".
func WriteLines(w *bufio.Writer, lines []string) error {
	for _, l := range lines {
		if strings.HasPrefix(l, ".") {
			w.WriteByte('.')
		}
		w.WriteString(l)
		w.WriteString("\r\n")
	}
	_, err := w.WriteString(".\r\n")
	return err
}

// WriteMessage writes message content (CRLF line endings, as the line guard leaves it) as a multi-line response
// body: dot-stuffed, a CRLF added if the content does not end with one, then the terminating ".". It copies with
// buf.
func WriteMessage(w *bufio.Writer, content io.Reader, buf []byte) error {
	ds := &trailing{DotStuffer: mailflow.DotStuffer{W: w}}
	if _, err := io.CopyBuffer(ds, onlyReader{content}, buf); err != nil {
		return err
	}
	if ds.last != '\n' && ds.n > 0 {
		w.WriteString("\r\n")
	}
	_, err := w.WriteString(".\r\n")
	return err
}

type trailing struct {
	mailflow.DotStuffer
	last byte
	n    int64
}

func (t *trailing) Write(p []byte) (int, error) {
	if len(p) > 0 {
		t.last = p[len(p)-1]
		t.n += int64(len(p))
	}
	return t.DotStuffer.Write(p)
}

// onlyReader hides WriterTo, so that io.CopyBuffer uses the buffer given.
type onlyReader struct{ io.Reader }
