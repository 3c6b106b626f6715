package smtpproxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

func TestRelayKeepsMessageAndUpstreamReply(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
	c := hello(t, addr)
	// A line starting with a dot must arrive with its dot: the relay unstuffs and the client stuffs again.
	data := simpleMessage + "..leading dot\r\n"
	r := c.Send("a@example.org", []string{"b@example.net", "c@example.net"}, data)
	if r.Code != 250 || r.Text() != "2.0.0 Ok: queued as UP1" {
		t.Fatalf("final reply %v, want the upstream's 250 2.0.0 Ok: queued as UP1", r)
	}
	msgs := up.Messages()
	if len(msgs) != 1 {
		t.Fatalf("upstream got %d messages", len(msgs))
	}
	want := simpleMessage + ".leading dot\r\n"
	if got := string(msgs[0].Data); got != want {
		t.Fatalf("upstream got\n%q\nwant\n%q", got, want)
	}
	if msgs[0].From != "a@example.org" || strings.Join(msgs[0].Rcpts, ",") != "b@example.net,c@example.net" {
		t.Fatalf("envelope %q %q", msgs[0].From, msgs[0].Rcpts)
	}
	if msgs[0].HELO != "relay.test" {
		t.Fatalf("upstream saw EHLO %q, want the relay's hostname", msgs[0].HELO)
	}
	// A second message on the same session uses the same upstream session.
	r = c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
	if r.Code != 250 || r.Text() != "2.0.0 Ok: queued as UP2" {
		t.Fatalf("second reply %v", r)
	}
	c.Expect("QUIT", 221)
	if n := up.Sessions(); n != 1 {
		t.Fatalf("upstream sessions = %d, want 1 per client session", n)
	}
}

func TestEnvelopeRepliesPassThroughUnchanged(t *testing.T) {
	up := (&smtptest.Upstream{
		OnMail: func(from string, _ *smtp.MailOptions) error {
			if from == "bad@example.org" {
				return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 8}, Message: "Sender domain has no MX, says upstream"}
			}
			return nil
		},
		OnRcpt: func(to string, _ *smtp.RcptOptions) error {
			switch to {
			case "nobody@example.net":
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here (upstream)"}
			case "full@example.net":
				return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full (upstream)"}
			}
			return nil
		},
		OnData: func(_ *smtp.Conn, data []byte) error {
			if bytes.Contains(data, []byte("spam")) {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Content refused upstream"}
			}
			return nil
		},
	}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
	c := hello(t, addr)
	if r := c.Cmd("MAIL FROM:<bad@example.org>"); r.String() != "553 5.1.8 Sender domain has no MX, says upstream" {
		t.Fatalf("MAIL: %v", r)
	}
	c.Expect("MAIL FROM:<a@example.org>", 250)
	if r := c.Cmd("RCPT TO:<nobody@example.net>"); r.String() != "550 5.1.1 No such user here (upstream)" {
		t.Fatalf("RCPT: %v", r)
	}
	if r := c.Cmd("RCPT TO:<full@example.net>"); r.String() != "452 4.2.2 Mailbox full (upstream)" {
		t.Fatalf("RCPT: %v", r)
	}
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("DATA", 354)
	c.Write("Subject: spam\r\n\r\nspam\r\n.\r\n")
	if r := c.Reply(); r.String() != "554 5.7.0 Content refused upstream" {
		t.Fatalf("end of data: %v", r)
	}
	if n := len(up.Messages()); n != 0 {
		t.Fatalf("upstream stored %d messages", n)
	}
}

func TestUnreachableUpstreamRefusesSession(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: dead})
	expectUpstreamRefusal(t, addr)
}

func TestUpstreamGreetingRefusalRefusesSession(t *testing.T) {
	for _, greeting := range []string{"554 5.3.2 upstream not accepting mail", "421 4.3.2 upstream busy"} {
		up := (&smtptest.RawUpstream{Greeting: greeting}).Start(t)
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
		expectUpstreamRefusal(t, addr)
	}
}

