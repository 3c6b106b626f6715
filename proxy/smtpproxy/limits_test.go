package smtpproxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/postern/postern/proxy/embedsmtp"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

func expectClosed(t *testing.T, c *smtptest.Client) {
	t.Helper()
	if r, err := c.ReadReply(); err == nil {
		t.Fatalf("connection still open, got %v", r)
	}
}

func TestSessionLimit(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Limits: smtpproxy.Limits{Sessions: 2}})
	a, b := hello(t, addr), hello(t, addr)
	c := smtptest.Dial(t, addr)
	if r := c.Reply(); r.Code != 421 || !strings.HasPrefix(r.Text(), "4.3.2") {
		t.Fatalf("third session: %v, want 421 4.3.2", r)
	}
	expectClosed(t, c)
	a.Expect("QUIT", 221)
	expectClosed(t, a)
	// A slot is free again.
	waitFor(t, func() bool {
		c := smtptest.Dial(t, addr)
		defer c.Conn.Close()
		return c.Reply().Code == 220
	})
	b.Expect("NOOP", 250)
}

func TestRecipientLimit(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Limits: smtpproxy.Limits{Recipients: 2}})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b1@example.net>", 250)
	c.Expect("RCPT TO:<b2@example.net>", 250)
	if r := c.Cmd("RCPT TO:<b3@example.net>"); r.Code != 452 || !strings.HasPrefix(r.Text(), "4.5.3") {
		t.Fatalf("third recipient: %v, want 452 4.5.3", r)
	}
}

func TestLineLengthLimit(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Limits: smtpproxy.Limits{LineLength: 1000}})
	c := hello(t, addr)
	if r := c.Cmd("MAIL FROM:<" + strings.Repeat("a", 1200) + "@example.org>"); r.Code != 500 {
		t.Fatalf("long command: %v, want 500", r)
	}
	expectClosed(t, c)

	c = hello(t, addr)
	r := transaction(c, "a@example.org", "b@example.net", "Subject: x\r\n\r\n"+strings.Repeat("z", 1200)+"\r\n")
	if r.Code != 500 || !strings.HasPrefix(r.Text(), "5.4.0") {
		t.Fatalf("long message line: %v, want 500 5.4.0", r)
	}
	if len(up.Messages()) != 0 {
		t.Fatal("message with an over-long line relayed")
	}
}

func TestIdleTimeout(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Limits: smtpproxy.Limits{IdleTimeout: time.Second}})
	c := hello(t, addr)
	if r := c.Reply(); r.Code != 421 {
		t.Fatalf("silent client: %v, want 421", r)
	}
	expectClosed(t, c)
}

func TestCommandTimeoutInData(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
		Limits: smtpproxy.Limits{CommandTimeout: time.Second, IdleTimeout: time.Minute}})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("DATA", 354)
	c.Write("Subject: half a message\r\n")
	if r := c.Reply(); r.Code != 421 {
		t.Fatalf("client stalled in DATA: %v, want 421", r)
	}
	expectClosed(t, c)
	if len(up.Messages()) != 0 {
		t.Fatal("partial message relayed")
	}
}

func TestErrorLimit(t *testing.T) {
	up := (&smtptest.Upstream{OnRcpt: func(string, *smtp.RcptOptions) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown user"}
	}}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Limits: smtpproxy.Limits{Errors: 3}})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<x1@example.net>", 550)
	c.Expect("RCPT TO:<x2@example.net>", 550)
	if r := c.Cmd("RCPT TO:<x3@example.net>"); r.Code != 421 || !strings.HasPrefix(r.Text(), "4.7.0") {
		t.Fatalf("third error: %v, want 421 4.7.0", r)
	}
	expectClosed(t, c)
}

func TestProxyProtocol(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	f := &testFilter{}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f,
		ProxyProtocol: smtpproxy.ProxyProtocol{Trusted: []string{"127.0.0.0/8"}, HeaderTimeout: time.Second}})
	t.Run("v1", func(t *testing.T) {
		c := smtptest.Dial(t, addr)
		c.Write("PROXY TCP4 203.0.113.7 192.0.2.1 56324 25\r\n")
		c.Expect("", 220)
	})
	t.Run("v2", func(t *testing.T) {
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::5"), Port: 40000},
			&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 25})
		b, err := h.Format()
		if err != nil {
			t.Fatal(err)
		}
		c := smtptest.Dial(t, addr)
		c.Write(string(b))
		c.Expect("", 220)
	})
	calls := f.at(pluginhost.HookConnect)
	if len(calls) != 2 || calls[0].env.ClientIP != "203.0.113.7" || calls[0].env.ClientPort != 56324 ||
		calls[1].env.ClientIP != "2001:db8::5" || calls[1].env.ClientPort != 40000 {
		t.Fatalf("client addresses seen: %+v", calls)
	}
	t.Run("missing header", func(t *testing.T) {
		c := smtptest.Dial(t, addr)
		c.Write("EHLO client.test\r\n")
		expectClosed(t, c)
	})
	t.Run("untrusted source", func(t *testing.T) {
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
			ProxyProtocol: smtpproxy.ProxyProtocol{Trusted: []string{"10.0.0.0/8"}}})
		c := smtptest.Dial(t, addr)
		c.Write("PROXY TCP4 203.0.113.7 192.0.2.1 56324 25\r\n")
		expectClosed(t, c)
	})
}

