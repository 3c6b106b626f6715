package smtpproxy

import (
	"errors"
	"net"
	"time"
)

// While a message is being evaluated nobody reads from the client: go-smtp's goroutine is inside Data (or, for
// BDAT, waits for the Data goroutine's result), so a client that left is noticed only at the next read, after its
// plugin chain ran to the end, for nothing. watchGone reads from the socket in that time, under the same rule the
// fast DATA path follows: only the session's goroutine of the moment reads, and bytes it takes are handed to
// go-smtp first, in order (rbuf), so nothing a pipelining client sends is lost or reordered. Under TLS the bytes
// are TLS records, handed back to crypto/tls the same way; a TLS client that says close_notify before leaving is
// therefore seen as sending data and is noticed at the next read, as before.

// watchGone starts watching the client connection and calls gone (on another goroutine) if the client closes or
// resets it. stop ends the watch and must be called before anyone else reads from the connection. There is no
// watch when the relay already read ahead (the client sent more than the message) or a read already failed.
func (c *clientConn) watchGone(gone func()) (stop func()) {
	if c.rbuf != nil || c.inject != "" || c.rerr != nil || c.failReads.Load() {
		return func() {}
	}
	bp := readBufs.Get().(*[]byte)
	var (
		n    int
		err  error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		n, err = c.Conn.Read((*bp)[:cap(*bp)])
		if n == 0 && err != nil && !isTimeout(err) {
			gone()
		}
	}()
	return func() {
		// A deadline in the past ends the read at once; the session's own deadline is put back after.
		c.Conn.SetReadDeadline(time.Unix(1, 0))
		<-done
		if t, _ := c.reads.Next(time.Now()); !t.IsZero() {
			c.Conn.SetReadDeadline(t)
		} else {
			c.Conn.SetReadDeadline(time.Time{})
		}
		switch {
		case n > 0:
			*bp = (*bp)[:n]
			c.rbuf, c.rpos = bp, 0
			return
		case err != nil && !isTimeout(err):
			c.rerr = err
		}
		readBufs.Put(bp)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