// TestNoAcknowledgementWithoutUpstreams checks the relay's central promise at every step where the upstream can
// fail: the client's 250 for a message only ever follows the upstream's 250 for it.
func TestNoAcknowledgementWithoutUpstreams(t *testing.T) {
	cases := []struct {
		name     string
		up       *smtptest.RawUpstream
		wantCode int
		stored   bool
	}{
		{name: "drop at MAIL", up: &smtptest.RawUpstream{Drop: map[string]bool{"MAIL": true}}, wantCode: 421},
		{name: "drop at RCPT", up: &smtptest.RawUpstream{Drop: map[string]bool{"RCPT": true}}, wantCode: 421},
		{name: "drop at DATA", up: &smtptest.RawUpstream{Drop: map[string]bool{"DATA": true}}, wantCode: 421},
		{name: "drop after the data", up: &smtptest.RawUpstream{Drop: map[string]bool{"DOT": true}}, wantCode: 421},
		{name: "slow after the data", up: &smtptest.RawUpstream{Delay: map[string]time.Duration{"DOT": 3 * time.Second}}, wantCode: 421},
		{name: "4xx at MAIL", up: &smtptest.RawUpstream{Replies: map[string]string{"MAIL": "451 4.3.0 MAIL try later"}}, wantCode: 451},
		{name: "5xx at RCPT", up: &smtptest.RawUpstream{Replies: map[string]string{"RCPT": "550 5.1.1 RCPT unknown"}}, wantCode: 550},
		{name: "4xx at DATA", up: &smtptest.RawUpstream{Replies: map[string]string{"DATA": "451 4.3.0 DATA try later"}}, wantCode: 451},
		{name: "5xx at DATA", up: &smtptest.RawUpstream{Replies: map[string]string{"DATA": "554 5.5.1 no valid recipients"}}, wantCode: 554},
		{name: "4xx after the data", up: &smtptest.RawUpstream{Replies: map[string]string{"DOT": "452 4.3.1 insufficient storage"}}, wantCode: 452},
		{name: "5xx after the data", up: &smtptest.RawUpstream{Replies: map[string]string{"DOT": "554 5.7.1 rejected"}}, wantCode: 554},
		{name: "421 after the data", up: &smtptest.RawUpstream{Replies: map[string]string{"DOT": "421 4.4.2 shutting down"}}, wantCode: 421},
		{name: "healthy", up: &smtptest.RawUpstream{}, wantCode: 250, stored: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.up.Start(t)
			addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
				Limits: smtpproxy.Limits{CommandTimeout: time.Second}})
			c := hello(t, addr)
			final := transaction(c, "a@example.org", "b@example.net", simpleMessage)
			if final.Code != tc.wantCode {
				t.Fatalf("final reply %v, want %d", final, tc.wantCode)
			}
			stored := len(up.Messages()) == 1
			if stored != tc.stored {
				t.Fatalf("upstream stored the message: %v, want %v", stored, tc.stored)
			}
			if final.Code == 250 && !stored {
				t.Fatal("client got 250 for a message the upstream did not accept")
			}
			if final.Code == 421 {
				if _, err := c.ReadReply(); err == nil {
					t.Fatal("session still open after 421")
				}
			}
		})
	}
}

// transaction sends a message and returns the first non-success reply, or the final one.
func transaction(c *smtptest.Client, from, to, data string) smtptest.Reply {
	if r := c.Cmd("MAIL FROM:<" + from + ">"); r.Code != 250 {
		return r
	}
	if r := c.Cmd("RCPT TO:<" + to + ">"); r.Code != 250 {
		return r
	}
	if r := c.Cmd("DATA"); r.Code != 354 {
		return r
	}
	c.Write(data + ".\r\n")
	r, _ := c.ReadReply()
	return r
}

func TestUpstreamDropInMiddleOfData(t *testing.T) {
	up := (&smtptest.Upstream{DropInData: 100}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
	c := hello(t, addr)
	big := simpleMessage + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 200)
	r := transaction(c, "a@example.org", "b@example.net", big)
	if r.Code != 421 {
		t.Fatalf("reply %v, want 421", r)
	}
	if n := len(up.Messages()); n != 0 {
		t.Fatalf("upstream stored %d messages", n)
	}
}

