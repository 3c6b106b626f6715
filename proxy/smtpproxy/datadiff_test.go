package smtpproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// diffRun is what one go-smtp server made of one client input: the message content its DATA handler read, how
// reading it ended, and the MAIL FROM commands it saw afterwards.
type diffRun struct {
	content []byte
	err     error
	after   []string
	fast    bool // the fast path read the content
	tee     bool // go-smtp read the content, the relay found its end (teeData)
	// outOfStep: the relay found an end go-smtp's reader did not see, and ended the session after the reply.
	outOfStep bool
}

type diffSession struct {
	c    *clientConn
	tap  *dataTap
	srv  *smtp.Server
	fast bool
	rnd  *rand.Rand
	run  *diffRun
	data bool
	// maxSize is the relay's size limit (go-smtp gets none: replyRewriter).
	maxSize int64
}

func (s *diffSession) Reset()        {}
func (s *diffSession) Logout() error { return nil }
func (s *diffSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.data {
		s.run.after = append(s.run.after, from)
	}
	return nil
}
func (s *diffSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (s *diffSession) Data(r io.Reader) error {
	s.data = true
	var fast *dataStream
	var tee *teeData
	switch {
	case s.fast && s.c.fastDataReady():
		fast = s.c.beginData(s.maxSize, s.srv.MaxLineLength)
		r = fast
		s.run.fast = true
	case !s.fast && s.c.dataLast:
		tee = newTeeData(s.tap, r, s.maxSize)
		r = tee
		s.run.tee = true
	default:
		r = &sizeLimit{r: r, n: s.maxSize}
	}
	var err error
	for {
		p := make([]byte, 1+s.rnd.IntN(100))
		var n int
		n, err = r.Read(p)
		s.run.content = append(s.run.content, p[:n]...)
		if err != nil {
			break
		}
	}
	if fast != nil {
		s.c.endData(fast)
	}
	if tee != nil {
		// As session.Data does.
		tee.d.limited = false
		_, _ = io.Copy(io.Discard, tee)
		if tee.stop() {
			s.run.outOfStep = true
			s.c.rerr = io.EOF
		}
	}
	if err == io.EOF {
		return nil
	}
	s.run.err = err
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return err
}

// serveOnce runs a go-smtp server, configured as the relay configures it, on one connection that delivers in
// in random reads; with fast, its DATA handler reads the content through the relay's fast path, as session.Data
// does, and otherwise through go-smtp's own reader, with the relay finding the end (teeData) as in TLS.
func serveOnce(t *testing.T, in []byte, cut int, seed uint64, maxSize int64, lineLimit int, fast bool) *diffRun {
	rnd := rand.New(rand.NewPCG(seed, 1))
	cc := newClientConn(&segmentConn{chunkConn: chunkConn{in: bytes.Clone(in), rnd: rnd}, cut: cut}, time.Minute,
		time.Minute)
	run := &diffRun{}
	tap := &dataTap{}
	var srv *smtp.Server
	srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &diffSession{c: cc, tap: tap, srv: srv, fast: fast, rnd: rand.New(rand.NewPCG(seed, 2)), run: run,
			maxSize: maxSize}, nil
	}))
	srv.Domain = "relay.test"
	srv.Debug = tap
	srv.MaxLineLength = lineLimit
	srv.ErrorLog = discardLog{}
	_ = srv.Serve(&oneConnListener{conn: cc, done: cc.closed})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("go-smtp did not finish the session: %v", err)
	}
	return run
}

// segmentConn is a chunkConn whose reads never cross the offset cut: a client that waits for the 354 before it
// sends the message, as most do.
type segmentConn struct {
	chunkConn
	cut int
}

func (c *segmentConn) Read(p []byte) (int, error) {
	if c.cut > 0 && len(p) > c.cut {
		p = p[:c.cut]
	}
	n, err := c.chunkConn.Read(p)
	c.cut -= n
	return n, err
}

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}

