package smtpproxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// TestResetBetweenBDATChunks: RSET or EHLO after a chunk that is not the last aborts the transfer and the session
// goes on (RFC 3030 §4): the whole EHLO reply arrives, nothing reaches the upstream, the next message goes through.
func TestResetBetweenBDATChunks(t *testing.T) {
	for _, cmd := range []string{"RSET", "EHLO again.test"} {
		t.Run(cmd, func(t *testing.T) {
			up := (&smtptest.Upstream{}).Start(t)
			addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
			c := hello(t, addr)
			c.Expect("MAIL FROM:<a@example.org>", 250)
			c.Expect("RCPT TO:<b@example.net>", 250)
			part := simpleMessage[:30]
			c.Write(fmt.Sprintf("BDAT %d\r\n%s", len(part), part))
			c.Expect("", 250)
			r := c.Expect(cmd, 250)
			if cmd != "RSET" && !hasLine(r, "CHUNKING") {
				t.Fatalf("EHLO reply cut short: %v", r)
			}
			c.Expect("NOOP", 250)
			if r := c.Send("a@example.org", []string{"c@example.net"}, simpleMessage); r.Code != 250 {
				t.Fatalf("next message: %v", r)
			}
			m := up.Messages()
			if len(m) != 1 || len(m[0].Rcpts) != 1 || m[0].Rcpts[0] != "c@example.net" {
				t.Fatalf("upstream got %+v", m)
			}
		})
	}
}

// TestCommandSyntax: what Postfix refuses is refused, with Postfix's replies, and never reaches the upstream; the
// session goes on after each refusal.
func TestCommandSyntax(t *testing.T) {
	up := (&smtptest.RawUpstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})

	c := smtptest.Dial(t, addr)
	c.Expect("", 220)
	if r := c.Cmd("EHLO client\x00.test"); r.Code != 501 {
		t.Fatalf("EHLO with NUL: %v, want 501", r)
	}
	c.Expect("EHLO client.test", 250)
	if r := c.Cmd("DATA"); r.Code != 503 || r.Text() != "5.5.1 Missing RCPT TO command." {
		t.Fatalf("DATA without MAIL: %v, want 503 5.5.1", r)
	}
	if r := c.Cmd("RCPT TO:<b@example.net>"); r.Code != 503 {
		t.Fatalf("RCPT without MAIL: %v, want 503", r)
	}
	for _, tc := range []struct{ cmd, reply string }{
		{"MAIL FROM:<a\x00@example.org>", "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<a\r@example.org>", "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<jörg@example.org>", "553 5.6.7 Must declare SMTPUTF8 to send unicode address"},
	} {
		if r := c.Cmd(tc.cmd); r.String() != tc.reply {
			t.Errorf("%q: %v, want %s", tc.cmd, r, tc.reply)
		}
	}
	// A later EHLO with a NUL: go-smtp has answered it, so the next MAIL is refused until a good EHLO.
	c.Expect("EHLO again\x00.test", 250)
	if r := c.Cmd("MAIL FROM:<a@example.org>"); r.Code != 501 {
		t.Fatalf("MAIL after EHLO with NUL: %v, want 501", r)
	}
	c.Expect("EHLO again.test", 250)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	if r := c.Cmd("DATA"); r.Code != 503 {
		t.Fatalf("DATA without RCPT: %v, want 503", r)
	}
	for _, tc := range []struct{ cmd, reply string }{
		{"RCPT TO:<b\x00@example.net>", "501 5.1.3 Bad recipient address syntax"},
		{"RCPT TO:<b\r@example.net>", "501 5.1.3 Bad recipient address syntax"},
		{"RCPT TO:<jörg@example.net>", "553 5.6.7 Must declare SMTPUTF8 to send unicode address"},
	} {
		if r := c.Cmd(tc.cmd); r.String() != tc.reply {
			t.Errorf("%q: %v, want %s", tc.cmd, r, tc.reply)
		}
	}
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("DATA", 354)
	c.Write(simpleMessage + ".\r\n")
	c.Expect("", 250)
	for _, cmd := range up.Commands() {
		if strings.ContainsAny(cmd, "\x00\rö") {
			t.Errorf("upstream got %q", cmd)
		}
	}
	if m := up.Messages(); len(m) != 1 || m[0].From != "a@example.org" || len(m[0].Rcpts) != 1 {
		t.Fatalf("upstream got %+v", m)
	}
}