func TestPipelinedCommandsAnsweredInOrder(t *testing.T) {
	up := (&smtptest.Upstream{OnRcpt: func(to string, _ *smtp.RcptOptions) error {
		if to == "x@example.net" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown"}
		}
		return nil
	}}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
	c := smtptest.Dial(t, addr)
	c.Expect("", 220)
	ehlo := c.Expect("EHLO client.test", 250)
	if !hasLine(ehlo, "PIPELINING") {
		t.Fatalf("PIPELINING not offered: %v", ehlo)
	}
	c.Write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<x@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n")
	for i, want := range []int{250, 250, 550, 250, 354} {
		if r := c.Reply(); r.Code != want {
			t.Fatalf("reply %d: %v, want %d", i, r, want)
		}
	}
	c.Write(simpleMessage + ".\r\nQUIT\r\n")
	c.Expect("", 250)
	c.Expect("", 221)
	m := up.Messages()
	if len(m) != 1 || strings.Join(m[0].Rcpts, ",") != "b@example.net,c@example.net" {
		t.Fatalf("upstream got %+v", m)
	}
}

func hasLine(r smtptest.Reply, prefix string) bool {
	for _, l := range r.Lines {
		if strings.HasPrefix(strings.ToUpper(l), prefix) {
			return true
		}
	}
	return false
}

func lineValue(r smtptest.Reply, keyword string) (string, bool) {
	for _, l := range r.Lines {
		f := strings.Fields(l)
		if len(f) > 0 && strings.EqualFold(f[0], keyword) {
			return strings.Join(f[1:], " "), true
		}
	}
	return "", false
}

func TestBDATIsRelayedAsData(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	part1, part2 := simpleMessage[:30], simpleMessage[30:]+".not stuffed\r\n"
	c.Write(fmt.Sprintf("BDAT %d\r\n%s", len(part1), part1))
	c.Expect("", 250)
	c.Write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(part2), part2))
	if r := c.Reply(); r.Code != 250 || r.Text() != "2.0.0 Ok: queued as UP1" {
		t.Fatalf("BDAT LAST: %v", r)
	}
	m := up.Messages()
	if len(m) != 1 || string(m[0].Data) != simpleMessage+".not stuffed\r\n" {
		t.Fatalf("upstream got %+v", m)
	}
}

