package smtpproxy_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

func starttlsRelay(t *testing.T, extra func(*smtpproxy.Options)) (string, *smtptest.Cert, *smtptest.Upstream) {
	t.Helper()
	cert := smtptest.NewCert(t)
	up := (&smtptest.Upstream{Users: map[string]string{"alice": "secret"}}).Start(t)
	o := smtpproxy.Options{Upstream: up.Addr, TLS: smtpproxy.TLS{Mode: smtpproxy.TLSStartTLS, CertFile: cert.CertFile, KeyFile: cert.KeyFile}}
	if extra != nil {
		extra(&o)
	}
	addr, _ := startRelay(t, o)
	return addr, cert, up
}

// TestSTARTTLSInjectionIsDiscarded sends a command in the same write as STARTTLS (CVE-2011-0411 class). It must
// never be answered inside TLS, where the client would take its reply as the answer to its own next command.
func TestSTARTTLSInjectionIsDiscarded(t *testing.T) {
	for _, injected := range []string{"RSET\r\n", "EHLO x\r\n"} {
		t.Run(strings.TrimSpace(injected), func(t *testing.T) {
			addr, cert, up := starttlsRelay(t, nil)
			c := hello(t, addr)
			c.Write("STARTTLS\r\n" + injected)
			c.Expect("", 220)
			tc := tls.Client(c.Conn, cert.ClientConfig("localhost"))
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			c = smtptest.NewClient(t, tc)
			if r := c.Cmd("NOOP"); r.Text() != "2.0.0 I have successfully done nothing" {
				t.Fatalf("first reply inside TLS is %v: the injected %q was answered", r, injected)
			}
			// An injected EHLO would have introduced the client again inside TLS.
			if r := c.Cmd("MAIL FROM:<a@example.org>"); r.Code != 503 {
				t.Fatalf("MAIL before EHLO inside TLS: %v, want 503", r)
			}
			c.Expect("EHLO client.test", 250)
			if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
				t.Fatalf("message over TLS: %v", r)
			}
			if len(up.Messages()) != 1 {
				t.Fatal("message not relayed")
			}
		})
	}
}

func TestSTARTTLSAndAuthOffering(t *testing.T) {
	filter := &testFilter{}
	addr, cert, up := starttlsRelay(t, func(o *smtpproxy.Options) {
		o.Protocol = smtpproxy.ProtocolSubmission
		o.Filters = filter
	})
	c := smtptest.Dial(t, addr)
	c.Expect("", 220)
	r := c.Expect("EHLO client.test", 250)
	if !hasLine(r, "STARTTLS") {
		t.Fatalf("STARTTLS not offered: %v", r)
	}
	if hasLine(r, "AUTH") {
		t.Fatalf("AUTH offered before TLS: %v", r)
	}
	if r := c.Cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA=="); r.Code != 523 {
		t.Fatalf("AUTH before TLS: %v, want 523", r)
	}
	c.StartTLS(cert.ClientConfig("localhost"))
	r = c.Expect("EHLO client.test", 250)
	if hasLine(r, "STARTTLS") || !hasLine(r, "AUTH PLAIN LOGIN") {
		t.Fatalf("after TLS: %v", r)
	}
	// Wrong password: the upstream's refusal, unchanged.
	if r := c.Cmd("AUTH PLAIN AGFsaWNlAHdyb25n"); r.Code != 535 || !strings.Contains(r.Text(), "upstream says") {
		t.Fatalf("bad password: %v", r)
	}
	c.Expect("AUTH PLAIN AGFsaWNlAHNlY3JldA==", 235) // \0alice\0secret
	if r := c.Send("alice@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
		t.Fatalf("send: %v", r)
	}
	m := up.Messages()
	if len(m) != 1 || m[0].AuthUser != "alice" {
		t.Fatalf("upstream did not see alice authenticated: %+v", m)
	}
	calls := filter.at(pluginhost.HookMessage)
	if len(calls) != 1 {
		t.Fatalf("message hook calls: %d", len(calls))
	}
	env := calls[0].env
	if env.AuthUser != "alice" || env.TLSVersion != "TLS1.3" || env.TLSCipher == "" || env.Protocol != "submission" ||
		env.Direction != "outbound" || env.HELO != "client.test" || env.ClientIP != "127.0.0.1" {
		t.Fatalf("envelope seen by the policy: %+v", env)
	}
	if up.Sessions() != 1 {
		t.Fatalf("STARTTLS opened %d upstream sessions, want 1", up.Sessions())
	}
	// The last reply of a TLS session arrives before the connection closes.
	c.Expect("QUIT", 221)
}

