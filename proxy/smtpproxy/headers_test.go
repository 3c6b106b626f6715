package smtpproxy_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

func TestPolicyChangesApplied(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	f := &testFilter{decide: func(h pluginhost.Hook, _ *pluginhost.Input) *policy.Decision {
		c := &message.Changes{}
		if h == pluginhost.HookMessage {
			c.AddHeader("X-Scanned", "yes")
		}
		return &policy.Decision{Action: pluginhost.Accept, Changes: c}
	}}
	rec := &recorder{}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, Audit: rec})
	c := hello(t, addr)
	c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
	m := up.Messages()
	if len(m) != 1 || string(m[0].Data) != "X-Scanned: yes\r\n"+simpleMessage {
		t.Fatalf("upstream got %q", m[0].Data)
	}
	r := rec.records()
	if len(r) != 1 || r[0].SHA256Out == "" || r[0].SHA256Out == r[0].SHA256In || len(r[0].Changes) != 1 {
		t.Fatalf("audit: %+v", r)
	}
}

func TestTraceAndResultHeaders(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	f := &testFilter{decide: decideAt(pluginhost.HookMessage, policy.Decision{Action: pluginhost.Accept, Score: 2.5,
		Tags: map[string]string{"external": "yes", "dlp.cards": "1"}})}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, ReceivedHeader: true, ResultHeaders: true})
	c := hello(t, addr)
	forged := "X-Postern-Verdict: accept\r\nX-Postern-Score: -100\r\n"
	c.Send("a@example.org", []string{"b@example.net"}, forged+simpleMessage)
	m := up.Messages()
	if len(m) != 1 {
		t.Fatal("not relayed")
	}
	got := string(m[0].Data)
	header, body, _ := strings.Cut(got, "\r\n\r\n")
	unfolded := strings.ReplaceAll(header, "\r\n ", " ")
	unfolded = strings.ReplaceAll(unfolded, "\r\n\t", " ")
	lines := strings.Split(unfolded, "\r\n")
	if !strings.HasPrefix(lines[0], "Received: ") {
		t.Fatalf("Received: is not the first field:\n%s", got)
	}
	re := regexp.MustCompile(`^Received: from client\.test \(\[127\.0\.0\.1\]\) by relay\.test \(Postern\) with ESMTP id \w{12} for <b@example\.net>; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$`)
	if !re.MatchString(lines[0]) {
		t.Fatalf("Received field %q", lines[0])
	}
	want := map[string]string{"X-Postern-Verdict": "accept", "X-Postern-Score": "2.5", "X-Postern-Tags": "dlp.cards=1; external=yes"}
	count := map[string]int{}
	for _, l := range lines {
		name, value, _ := strings.Cut(l, ": ")
		if w, ok := want[name]; ok {
			count[name]++
			if value != w {
				t.Errorf("%s: %q, want %q", name, value, w)
			}
		}
	}
	for name := range want {
		if count[name] != 1 {
			t.Errorf("%s appears %d times (a forged one must be removed)", name, count[name])
		}
	}
	if !strings.HasSuffix(header+"\r\n\r\n"+body, simpleMessage[strings.Index(simpleMessage, "From:"):]) {
		t.Fatalf("rest of the message changed:\n%s", got)
	}
}

func TestNoHeadersByDefault(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	f := &testFilter{decide: decideAt(pluginhost.HookMessage, policy.Decision{Action: pluginhost.Accept, Score: 3})}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f})
	c := hello(t, addr)
	c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
	if m := up.Messages(); len(m) != 1 || string(m[0].Data) != simpleMessage {
		t.Fatalf("a message no plugin changed must leave byte for byte identical: %q", m[0].Data)
	}
}

// TestUndecodableBannerLeftOut: the policy's changes aim a banner at a text part whose base64 is broken, so it
// cannot be extended. The message was accepted: it is delivered with the other changes and without the banner,
// not deferred for ever.
func TestUndecodableBannerLeftOut(t *testing.T) {
	const broken = "From: a@example.org\r\nSubject: x\r\nContent-Type: text/plain; charset=x-martian\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n"
	up := (&smtptest.Upstream{}).Start(t)
	f := &testFilter{decide: func(h pluginhost.Hook, _ *pluginhost.Input) *policy.Decision {
		c := &message.Changes{}
		if h == pluginhost.HookMessage {
			c.AddHeader("X-Scanned", "yes")
			c.AppendBanner("BANNER", "")
		}
		return &policy.Decision{Action: pluginhost.Accept, Changes: c}
	}}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f})
	c := hello(t, addr)
	if r := c.Send("a@example.org", []string{"b@example.net"}, broken); r.Code != 250 {
		t.Fatalf("reply %v", r)
	}
	if m := up.Messages(); len(m) != 1 || string(m[0].Data) != "X-Scanned: yes\r\n"+broken {
		t.Fatalf("upstream got %+v", m)
	}
}

// TestReceivedAddressLiteral: an RFC 5321 address literal given as the EHLO name (Python's smtplib sends one on a
// host whose name has no dot) is kept in Received: as it is; anything else in brackets is cleaned.
func TestReceivedAddressLiteral(t *testing.T) {
	for _, tc := range []struct{ helo, want string }{
		{"[127.0.0.1]", "from [127.0.0.1] ([127.0.0.1])"},
		{"[IPv6:2001:db8::1]", "from [IPv6:2001:db8::1] ([127.0.0.1])"},
		{"[ipv6:::1]", "from [ipv6:::1] ([127.0.0.1])"},
		{"[::1]", "from _::1_ ([127.0.0.1])"},
		{"[1.2.3.4])(x", "from _1.2.3.4___x ([127.0.0.1])"},
		{"1.2.3.4]", "from 1.2.3.4_ ([127.0.0.1])"},
	} {
		up := (&smtptest.Upstream{}).Start(t)
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, ReceivedHeader: true})
		c := smtptest.Dial(t, addr)
		c.Expect("", 220)
		c.Expect("EHLO "+tc.helo, 250)
		c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
		m := up.Messages()
		if len(m) != 1 {
			t.Fatal("not relayed")
		}
		if got := string(m[0].Data); !strings.HasPrefix(got, "Received: "+tc.want+" by relay.test") {
			t.Errorf("EHLO %s: %q", tc.helo, got[:strings.Index(got, "\r\n")])
		}
	}
}

// TestReceivedLatestHelo: the name of an EHLO given again in the session is the one Received: shows, as Postfix
// does.
func TestReceivedLatestHelo(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, ReceivedHeader: true})
	c := hello(t, addr)
	c.Expect("EHLO second.test", 250)
	c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
	if m := up.Messages(); len(m) != 1 || !strings.HasPrefix(string(m[0].Data), "Received: from second.test ") {
		t.Fatalf("upstream got %+v", m)
	}
}