// TestFastDataDifferential runs the same hostile inputs through two go-smtp servers, one whose DATA handler reads
// with go-smtp's own reader (where the relay follows it with teeData, as it does under TLS) and one that reads
// with the relay's fast path, and compares what each made of them: the content, how it ended (end of data, size
// limit, line limit, connection end), and the commands go-smtp then read after the message. The reference is
// go-smtp's reader itself, not a model of it. Where go-smtp's reader sees no end and the relay's does (a CR before
// the final CRLF), the session following go-smtp ends after the message, and the fast path's goes on.
func TestFastDataDifferential(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("...\r\r\n\n\x00\xffab ")
	fastRuns, teeRuns, outOfStep := 0, 0, 0
	const iterations = 4000
	for iter := range iterations {
		body := make([]byte, rnd.IntN(400))
		for i := range body {
			body[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		in := []byte("EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
		cut := 0
		if rnd.IntN(4) != 0 {
			cut = len(in) // most clients wait for the 354
		}
		in = append(in, body...)
		switch rnd.IntN(4) {
		case 0: // the connection ends inside the message
		case 1: // a smuggling attempt after a lookalike end
			in = append(in, "\n.\nMAIL FROM:<smuggled@example.org>\r\n\r\n.\r\nMAIL FROM:<next@example.org>\r\nQUIT\r\n"...)
		default:
			in = append(in, "\r\n.\r\nMAIL FROM:<next@example.org>\r\nQUIT\r\n"...)
		}
		var maxSize int64 = 1 << 20
		if rnd.IntN(3) == 0 {
			maxSize = int64(rnd.IntN(300) + 1)
		}
		// go-smtp applies its line limit to each socket read, so a pipelined command after the message that is
		// itself too long fails the message before it; the fast path refuses that command instead, after a message
		// whose lines were all within the limit. The commands here fit every limit tried, so as not to compare that.
		lineLimit := 2000
		if rnd.IntN(3) == 0 {
			lineLimit = rnd.IntN(60) + 40
		}
		seed := rnd.Uint64()
		ref := serveOnce(t, in, cut, seed, maxSize, lineLimit, false)
		got := serveOnce(t, in, cut, seed, maxSize, lineLimit, true)
		if got.fast {
			fastRuns++
		}
		fail := func(what string, g, w any) {
			t.Helper()
			t.Fatalf("case %d, input %q, max %d, line limit %d: %s %v (fast path %v), go-smtp %v",
				iter, in, maxSize, lineLimit, what, g, got.fast, w)
		}
		// go-smtp applies its line limit to whole socket reads, the fast path to lines: where both limits are
		// passed close together either may be reported first. Either way the message is refused.
		limits := func(err error) bool {
			return errors.Is(err, smtp.ErrTooLongLine) || errors.Is(err, smtp.ErrDataTooLarge)
		}
		bothLimits := limits(got.err) && limits(ref.err)
		if !bothLimits && !sameErr(got.err, ref.err) {
			fail("ended with", got.err, ref.err)
		}
		if ref.err == nil && !bytes.Equal(got.content, ref.content) {
			fail("content", string(got.content), string(ref.content))
		}
		if ref.outOfStep {
			// The relay closes the session after the reply; what go-smtp reads then is not acted on
			// (TestBareCRBeforeEnd).
			outOfStep++
		} else if !bothLimits && !equalStrings(got.after, ref.after) {
			fail("then read MAIL FROM", got.after, ref.after)
		}
		if ref.tee {
			teeRuns++
		}
	}
	if teeRuns < iterations/10 || outOfStep == 0 {
		t.Fatalf("go-smtp's reader was followed in %d of %d messages, out of step in %d: the comparison says little",
			teeRuns, iterations, outOfStep)
	}
	if fastRuns < iterations/10 {
		t.Fatalf("the fast path read only %d of %d messages: the comparison says little", fastRuns, iterations)
	}
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	for _, e := range []error{smtp.ErrTooLongLine, smtp.ErrDataTooLarge, io.ErrUnexpectedEOF, io.EOF} {
		if errors.Is(a, e) || errors.Is(b, e) {
			return errors.Is(a, e) && errors.Is(b, e)
		}
	}
	return a.Error() == b.Error()
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
