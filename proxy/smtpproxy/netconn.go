package smtpproxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"

	"github.com/postern/postern/proxy/listener"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// clientConn is the client's connection as go-smtp sees it (below TLS, when there is TLS).
//
// It implements the two timeouts go-smtp cannot tell apart: every read gets a fresh deadline, IdleTimeout
// between commands and CommandTimeout while a message is being received, so a slow but progressing client is never
// cut off and a silent one always is. (Fresh within deadlineSlack: a deadline is only moved when it would move by
// more than that.)
//
// It coalesces writes: go-smtp flushes every reply line separately (an EHLO reply is ten system calls and ten
// packets), so writes are buffered and sent when the server next reads from the socket, which in SMTP is right
// after each complete reply, or after the last reply to a group of pipelined commands. Close sends what is left.
//
// And it lets the relay read DATA content itself, past go-smtp's byte-at-a-time reader (datareader.go).
//
// It also lets the relay end the session right after a reply (closeAfterWrite), which is how a 421 from inside a
// go-smtp callback closes the connection.
type clientConn struct {
	net.Conn
	command   time.Duration
	reads     listener.ReadDeadlines // PhaseCommand while a message is being received
	closeNext atomic.Bool            // close after the next write
	heard     atomic.Bool            // the client sent something
	failReads atomic.Bool            // the client timed out: every further read fails at once
	closeOnce sync.Once
	closed    chan struct{}
	// timedOut is told once when a read fails at its deadline, with the phase it was in.
	timedOut     func(listener.Phase)
	timedOutOnce sync.Once

	wmu  sync.Mutex
	wbuf []byte
	werr error
	wdl  time.Time // the write deadline in force

	// Read side, for the DATA fast path (datareader.go); used by go-smtp's goroutine only.
	rbuf   *[]byte // read ahead from the socket, handed to go-smtp before anything else; nil when empty
	rpos   int
	rerr   error  // a read error of the fast path, returned to go-smtp from then on
	inject string // the end-of-data line for go-smtp's own DATA reader, after the fast path
	noFast bool   // the fast path is off for this session (TLS, or STARTTLS seen)
	readTracker

	// replies rewrites what go-smtp writes in plain text (replies.go); nil: only sequenceReply.
	replies *replyRewriter
	// handover is set when the relay answered STARTTLS (replies.go): go-smtp's plain-text connection is over
	// (its reads end, its writes are dropped, its Close does not close the socket but closes handedOver), and
	// the socket is the TLS connection's from then on (socketSide).
	handover     atomic.Bool
	handedOver   chan struct{}
	handOverOnce sync.Once
}

// maxPending is the most a clientConn buffers before writing anyway.
const maxPending = 16 << 10

func newClientConn(c net.Conn, idle, command time.Duration) *clientConn {
	cc := &clientConn{Conn: c, command: command, closed: make(chan struct{}), handedOver: make(chan struct{}),
		readTracker: readTracker{aligned: true}}
	cc.reads.Timeouts = listener.Timeouts{Idle: idle, Command: command}
	return cc
}

