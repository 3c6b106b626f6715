package smtpproxy

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// clientConn is the client's connection as go-smtp sees it (below TLS, when there is TLS).
//
// It implements the two timeouts go-smtp cannot tell apart: every read gets a fresh deadline, IdleTimeout
// between commands and CommandTimeout while a message is being received, so a slow but progressing client is never
// cut off and a silent one always is.
//
// It coalesces writes: go-smtp flushes every reply line separately (an EHLO reply is ten system calls and ten
// packets), so writes are buffered and sent when the server next reads, which in SMTP is right after each complete
// reply. Close sends what is left.
//
// It also lets the relay end the session right after a reply (closeAfterWrite), which is how a 421 from inside a
// go-smtp callback closes the connection.
type clientConn struct {
	net.Conn
	idle, command time.Duration
	inCommand     atomic.Bool // true while a message is being received
	closeNext     atomic.Bool // close after the next write
	failReads     atomic.Bool // the client timed out: every further read fails at once
	closeOnce     sync.Once
	closed        chan struct{}

	wmu  sync.Mutex
	wbuf []byte
	werr error
}

// maxPending is the most a clientConn buffers before writing anyway.
const maxPending = 16 << 10

func newClientConn(c net.Conn, idle, command time.Duration) *clientConn {
	return &clientConn{Conn: c, idle: idle, command: command, closed: make(chan struct{})}
}

func (c *clientConn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	if c.failReads.Load() {
		// go-smtp drains the rest of a message after Data returns; after a timeout that would wait a second
		// full timeout before the 421 could be written.
		return 0, os.ErrDeadlineExceeded
	}
	d := c.idle
	if c.inCommand.Load() {
		d = c.command
	}
	if err := c.Conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *clientConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	if c.werr != nil {
		c.wmu.Unlock()
		return 0, c.werr
	}
	c.wbuf = append(c.wbuf, p...)
	var err error
	if len(c.wbuf) >= maxPending {
		err = c.flushLocked()
	}
	c.wmu.Unlock()
	if c.closeNext.Load() {
		c.Close()
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

func (c *clientConn) Close() error {
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

// SetWriteDeadline first writes what is pending, under the deadline in force when it was written: crypto/tls
// sets a deadline in the past after its close_notify alert ("any subsequent writes will fail"), which would
// otherwise lose the last reply.
func (c *clientConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.flushLocked()
	return c.Conn.SetWriteDeadline(t)
}

// oneConnListener hands a single connection to a go-smtp server. Its second Accept blocks until that connection is
// closed and then fails, which makes smtp.Server.Serve return exactly when the session is over.
type oneConnListener struct {
	conn net.Conn      // the client connection as go-smtp should see it (TLS for implicit TLS)
	done chan struct{} // closed when the connection is closed
	used bool
}

var errSessionOver = &net.OpError{Op: "accept", Net: "postern", Err: net.ErrClosed}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.used {
		l.used = true
		return l.conn, nil
	}
	<-l.done
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