func TestESMTPParameters(t *testing.T) {
	t.Run("unknown parameter", func(t *testing.T) {
		up := (&smtptest.Upstream{}).Start(t)
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
		c := hello(t, addr)
		if r := c.Cmd("MAIL FROM:<a@example.org> XFOO=bar"); r.Code != 500 || !strings.HasPrefix(r.Text(), "5.5.4") {
			t.Fatalf("unknown MAIL parameter: %v, want 500 5.5.4", r)
		}
	})
	t.Run("DSN without upstream support", func(t *testing.T) {
		up := (&smtptest.Upstream{}).Start(t)
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
		c := smtptest.Dial(t, addr)
		c.Expect("", 220)
		if r := c.Expect("EHLO client.test", 250); hasLine(r, "DSN") {
			t.Fatalf("DSN offered although the upstream lacks it: %v", r)
		}
		if r := c.Cmd("MAIL FROM:<a@example.org> RET=HDRS"); r.Code != 504 {
			t.Fatalf("RET without DSN: %v, want 504", r)
		}
	})
	t.Run("DSN passed through", func(t *testing.T) {
		up := (&smtptest.Upstream{Configure: func(s *smtp.Server) { s.EnableDSN = true }}).Start(t)
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
		c := smtptest.Dial(t, addr)
		c.Expect("", 220)
		if r := c.Expect("EHLO client.test", 250); !hasLine(r, "DSN") {
			t.Fatalf("DSN not offered: %v", r)
		}
		c.Expect("MAIL FROM:<a@example.org> RET=HDRS ENVID=abc123", 250)
		c.Expect("RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.net", 250)
		c.Expect("DATA", 354)
		c.Write(simpleMessage + ".\r\n")
		c.Expect("", 250)
		m := up.Messages()
		if len(m) != 1 {
			t.Fatal("no message upstream")
		}
		if m[0].MailOpts.Return != smtp.DSNReturnHeaders || m[0].MailOpts.EnvelopeID != "abc123" {
			t.Fatalf("MAIL options upstream: %+v", m[0].MailOpts)
		}
		o := m[0].RcptOpts[0]
		if len(o.Notify) != 2 || o.OriginalRecipient != "b@example.net" {
			t.Fatalf("RCPT options upstream: %+v", o)
		}
	})
	t.Run("SMTPUTF8 only with upstream support", func(t *testing.T) {
		for _, upHas := range []bool{false, true} {
			up := (&smtptest.Upstream{Configure: func(s *smtp.Server) { s.EnableSMTPUTF8 = upHas }}).Start(t)
			filter := &testFilter{hooks: pluginhost.HookSet(0xf)}
			addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: filter})
			c := smtptest.Dial(t, addr)
			c.Expect("", 220)
			r := c.Expect("EHLO client.test", 250)
			if hasLine(r, "SMTPUTF8") != upHas {
				t.Fatalf("upstream SMTPUTF8 %v: offered %v", upHas, r)
			}
			code := 504
			if upHas {
				code = 250
			}
			c.Expect("MAIL FROM:<ü@example.org> SMTPUTF8", code)
			if !upHas {
				continue
			}
			// Plugins see the parameter (the smtputf8 field) from mail_from on.
			c.Expect("RCPT TO:<b@example.net>", 250)
			c.Expect("DATA", 354)
			c.Expect("Subject: ü\r\n\r\nhi\r\n.", 250)
			for _, h := range []pluginhost.Hook{pluginhost.HookMailFrom, pluginhost.HookMessage} {
				if at := filter.at(h); len(at) != 1 || !at[0].env.SMTPUTF8 {
					t.Errorf("SMTPUTF8 at %v: %+v", h, at)
				}
			}
		}
	})
	t.Run("SIZE is the smaller limit", func(t *testing.T) {
		for _, tc := range []struct{ relay, upstream, want int64 }{
			{relay: 1 << 20, upstream: 5000, want: 5000},
			{relay: 3000, upstream: 5000, want: 3000},
		} {
			up := (&smtptest.Upstream{Configure: func(s *smtp.Server) { s.MaxMessageBytes = tc.upstream }}).Start(t)
			addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Limits: smtpproxy.Limits{MessageSize: tc.relay}})
			c := smtptest.Dial(t, addr)
			c.Expect("", 220)
			r := c.Expect("EHLO client.test", 250)
			if v, _ := lineValue(r, "SIZE"); v != fmt.Sprint(tc.want) {
				t.Fatalf("relay %d, upstream %d: SIZE %q, want %d", tc.relay, tc.upstream, v, tc.want)
			}
			if r := c.Cmd(fmt.Sprintf("MAIL FROM:<a@example.org> SIZE=%d", tc.want+1)); r.Code != 552 {
				t.Fatalf("MAIL SIZE over the limit: %v, want 552", r)
			}
			r = transaction(c, "a@example.org", "b@example.net", "Subject: big\r\n\r\n"+strings.Repeat("y", int(tc.want))+"\r\n")
			if r.Code != 552 || !strings.HasPrefix(r.Text(), "5.3.4") {
				t.Fatalf("oversized message: %v, want 552 5.3.4", r)
			}
			if n := len(up.Messages()); n != 0 {
				t.Fatalf("upstream got %d messages", n)
			}
		}
	})
	t.Run("capabilities", func(t *testing.T) {
		up := (&smtptest.Upstream{}).Start(t)
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
		c := smtptest.Dial(t, addr)
		c.Expect("", 220)
		r := c.Expect("EHLO client.test", 250)
		for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "SIZE"} {
			if !hasLine(r, ext) {
				t.Errorf("%s not offered: %v", ext, r)
			}
		}
		if hasLine(r, "STARTTLS") || hasLine(r, "AUTH") {
			t.Errorf("STARTTLS or AUTH offered without TLS configured: %v", r)
		}
	})
}