func TestAuthLoginRelayed(t *testing.T) {
	addr, cert, up := starttlsRelay(t, nil)
	c := hello(t, addr)
	c.StartTLS(cert.ClientConfig("localhost"))
	c.Expect("EHLO client.test", 250)
	c.Expect("AUTH LOGIN", 334)
	c.Expect("YWxpY2U=", 334) // alice
	c.Expect("c2VjcmV0", 235) // secret
	c.Send("alice@example.org", []string{"b@example.net"}, simpleMessage)
	if m := up.Messages(); len(m) != 1 || m[0].AuthUser != "alice" {
		t.Fatalf("upstream: %+v", m)
	}
}

func TestInsecureAuthWhenAllowed(t *testing.T) {
	up := (&smtptest.Upstream{Users: map[string]string{"alice": "secret"}}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, AllowInsecureAuth: true})
	c := smtptest.Dial(t, addr)
	c.Expect("", 220)
	if r := c.Expect("EHLO client.test", 250); !hasLine(r, "AUTH") {
		t.Fatalf("AUTH not offered with allow_insecure_auth: %v", r)
	}
	c.Expect("AUTH PLAIN AGFsaWNlAHNlY3JldA==", 235)
}

func TestImplicitTLS(t *testing.T) {
	cert := smtptest.NewCert(t)
	filter := &testFilter{}
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: filter,
		TLS: smtpproxy.TLS{Mode: smtpproxy.TLSImplicit, CertFile: cert.CertFile, KeyFile: cert.KeyFile}})
	cfg := cert.ClientConfig("localhost")
	cfg.MaxVersion = tls.VersionTLS12
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := smtptest.NewClient(t, tc)
	c.Expect("", 220)
	if r := c.Expect("EHLO client.test", 250); hasLine(r, "STARTTLS") {
		t.Fatalf("STARTTLS offered inside implicit TLS: %v", r)
	}
	c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
	c.Expect("QUIT", 221)
	calls := filter.seen()
	if len(calls) == 0 || calls[0].hook != pluginhost.HookConnect {
		t.Fatalf("connect hook not called first: %+v", calls)
	}
	// Implicit TLS is known at connect already.
	if v := calls[0].env.TLSVersion; v != "TLS1.2" || !strings.HasPrefix(calls[0].env.TLSCipher, "TLS_") {
		t.Fatalf("TLS at connect: %q %q", v, calls[0].env.TLSCipher)
	}
}

func TestOldTLSVersionsRefused(t *testing.T) {
	cert := smtptest.NewCert(t)
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
		TLS: smtpproxy.TLS{Mode: smtpproxy.TLSImplicit, CertFile: cert.CertFile, KeyFile: cert.KeyFile}})
	cfg := cert.ClientConfig("localhost")
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if c, err := tls.Dial("tcp", addr, cfg); err == nil {
		c.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
}

