package smtpproxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// refData is go-smtp's dataReader state machine (data.go) and line limit (lengthlimit_reader.go), a byte at a
// time, as the reference the fast path must match: the content it produces, where it stops, and the errors. (go-smtp
// applies its line limit to whole socket reads, so where both limits are exceeded close together it may report
// the other one: either way the message is refused.) Unlike go-smtp's, its limit lets a message of exactly
// maxSize bytes through. It differs from go-smtp's machine where the relay's does: a
// CR after a CR may start the line ending, so "\r\r\n.\r\n" ends the message (teedata.go).
func refData(in []byte, maxSize int64, lineLimit int) (out []byte, used int, err error) {
	const (
		begin = iota
		dot
		dotCR
		cr
		mid
	)
	state, lineLen := begin, 1
	for i, c := range in {
		if maxSize > 0 && int64(len(out)) > maxSize {
			return out, i, smtp.ErrDataTooLarge
		}
		if lineLimit > 0 {
			if c == '\n' {
				lineLen = 0
			}
			if lineLen++; lineLen > lineLimit {
				return out, i, smtp.ErrTooLongLine
			}
		}
		switch state {
		case begin:
			if c == '.' {
				state = dot
				continue
			}
			if c == '\r' {
				state = cr
				break
			}
			state = mid
		case dot:
			if c == '\r' {
				state = dotCR
				continue
			}
			state = mid
		case dotCR:
			if c == '\n' {
				return out, i + 1, nil
			}
			state = mid
			if c == '\r' {
				state = cr
			}
		case cr:
			if c == '\n' {
				state = begin
				break
			}
			if c != '\r' {
				state = mid
			}
		case mid:
			if c == '\r' {
				state = cr
			}
		}
		out = append(out, c)
	}
	if maxSize > 0 && int64(len(out)) > maxSize {
		return out, len(in), smtp.ErrDataTooLarge
	}
	return out, len(in), io.ErrUnexpectedEOF
}

// chunkConn serves a fixed input in reads of random sizes.
type chunkConn struct {
	net.Conn
	in    []byte
	rnd   *rand.Rand
	whole bool // serve all of in at once
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.in), 1+c.rnd.IntN(64))
	if c.whole || c.rnd.IntN(8) == 0 {
		n = min(len(p), len(c.in))
	}
	copy(p, c.in[:n])
	c.in = c.in[n:]
	return n, nil
}
func (c *chunkConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }
func (c *chunkConn) Close() error                     { return nil }
func (c *chunkConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *chunkConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *chunkConn) SetDeadline(t time.Time) error    { return nil }

// TestFastDataMatchesGoSMTP feeds random content, rich in dots, CRs and LFs, through the fast path in random read
// and chunk sizes, and checks it against go-smtp's own reader: same content, same end, same error, and what
// follows the end of data reaches go-smtp after its end-of-data line.
func TestFastDataMatchesGoSMTP(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("..\r\r\n\nab")
	for iter := range 20000 {
		in := make([]byte, rnd.IntN(300))
		for i := range in {
			in[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		if rnd.IntN(2) == 0 {
			// Most messages end properly.
			in = append(in, "\r\n.\r\nQUIT\r\n"...)
		}
		var maxSize int64
		if rnd.IntN(4) == 0 {
			maxSize = int64(rnd.IntN(200) + 1)
		}
		lineLimit := 0
		if rnd.IntN(4) == 0 {
			lineLimit = rnd.IntN(40) + 2
		}
		wantOut, wantUsed, wantErr := refData(in, maxSize, lineLimit)

		c := newClientConn(&chunkConn{in: bytes.Clone(in), rnd: rnd}, time.Minute, time.Minute)
		d := c.beginData(maxSize, lineLimit)
		var got []byte
		var err error
		for {
			p := make([]byte, 1+rnd.IntN(100))
			var n int
			n, err = d.Read(p)
			got = append(got, p[:n]...)
			if err != nil {
				break
			}
		}
		if err == io.EOF {
			err = nil
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("case %d, input %q, max %d, line limit %d: "+format,
				append([]any{iter, in, maxSize, lineLimit}, args...)...)
		}
		// The line limit drops the read it fails in (as go-smtp's does): compare the content only otherwise.
		if !errors.Is(err, wantErr) && !(wantErr == nil && err == nil) {
			fail("error %v, want %v", err, wantErr)
		}
		if wantErr != smtp.ErrTooLongLine && !bytes.Equal(got, wantOut) {
			fail("content %q, want %q", got, wantOut)
		}
		c.endData(d)
		if wantErr == smtp.ErrTooLongLine || wantErr == io.ErrUnexpectedEOF {
			if _, err := c.Read(make([]byte, 10)); err == nil {
				fail("go-smtp can read on after %v", wantErr)
			}
			continue
		}
		// What go-smtp reads next: the end-of-data line, then the rest of the input after the message (after a
		// size error, the rest of the message is read and dropped first, under the line limit).
		var next []byte
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			next = append(next, buf[:n]...)
			if err != nil {
				break
			}
		}
		rest := in[wantUsed:]
		if wantErr == smtp.ErrDataTooLarge {
			_, used, err := refData(in, 0, lineLimit)
			if err != nil {
				if len(next) != 0 {
					fail("go-smtp got %q after %v while draining", next, err)
				}
				continue
			}
			rest = in[used:]
		}
		if want := ".\r\n" + string(rest); string(next) != want {
			fail("go-smtp then reads %q, want %q", next, want)
		}
	}
}

// TestFastDataReadiness checks when the relay may read DATA itself: only when go-smtp's buffer cannot hold
// anything after the DATA line.
func TestFastDataReadiness(t *testing.T) {
	for _, tc := range []struct {
		chunks []string
		ready  bool
	}{
		{[]string{"EHLO x\r\n", "DATA\r\n"}, true},
		{[]string{"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n"}, true},
		{[]string{"DA", "TA\r\n"}, true},
		{[]string{"DATA\r\nsome content\r\n"}, false},             // content behind DATA: it is in go-smtp's buffer
		{[]string{"DATA\r\nRSET\r\n"}, false},                     // the DATA line may be the first
		{[]string{"BDAT 6\r\nDATA\r\n"}, false},                   // chunk data is not lines
		{[]string{"x", "MAIL FROM:<a>\r\nDATA\r\n"}, false},       // the first line's start is unknown
		{[]string{"STARTTLS\r\n", "DATA\r\n"}, false},             // after STARTTLS, never again
		{[]string{"STAR", "TTLS\r\nRSET\r\n", "DATA\r\n"}, false}, // even split over reads
		{[]string{"EHLO x\r\n", "DATA"}, false},                   // not a complete line
	} {
		conn := &chunkConn{rnd: rand.New(rand.NewPCG(1, 2)), whole: true}
		c := newClientConn(conn, time.Minute, time.Minute)
		for _, ch := range tc.chunks {
			conn.in = []byte(ch)
			if _, err := c.Read(make([]byte, 4096)); err != nil {
				t.Fatal(err)
			}
		}
		if got := c.fastDataReady(); got != tc.ready {
			t.Errorf("%q: ready %v, want %v", tc.chunks, got, tc.ready)
		}
	}
}
