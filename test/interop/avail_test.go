package interop

import (
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// TestSlowUploadToImpatientSmtpSink: smtp-sink with a two-second command timeout, like a Postfix smtpd under
// stress (10 s), drops clients that stay silent; it still holds the transaction after an upload that took twice
// that, because the relay says NOOP meanwhile, and the message arrives whole. (smtp-sink counts time in whole
// seconds, so its "-t 2" fires between one and two seconds after the last command.)
func TestSlowUploadToImpatientSmtpSink(t *testing.T) {
	s := startSink(t, "-t", "2")
	addr := startRelay(t, smtpproxy.Options{Upstream: s.addr,
		Limits: smtpproxy.Limits{UpstreamKeepalive: 200 * time.Millisecond}})
	c := smtptest.Dial(t, addr)
	c.Expect("", 220)
	c.Expect("EHLO client.test", 250)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("DATA", 354)
	body := message("slow upload")
	for _, line := range strings.SplitAfter(body, "\r\n") {
		c.Write(line)
		time.Sleep(500 * time.Millisecond)
	}
	c.Write(".\r\n")
	if r := c.Reply(); r.Code != 250 {
		t.Fatalf("final reply %v, want smtp-sink's 250", r)
	}
	if got := s.wait(1); len(got) != 1 || !strings.Contains(got[0], "Subject: slow upload") {
		t.Fatalf("smtp-sink got %q", got)
	}
}