func TestCertificateReload(t *testing.T) {
	cert := smtptest.NewCert(t)
	up := (&smtptest.Upstream{}).Start(t)
	dir := t.TempDir()
	certFile, keyFile := dir+"/cert.pem", dir+"/key.pem"
	copyFile(t, cert.CertFile, certFile)
	copyFile(t, cert.KeyFile, keyFile)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
		TLS: smtpproxy.TLS{Mode: smtpproxy.TLSImplicit, CertFile: certFile, KeyFile: keyFile}})
	serial := func(pool *x509.CertPool) (string, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName + "/" +
			c.ConnectionState().PeerCertificates[0].Issuer.String(), nil
	}
	first, err := serial(cert.Pool)
	if err != nil {
		t.Fatal(err)
	}
	next := smtptest.NewCert(t, "localhost", "127.0.0.1")
	copyFile(t, next.CertFile, certFile)
	copyFile(t, next.KeyFile, keyFile)
	if err := srv.ReloadCertificate(); err != nil {
		t.Fatal(err)
	}
	if _, err := serial(cert.Pool); err == nil {
		t.Fatal("old CA still verifies after reload: the certificate was not replaced")
	}
	if _, err := serial(next.Pool); err != nil {
		t.Fatalf("new certificate not served: %v (first was %s)", err, first)
	}
	// A broken file keeps the current certificate.
	os.WriteFile(keyFile, []byte("garbage"), 0o600)
	if err := srv.ReloadCertificate(); err == nil {
		t.Fatal("reload of a broken key succeeded")
	}
	if _, err := serial(next.Pool); err != nil {
		t.Fatalf("failed reload dropped the working certificate: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestUpstreamTLS(t *testing.T) {
	cert := smtptest.NewCert(t, "mx.upstream.test", "127.0.0.1")
	for _, mode := range []smtpproxy.UpstreamTLSMode{smtpproxy.UpstreamTLSStartTLS, smtpproxy.UpstreamTLSImplicit} {
		t.Run(string(mode), func(t *testing.T) {
			up := (&smtptest.Upstream{TLS: cert.ServerConfig(), Implicit: mode == smtpproxy.UpstreamTLSImplicit}).Start(t)
			// Verified with the CA file and the right name: relayed.
			filter := &testFilter{}
			addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: filter, UpstreamTLS: smtpproxy.UpstreamTLS{
				Mode: mode, CAFile: cert.CAFile, ServerName: "mx.upstream.test"}})
			c := hello(t, addr)
			if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
				t.Fatalf("send: %v", r)
			}
			if m := up.Messages(); len(m) != 1 || m[0].HELO != "relay.test" {
				t.Fatalf("upstream: %+v", m)
			}
			// Plugins and policies see the upstream connection's TLS, the client's being plain.
			msgs := filter.at(pluginhost.HookMessage)
			if len(msgs) != 1 || msgs[0].env.UpstreamTLSVersion != "TLS1.3" || !strings.HasPrefix(msgs[0].env.UpstreamTLSCipher, "TLS_") ||
				msgs[0].env.TLSVersion != "" {
				t.Errorf("envelope at message: %+v", msgs)
			}
			// Verification is on by default: a wrong name, or no CA, refuses the session.
			for _, bad := range []smtpproxy.UpstreamTLS{
				{Mode: mode, CAFile: cert.CAFile, ServerName: "other.test"},
				{Mode: mode, ServerName: "mx.upstream.test"},
			} {
				addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, UpstreamTLS: bad})
				expectUpstreamRefusal(t, addr)
			}
			addr, _ = startRelay(t, smtpproxy.Options{Upstream: up.Addr, UpstreamTLS: smtpproxy.UpstreamTLS{Mode: mode, SkipVerify: true}})
			hello(t, addr)
		})
	}
	t.Run("starttls required", func(t *testing.T) {
		up := (&smtptest.Upstream{}).Start(t) // no STARTTLS offered
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, UpstreamTLS: smtpproxy.UpstreamTLS{
			Mode: smtpproxy.UpstreamTLSStartTLS, SkipVerify: true}})
		// Refused, not relayed in plain text.
		expectUpstreamRefusal(t, addr)
	})
}

