package smtpproxy_test

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// Where go-smtp answers by itself, without calling the relay: the end of a message whose last line ends with a bare
// CR, replies to commands out of sequence inside TLS, and refusals for size.

// clientMode is how a test client reaches the relay: plain text, STARTTLS or implicit TLS.
type clientMode string

const (
	modePlain    clientMode = "plain"
	modeSTARTTLS clientMode = "starttls"
	modeImplicit clientMode = "implicit"
)

var allModes = []clientMode{modePlain, modeSTARTTLS, modeImplicit}

// relayIn starts a relay in front of up for mode and returns a client that has said EHLO (inside TLS, for the
// TLS modes) and the EHLO reply.
func relayIn(t *testing.T, mode clientMode, o smtpproxy.Options) (*smtptest.Client, smtptest.Reply) {
	t.Helper()
	cert := smtptest.NewCert(t)
	switch mode {
	case modeSTARTTLS:
		o.TLS = smtpproxy.TLS{Mode: smtpproxy.TLSStartTLS, CertFile: cert.CertFile, KeyFile: cert.KeyFile}
	case modeImplicit:
		o.TLS = smtpproxy.TLS{Mode: smtpproxy.TLSImplicit, CertFile: cert.CertFile, KeyFile: cert.KeyFile}
	}
	addr, _ := startRelay(t, o)
	var c *smtptest.Client
	if mode == modeImplicit {
		tc, err := tls.Dial("tcp", addr, cert.ClientConfig("localhost"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		c = smtptest.NewClient(t, tc)
	} else {
		c = smtptest.Dial(t, addr)
	}
	c.Expect("", 220)
	r := c.Expect("EHLO client.test", 250)
	if mode == modeSTARTTLS {
		c.StartTLS(cert.ClientConfig("localhost"))
		r = c.Expect("EHLO client.test", 250)
	}
	return c, r
}

// TestBareCRBeforeEnd: a message whose last line ends with a bare CR ("...\r\r\n.\r\n", what swaks sends for a
// --body ending in CR) is ended by its final dot, in plain text (the relay's reader) and inside TLS (go-smtp's
// reader, followed by the relay), as Postfix ends it; the client gets its reply at once, not after the data
// timeout. By default the bare CR refuses the message; with bare_newline = normalize it is delivered. Inside
// TLS, go-smtp's reader does not see that end, so the session ends after the reply and nothing the client sent
// after the message is acted on.
func TestBareCRBeforeEnd(t *testing.T) {
	for _, mode := range allModes {
		for _, normalize := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/normalize=%v", mode, normalize), func(t *testing.T) {
				var mails []string
				var mu sync.Mutex
				up := (&smtptest.Upstream{OnMail: func(from string, _ *smtp.MailOptions) error {
					mu.Lock()
					mails = append(mails, from)
					mu.Unlock()
					return nil
				}}).Start(t)
				rec := &recorder{}
				var logs logBuffer
				o := smtpproxy.Options{Upstream: up.Addr, Audit: rec, Logger: logs.logger(),
					Limits: smtpproxy.Limits{CommandTimeout: time.Minute}}
				want := 550
				if normalize {
					o.BareNewline = smtpproxy.BareNewlineNormalize
					want = 250
				}
				c, _ := relayIn(t, mode, o)
				c.Expect("MAIL FROM:<a@example.org>", 250)
				c.Expect("RCPT TO:<b@example.net>", 250)
				c.Expect("DATA", 354)
				c.Conn.SetDeadline(time.Now().Add(5 * time.Second)) // the data timeout is a minute
				c.Write("Subject: cr\r\n\r\nlast line\r\r\n.\r\nMAIL FROM:<after@example.org>\r\n")
				if r := c.Reply(); r.Code != want {
					t.Fatalf("reply %v, want %d", r, want)
				}
				if recs := rec.records(); !normalize && (len(recs) != 1 || recs[0].Reply == nil || recs[0].Reply.Code != want) {
					t.Fatalf("audit records: %+v", recs)
				}
				m := up.Messages()
				if normalize {
					if len(m) != 1 || string(m[0].Data) != "Subject: cr\r\n\r\nlast line\r\n\r\n" {
						t.Fatalf("upstream got %+v", m)
					}
				} else if len(m) != 0 {
					t.Fatalf("upstream got %+v", m)
				}
				if mode == modePlain {
					// The relay's own reader: the session goes on with the next command.
					if r := c.Reply(); r.Code != 250 {
						t.Fatalf("MAIL after the message: %v", r)
					}
					c.Expect("QUIT", 221)
					return
				}
				if r, err := c.ReadReply(); err == nil {
					t.Fatalf("session open after the reply inside TLS, got %v", r)
				}
				mu.Lock()
				defer mu.Unlock()
				if slices.Contains(mails, "after@example.org") {
					t.Fatal("the MAIL sent after the message reached the upstream")
				}
				if !strings.Contains(logs.String(), "closing the session after the reply") {
					t.Fatalf("no log line:\n%s", logs.String())
				}
			})
		}
	}
}

