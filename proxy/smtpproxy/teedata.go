package smtpproxy

import (
	"io"

	"github.com/emersion/go-smtp"
)

// Message content read through go-smtp's own reader (TLS, BDAT-free pipelining, any session the fast path does
// not take: see datareader.go).
//
// go-smtp's end-of-data state machine leaves its CR state on a second CR, so a message whose last line ends with
// a bare CR ("...\r\r\n.\r\n") is not seen as ended: the client would wait for its reply until the data timeout.
// Postfix ends that message (it reads lines up to LF). go-smtp's reader cannot be replaced where go-smtp reads the
// connection itself, so the relay watches what it reads: go-smtp copies every byte it reads from the client to its
// Debug writer (a dataTap), and teeData runs the relay's own state machine over those bytes. The content the relay
// receives is what that machine makes of them; go-smtp's reader is only pumped, so that go-smtp goes on reading.
//
// Where the relay's machine sees the end and go-smtp's does not, go-smtp would take the client's next commands for
// more of the message: the session is ended after the message's reply (the reads go-smtp makes after it fail), so
// nothing the client sends later is misread. Where both see the end, go-smtp carries on as usual. go-smtp's
// machine never sees an end the relay's does not (the two differ only after a CR that follows a CR).

// dataTap is go-smtp's Debug writer for one connection. go-smtp gives it every byte it reads from the client and
// every reply it writes; it keeps the bytes read while a teeData is reading (no reply is written then).
type dataTap struct {
	rec bool
	buf []byte
}

func (t *dataTap) Write(p []byte) (int, error) {
	if t.rec {
		t.buf = append(t.buf, p...)
	}
	return len(p), nil
}

// teeData is the content of one message read by go-smtp's reader, as the relay's state machine makes it of the
// bytes go-smtp read: dot-unstuffed, ending at the end-of-data line, bounded by the message size.
type teeData struct {
	tap     *dataTap
	r       io.Reader // go-smtp's reader, pumped
	d       dataStream
	pos     int   // bytes of tap.buf used
	goState int   // go-smtp's state machine, run over the same bytes
	goOut   int64 // the content go-smtp makes of those bytes, in bytes
	pumped  int64 // the content go-smtp's reader returned so far
	pump    [4096]byte
	// outOfStep is set when the message ended where go-smtp's reader does not see an end.
	outOfStep bool
	pumpErr   error // the error go-smtp's reader returned, for when the bytes it read are used
	err       error
}

// newTeeData starts reading a message through go-smtp's reader r; maxSize is the size limit (0: none).
func newTeeData(tap *dataTap, r io.Reader, maxSize int64) *teeData {
	tap.rec, tap.buf = true, tap.buf[:0]
	return &teeData{tap: tap, r: r, d: dataStream{limited: maxSize > 0, n: maxSize + 1}} // as beginData
}

// stop ends the recording; it reports whether go-smtp's reader is out of step with the relay's (see outOfStep).
func (t *teeData) stop() bool {
	t.tap.rec = false
	if cap(t.tap.buf) > 64<<10 {
		t.tap.buf = nil
	}
	t.tap.buf = t.tap.buf[:0]
	return t.outOfStep
}

func (t *teeData) Read(p []byte) (int, error) {
	if t.d.state == dataEOF {
		return 0, io.EOF
	}
	if t.err != nil {
		return 0, t.err
	}
	if t.d.limited {
		if t.d.n <= 0 {
			return 0, smtp.ErrDataTooLarge
		}
		if int64(len(p)) > t.d.n {
			p = p[:t.d.n]
		}
	}
	for len(p) > 0 {
		if raw := t.tap.buf[t.pos:]; len(raw) > 0 {
			used, out := t.d.unstuff(p, raw)
			t.goSMTP(raw[:used])
			t.pos += used
			if t.pos == len(t.tap.buf) {
				t.tap.buf, t.pos = t.tap.buf[:0], 0
			}
			if t.d.limited {
				t.d.n -= int64(out)
			}
			if t.d.state == dataEOF {
				t.outOfStep = t.goState != dataEOF
				return out, io.EOF
			}
			if out > 0 {
				return out, nil
			}
			continue
		}
		if t.pumpErr != nil {
			// go-smtp's reader ends only where the relay's machine ends too, which returned above.
			t.err = t.pumpErr
			if t.err == io.EOF {
				t.err = io.ErrUnexpectedEOF
			}
			return 0, t.err
		}
		// go-smtp's reader returns only when the buffer is full (or the message ended). Every byte go-smtp has
		// read is in the tap, and the relay has used them all: as much content as go-smtp makes of them and has
		// not returned yet can be read without waiting, and no more. With none, a read of one byte makes go-smtp
		// read the connection, which the tap sees.
		k := min(max(t.goOut-t.pumped, 1), int64(len(t.pump)))
		var n int
		n, t.pumpErr = t.r.Read(t.pump[:k])
		t.pumped += int64(n)
	}
	return 0, nil
}

// goSMTP runs go-smtp's end-of-data state machine (its dataReader) over b, and counts the content it makes.
func (t *teeData) goSMTP(b []byte) {
	s := t.goState
	for _, c := range b {
		t.goOut++ // every byte is content but a dot at the start of a line, the CR after it, and the end
		switch s {
		case dataBeginLine:
			switch c {
			case '.':
				s = dataDot
				t.goOut--
			case '\r':
				s = dataCR
			default:
				s = dataMid
			}
		case dataDot:
			if c == '\r' {
				s = dataDotCR
				t.goOut--
			} else {
				s = dataMid
			}
		case dataDotCR:
			if c == '\n' {
				s = dataEOF
				t.goOut--
			} else {
				s = dataMid
			}
		case dataCR:
			if c == '\n' {
				s = dataBeginLine
			} else {
				s = dataMid
			}
		case dataMid:
			if c == '\r' {
				s = dataCR
			}
		}
	}
	t.goState = s
}
