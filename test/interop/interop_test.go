package interop

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

const pyClient = `
import smtplib, ssl, sys
port, mode, cafile, user, pw, frm, to, path = sys.argv[1:9]
data = open(path, 'rb').read()
ctx = ssl.create_default_context(cafile=cafile) if cafile else None
try:
    if mode == 'implicit':
        s = smtplib.SMTP_SSL('127.0.0.1', int(port), context=ctx, timeout=20)
    else:
        s = smtplib.SMTP('127.0.0.1', int(port), timeout=20)
    s.ehlo('python.test')
    if mode == 'starttls':
        s.starttls(context=ctx)
        s.ehlo('python.test')
    if user:
        s.login(user, pw)
    code, resp = s.mail(frm)
    assert code == 250, (code, resp)
    code, resp = s.rcpt(to)
    assert code == 250, (code, resp)
    code, resp = s.data(data)
    print('FINAL', code, resp.decode())
    s.quit()
    sys.exit(0 if code == 250 else 1)
except smtplib.SMTPResponseException as e:
    print('ERROR', e.smtp_code, e.smtp_error.decode())
    sys.exit(1)
`

// clientCase sends one message with one client program.
type clientCase struct {
	name string
	send func(t *testing.T, addr, mode, ca, user, pass, file string) (string, error)
}

var clients = []clientCase{
	{"swaks", func(t *testing.T, addr, mode, ca, user, pass, file string) (string, error) {
		args := []string{"--server", addr, "--from", "sender@example.org", "--to", "rcpt@example.net",
			"--data", "@" + file, "--timeout", "20"}
		switch mode {
		case "starttls":
			args = append(args, "--tls", "--tls-verify", "--tls-ca-path", ca)
		case "implicit":
			args = append(args, "--tls-on-connect", "--tls-verify", "--tls-ca-path", ca)
		}
		if user != "" {
			args = append(args, "--auth", "PLAIN", "--auth-user", user, "--auth-password", pass)
		}
		return run(t, "swaks", args...)
	}},
	{"curl", func(t *testing.T, addr, mode, ca, user, pass, file string) (string, error) {
		scheme := "smtp"
		if mode == "implicit" {
			scheme = "smtps"
		}
		args := []string{"-sS", "--url", scheme + "://" + addr + "/python.test", "--mail-from", "sender@example.org",
			"--mail-rcpt", "rcpt@example.net", "--upload-file", file, "--max-time", "20"}
		if mode != "plain" {
			args = append(args, "--cacert", ca)
		}
		if mode == "starttls" {
			args = append(args, "--ssl-reqd")
		}
		if user != "" {
			args = append(args, "--user", user+":"+pass)
		}
		return run(t, "curl", args...)
	}},
	{"python", func(t *testing.T, addr, mode, ca, user, pass, file string) (string, error) {
		port := addr[strings.LastIndexByte(addr, ':')+1:]
		if mode == "plain" {
			ca = ""
		}
		return python(t, pyClient, port, mode, ca, user, pass, "sender@example.org", "rcpt@example.net", file)
	}},
}

func message(subject string) string {
	return "From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: " + subject + "\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n\r\n" +
		"First line.\r\n.A line that starts with a dot\r\nLast line.\r\n"
}

func relayOptions(mode string, cert *smtptest.Cert, upstream string) smtpproxy.Options {
	o := smtpproxy.Options{Upstream: upstream}
	switch mode {
	case "starttls":
		o.TLS = smtpproxy.TLS{Mode: smtpproxy.TLSStartTLS, CertFile: cert.CertFile, KeyFile: cert.KeyFile}
	case "implicit":
		o.TLS = smtpproxy.TLS{Mode: smtpproxy.TLSImplicit, CertFile: cert.CertFile, KeyFile: cert.KeyFile}
	}
	return o
}