// TestOutOfSequenceInsideTLS: commands out of sequence get 503 (RFC 5321 §4.2.4), inside TLS too, where go-smtp
// writes its 502 to a TLS connection the relay reads through.
func TestOutOfSequenceInsideTLS(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			up := (&smtptest.Upstream{}).Start(t)
			c, _ := relayIn(t, mode, smtpproxy.Options{Upstream: up.Addr})
			if r := c.Cmd("DATA"); r.Code != 503 {
				t.Fatalf("DATA before MAIL: %v, want 503", r)
			}
			if r := c.Cmd("RCPT TO:<b@example.net>"); r.Code != 503 {
				t.Fatalf("RCPT before MAIL: %v, want 503", r)
			}
			c.Expect("MAIL FROM:<a@example.org>", 250)
			if r := c.Cmd("DATA"); r.Code != 503 {
				t.Fatalf("DATA before RCPT: %v, want 503", r)
			}
			if r := c.Cmd("STARTTLS"); mode != modePlain && r.Code != 554 {
				t.Fatalf("STARTTLS inside TLS: %v, want 554", r)
			}
			c.Expect("RCPT TO:<b@example.net>", 250)
			c.Expect("DATA", 354)
			c.Write(simpleMessage + ".\r\n")
			c.Expect("", 250)
			c.Expect("QUIT", 221)
		})
	}
}

