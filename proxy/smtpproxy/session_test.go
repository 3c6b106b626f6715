package smtpproxy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

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