// TestClientsThroughRelayToSmtpSink sends a message with each client, over each kind of connection, through the
// relay to smtp-sink, and checks that smtp-sink received it as sent.
func TestClientsThroughRelayToSmtpSink(t *testing.T) {
	need(t, "smtp-sink", "swaks", "curl", "python3")
	cert := smtptest.NewCert(t, "localhost", "127.0.0.1")
	for _, mode := range []string{"plain", "starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			s := startSink(t)
			addr := startRelay(t, relayOptions(mode, cert, s.addr))
			for i, c := range clients {
				subject := fmt.Sprintf("interop %s %s", c.name, mode)
				out, err := c.send(t, addr, mode, cert.CAFile, "", "", writeFile(t, "msg.eml", message(subject)))
				if err != nil {
					t.Fatalf("%s: %v\n%s", c.name, err, out)
				}
				tr := s.wait(i + 1)
				if len(tr) != i+1 {
					t.Fatalf("%s: smtp-sink has %d transactions, want %d", c.name, len(tr), i+1)
				}
				got := strings.ReplaceAll(tr[i], "\r\n", "\n")
				for _, want := range []string{"X-Mail-Args: <sender@example.org>", "X-Rcpt-Args: <rcpt@example.net>",
					"Subject: " + subject + "\n", "\nFirst line.\n.A line that starts with a dot\nLast line.\n"} {
					if !strings.Contains(got, want) {
						t.Fatalf("%s: smtp-sink's copy lacks %q:\n%s", c.name, want, got)
					}
				}
			}
		})
	}
}

// TestSubmissionAuth relays AUTH to a go-smtp upstream that checks a password list, from each client, over
// STARTTLS and implicit TLS.
func TestSubmissionAuth(t *testing.T) {
	need(t, "swaks", "curl", "python3")
	cert := smtptest.NewCert(t, "localhost", "127.0.0.1")
	for _, mode := range []string{"starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			up := (&smtptest.Upstream{Users: map[string]string{"alice": "s3cret"}}).Start(t)
			o := relayOptions(mode, cert, up.Addr)
			o.Protocol = smtpproxy.ProtocolSubmission
			addr := startRelay(t, o)
			for i, c := range clients {
				subject := fmt.Sprintf("auth %s %s", c.name, mode)
				file := writeFile(t, "msg.eml", message(subject))
				if out, err := c.send(t, addr, mode, cert.CAFile, "alice", "wrong", file); err == nil {
					t.Fatalf("%s: wrong password accepted:\n%s", c.name, out)
				} else if !strings.Contains(out, "535") && c.name != "curl" {
					t.Fatalf("%s: the upstream's 535 did not reach the client:\n%s", c.name, out)
				}
				out, err := c.send(t, addr, mode, cert.CAFile, "alice", "s3cret", file)
				if err != nil {
					t.Fatalf("%s: %v\n%s", c.name, err, out)
				}
				m := up.WaitMessages(i+1, 5e9)
				if len(m) != i+1 || m[i].AuthUser != "alice" || !strings.Contains(string(m[i].Data), "Subject: "+subject+"\r\n") {
					t.Fatalf("%s: upstream got %d messages, last %+v", c.name, len(m), m[len(m)-1])
				}
			}
		})
	}
}

const pyRaw = `
import socket, sys
port, payload = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
s = socket.create_connection(('127.0.0.1', port), timeout=20)
f = s.makefile('rb')
def reply():
    while True:
        l = f.readline()
        if not l:
            print('CLOSED')
            sys.exit(1)
        if l[3:4] != b'-':
            return l.decode().rstrip()
reply()
for cmd in [b'EHLO python.test', b'MAIL FROM:<sender@example.org>', b'RCPT TO:<rcpt@example.net>', b'DATA']:
    s.sendall(cmd + b'\r\n')
    print(cmd.decode(), '->', reply())
s.sendall(payload)
print('FINAL', reply())
s.sendall(b'NOOP\r\n')
print('NOOP', reply())
s.sendall(b'QUIT\r\n')
print('QUIT', reply())
`

// smugglingVectors are the end-of-data lookalikes of the SMTP smuggling research. rejected: whether the relay
// refuses the message in reject mode (go-smtp's reader already drops the ".\r" of vectors 8 and 11, leaving no
// bare CR to find; those messages go through whole, the smuggled commands as body text).
var smugglingVectors = []struct {
	eod      string
	rejected bool
}{
	{"\n.\n", true}, {"\r.\r", true}, {"\r.\n", true}, {"\n.\r", true}, {"\n.\r\n", true}, {"\r\n.\n", true},
	{"\r.\r\n", true}, {"\r\n.\r", false}, {"\r\n\x00.\r\n", true}, {"\r\n.\x00\r\n", true},
	{"\r\n.\r\r\n", false}, {"\r\r\n.\r\r\n", true},
}

