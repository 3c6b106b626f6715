package smtpproxy_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// slowReader is an upstream connection that reads at most chunk bytes every pause, with a small receive buffer,
// as a slow link or a busy upstream would.
type slowReader struct {
	net.Conn
	chunk int
	pause time.Duration
}

func (c *slowReader) Read(p []byte) (int, error) {
	time.Sleep(c.pause)
	return c.Conn.Read(p[:min(len(p), c.chunk)])
}

// smallBufferDial dials the upstream with a small send buffer, so that the kernel cannot take a whole test
// message at once and the relay's writes wait on the upstream's reading.
func smallBufferDial(addr string) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.(*net.TCPConn).SetWriteBuffer(16 << 10)
		}
		return c, err
	}
}

// TestUpstreamWriteDeadlinePerProgress: a message that takes several command timeouts to reach an upstream that
// reads steadily is delivered; the timeout bounds each write, not the whole message.
func TestUpstreamWriteDeadlinePerProgress(t *testing.T) {
	up := (&smtptest.Upstream{WrapConn: func(c net.Conn) net.Conn {
		c.(*net.TCPConn).SetReadBuffer(16 << 10)
		return &slowReader{Conn: c, chunk: 8 << 10, pause: 8 * time.Millisecond}
	}}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Dial: smallBufferDial(up.Addr),
		Limits: smtpproxy.Limits{CommandTimeout: time.Second}})
	c := hello(t, addr)
	// About 3 MB: at most 1 MB/s upstream, so three times the timeout at least.
	line := strings.Repeat("x", 998) + "\r\n"
	body := simpleMessage + strings.Repeat(line, 3<<10)
	r := c.Send("a@example.org", []string{"b@example.net"}, body)
	if r.Code != 250 {
		t.Fatalf("final reply %v, want 250", r)
	}
	msgs := up.Messages()
	if len(msgs) != 1 || !bytes.Equal(msgs[0].Data, []byte(body)) {
		t.Fatalf("upstream got %d messages, want the message intact", len(msgs))
	}
}