func TestRsetNoopQuit(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
	c := hello(t, addr)
	c.Expect("NOOP", 250)
	c.Expect("MAIL FROM:<first@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	resets := up.Resets()
	c.Expect("RSET", 250)
	if up.Resets() <= resets {
		t.Fatal("RSET was not relayed: the upstream transaction stays open")
	}
	c.Expect("RCPT TO:<b@example.net>", 503) // no transaction any more (RFC 5321: bad sequence)
	r := c.Send("second@example.org", []string{"b@example.net"}, simpleMessage)
	if r.Code != 250 {
		t.Fatalf("after RSET: %v", r)
	}
	if m := up.Messages(); len(m) != 1 || m[0].From != "second@example.org" || len(m[0].Rcpts) != 1 {
		t.Fatalf("upstream got %+v", m)
	}
	c.Expect("QUIT", 221)
	if _, err := c.ReadReply(); err == nil {
		t.Fatal("connection open after QUIT")
	}
}

func TestLargeMessageSpooledToDisk(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	spoolDir := t.TempDir()
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, SpoolDir: spoolDir, MemoryThreshold: 4096,
		Filters: &testFilter{}})
	c := hello(t, addr)
	big := simpleMessage + strings.Repeat("0123456789abcdef"+strings.Repeat("x", 60)+"\r\n", 20000)
	if r := c.Send("a@example.org", []string{"b@example.net"}, big); r.Code != 250 {
		t.Fatalf("reply %v", r)
	}
	m := up.Messages()
	if len(m) != 1 || string(m[0].Data) != big {
		t.Fatal("spooled message not relayed byte for byte")
	}
	if entries, _ := os.ReadDir(spoolDir); len(entries) != 0 {
		t.Fatalf("spool files left behind: %v", entries)
	}
	// A spool directory that cannot be written defers the message instead of losing it.
	addr, _ = startRelay(t, smtpproxy.Options{Upstream: up.Addr, SpoolDir: filepath.Join(spoolDir, "missing"), MemoryThreshold: 4096})
	c = hello(t, addr)
	if r := transaction(c, "a@example.org", "b@example.net", big); r.Code != 451 {
		t.Fatalf("unwritable spool: %v, want 451", r)
	}
}

func TestBDATLineEndings(t *testing.T) {
	for _, tc := range []struct {
		mode smtpproxy.BareNewline
		code int
		want string
	}{
		{smtpproxy.BareNewlineReject, 550, ""},
		{smtpproxy.BareNewlineNormalize, 250, "Subject: x\r\n\r\nbare\r\nlf\r\n"},
	} {
		up := (&smtptest.Upstream{}).Start(t)
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, BareNewline: tc.mode})
		c := hello(t, addr)
		c.Expect("MAIL FROM:<a@example.org>", 250)
		c.Expect("RCPT TO:<b@example.net>", 250)
		body := "Subject: x\r\n\r\nbare\nlf\r\n"
		c.Write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
		if r := c.Reply(); r.Code != tc.code {
			t.Fatalf("%s: %v, want %d", tc.mode, r, tc.code)
		}
		m := up.Messages()
		if tc.want == "" && len(m) != 0 || tc.want != "" && (len(m) != 1 || string(m[0].Data) != tc.want) {
			t.Fatalf("%s: upstream got %+v", tc.mode, m)
		}
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	before := runtime.NumGoroutine()
	o := smtpproxy.Options{Upstream: up.Addr, Hostname: "relay.test", Logger: slog.New(slog.DiscardHandler)}
	s, err := smtpproxy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.Serve(ln)
	for range 20 {
		c := hello(t, ln.Addr().String())
		c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
		c.Conn.Close() // without QUIT
	}
	c := smtptest.Dial(t, ln.Addr().String()) // leaves before EHLO
	c.Reply()
	c.Conn.Close()
	s.Close()
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+2 })
}

func TestUnknownAuthMechanism(t *testing.T) {
	up := (&smtptest.Upstream{Users: map[string]string{"a": "b"}}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, AllowInsecureAuth: true})
	c := hello(t, addr)
	if r := c.Cmd("AUTH CRAM-MD5"); r.Code != 504 {
		t.Fatalf("AUTH CRAM-MD5: %v, want 504", r)
	}
	if r := c.Cmd("AUTH PLAIN YWI="); r.Code != 501 { // "ab": not identity\0user\0password
		t.Fatalf("malformed AUTH PLAIN: %v, want 501", r)
	}
}

func TestCustomDialer(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	var dials int
	var d net.Dialer
	addr, _ := startRelay(t, smtpproxy.Options{Dial: func(ctx context.Context) (net.Conn, error) {
		dials++
		if dials == 1 {
			return nil, errors.New("injected dial failure")
		}
		return d.DialContext(ctx, "tcp", up.Addr)
	}})
	expectUpstreamRefusal(t, addr)
	c := hello(t, addr)
	if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 || len(up.Messages()) != 1 {
		t.Fatalf("through the custom dialer: %v", r)
	}
}