// TestSmugglingAgainstSmtpSink sends every vector from a Python client through the relay to smtp-sink and counts
// the transactions smtp-sink received: never the smuggled one.
func TestSmugglingAgainstSmtpSink(t *testing.T) {
	need(t, "smtp-sink", "python3")
	for _, mode := range []smtpproxy.BareNewline{smtpproxy.BareNewlineReject, smtpproxy.BareNewlineNormalize} {
		t.Run(string(mode), func(t *testing.T) {
			s := startSink(t)
			addr := startRelay(t, smtpproxy.Options{Upstream: s.addr, BareNewline: mode})
			port := addr[strings.LastIndexByte(addr, ':')+1:]
			want := 0
			for i, v := range smugglingVectors {
				payload := "From: sender@example.org\r\nSubject: vector " + fmt.Sprint(i+1) + "\r\n\r\nfirst" + v.eod +
					"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n" +
					"Subject: smuggled\r\n\r\nsmuggled\r\n\r\n.\r\n"
				out, err := python(t, pyRaw, port, hex.EncodeToString([]byte(payload)))
				if err != nil {
					t.Fatalf("vector %d: %v\n%s", i+1, err, out)
				}
				final := lineAfter(out, "FINAL ")
				reject := mode == smtpproxy.BareNewlineReject && v.rejected
				switch {
				case reject && !strings.HasPrefix(final, "550 5.6.0"):
					t.Fatalf("vector %d: final reply %q, want 550 5.6.0\n%s", i+1, final, out)
				case !reject && !strings.HasPrefix(final, "250"):
					t.Fatalf("vector %d: final reply %q, want 250\n%s", i+1, final, out)
				}
				if !strings.HasPrefix(lineAfter(out, "NOOP "), "250 2.0.0 I have successfully done nothing") {
					t.Fatalf("vector %d: the session fell out of step:\n%s", i+1, out)
				}
				if !reject {
					want++
				}
				tr := s.settled()
				if len(tr) != want {
					t.Fatalf("vector %d: smtp-sink has %d transactions, want %d", i+1, len(tr), want)
				}
				for _, x := range tr {
					if strings.Contains(x, "X-Mail-Args: <evil@example.org>") {
						t.Fatalf("vector %d: the smuggled message reached smtp-sink:\n%s", i+1, x)
					}
				}
			}
		})
	}
}

func lineAfter(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return strings.TrimPrefix(l, prefix)
		}
	}
	return ""
}

const pyInject = `
import socket, ssl, sys
port, cafile, payload = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode().decode('unicode_escape').encode()
s = socket.create_connection(('127.0.0.1', port), timeout=20)
f = s.makefile('rb')
def reply(f):
    while True:
        l = f.readline()
        if not l:
            print('CLOSED')
            sys.exit(1)
        if l[3:4] != b'-':
            return l.decode().rstrip()
reply(f)
s.sendall(b'EHLO python.test\r\n'); reply(f)
s.sendall(b'STARTTLS\r\n' + payload)
print('STARTTLS', reply(f))
ts = ssl.create_default_context(cafile=cafile).wrap_socket(s, server_hostname='127.0.0.1')
tf = ts.makefile('rb')
ts.sendall(b'NOOP\r\n')
print('FIRST', reply(tf))
ts.sendall(b'MAIL FROM:<a@example.org>\r\n')
print('MAIL', reply(tf))
`

// TestSTARTTLSInjection sends a command in the same packet as STARTTLS (CVE-2011-0411 class) from Python: it
// must not be answered inside TLS.
func TestSTARTTLSInjection(t *testing.T) {
	need(t, "smtp-sink", "python3")
	cert := smtptest.NewCert(t, "localhost", "127.0.0.1")
	s := startSink(t)
	addr := startRelay(t, relayOptions("starttls", cert, s.addr))
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	for _, payload := range []string{`RSET\r\n`, `EHLO x\r\n`} {
		out, err := python(t, pyInject, port, cert.CAFile, payload)
		if err != nil {
			t.Fatalf("%s: %v\n%s", payload, err, out)
		}
		if got := lineAfter(out, "FIRST "); got != "250 2.0.0 I have successfully done nothing" {
			t.Fatalf("%s: first reply inside TLS %q: the injected command was answered\n%s", payload, got, out)
		}
		if got := lineAfter(out, "MAIL "); !strings.HasPrefix(got, "503") {
			t.Fatalf("%s: MAIL inside TLS before EHLO got %q: an injected EHLO took effect\n%s", payload, got, out)
		}
	}
}

const pyPlainTextThenTLS = `
import smtplib, ssl, sys
port, ca = sys.argv[1], sys.argv[2]
s = smtplib.SMTP('127.0.0.1', int(port), local_hostname='client.test', timeout=20)
s.ehlo()
print('MAIL', s.docmd('MAIL FROM:<mallory@evil.test>'))
print('RCPT', s.docmd('RCPT TO:<injected@evil.test>'))
s.starttls(context=ssl.create_default_context(cafile=ca))
s.ehlo()
try:
    s.sendmail('sender@example.org', ['rcpt@example.net'], open(sys.argv[3], 'rb').read())
    print('SENT ok')
except smtplib.SMTPException as e:
    print('SENT failed', e)
s.quit()
`

