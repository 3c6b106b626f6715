package interop

import (
	"strings"
	"testing"

	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// pyEdgeCases sends, with python's smtplib (inside TLS where asked), a MAIL FROM whose SIZE is over the limit, a
// DATA before RCPT, and a message whose last line ends with a bare CR, with exactly those bytes; each reply is
// printed. A reply that does not come within 5 s is a failure of the relay (the data timeout is longer).
const pyEdgeCases = `
import smtplib, ssl, sys
port, ca, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == 'implicit':
    s = smtplib.SMTP_SSL('127.0.0.1', int(port), local_hostname='client.test', timeout=5,
                         context=ssl.create_default_context(cafile=ca))
else:
    s = smtplib.SMTP('127.0.0.1', int(port), local_hostname='client.test', timeout=5)
s.ehlo()
if mode == 'starttls':
    s.starttls(context=ssl.create_default_context(cafile=ca))
    s.ehlo()
print('SIZELIMIT', s.esmtp_features.get('size'))
print('BIG', s.docmd('MAIL FROM:<big@example.org> SIZE=5000'))
print('MAIL', s.docmd('MAIL FROM:<a@example.org>'))
print('EARLYDATA', s.docmd('DATA'))
print('RCPT', s.docmd('RCPT TO:<b@example.net>'))
print('DATA', s.docmd('DATA'))
s.send(b'Subject: bare CR\r\n\r\nlast line\r\r\n.\r\n')
print('END', s.getreply())
`

// TestGoSMTPGapsAgainstSmtpSink: through the relay to smtp-sink, in plain text, STARTTLS and implicit TLS, with
// python's smtplib: EHLO advertises the relay's exact limit, a MAIL FROM SIZE= over it gets 552 5.3.4, DATA
// before RCPT gets 503, and a message ending "\r\r\n.\r\n" is answered at once (smtp-sink, like Postfix, ends it
// there too); with bare_newline = normalize it reaches smtp-sink.
func TestGoSMTPGapsAgainstSmtpSink(t *testing.T) {
	need(t, "smtp-sink", "python3")
	cert := smtptest.NewCert(t, "localhost", "127.0.0.1")
	for _, mode := range []string{"plain", "starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			s := startSink(t)
			o := relayOptions(mode, cert, s.addr)
			o.Limits = smtpproxy.Limits{MessageSize: 4000}
			o.BareNewline = smtpproxy.BareNewlineNormalize
			addr := startRelay(t, o)
			port := addr[strings.LastIndexByte(addr, ':')+1:]
			out, err := python(t, pyEdgeCases, port, cert.CAFile, mode)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for key, want := range map[string]string{
				"SIZELIMIT ": "4000",
				"BIG ":       "(552, b'5.3.4 Message size exceeds fixed limit')",
				"EARLYDATA ": "(503, ",
				"END ":       "(250, ",
			} {
				if got := lineAfter(out, key); !strings.HasPrefix(got, want) {
					t.Errorf("%s%q, want %q\n%s", key, got, want, out)
				}
			}
			tx := s.wait(1)
			if len(tx) != 1 || !strings.Contains(tx[0], "last line") {
				t.Fatalf("smtp-sink got %q", tx)
			}
		})
	}
}