// TestSMTPUTF8Address: with an upstream that offers SMTPUTF8, a UTF-8 address declared with SMTPUTF8 goes
// through; malformed UTF-8 does not.
func TestSMTPUTF8Address(t *testing.T) {
	up := (&smtptest.RawUpstream{Caps: []string{"PIPELINING", "8BITMIME", "SMTPUTF8"}}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
	c := hello(t, addr)
	if r := c.Cmd("MAIL FROM:<j\xf6rg@example.org> SMTPUTF8"); r.Code != 553 {
		t.Fatalf("malformed UTF-8: %v, want 553", r)
	}
	c.Expect("MAIL FROM:<jörg@example.org> SMTPUTF8", 250)
	c.Expect("RCPT TO:<zoë@example.net>", 250)
	if m := up.Commands(); !slices.Contains(m, "RCPT TO:<zoë@example.net>") {
		t.Fatalf("upstream commands: %q", m)
	}
}

// logBuffer collects a relay's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestReceiveRefusalsRecorded: a message refused while it is received (too large, a bare LF) gets its "message"
// log line and its audit record, like a message refused by a policy.
func TestReceiveRefusalsRecorded(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		code       int
	}{
		{"too large", strings.Repeat("x", 2000) + "\r\n", 552},
		{"bare LF", "Subject: x\r\n\r\nbare\nLF\r\n", 550},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := (&smtptest.Upstream{}).Start(t)
			rec := &recorder{}
			var logs logBuffer
			addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Audit: rec, Logger: logs.logger(),
				Limits: smtpproxy.Limits{MessageSize: 1000}})
			c := hello(t, addr)
			c.Expect("MAIL FROM:<a@example.org>", 250)
			c.Expect("RCPT TO:<b@example.net>", 250)
			c.Expect("DATA", 354)
			c.Write(tc.data + ".\r\n")
			c.Expect("", tc.code)
			c.Expect("QUIT", 221)
			recs := rec.records()
			if len(recs) != 1 || recs[0].Hook != "message" || recs[0].Action != "reject" || recs[0].Reply == nil ||
				recs[0].Reply.Code != tc.code || *recs[0].MailFrom != "a@example.org" {
				t.Fatalf("audit records: %+v", recs)
			}
			if !regexpMatch(`msg=message .*action=reject reply=`+strconv.Itoa(tc.code), logs.String()) {
				t.Fatalf("no message log line:\n%s", logs.String())
			}
		})
	}
}

// TestSilentClientIsNotAWarning: a client that connects and leaves without a word (a load balancer's health
// check), even with a reset, is counted and logged at debug level, not as a warning.
func TestSilentClientIsNotAWarning(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	var logs logBuffer
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Logger: logs.logger()})
	for i, reset := range []bool{false, true, true} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if reset {
			// Read the greeting first, so the relay's next write meets the reset.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 512))
			c.(*net.TCPConn).SetLinger(0)
		}
		c.Close()
		waitFor(t, func() bool { return srv.EarlyDisconnects() == uint64(i+1) })
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("a silent client was logged as a warning:\n%s", logs.String())
	}
	// A client that did say something and then broke off still counts as a session.
	c := hello(t, addr)
	c.Conn.Close()
	time.Sleep(50 * time.Millisecond)
	if n := srv.EarlyDisconnects(); n != 3 {
		t.Fatalf("EarlyDisconnects = %d after a client that spoke, want 3", n)
	}
}