func TestXClient(t *testing.T) {
	caps := []string{"PIPELINING", "8BITMIME", "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"}
	t.Run("sent", func(t *testing.T) {
		up := (&smtptest.RawUpstream{Caps: caps}).Start(t)
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, XClient: true})
		c := hello(t, addr)
		if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
			t.Fatalf("send: %v", r)
		}
		cmds := up.Commands()
		var xc string
		for i, cmd := range cmds {
			if strings.HasPrefix(cmd, "XCLIENT") {
				xc = cmd
				if i+1 >= len(cmds) || !strings.HasPrefix(cmds[i+1], "EHLO ") {
					t.Fatalf("no EHLO after XCLIENT: %q", cmds)
				}
			}
		}
		if !regexpMatch(`^XCLIENT NAME=\[UNAVAILABLE\] ADDR=127\.0\.0\.1 PORT=\d+ PROTO=ESMTP HELO=client\.test$`, xc) {
			t.Fatalf("XCLIENT line %q (commands %q)", xc, cmds)
		}
		if len(up.Messages()) != 1 {
			t.Fatal("not relayed")
		}
	})
	t.Run("not offered", func(t *testing.T) {
		up := (&smtptest.RawUpstream{}).Start(t)
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, XClient: true})
		// Refused: relayed without XCLIENT, the upstream would take the relay for the client.
		expectUpstreamRefusal(t, addr)
	})
	t.Run("refused", func(t *testing.T) {
		up := (&smtptest.RawUpstream{Caps: caps, Replies: map[string]string{"XCLIENT": "550 5.7.0 insufficient authorization"}}).Start(t)
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, XClient: true})
		c := smtptest.Dial(t, addr)
		c.Expect("", 220)
		if r := c.Cmd("EHLO client.test"); r.Code != 421 {
			t.Fatalf("EHLO: %v, want 421", r)
		}
		expectClosed(t, c)
	})
}

func TestGracefulShutdown(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
	idle := hello(t, addr)
	busy := hello(t, addr)
	busy.Expect("MAIL FROM:<a@example.org>", 250)
	busy.Expect("RCPT TO:<b@example.net>", 250)
	busy.Expect("DATA", 354)
	busy.Write(simpleMessage[:20])

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	if r := idle.Reply(); r.Code != 421 {
		t.Fatalf("idle session: %v, want 421", r)
	}
	expectClosed(t, idle)
	// No new sessions.
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(time.Second))
		b := make([]byte, 3)
		_, err = io.ReadFull(c, b)
		return err != nil || string(b) == "421"
	})
	busy.Write(simpleMessage[20:] + ".\r\n")
	if r := busy.Reply(); r.Code != 250 {
		t.Fatalf("message in flight: %v, want 250", r)
	}
	expectClosed(t, busy)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if len(up.Messages()) != 1 {
		t.Fatal("message in flight was not delivered")
	}
}

func TestShutdownDeadline(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
	stuck := hello(t, addr)
	stuck.Expect("MAIL FROM:<a@example.org>", 250)
	stuck.Expect("RCPT TO:<b@example.net>", 250)
	stuck.Expect("DATA", 354)
	stuck.Write(simpleMessage[:20])
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want deadline exceeded", err)
	}
	expectClosed(t, stuck)
	if len(up.Messages()) != 0 {
		t.Fatal("a cut-off message reached the upstream")
	}
}

func TestEmbeddedUpstream(t *testing.T) {
	dir := t.TempDir()
	emb, err := embedsmtp.New(embedsmtp.Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: "embedded", Embedded: emb})
	c := hello(t, addr)
	r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
	if r.Code != 250 || !strings.HasPrefix(r.Text(), "2.0.0 Ok: stored as ") {
		t.Fatalf("reply %v", r)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("stored files: %v", files)
	}
	b, _ := os.ReadFile(files[0])
	if string(b) != simpleMessage {
		t.Fatalf("stored %q", b)
	}
	if !strings.Contains(files[0], strings.TrimPrefix(r.Text(), "2.0.0 Ok: stored as ")) {
		t.Fatalf("file %s does not carry the id of the reply %v", files[0], r)
	}
}

func TestShutdownImplicitTLSBeforeEHLO(t *testing.T) {
	cert := smtptest.NewCert(t)
	up := (&smtptest.Upstream{}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
		TLS: smtpproxy.TLS{Mode: smtpproxy.TLSImplicit, CertFile: cert.CertFile, KeyFile: cert.KeyFile}})
	tc, err := tls.Dial("tcp", addr, cert.ClientConfig("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	c := smtptest.NewClient(t, tc)
	c.Expect("", 220)
	go srv.Shutdown(context.Background())
	// The 421 comes inside TLS: a plain-text line would be a TLS error here.
	if r := c.Reply(); r.Code != 421 {
		t.Fatalf("reply %v, want 421", r)
	}
}

func TestShutdownDeadlineWhileUpstreamHangs(t *testing.T) {
	// An upstream that accepts and never greets: the relay waits for it at EHLO.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: ln.Addr().String()})
	c := smtptest.Dial(t, addr)
	c.Expect("", 220)
	c.Write("EHLO client.test\r\n")
	time.Sleep(100 * time.Millisecond) // let EHLO reach the relay and wait for the upstream
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown hangs while the upstream connection is being opened (the command timeout is 5 minutes)")
	}
	if r, err := c.ReadReply(); err == nil && r.Code != 421 {
		t.Fatalf("client got %v", r)
	}
}
