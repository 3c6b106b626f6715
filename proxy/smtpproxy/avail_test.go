package smtpproxy_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
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

// TestUpstreamKeptAliveDuringSlowUpload: an upstream that drops clients silent for longer than its timeout still
// holds the transaction after an upload that took several times that timeout, because the relay said NOOP
// meanwhile.
func TestUpstreamKeptAliveDuringSlowUpload(t *testing.T) {
	up := (&smtptest.Upstream{Configure: func(s *smtp.Server) { s.ReadTimeout = 500 * time.Millisecond }}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
		Limits: smtpproxy.Limits{UpstreamKeepalive: 100 * time.Millisecond}})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("DATA", 354)
	lines := strings.SplitAfter(simpleMessage, "\r\n")
	for _, l := range lines {
		c.Write(l)
		time.Sleep(250 * time.Millisecond) // the whole upload takes three times the upstream's timeout
	}
	c.Write(".\r\n")
	if r := c.Reply(); r.Code != 250 {
		t.Fatalf("final reply %v, want 250", r)
	}
	if msgs := up.Messages(); len(msgs) != 1 || string(msgs[0].Data) != simpleMessage {
		t.Fatalf("upstream got %d messages", len(msgs))
	}
	if n := srv.Stats().UpstreamKeepalives; n == 0 {
		t.Fatal("no keep-alive counted")
	}
}

// trickle writes s a byte at a time, pausing between bytes, and reports whether the relay closed the connection
// before all of it was written and its answer read.
func trickle(c net.Conn, s string, pause time.Duration) (closed bool) {
	for i := 0; i < len(s); i++ {
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return true
		}
		time.Sleep(pause)
	}
	return false
}

// readUntilClosed reads what the relay sends until it closes the connection (or 30 s pass) and returns it.
func readUntilClosed(c net.Conn) string {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var b bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// TestSlowCommandLineIsCutOff: a client sending its command a byte at a time, each well within the idle
// timeout, is cut off once the whole line took longer than the idle timeout.
func TestSlowCommandLineIsCutOff(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
		Limits: smtpproxy.Limits{IdleTimeout: time.Second}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan string, 1)
	go func() { got <- readUntilClosed(c) }()
	// 40 bytes, one every 200 ms: 8 s for the line, each byte a fifth of the timeout after the last.
	line := "EHLO a-very-slow-client.example.org\r\n"
	if !trickle(c, line, 200*time.Millisecond) {
		// All of it went out: the relay must not have answered it.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
	}
	out := <-got
	if strings.Contains(out, "250") {
		t.Fatalf("the slow EHLO was answered: %q", out)
	}
	if !strings.HasPrefix(out, "220 ") {
		t.Fatalf("no greeting: %q", out)
	}
	waitFor(t, func() bool { return srv.Stats().IdleTimeouts == 1 })
}

// TestSlowDataIsCutOff: a message trickling in below the minimum data rate is refused with 421, although
// every piece arrives well within the command timeout.
func TestSlowDataIsCutOff(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
		Limits: smtpproxy.Limits{CommandTimeout: 2 * time.Second, MinDataRate: 1000}})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("DATA", 354)
	// About 50 bytes a second, for up to 6 s: below the minimum rate.
	body := strings.Repeat("0123456789", 30)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < len(body); i += 10 {
			if _, err := c.Conn.Write([]byte(body[i : i+10])); err != nil {
				return // cut off
			}
			time.Sleep(200 * time.Millisecond)
		}
		c.Conn.Write([]byte("\r\n.\r\n"))
	}()
	r, err := c.ReadReply()
	<-done
	if err != nil || r.Code != 421 {
		t.Fatalf("reply %v %v, want 421 for a message below the minimum data rate", r, err)
	}
	if len(up.Messages()) != 0 {
		t.Fatal("the slow message was relayed")
	}
	waitFor(t, func() bool { return srv.Stats().CommandTimeouts == 1 })
}

// TestSessionsPerClientRefused: past the per-client cap the client gets 421 4.7.0 and the others go on.
func TestSessionsPerClientRefused(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Limits: smtpproxy.Limits{SessionsPerClient: 2}})
	a, b := hello(t, addr), hello(t, addr)
	c := smtptest.Dial(t, addr)
	if r := c.Reply(); r.Code != 421 || !strings.HasPrefix(r.Text(), "4.7.0 ") || !strings.Contains(r.Text(), "your address") {
		t.Fatalf("third session from one address: %v, want 421 4.7.0", r)
	}
	for _, s := range []*smtptest.Client{a, b} {
		if r := s.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
			t.Fatalf("an admitted session: %v", r)
		}
	}
	if n := srv.Stats().RefusedClientBusy; n != 1 {
		t.Fatalf("RefusedClientBusy = %d", n)
	}
}

