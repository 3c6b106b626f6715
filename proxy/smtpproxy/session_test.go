package smtpproxy_test

import (
	"fmt"
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
