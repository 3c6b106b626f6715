package smtpproxy_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// dotty is message content whose lines start with dots, as the client sends it (dot-stuffed), so that unstuffing
// shows; dottyWant is what the upstream must get.
const (
	dotty     = "Subject: dots\r\n\r\n..one dot\r\n...two dots\r\n..\tx\r\nend\r\n"
	dottyWant = "Subject: dots\r\n\r\n.one dot\r\n..two dots\r\n.\tx\r\nend\r\n"
)

// TestMessagesPipelinedAfterData sends the next transaction in the same write as the end of a message: the relay
// reads message content itself (ahead, in large reads) and must hand what follows the end of data back to the
// command reader.
func TestMessagesPipelinedAfterData(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
	c := hello(t, addr)
	c.Write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
	for _, want := range []int{250, 250, 354} {
		if r := c.Reply(); r.Code != want {
			t.Fatalf("%v, want %d", r, want)
		}
	}
	c.Write(dotty + ".\r\nMAIL FROM:<c@example.org>\r\nRCPT TO:<d@example.net>\r\nDATA\r\n")
	for _, want := range []int{250, 250, 250, 354} {
		if r := c.Reply(); r.Code != want {
			t.Fatalf("%v, want %d", r, want)
		}
	}
	big := strings.Repeat("..line of the second message\r\n", 4000) // larger than any read buffer
	c.Write(big + ".\r\nQUIT\r\n")
	c.Expect("", 250)
	c.Expect("", 221)
	m := up.Messages()
	if len(m) != 2 {
		t.Fatalf("upstream got %d messages", len(m))
	}
	if got, want := string(m[0].Data), dottyWant; got != want {
		t.Fatalf("first message %q, want %q", got, want)
	}
	if m[1].From != "c@example.org" || string(m[1].Data) != strings.ReplaceAll(big, "..", ".") {
		t.Fatalf("second message from %q, %d bytes", m[1].From, len(m[1].Data))
	}
}

// TestContentBeforeGoAhead has a client send the content in the same write as DATA, without waiting for the 354:
// the start of the content is then in go-smtp's buffer, and the message must still arrive whole.
func TestContentBeforeGoAhead(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr})
	c := hello(t, addr)
	c.Write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + dotty + ".\r\n")
	for _, want := range []int{250, 250, 354, 250} {
		if r := c.Reply(); r.Code != want {
			t.Fatalf("%v, want %d", r, want)
		}
	}
	// And the next message, sent properly, too.
	if r := c.Send("a@example.org", []string{"b@example.net"}, dotty); r.Code != 250 {
		t.Fatalf("second message: %v", r)
	}
	m := up.Messages()
	want := dottyWant
	if len(m) != 2 || string(m[0].Data) != want || string(m[1].Data) != want {
		t.Fatalf("upstream got %+v", m)
	}
}

// TestSTARTTLSInjectionAfterMessage pipelines STARTTLS and an injected command behind the end of a message, which
// the relay reads itself: the injected command must be dropped with the plain-text buffer, as without a message.
func TestSTARTTLSInjectionAfterMessage(t *testing.T) {
	addr, cert, up := starttlsRelay(t, nil)
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("DATA", 354)
	c.Write(simpleMessage + ".\r\nSTARTTLS\r\nRSET\r\n")
	c.Expect("", 250)
	c.Expect("", 220)
	tc := tls.Client(c.Conn, cert.ClientConfig("localhost"))
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = smtptest.NewClient(t, tc)
	if r := c.Cmd("NOOP"); r.Text() != "2.0.0 I have successfully done nothing" {
		t.Fatalf("first reply inside TLS is %v: the injected RSET was answered", r)
	}
	c.Expect("EHLO client.test", 250)
	if r := c.Send("a@example.org", []string{"b@example.net"}, dotty); r.Code != 250 {
		t.Fatalf("message over TLS: %v", r)
	}
	if m := up.Messages(); len(m) != 2 || string(m[1].Data) != dottyWant {
		t.Fatalf("upstream got %+v", m)
	}
}
