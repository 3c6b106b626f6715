package smtpproxy

import (
	"bytes"
	"io"
	"sync"

	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/listener"
)

// The DATA fast path.
//
// go-smtp reads message content a byte at a time (its dot-unstuffing state machine calls bufio.Reader.ReadByte
// for every byte, behind a line-length check that loops over every byte too), in 4 KiB socket reads. For a relay
// that does little else with a message, that is the largest cost in user space. So on a plain-text connection the
// relay reads DATA content itself, straight from the socket in 32 KiB reads, with the same state machine run in
// bulk (bytes.IndexByte from one CR to the next). When the content ends, go-smtp's own reader is handed a lone
// ".\r\n", so it ends at once and go-smtp carries on with whatever the client sent after the message, which the
// relay read ahead and hands over first.
//
// This is only correct if go-smtp holds nothing it read but has not used yet when its DATA handler starts:
// otherwise the start of the content would be in go-smtp's buffer, not on the socket. clientConn tracks that from
// the reads go-smtp makes (see noteChunk): go-smtp asks for more input only when its buffer holds no complete
// line, so the line of the DATA command ended in the last chunk it got, and if that chunk ends with the only LF in
// it, or with a line after which nothing is left and before which no line could have been a DATA or BDAT command,
// the buffer is empty. Anything else (BDAT, TLS, a STARTTLS ever seen, a chunk read while a message was being
// received) takes go-smtp's own path, as before.

// Data reader states, as in go-smtp's dataReader.
const (
	dataBeginLine = iota // at the start of a line
	dataDot              // read "." at the start of a line
	dataDotCR            // read ".\r" at the start of a line
	dataCR               // read "\r"
	dataMid              // in the middle of a line
	dataEOF              // read the ".\r\n" end-of-data line
)

// readBufSize is the size of a clientConn's read-ahead buffer.
const readBufSize = 32 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// dataStream is the client's message content, read by the relay itself: dot-unstuffed, ending at the
// end-of-data line, bounded by the message size (ErrDataTooLarge past it) and by the line length like go-smtp's
// line limit (ErrTooLongLine, which also ends the session).
type dataStream struct {
	c         *clientConn
	state     int
	limited   bool
	n         int64 // bytes still allowed when limited
	lineLimit int   // 0: none
	lineLen   int   // as go-smtp's lineLimitReader counts: 1 just after an LF
	err       error // sticky
}

// fastDataReady reports whether the relay may read the message being started itself: see the comment at the top
// of this file. It must be called from go-smtp's DATA handler.
func (c *clientConn) fastDataReady() bool {
	return !c.noFast && c.dataLast && c.inject == "" && c.rerr == nil
}

// beginData starts reading a message with the fast path; maxSize and lineLimit are go-smtp's limits for this
// connection (0: none).
func (c *clientConn) beginData(maxSize int64, lineLimit int) *dataStream {
	// One byte more than the limit may be read: a message of exactly maxSize bytes is allowed (RFC 1870), and
	// the byte after it, if any, is the one that refuses it.
	return &dataStream{c: c, limited: maxSize > 0, n: maxSize + 1, lineLimit: lineLimit, lineLen: 1}
}

// endData finishes a message read with the fast path: what the relay did not read is read and dropped (as
// go-smtp does after its DATA handler returns), and go-smtp's own reader is given the end-of-data line. After a
// read error, go-smtp gets that error instead, as it would have from the connection.
func (c *clientConn) endData(d *dataStream) {
	if d.state != dataEOF && d.err == nil {
		d.limited = false
		_, _ = io.Copy(io.Discard, d)
	}
	if d.state == dataEOF {
		c.inject = ".\r\n"
	}
}

func (d *dataStream) Read(p []byte) (int, error) {
	if d.state == dataEOF {
		return 0, io.EOF
	}
	if d.err != nil {
		return 0, d.err
	}
	if d.limited {
		if d.n <= 0 {
			return 0, smtp.ErrDataTooLarge
		}
		if int64(len(p)) > d.n {
			p = p[:d.n]
		}
	}
	c := d.c
	n := 0
	for n == 0 && len(p) > 0 {
		if c.rbuf == nil || c.rpos == len(*c.rbuf) {
			if err := c.fill(); err != nil {
				if err == io.EOF {
					c.rerr = io.EOF
					err = io.ErrUnexpectedEOF
				} else {
					c.rerr = err
				}
				d.err = err
				return 0, err
			}
		}
		raw := (*c.rbuf)[c.rpos:]
		used, out := d.unstuff(p[n:], raw)
		if !d.checkLines(raw[:used]) {
			c.rerr = smtp.ErrTooLongLine
			d.err = smtp.ErrTooLongLine
			return 0, d.err
		}
		c.rpos += used
		n += out
		if d.state == dataEOF {
			break
		}
	}
	if c.rbuf != nil && c.rpos == len(*c.rbuf) {
		c.releaseReadBuf()
	}
	if d.limited {
		d.n -= int64(n)
	}
	if d.state == dataEOF {
		return n, io.EOF
	}
	return n, nil
}

