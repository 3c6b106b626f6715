package smtpproxy_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// smugglingVectors are the end-of-data lookalikes of the SMTP smuggling research (SEC Consult 2023, smtpsmug,
// CVE-2023-51766). rejected says whether the relay refuses the message in reject mode: go-smtp's DATA reader
// already removes the dot of a line that starts with ".\r" (vectors 8 and 11), so no bare CR is left to find
// there, and the message goes through as one message with the smuggled commands as body text.
var smugglingVectors = []struct {
	eod      string
	rejected bool
}{
	{"\n.\n", true},
	{"\r.\r", true},
	{"\r.\n", true},
	{"\n.\r", true},
	{"\n.\r\n", true},
	{"\r\n.\n", true},
	{"\r.\r\n", true},
	{"\r\n.\r", false},
	{"\r\n\x00.\r\n", true},
	{"\r\n.\x00\r\n", true},
	{"\r\n.\r\r\n", false},
	{"\r\r\n.\r\r\n", true},
}

// smuggle builds message content (after DATA) that hides a second transaction behind eod.
func smuggle(eod string) string {
	return "From: sender@example.org\r\nSubject: smuggling test\r\n\r\nfirst message" + eod +
		"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n" +
		"From: ceo@example.org\r\nSubject: smuggled\r\n\r\nsmuggled message\r\n" +
		"\r\n.\r\n"
}

// TestSmugglingVectorsAreReal shows the lenient test upstream falls for every vector when it is spoken to
// directly, so the relay tests below can fail.
func TestSmugglingVectorsAreReal(t *testing.T) {
	for i, v := range smugglingVectors {
		t.Run(fmt.Sprint(i+1), func(t *testing.T) {
			up := (&smtptest.RawUpstream{Lenient: true}).Start(t)
			c := smtptest.Dial(t, up.Addr)
			c.Expect("", 220)
			c.Expect("EHLO client.test", 250)
			c.Expect("MAIL FROM:<sender@example.org>", 250)
			c.Expect("RCPT TO:<rcpt@example.net>", 250)
			c.Expect("DATA", 354)
			c.Write(smuggle(v.eod))
			// The fake end of data, MAIL, RCPT, DATA and the smuggled message; a stray empty line may add an
			// error reply.
			for range 6 {
				if len(up.Messages()) == 2 {
					break
				}
				if _, err := c.ReadReply(); err != nil {
					break
				}
			}
			if m := up.Messages(); len(m) != 2 || m[1].From != "evil@example.org" {
				t.Fatalf("direct: upstream got %+v, want the smuggled second message", m)
			}
		})
	}
}

func TestSmugglingThroughRelay(t *testing.T) {
	for _, mode := range []smtpproxy.BareNewline{smtpproxy.BareNewlineReject, smtpproxy.BareNewlineNormalize} {
		for i, v := range smugglingVectors {
			t.Run(fmt.Sprintf("%s/%d", mode, i+1), func(t *testing.T) {
				up := (&smtptest.RawUpstream{Lenient: true}).Start(t)
				addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, BareNewline: mode})
				c := hello(t, addr)
				c.Expect("MAIL FROM:<sender@example.org>", 250)
				c.Expect("RCPT TO:<rcpt@example.net>", 250)
				c.Expect("DATA", 354)
				c.Write(smuggle(v.eod))
				r := c.Reply()
				// The relay's own session stayed in step: the next reply answers the next command.
				if n := c.Cmd("NOOP"); n.Code != 250 || n.Text() != "2.0.0 I have successfully done nothing" {
					t.Fatalf("after the message, NOOP got %v: the relay read smuggled commands", n)
				}
				msgs := up.Messages()
				for _, m := range msgs {
					if m.From == "evil@example.org" {
						t.Fatalf("smuggled message reached the upstream: %+v", m)
					}
				}
				if len(msgs) > 1 {
					t.Fatalf("upstream got %d messages", len(msgs))
				}
				wantReject := mode == smtpproxy.BareNewlineReject && v.rejected
				if wantReject {
					if r.Code != 550 || r.Text()[:5] != "5.6.0" {
						t.Fatalf("reply %v, want 550 5.6.0", r)
					}
					if len(msgs) != 0 {
						t.Fatalf("rejected message reached the upstream")
					}
					return
				}
				if r.Code != 250 || len(msgs) != 1 || msgs[0].From != "sender@example.org" {
					t.Fatalf("reply %v, upstream %+v: want one message from the real sender", r, msgs)
				}
				if bytes.Contains(bytes.ReplaceAll(msgs[0].Data, []byte("\r\n"), nil), []byte{'\n'}) ||
					bytes.Contains(bytes.ReplaceAll(msgs[0].Data, []byte("\r\n"), nil), []byte{'\r'}) ||
					bytes.IndexByte(msgs[0].Data, 0) >= 0 {
					t.Fatalf("a bare CR, LF or NUL reached the upstream: %q", msgs[0].Data)
				}
				if !bytes.Contains(msgs[0].Data, []byte("smuggled message")) {
					t.Fatalf("the smuggled text should have stayed inside the one message: %q", msgs[0].Data)
				}
			})
		}
	}
}