// TestSTARTTLSDiscardsPlainTextTransaction: a MAIL and RCPT given before STARTTLS (injected by someone on the
// path, say) are reset upstream when TLS starts (RFC 3207 §4.2), before anything inside TLS reaches the upstream,
// and the audit record of the message sent inside TLS lists only its own envelope. (test/interop runs the same
// against smtp-sink, which refuses a nested MAIL as Postfix does.)
func TestSTARTTLSDiscardsPlainTextTransaction(t *testing.T) {
	rec := &recorder{}
	filter := &testFilter{decide: decideAt(pluginhost.HookMessage, policy.Decision{Action: pluginhost.Accept, Tags: map[string]string{"seen": "1"}})}
	cert := smtptest.NewCert(t)
	up := (&smtptest.RawUpstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Audit: rec, Filters: filter,
		TLS: smtpproxy.TLS{Mode: smtpproxy.TLSStartTLS, CertFile: cert.CertFile, KeyFile: cert.KeyFile}})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<mallory@evil.test>", 250)
	c.Expect("RCPT TO:<injected@evil.test>", 250)
	c.StartTLS(cert.ClientConfig("localhost"))
	c.Expect("EHLO client.test", 250)
	if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
		t.Fatalf("message inside TLS: %v", r)
	}
	cmds := strings.Join(up.Commands(), "\n")
	if !regexpMatch(`RCPT TO:<injected@evil.test>\nRSET\n(EHLO [^\n]*\n)?MAIL FROM:<a@example.org>`, cmds) {
		t.Fatalf("upstream commands, want an RSET when TLS starts:\n%s", cmds)
	}
	recs := rec.records()
	if len(recs) != 1 || *recs[0].MailFrom != "a@example.org" || !slices.Equal(recs[0].Rcpts, []string{"b@example.net"}) {
		t.Fatalf("audit records: %+v", recs)
	}
}

// TestSTARTTLSDiscardsPlainTextAuth: an AUTH given before STARTTLS (allowed here by allow_insecure_auth, or
// injected on the path) does not survive TLS (RFC 3207 §4.2). go-smtp forgets it for the client; the upstream
// connection, logged in as that user, is replaced, so a message sent inside TLS without a new AUTH is not sent
// with the user's rights, and the policy does not see the user.
func TestSTARTTLSDiscardsPlainTextAuth(t *testing.T) {
	filter := &testFilter{}
	addr, cert, up := starttlsRelay(t, func(o *smtpproxy.Options) {
		o.AllowInsecureAuth = true
		o.Filters = filter
	})
	c := hello(t, addr)
	c.Expect("AUTH PLAIN AGFsaWNlAHNlY3JldA==", 235) // \0alice\0secret, in plain text
	c.StartTLS(cert.ClientConfig("localhost"))
	c.Expect("EHLO client.test", 250)
	if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
		t.Fatalf("message inside TLS: %v", r)
	}
	m := up.Messages()
	if len(m) != 1 || m[0].AuthUser != "" {
		t.Fatalf("upstream messages: %+v; want one, not authenticated", m)
	}
	if up.Sessions() != 2 {
		t.Fatalf("upstream sessions: %d, want 2 (the logged-in one replaced at STARTTLS)", up.Sessions())
	}
	if calls := filter.at(pluginhost.HookMessage); len(calls) != 1 || calls[0].env.AuthUser != "" {
		t.Fatalf("the policy saw the user from before TLS: %+v", calls)
	}
	// Logging in again inside TLS works as usual.
	c.Expect("AUTH PLAIN AGFsaWNlAHNlY3JldA==", 235)
	if r := c.Send("alice@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
		t.Fatalf("second message: %v", r)
	}
	if m := up.Messages(); len(m) != 2 || m[1].AuthUser != "alice" {
		t.Fatalf("upstream messages after AUTH inside TLS: %+v", m)
	}
}