// slowFilter holds the message stage until its context ends or release is closed, and says which came first.
type slowFilter struct {
	release   chan struct{}
	cancelled chan struct{}
}

func (f *slowFilter) Acquire() (smtpproxy.Filter, func()) { return f, func() {} }

func (f *slowFilter) Evaluate(ctx context.Context, hook pluginhost.Hook, _ *pluginhost.Input) *policy.Decision {
	if hook != pluginhost.HookMessage {
		return nil
	}
	select {
	case <-ctx.Done():
		close(f.cancelled)
		return &policy.Decision{Hook: hook, Action: pluginhost.Tempfail, Changes: &message.Changes{}}
	case <-f.release:
		return &policy.Decision{Hook: hook, Action: pluginhost.Accept, Changes: &message.Changes{}}
	}
}

// TestClientGoneDuringEvaluation: a client that leaves while its message is being evaluated cancels the
// evaluation (its plugin calls stop), instead of being noticed once the chain has run to the end.
func TestClientGoneDuringEvaluation(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	f := &slowFilter{release: make(chan struct{}), cancelled: make(chan struct{})}
	defer close(f.release)
	rec := &recorder{}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, Audit: rec})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("DATA", 354)
	c.Write(simpleMessage + ".\r\n")
	c.Conn.Close()
	select {
	case <-f.cancelled:
	case <-time.After(20 * time.Second):
		t.Fatal("the evaluation went on after the client left")
	}
	if n := len(up.Messages()); n != 0 {
		t.Fatalf("upstream got %d messages", n)
	}
	// The record says the client got no reply.
	waitFor(t, func() bool { return len(rec.records()) == 1 })
	if r := rec.records()[0].Reply; r == nil || r.Status != "gone" || r.Code != 0 {
		t.Fatalf("recorded reply %+v, want status gone", r)
	}
}

// TestPipelinedAfterMessageWhileEvaluated: what a client pipelines after its message while it is being evaluated
// (the watch for a client that leaves reads it) reaches go-smtp in order, in plain text and under TLS.
func TestPipelinedAfterMessageWhileEvaluated(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprint("tls=", tlsOn), func(t *testing.T) {
			up := (&smtptest.Upstream{}).Start(t)
			f := &slowFilter{release: make(chan struct{}), cancelled: make(chan struct{})}
			cert := smtptest.NewCert(t)
			o := smtpproxy.Options{Upstream: up.Addr, Filters: f}
			if tlsOn {
				o.TLS = smtpproxy.TLS{Mode: smtpproxy.TLSStartTLS, CertFile: cert.CertFile, KeyFile: cert.KeyFile}
			}
			addr, _ := startRelay(t, o)
			c := hello(t, addr)
			if tlsOn {
				c.StartTLS(cert.ClientConfig("localhost"))
				c.Expect("EHLO client.test", 250)
			}
			c.Expect("MAIL FROM:<a@example.org>", 250)
			c.Expect("RCPT TO:<b@example.net>", 250)
			c.Expect("DATA", 354)
			c.Write(simpleMessage + ".\r\n")
			time.Sleep(50 * time.Millisecond) // the message is being evaluated
			c.Write("MAIL FROM:<second@example.org>\r\nRCPT TO:<c@example.net>\r\n")
			time.Sleep(50 * time.Millisecond)
			close(f.release)
			c.Expect("", 250)
			c.Expect("", 250)
			c.Expect("", 250)
			c.Expect("DATA", 354)
			c.Write(simpleMessage + ".\r\n")
			c.Expect("", 250)
			c.Expect("QUIT", 221)
			if m := up.Messages(); len(m) != 2 || m[1].From != "second@example.org" {
				t.Fatalf("upstream got %+v", m)
			}
			select {
			case <-f.cancelled:
				t.Fatal("evaluation cancelled")
			default:
			}
		})
	}
}