// unstuff runs go-smtp's end-of-data and dot-unstuffing state machine over src, writing the content to dst. It
// returns how much of src it used and how much of dst it filled; it stops at the end-of-data line.
func (d *dataStream) unstuff(dst, src []byte) (used, out int) {
	i, o := 0, 0
	for i < len(src) && o < len(dst) {
		switch d.state {
		case dataMid:
			// The bulk: everything up to and including the next CR is content.
			chunk := src[i:]
			if room := len(dst) - o; len(chunk) > room {
				chunk = chunk[:room]
			}
			j := bytes.IndexByte(chunk, '\r')
			if j < 0 {
				o += copy(dst[o:], chunk)
				i += len(chunk)
				continue
			}
			o += copy(dst[o:], chunk[:j+1])
			i += j + 1
			d.state = dataCR
		case dataCR:
			c := src[i]
			i++
			dst[o] = c
			o++
			switch c {
			case '\n':
				d.state = dataBeginLine
			case '\r':
				// A second CR may start the CRLF: "\r\r\n.\r\n" ends the message (go-smtp's reader does not
				// see that end; see teeData).
			default:
				d.state = dataMid
			}
		case dataBeginLine:
			c := src[i]
			i++
			switch c {
			case '.':
				d.state = dataDot
			case '\r':
				dst[o] = c
				o++
				d.state = dataCR
			default:
				dst[o] = c
				o++
				d.state = dataMid
			}
		case dataDot:
			c := src[i]
			i++
			if c == '\r' {
				d.state = dataDotCR
			} else {
				dst[o] = c
				o++
				d.state = dataMid
			}
		case dataDotCR:
			c := src[i]
			i++
			if c == '\n' {
				d.state = dataEOF
				return i, o
			}
			dst[o] = c
			o++
			d.state = dataMid
			if c == '\r' {
				d.state = dataCR
			}
		default:
			return i, o
		}
	}
	return i, o
}

// checkLines applies go-smtp's line limit to the bytes read from the client; it reports false when a line is
// too long.
func (d *dataStream) checkLines(b []byte) bool {
	if d.lineLimit <= 0 {
		return true
	}
	for len(b) > 0 {
		j := bytes.IndexByte(b, '\n')
		if j < 0 {
			d.lineLen += len(b)
			return d.lineLen <= d.lineLimit
		}
		if d.lineLen += j; d.lineLen > d.lineLimit {
			return false
		}
		d.lineLen = 1
		b = b[j+1:]
	}
	return true
}

// readTracker follows what go-smtp reads from the client, to tell when its buffer holds nothing it has not used
// (see the comment at the top of this file).
type readTracker struct {
	dataLast bool // the last read go-smtp made left nothing in its buffer after a line
	aligned  bool // the last read go-smtp made ended with an LF
	off      bool // STARTTLS seen: the relay can no longer tell
	head     [8]byte
	headLen  int // the first bytes of the line being read, for sawStartTLS
}

// noteChunk records what go-smtp got from a read, for fastDataReady.
func (c *clientConn) noteChunk(b []byte) {
	if c.noFast {
		return
	}
	c.note(b, c.reads.Phase())
	if c.off {
		c.noFast = true
	}
}

// note records what go-smtp got from a read made in phase p.
func (c *readTracker) note(b []byte, p listener.Phase) {
	if c.off || len(b) == 0 {
		return
	}
	if c.sawStartTLS(b) {
		// In plain text the relay answers STARTTLS itself and go-smtp's connection ends (clientConn.handover),
		// except where the listener has no TLS: go-smtp refuses it then. Either way, from here on the relay does
		// not follow; inside TLS, STARTTLS is refused too.
		c.off = true
		c.dataLast = false
		return
	}
	endsLine := b[len(b)-1] == '\n'
	aligned := c.aligned
	c.aligned = endsLine
	c.dataLast = false
	if p == listener.PhaseCommand || !endsLine {
		// Read while a message is received (go-smtp's own DATA path, or BDAT), or a line not complete yet.
		return
	}
	if bytes.IndexByte(b[:len(b)-1], '\n') < 0 {
		// One line, or the end of one: whatever command ends here, nothing follows it.
		c.dataLast = true
		return
	}
	if !aligned {
		return
	}
	// Several lines (a pipelining client): only the last may be a DATA command, and none a BDAT.
	for line := b; len(line) > 0; {
		j := bytes.IndexByte(line, '\n')
		if j < len(line)-1 && (hasCommandPrefix(line, "DATA") || hasCommandPrefix(line, "BDAT")) {
			return
		}
		line = line[j+1:]
	}
	c.dataLast = true
}

// sawStartTLS reports whether a line of b, or of the line b continues, starts with STARTTLS (which go-smtp takes
// for the command whatever follows it).
func (c *readTracker) sawStartTLS(b []byte) bool {
	const verb = "STARTTLS"
	for len(b) > 0 {
		seg := b
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			seg = b[:j+1]
		}
		b = b[len(seg):]
		if c.headLen < len(verb) {
			c.headLen += copy(c.head[c.headLen:len(verb)], seg)
			if c.headLen == len(verb) && bytes.EqualFold(c.head[:], []byte(verb)) {
				return true
			}
		}
		if seg[len(seg)-1] == '\n' {
			c.headLen = 0
		}
	}
	return false
}

// hasCommandPrefix reports whether line starts with the command verb, in any case.
func hasCommandPrefix(line []byte, verb string) bool {
	return len(line) >= len(verb) && bytes.EqualFold(line[:len(verb)], []byte(verb))
}