// TestSizeRefusalsRecorded: a MAIL FROM whose SIZE= is over the limit and a BDAT transfer over it are refused
// with 552 5.3.4 by the relay, each with its "message" log line and audit record (go-smtp would refuse both
// itself, unseen), in plain text and inside TLS; EHLO advertises the exact limit, the smaller of the relay's and
// the upstream's.
func TestSizeRefusalsRecorded(t *testing.T) {
	for _, mode := range allModes {
		for _, upSize := range []int64{0, 700} {
			t.Run(fmt.Sprintf("%s/upstream=%d", mode, upSize), func(t *testing.T) {
				up := (&smtptest.Upstream{Configure: func(s *smtp.Server) { s.MaxMessageBytes = upSize }}).Start(t)
				rec := &recorder{}
				var logs logBuffer
				c, ehlo := relayIn(t, mode, smtpproxy.Options{Upstream: up.Addr, Audit: rec, Logger: logs.logger(),
					Limits: smtpproxy.Limits{MessageSize: 1000}})
				limit := int64(1000)
				if upSize > 0 {
					limit = upSize
				}
				if !hasLine(ehlo, "SIZE "+strconv.FormatInt(limit, 10)) {
					t.Fatalf("EHLO: %v, want SIZE %d", ehlo, limit)
				}
				if r := c.Cmd(fmt.Sprintf("MAIL FROM:<big@example.org> SIZE=%d", limit+1)); r.Code != 552 ||
					!strings.HasPrefix(r.Text(), "5.3.4 ") {
					t.Fatalf("MAIL SIZE over the limit: %v", r)
				}
				c.Expect(fmt.Sprintf("MAIL FROM:<fits@example.org> SIZE=%d", limit), 250)
				c.Expect("RSET", 250)

				c.Expect("MAIL FROM:<chunks@example.org>", 250)
				c.Expect("RCPT TO:<b@example.net>", 250)
				half := strings.Repeat("x", int(limit/2)+1)
				c.Write(fmt.Sprintf("BDAT %d\r\n%s", len(half), half))
				c.Expect("", 250)
				c.Write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(half), half))
				if r := c.Reply(); r.Code != 552 || !strings.HasPrefix(r.Text(), "5.3.4 ") {
					t.Fatalf("BDAT over the limit: %v", r)
				}
				// The session goes on.
				if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
					t.Fatalf("message after the refusals: %v", r)
				}
				wantUp := 1
				if upSize == 0 {
					// SIZE n means up to n octets (RFC 1870), by DATA and by BDAT.
					exact := "Subject: x\r\n\r\n" + strings.Repeat("y", int(limit)-16) + "\r\n"
					if r := c.Send("a@example.org", []string{"b@example.net"}, exact); r.Code != 250 {
						t.Fatalf("message of exactly %d bytes: %v", limit, r)
					}
					c.Expect("MAIL FROM:<a@example.org>", 250)
					c.Expect("RCPT TO:<b@example.net>", 250)
					c.Write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(exact), exact))
					if r := c.Reply(); r.Code != 250 {
						t.Fatalf("BDAT of exactly %d bytes: %v", limit, r)
					}
					wantUp = 3
				}
				c.Expect("QUIT", 221)
				recs := rec.records()
				if len(recs) != 2 {
					t.Fatalf("%d audit records, want 2: %+v", len(recs), recs)
				}
				mail, bdat := recs[0], recs[1]
				if mail.Hook != "mail_from" || mail.Action != "reject" || *mail.MailFrom != "big@example.org" ||
					mail.Reply == nil || mail.Reply.Code != 552 || mail.Reply.Enhanced != "5.3.4" {
					t.Errorf("MAIL SIZE record: %+v", mail)
				}
				if bdat.Hook != "message" || bdat.Action != "reject" || *bdat.MailFrom != "chunks@example.org" ||
					bdat.Reply == nil || bdat.Reply.Code != 552 {
					t.Errorf("BDAT record: %+v", bdat)
				}
				for _, who := range []string{"big@example.org", "chunks@example.org"} {
					if !regexpMatch(`msg=message .*from=`+who+` .*action=reject reply=552`, logs.String()) {
						t.Errorf("no message log line for %s:\n%s", who, logs.String())
					}
				}
				if n := len(up.Messages()); n != wantUp {
					t.Fatalf("upstream got %d messages, want %d", n, wantUp)
				}
			})
		}
	}
}

// TestREQUIRETLSInsideTLSOnly: REQUIRETLS (RFC 8689), which the upstream offers, is offered inside TLS and not in
// plain text, where the parameter is refused; go-smtp, which sees no TLS, offers it through the relay.
func TestREQUIRETLSInsideTLSOnly(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			// go-smtp offers REQUIRETLS only inside TLS: the upstream connection is TLS too.
			cert := smtptest.NewCert(t, "mx.upstream.test", "127.0.0.1")
			up := (&smtptest.Upstream{TLS: cert.ServerConfig(), Implicit: true,
				Configure: func(s *smtp.Server) { s.EnableREQUIRETLS = true }}).Start(t)
			c, ehlo := relayIn(t, mode, smtpproxy.Options{Upstream: up.Addr, UpstreamTLS: smtpproxy.UpstreamTLS{
				Mode: smtpproxy.UpstreamTLSImplicit, CAFile: cert.CAFile, ServerName: "mx.upstream.test"}})
			if got := hasLine(ehlo, "REQUIRETLS"); got != (mode != modePlain) {
				t.Fatalf("EHLO %v: REQUIRETLS offered %v", ehlo, got)
			}
			r := c.Cmd("MAIL FROM:<a@example.org> REQUIRETLS")
			if mode == modePlain {
				if r.Code != 504 {
					t.Fatalf("MAIL REQUIRETLS in plain text: %v", r)
				}
				return
			}
			if r.Code != 250 {
				t.Fatalf("MAIL REQUIRETLS inside TLS: %v", r)
			}
			c.Expect("RCPT TO:<b@example.net>", 250)
			c.Expect("DATA", 354)
			c.Write(simpleMessage + ".\r\n")
			c.Expect("", 250)
			if m := up.Messages(); len(m) != 1 || !m[0].MailOpts.RequireTLS {
				t.Fatalf("upstream got %+v", m)
			}
		})
	}
}