// TestStressTimeout: above the stress threshold an idle session is cut off after the stress timeout, not the
// idle timeout.
func TestStressTimeout(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Limits: smtpproxy.Limits{IdleTimeout: time.Hour,
		StressSessions: 1, StressTimeout: time.Second}})
	hello(t, addr)
	c := hello(t, addr) // the second session: stress mode
	if r, err := c.ReadReply(); err != nil || r.Code != 421 {
		t.Fatalf("idle session under stress: %v %v, want 421 after the stress timeout", r, err)
	}
	st := srv.Stats()
	if st.StressEntered != 1 || st.IdleTimeouts == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestUpstreamRedialedAfterIdleDrop: when the upstream dropped the idle transaction anyway (no keep-alive, or a
// keep-alive that failed), the relay connects again, replays the envelope with its parameters, and delivers the
// message, once.
func TestUpstreamRedialedAfterIdleDrop(t *testing.T) {
	for name, keepalive := range map[string]time.Duration{"without keep-alive": -1, "keep-alive failed": time.Second} {
		t.Run(name, func(t *testing.T) {
			up := (&smtptest.Upstream{Configure: func(s *smtp.Server) {
				s.ReadTimeout = 500 * time.Millisecond
				s.EnableDSN = true
			}}).Start(t)
			addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
				Limits: smtpproxy.Limits{UpstreamKeepalive: keepalive}})
			c := hello(t, addr)
			c.Expect("MAIL FROM:<a@example.org> RET=HDRS", 250)
			c.Expect("RCPT TO:<b@example.net> NOTIFY=NEVER", 250)
			c.Expect("RCPT TO:<c@example.net>", 250)
			c.Expect("DATA", 354)
			for _, l := range strings.SplitAfter(simpleMessage, "\r\n") {
				c.Write(l)
				time.Sleep(250 * time.Millisecond) // the upstream drops the idle connection meanwhile
			}
			c.Write(".\r\n")
			if r := c.Reply(); r.Code != 250 {
				t.Fatalf("final reply %v, want 250", r)
			}
			msgs := up.Messages()
			if len(msgs) != 1 || string(msgs[0].Data) != simpleMessage ||
				strings.Join(msgs[0].Rcpts, ",") != "b@example.net,c@example.net" ||
				msgs[0].MailOpts.Return != smtp.DSNReturnHeaders ||
				len(msgs[0].RcptOpts[0].Notify) != 1 || msgs[0].RcptOpts[0].Notify[0] != smtp.DSNNotifyNever {
				t.Fatalf("upstream got %+v", msgs)
			}
			if st := srv.Stats(); st.UpstreamRedials != 1 || up.Sessions() != 2 {
				t.Fatalf("redials %d, upstream sessions %d", st.UpstreamRedials, up.Sessions())
			}
			// The session goes on, on the new connection.
			if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
				t.Fatalf("next message: %v", r)
			}
		})
	}
}

// TestNoRedialForAuthenticatedSession: the relay keeps no credentials, so an authenticated session whose
// upstream dropped the transaction gets a temporary failure, and nothing is delivered.
func TestNoRedialForAuthenticatedSession(t *testing.T) {
	up := (&smtptest.Upstream{Users: map[string]string{"alice": "secret"},
		Configure: func(s *smtp.Server) { s.ReadTimeout = 500 * time.Millisecond }}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr, AllowInsecureAuth: true,
		Limits: smtpproxy.Limits{UpstreamKeepalive: -1}})
	c := hello(t, addr)
	c.Expect("AUTH PLAIN AGFsaWNlAHNlY3JldA==", 235) // \0alice\0secret
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("DATA", 354)
	for _, l := range strings.SplitAfter(simpleMessage, "\r\n") {
		c.Write(l)
		time.Sleep(250 * time.Millisecond)
	}
	c.Write(".\r\n")
	if r := c.Reply(); r.Code != 421 {
		t.Fatalf("final reply %v, want 421", r)
	}
	if n := len(up.Messages()); n != 0 || srv.Stats().UpstreamRedials != 0 {
		t.Fatalf("%d messages delivered, %d redials", n, srv.Stats().UpstreamRedials)
	}
}