// TestSTARTTLSDiscardsEarlierEnvelope: a MAIL and RCPT given in plain text before STARTTLS are discarded when TLS
// starts (RFC 3207 §4.2). smtp-sink, like Postfix, refuses a nested MAIL, so if they stayed open upstream the
// message sent inside TLS would fail; and the injected recipient must not receive it.
func TestSTARTTLSDiscardsEarlierEnvelope(t *testing.T) {
	need(t, "smtp-sink", "python3")
	cert := smtptest.NewCert(t, "localhost", "127.0.0.1")
	s := startSink(t)
	addr := startRelay(t, relayOptions("starttls", cert, s.addr))
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	out, err := python(t, pyPlainTextThenTLS, port, cert.CAFile, writeFile(t, "msg.eml", message("inside TLS")))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := lineAfter(out, "SENT "); got != "ok" {
		t.Fatalf("message inside TLS: %s\n%s", got, out)
	}
	tr := s.wait(1)
	if len(tr) != 1 {
		t.Fatalf("smtp-sink has %d transactions, want 1", len(tr))
	}
	if strings.Contains(tr[0], "injected@evil.test") || strings.Contains(tr[0], "mallory@evil.test") {
		t.Fatalf("the plain-text envelope reached the message sent inside TLS:\n%s", tr[0])
	}
}

const pySessionChecks = `
import smtplib, socket, sys
port, path = int(sys.argv[1]), sys.argv[2]
msg = open(path, 'rb').read()
# smtplib's default name on a host whose name has no dot is an address literal.
s = smtplib.SMTP('127.0.0.1', port, local_hostname='[127.0.0.1]', timeout=20)
s.ehlo()
s.command_encoding = 'utf-8'
print('UTF8', s.docmd('MAIL FROM:<j\u00f6rg@example.org>'))
print('NUL', s.docmd('MAIL FROM:<a\x00b@example.org>'))
print('SEQ', s.docmd('DATA'))
# A BDAT chunk, then RSET: the transfer is aborted and the session goes on.
print('MAIL', s.docmd('MAIL FROM:<dropped@example.org>'))
print('RCPT', s.docmd('RCPT TO:<rcpt@example.net>'))
s.send(b'BDAT 5\r\nHello')
print('BDAT', s.getreply())
print('RSET', s.docmd('RSET'))
s.sendmail('sender@example.org', ['rcpt@example.net'], msg)
print('SENT ok')
s.quit()
`

// TestSessionChecksAgainstSmtpSink runs Python's smtplib through the relay to smtp-sink: an address literal as
// EHLO name is kept in Received:, a UTF-8 address without SMTPUTF8 and a NUL in an address are refused as Postfix
// refuses them, DATA before MAIL is a bad sequence, and RSET after a BDAT chunk aborts that message only.
func TestSessionChecksAgainstSmtpSink(t *testing.T) {
	need(t, "smtp-sink", "python3")
	s := startSink(t)
	o := relayOptions("plain", nil, s.addr)
	o.ReceivedHeader = true
	addr := startRelay(t, o)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	out, err := python(t, pySessionChecks, port, writeFile(t, "msg.eml", message("session checks")))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for prefix, want := range map[string]string{
		"UTF8 ": "(553, b'5.6.7 Must declare SMTPUTF8 to send unicode address')",
		"NUL ":  "(501, b'5.1.7 Bad sender address syntax')",
		"SEQ ":  "(503, b'5.5.1 Missing RCPT TO command.')",
		"BDAT ": "(250, b'2.0.0 Continue')",
		"RSET ": "(250, b'2.0.0 Session reset')",
		"SENT ": "ok",
	} {
		if got := lineAfter(out, prefix); got != want {
			t.Errorf("%s%s, want %s\n%s", prefix, got, want, out)
		}
	}
	tr := s.wait(1)
	if len(tr) != 1 || strings.Contains(tr[0], "dropped@example.org") {
		t.Fatalf("smtp-sink has %d transactions, want the one sent after RSET:\n%s", len(tr), strings.Join(tr, "\n---\n"))
	}
	if !strings.Contains(tr[0], "Received: from [127.0.0.1] ([127.0.0.1]) by relay.test") {
		t.Fatalf("Received: lost the address literal:\n%s", tr[0])
	}
}