func (c *clientConn) Read(p []byte) (int, error) {
	if c.handover.Load() {
		return 0, io.EOF
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	if c.inject != "" {
		n := copy(p, c.inject)
		c.noteChunk(p[:n])
		c.inject = c.inject[n:]
		return n, nil
	}
	if c.rbuf != nil {
		n := copy(p, (*c.rbuf)[c.rpos:])
		c.noteChunk(p[:n])
		if c.rpos += n; c.rpos == len(*c.rbuf) {
			c.releaseReadBuf()
		}
		return n, nil
	}
	n, err := c.readSocket(p)
	c.noteChunk(p[:n])
	return n, err
}

// readSocket sends the pending replies, then reads from the connection under the timeout in force.
func (c *clientConn) readSocket(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	if c.failReads.Load() {
		// go-smtp drains the rest of a message after Data returns; after a timeout that would wait a second
		// full timeout before the 421 could be written.
		return 0, os.ErrDeadlineExceeded
	}
	if t, set := c.reads.Next(time.Now()); set {
		if err := c.Conn.SetReadDeadline(t); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	if c.reads.MinRate > 0 && n > 0 {
		c.reads.Progress(n, time.Now())
	}
	if err != nil && c.timedOut != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOutOnce.Do(func() { c.timedOut(c.reads.Phase()) })
	}
	if n > 0 && !c.heard.Load() {
		c.heard.Store(true)
	}
	return n, err
}

// fill reads into the empty read-ahead buffer.
func (c *clientConn) fill() error {
	if c.rbuf == nil {
		c.rbuf = readBufs.Get().(*[]byte)
	}
	b := (*c.rbuf)[:cap(*c.rbuf)]
	for {
		n, err := c.readSocket(b)
		if n > 0 {
			*c.rbuf, c.rpos = b[:n], 0
			return nil
		}
		if err != nil {
			c.releaseReadBuf()
			return err
		}
	}
}

func (c *clientConn) releaseReadBuf() {
	if c.rbuf != nil {
		readBufs.Put(c.rbuf)
		c.rbuf, c.rpos = nil, 0
	}
}

// Write is go-smtp's write of a reply line in plain text.
func (c *clientConn) Write(p []byte) (int, error) {
	if c.handover.Load() {
		// go-smtp answering what the client pipelined after STARTTLS: never sent (RFC 3207 §4.2).
		return len(p), nil
	}
	out, startTLS := c.replies.rewrite(p)
	n, err := c.write(out)
	if startTLS && err == nil {
		// The "220 Ready to start TLS" goes out now; what the client sent after STARTTLS is dropped.
		if err = c.flush(); err == nil {
			c.releaseReadBuf()
			c.inject = ""
			c.noFast = true
			c.handover.Store(true)
		}
	}
	if err != nil {
		return 0, err
	}
	if n < len(out) {
		return 0, io.ErrShortWrite
	}
	return len(p), nil
}

// write buffers p (see flush), and sends it when enough is pending.
func (c *clientConn) write(p []byte) (int, error) {
	c.wmu.Lock()
	if c.werr != nil {
		c.wmu.Unlock()
		return 0, c.werr
	}
	c.wbuf = append(c.wbuf, p...)
	// A reply: the wait for the next request starts when it has gone out.
	c.reads.Request()
	var err error
	if len(c.wbuf) >= maxPending {
		err = c.flushLocked()
	}
	c.wmu.Unlock()
	if c.closeNext.Load() {
		c.closeSocket()
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *clientConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *clientConn) flushLocked() error {
	if c.werr != nil || len(c.wbuf) == 0 {
		return c.werr
	}
	_, err := c.Conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	if cap(c.wbuf) > maxPending {
		c.wbuf = nil
	}
	c.werr = err
	return err
}

// closeAfterWrite makes the next reply the last one.
func (c *clientConn) closeAfterWrite() { c.closeNext.Store(true) }

// Close is go-smtp's close of its connection: the end of the session, or of its plain-text part when the relay
// answered STARTTLS.
func (c *clientConn) Close() error {
	if c.handover.Load() {
		c.handOverOnce.Do(func() { close(c.handedOver) })
		return nil
	}
	return c.closeSocket()
}

// closeSocket sends what is pending and closes the connection.
func (c *clientConn) closeSocket() error {
	var err error
	c.closeOnce.Do(func() {
		c.flush()
		err = c.Conn.Close()
		close(c.closed)
	})
	return err
}

// SetReadDeadline is a no-op: clientConn owns the read deadlines (go-smtp sets them only when its own
// ReadTimeout is configured, which the relay never does; crypto/tls never does).
func (c *clientConn) SetReadDeadline(time.Time) error { return nil }

// SetDeadline sets the write deadline only, for the same reason.
func (c *clientConn) SetDeadline(t time.Time) error { return c.SetWriteDeadline(t) }

// SetWriteDeadline is called by go-smtp before every reply. A deadline later than the one in force lets what is
// pending go out under it, with the next reply (so that replies to pipelined commands go out together), and is
// only passed on when it moved by more than deadlineSlack. Otherwise what is pending is written first, under the
// deadline in force when it was written: crypto/tls sets a deadline in the past after its close_notify alert
// ("any subsequent writes will fail"), which would otherwise lose the last reply.
func (c *clientConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !t.IsZero() && !c.wdl.IsZero() && !t.Before(c.wdl) {
		if t.Sub(c.wdl) <= deadlineSlack(c.command) {
			return nil
		}
	} else {
		c.flushLocked()
	}
	c.wdl = t
	return c.Conn.SetWriteDeadline(t)
}

// deadlineSlack is listener.Slack: see there.
func deadlineSlack(d time.Duration) time.Duration { return listener.Slack(d) }

// socketSide is the client connection below TLS: what crypto/tls reads and writes. It has clientConn's timeouts
// and write coalescing, and none of what clientConn does for go-smtp in plain text.
type socketSide struct{ *clientConn }

func (s socketSide) Read(p []byte) (int, error) {
	c := s.clientConn
	if c.rerr != nil {
		return 0, c.rerr
	}
	if c.rbuf != nil {
		// Read while the message was evaluated (watchGone).
		n := copy(p, (*c.rbuf)[c.rpos:])
		if c.rpos += n; c.rpos == len(*c.rbuf) {
			c.releaseReadBuf()
		}
		return n, nil
	}
	return c.readSocket(p)
}

func (s socketSide) Write(p []byte) (int, error) { return s.write(p) }
func (s socketSide) Close() error                { return s.closeSocket() }

// tlsView is the client connection inside TLS as go-smtp sees it: the TLS connection, with the relay's rewriting
// of go-smtp's replies (go-smtp is given no TLS of its own: the relay does the handshake, for implicit TLS and
// STARTTLS alike, so that it sees the plain text both ways).
type tlsView struct {
	*tls.Conn
	cc      *clientConn
	replies *replyRewriter
	// noGreeting drops go-smtp's greeting: after STARTTLS the session goes on, and the client expects none.
	noGreeting bool
	track      readTracker // used by go-smtp's goroutine only
}

func (v *tlsView) Read(p []byte) (int, error) {
	n, err := v.Conn.Read(p)
	v.track.note(p[:n], v.cc.reads.Phase())
	return n, err
}

func (v *tlsView) Write(p []byte) (int, error) {
	if v.noGreeting {
		v.noGreeting = false
		if len(p) > 4 && string(p[:4]) == "220 " {
			return len(p), nil
		}
	}
	out, _ := v.replies.rewrite(p)
	if _, err := v.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// oneConnListener hands a single connection to a go-smtp server. Its second Accept blocks until that connection is
// closed (or handed over to TLS) and then fails, which makes smtp.Server.Serve return exactly when the session, or
// its plain-text part, is over.
type oneConnListener struct {
	conn     net.Conn      // the client connection as go-smtp should see it
	done     chan struct{} // closed when the connection is closed
	handover chan struct{} // closed when go-smtp's plain-text connection ended for STARTTLS
	used     bool
}

var errSessionOver = &net.OpError{Op: "accept", Net: "postern", Err: net.ErrClosed}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.used {
		l.used = true
		return l.conn, nil
	}
	select {
	case <-l.done:
	case <-l.handover:
	}
	return nil, errSessionOver
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// replayConn returns pending before reading from the connection. The go-smtp client always starts by reading a
// greeting; after the relay negotiated STARTTLS with the upstream itself, the greeting it read before the
// upgrade is replayed so that the client can take over the encrypted connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// upConn is the upstream connection as the go-smtp client sees it. It holds writes until the relay next reads,
// which in SMTP is when it waits for the reply: a command, or a whole message with its final dot, then goes out
// in one system call (and one packet) instead of one per piece. Whatever is written is under the deadline in
// force when the reply is awaited, and every wait for a reply has one (go-smtp's CommandTimeout and
// SubmissionTimeout, the relay's own elsewhere). The buffer is taken from a pool and returned once sent, so an
// idle session holds none.
//
// It also sets deadlines lazily. go-smtp's client sets one before each command and clears it after; here a
// deadline within deadlineSlack after the one in force leaves that one, and clearing does nothing. That is safe
// because every use of the upstream connection sets a deadline first (go-smtp's client before each command and
// each wait for a reply, the relay before each write and read of its own), so a deadline left behind only ever
// expires while nothing is waiting.
type upConn struct {
	net.Conn
	buf      *[]byte
	werr     error
	timeout  time.Duration
	rdl, wdl time.Time
}

func (c *upConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *upConn) SetReadDeadline(t time.Time) error {
	return c.setDeadline(&c.rdl, t, c.Conn.SetReadDeadline)
}

func (c *upConn) SetWriteDeadline(t time.Time) error {
	return c.setDeadline(&c.wdl, t, c.Conn.SetWriteDeadline)
}

func (c *upConn) setDeadline(cur *time.Time, t time.Time, set func(time.Time) error) error {
	if t.IsZero() || !t.Before(*cur) && t.Sub(*cur) <= deadlineSlack(c.timeout) {
		return nil
	}
	*cur = t
	return set(t)
}

// upBufSize is the most an upConn holds before writing; larger writes go straight through.
const upBufSize = 32 << 10

var upBufs = sync.Pool{New: func() any { b := make([]byte, 0, upBufSize); return &b }}

func (c *upConn) Write(p []byte) (int, error) {
	if c.werr != nil {
		return 0, c.werr
	}
	if c.buf != nil && len(*c.buf)+len(p) > upBufSize {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	if len(p) >= upBufSize {
		n, err := c.Conn.Write(p)
		if err != nil {
			c.werr = err
		}
		return n, err
	}
	if c.buf == nil {
		c.buf = upBufs.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	return len(p), nil
}

// flush writes what is held and returns the buffer to the pool.
func (c *upConn) flush() error {
	if c.buf == nil {
		return c.werr
	}
	b := c.buf
	c.buf = nil
	var err error
	if c.werr == nil && len(*b) > 0 {
		if _, err = c.Conn.Write(*b); err != nil {
			c.werr = err
		}
	}
	*b = (*b)[:0]
	upBufs.Put(b)
	if err != nil {
		return err
	}
	return c.werr
}

func (c *upConn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}
