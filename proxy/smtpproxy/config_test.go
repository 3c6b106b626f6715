package smtpproxy_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

func TestFromConfig(t *testing.T) {
	cert := smtptest.NewCert(t)
	dir := t.TempDir()
	src := `
listener "submission" "sub" {
  address             = "127.0.0.1:2587"
  upstream            = "mail.example.net:587"
  allow_insecure_auth = true
  xclient             = true
  bare_newline        = "normalize"
  received_header     = true
  result_headers      = true
  quarantine_dir      = "q"
  tls {
    mode = "implicit"
    cert = "` + cert.CertFile + `"
    key  = "` + cert.KeyFile + `"
  }
  upstream_tls {
    mode        = "starttls"
    ca_file     = "` + cert.CAFile + `"
    server_name = "mx.example.net"
    verify      = false
  }
  limits {
    message_size    = "10MiB"
    sessions        = 7
    recipients      = 9
    command_timeout = "1m"
    idle_timeout    = "2m"
    errors          = 5
    sessions_per_client = 3
    connection_rate     = 60
    stress_sessions     = 0
    stress_timeout      = "20s"
    min_data_rate       = 0
    upstream_keepalive  = "15s"
  }
  proxy_protocol {
    trusted = ["10.0.0.0/8", "192.0.2.1"]
  }
}
`
	path := filepath.Join(dir, "postern.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	o := smtpproxy.FromConfig(cfg.Listener("sub"))
	want := smtpproxy.Options{
		Name: "sub", Protocol: "submission", Direction: "outbound", Address: "127.0.0.1:2587",
		Upstream: "mail.example.net:587", AllowInsecureAuth: true, XClient: true, BareNewline: "normalize",
		ReceivedHeader: true, ResultHeaders: true, QuarantineDir: filepath.Join(dir, "q"),
		TLS:         smtpproxy.TLS{Mode: "implicit", CertFile: cert.CertFile, KeyFile: cert.KeyFile},
		UpstreamTLS: smtpproxy.UpstreamTLS{Mode: "starttls", CAFile: cert.CAFile, ServerName: "mx.example.net", SkipVerify: true},
		Limits: smtpproxy.Limits{MessageSize: 10 << 20, Sessions: 7, Recipients: 9, CommandTimeout: time.Minute,
			IdleTimeout: 2 * time.Minute, Errors: 5, SessionsPerClient: 3, ConnectionRate: 60, StressSessions: -1,
			StressTimeout: 20 * time.Second, MinDataRate: -1, UpstreamKeepalive: 15 * time.Second},
		ProxyProtocol: smtpproxy.ProxyProtocol{Trusted: []string{"10.0.0.0/8", "192.0.2.1/32"}},
	}
	if o.Name != want.Name || o.Protocol != want.Protocol || o.Direction != want.Direction || o.Address != want.Address ||
		o.Upstream != want.Upstream || o.AllowInsecureAuth != want.AllowInsecureAuth || o.XClient != want.XClient ||
		o.BareNewline != want.BareNewline || o.ReceivedHeader != want.ReceivedHeader || o.ResultHeaders != want.ResultHeaders ||
		o.QuarantineDir != want.QuarantineDir || o.TLS != want.TLS || o.UpstreamTLS != want.UpstreamTLS || o.Limits != want.Limits ||
		len(o.ProxyProtocol.Trusted) != 2 || o.ProxyProtocol.Trusted[0] != want.ProxyProtocol.Trusted[0] ||
		o.ProxyProtocol.Trusted[1] != want.ProxyProtocol.Trusted[1] {
		t.Fatalf("FromConfig:\n got %+v\nwant %+v", o, want)
	}
	o.Logger = testLogger(t)
	if _, err := smtpproxy.New(o); err != nil {
		t.Fatalf("New with the mapped options: %v", err)
	}
	if fi, err := os.Stat(want.QuarantineDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("quarantine directory not created private: %v %v", fi, err)
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, o := range []smtpproxy.Options{
		{},
		{Upstream: "no-port"},
		{Upstream: "embedded"},
		{Upstream: "h:25", Protocol: "lmtp"},
		{Upstream: "h:25", Direction: "sideways"},
		{Upstream: "h:25", TLS: smtpproxy.TLS{Mode: smtpproxy.TLSStartTLS}},
		{Upstream: "h:25", TLS: smtpproxy.TLS{Mode: "sometimes", CertFile: "c", KeyFile: "k"}},
		{Upstream: "h:25", TLS: smtpproxy.TLS{CertFile: "/missing/cert.pem", KeyFile: "/missing/key.pem"}},
		{Upstream: "h:25", UpstreamTLS: smtpproxy.UpstreamTLS{Mode: "always"}},
		{Upstream: "h:25", UpstreamTLS: smtpproxy.UpstreamTLS{Mode: "tls", CAFile: "/missing/ca.pem"}},
		{Upstream: "h:25", BareNewline: "ignore"},
		{Upstream: "h:25", Limits: smtpproxy.Limits{LineLength: 100}},
		{Upstream: "h:25", Limits: smtpproxy.Limits{Sessions: -1}},
		{Upstream: "h:25", ProxyProtocol: smtpproxy.ProxyProtocol{Trusted: []string{"10.0.0.0/33"}}},
		{Upstream: "h:25", Hostname: "two words"},
	} {
		if _, err := smtpproxy.New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}
