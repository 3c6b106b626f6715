package pop3proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/pop3"
	"github.com/postern/postern/proxy/upstream"
)

// testCert writes a self-signed certificate for 127.0.0.1 and localhost; it returns the file names and the
// server configuration.
func testCert(t *testing.T) (certFile, keyFile string, conf *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, &tls.Config{Certificates: []tls.Certificate{pair}}
}

func clientTLS(t *testing.T, certFile string) *tls.Config {
	pem, _ := os.ReadFile(certFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

func TestSTLSDiscardsPipelinedCommands(t *testing.T) {
	cert, key, _ := testCert(t)
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	r := newRig(t, up, func(o *Options) {
		o.TLS = TLS{Mode: TLSStartTLS, CertFile: cert, KeyFile: key}
		o.AllowInsecureAuth = false
	})
	c := r.dial()
	c.ok("CAPA")
	if caps := c.lines(); !contains(caps, "STLS") || contains(caps, "USER") {
		t.Fatalf("CAPA before TLS: %v", caps)
	}
	// STLS and CAPA in one write: the CAPA must not be answered, neither in plain text nor inside TLS.
	c.n.Write([]byte("STLS\r\nCAPA\r\n"))
	if resp := c.status(); !resp.OK {
		t.Fatalf("STLS: %s", resp.Line())
	}
	tc := tls.Client(c.n, clientTLS(t, cert))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake after STLS: %v", err)
	}
	c.c.Reset(tc)
	resp := c.cmd("NOOP") // not logged in: -ERR; the pipelined CAPA would have been +OK
	if resp.OK {
		t.Fatalf("the command pipelined after STLS was answered inside TLS: %s", resp.Line())
	}
	c.ok("CAPA")
	if caps := c.lines(); contains(caps, "STLS") || !contains(caps, "USER") {
		t.Fatalf("CAPA under TLS: %v", caps)
	}
	c.login()
	if got := c.retr("1"); got != msg1 {
		t.Fatalf("RETR under TLS: %q", got)
	}
	if env := r.filter.inputs[0]; !strings.HasPrefix(env.TLSVersion, "TLS1.") {
		t.Fatalf("plugins saw TLS %q", env.TLSVersion)
	}
}

func TestImplicitTLS(t *testing.T) {
	cert, key, _ := testCert(t)
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	r := newRig(t, up, func(o *Options) {
		o.TLS = TLS{Mode: TLSImplicit, CertFile: cert, KeyFile: key}
		o.AllowInsecureAuth = false
	})
	tc, err := tls.Dial("tcp", r.addr, clientTLS(t, cert))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := &client{t: t, c: pop3.NewClient(tc, 1<<20), n: tc}
	c.status()
	c.login()
	if got := c.retr("1"); got != msg1 {
		t.Fatalf("RETR over implicit TLS: %q", got)
	}
}

func TestUpstreamTLSModes(t *testing.T) {
	cert, _, conf := testCert(t)
	for _, mode := range []upstream.TLSMode{upstream.TLSStartTLS, upstream.TLSImplicit} {
		t.Run(string(mode), func(t *testing.T) {
			up := newTestUpstream(t)
			up.tls, up.implicit = conf, mode == upstream.TLSImplicit
			up.setMessages("alice", msg1)
			r := newRig(t, up, func(o *Options) { o.UpstreamTLS = upstream.TLSOptions{Mode: mode, CAFile: cert} })
			c := r.dial()
			c.login()
			if got := c.retr("1"); got != msg1 {
				t.Fatalf("RETR: %q", got)
			}
			if env := r.filter.inputs[0]; !strings.HasPrefix(env.UpstreamTLSVersion, "TLS1.") {
				t.Fatalf("upstream TLS %q", env.UpstreamTLSVersion)
			}
		})
	}
	// A certificate that does not verify refuses the session.
	otherCert, _, _ := testCert(t)
	up := newTestUpstream(t)
	up.tls = conf
	r := newRig(t, up, func(o *Options) {
		o.UpstreamTLS = upstream.TLSOptions{Mode: upstream.TLSStartTLS, CAFile: otherCert}
	})
	n, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	resp, err := pop3.NewClient(n, 1024).ReadResponse()
	if err != nil || resp.OK || resp.Code != pop3.CodeSysTemp {
		t.Fatalf("greeting with an unverified upstream: %+v %v", resp, err)
	}
	// An upstream without STLS is refused too: no silent fall-back to plain text.
	up = newTestUpstream(t)
	r = newRig(t, up, func(o *Options) { o.UpstreamTLS = upstream.TLSOptions{Mode: upstream.TLSStartTLS, CAFile: cert} })
	n2, _ := net.Dial("tcp", r.addr)
	defer n2.Close()
	if resp, err := pop3.NewClient(n2, 1024).ReadResponse(); err != nil || resp.OK {
		t.Fatalf("greeting without upstream STLS: %+v %v", resp, err)
	}
}

func TestClientAddressReachesTheUpstream(t *testing.T) {
	up := newTestUpstream(t)
	r := newRig(t, up, func(o *Options) { o.ClientAddress = ClientAddressXClient })
	c := r.dial()
	c.login()
	local := c.n.LocalAddr().(*net.TCPAddr)
	up.mu.Lock()
	got := strings.Join(up.xclient, ";")
	up.mu.Unlock()
	if got != "ADDR=127.0.0.1 PORT="+itoa(local.Port) {
		t.Fatalf("XCLIENT %q, client %s", got, local)
	}

	// An upstream that ignores XCLIENT gets no session.
	up = newTestUpstream(t)
	up.noXClient = true
	r = newRig(t, up, func(o *Options) { o.ClientAddress = ClientAddressXClient })
	n, _ := net.Dial("tcp", r.addr)
	defer n.Close()
	if resp, err := pop3.NewClient(n, 1024).ReadResponse(); err != nil || resp.OK {
		t.Fatalf("greeting with XCLIENT ignored upstream: %+v %v", resp, err)
	}

	up = newTestUpstream(t)
	up.proxyV2 = true
	r = newRig(t, up, func(o *Options) { o.ClientAddress = ClientAddressProxyV2 })
	c = r.dial()
	c.login()
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.clients) != 1 || up.clients[0] != c.n.LocalAddr().String() {
		t.Fatalf("PROXY header gave %v, client %s", up.clients, c.n.LocalAddr())
	}
}
