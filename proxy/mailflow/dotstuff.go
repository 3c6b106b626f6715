package mailflow

import (
	"bufio"
	"bytes"
	"io"
)

// DotStuffer writes message content in SMTP's DATA form: a line that starts with "." gets a second one (RFC 5321
// §4.5.2). The content must have CRLF line endings only, which the LineGuard guarantees, so every LF starts a
// line. It does with a few bulk copies what net/textproto's DotWriter does byte by byte.
type DotStuffer struct {
	W       io.Writer
	midLine bool // not at the start of a line
}

var lfDot = []byte("\n.")

func (d *DotStuffer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if !d.midLine && p[0] == '.' {
			if _, err := d.W.Write(lfDot[1:]); err != nil {
				return 0, err
			}
		}
		i := bytes.Index(p, lfDot)
		if i < 0 {
			if _, err := d.W.Write(p); err != nil {
				return 0, err
			}
			d.midLine = p[len(p)-1] != '\n'
			break
		}
		if _, err := d.W.Write(p[:i+1]); err != nil {
			return 0, err
		}
		d.midLine = false
		p = p[i+1:]
	}
	return n, nil
}

// DotReader reads dot-stuffed content (SMTP DATA, a POP3 multi-line response) up to its terminating line ".",
// removes the dot that stuffing added to lines starting with one, and keeps every line ending as it came
// (net/textproto's DotReader turns CRLF into LF, which would change the message's bytes). The terminating line
// is ".\r\n", or ".\n" from a server that ends lines with LF; after it Read returns io.EOF, and the reader is
// positioned just after it. The end of the input before that line is io.ErrUnexpectedEOF.
type DotReader struct {
	r       *bufio.Reader
	pending []byte // the rest of the line being read, from r's buffer
	mid     bool   // not at the start of a line
	err     error  // sticky
}

// NewDotReader returns a DotReader reading from r.
func NewDotReader(r *bufio.Reader) *DotReader { return &DotReader{r: r} }

func (d *DotReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(d.pending) == 0 {
			if d.err != nil {
				break
			}
			if n > 0 && d.r.Buffered() == 0 {
				break // do not wait for the network with something to return
			}
			if err := d.next(); err != nil {
				d.err = err
			}
		}
		c := copy(p[n:], d.pending)
		d.pending = d.pending[c:]
		n += c
	}
	if n > 0 {
		return n, nil
	}
	return 0, d.err
}

// next makes the next piece of a line pending, or returns why there is none.
func (d *DotReader) next() error {
	if !d.mid {
		b, err := d.r.Peek(1)
		if err != nil {
			return unexpected(err)
		}
		if b[0] == '.' {
			if end, _ := d.r.Peek(3); bytes.Equal(end, []byte(".\r\n")) {
				d.r.Discard(3)
				return io.EOF
			}
			if end, _ := d.r.Peek(2); bytes.Equal(end, []byte(".\n")) {
				d.r.Discard(2)
				return io.EOF
			}
			d.r.Discard(1) // the stuffed dot
		}
	}
	line, err := d.r.ReadSlice('\n')
	d.pending = line
	d.mid = err == bufio.ErrBufferFull
	switch {
	case err == nil, err == bufio.ErrBufferFull:
		return nil
	case len(line) > 0:
		// The data before the error is returned first; the error comes with the next read.
		d.mid = true
		d.err = unexpected(err)
		return nil
	}
	return unexpected(err)
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
