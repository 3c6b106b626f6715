package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTLSConfig(t *testing.T) {
	cfg, err := TLSConfig("mx.example.net:25", TLSOptions{Mode: TLSImplicit})
	if err != nil || cfg.ServerName != "mx.example.net" || cfg.InsecureSkipVerify || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("%+v, %v", cfg, err)
	}
	if _, err := TLSConfig("", TLSOptions{Mode: TLSImplicit}); err == nil || !strings.Contains(err.Error(), "server_name") {
		t.Fatalf("no host name to verify: %v", err)
	}
	if cfg, err := TLSConfig("", TLSOptions{Mode: TLSImplicit, SkipVerify: true}); err != nil || !cfg.InsecureSkipVerify {
		t.Fatalf("skip verify: %+v, %v", cfg, err)
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	if _, err := TLSConfig("mx.example.net:25", TLSOptions{CAFile: bad}); err == nil {
		t.Fatal("a CA file without a certificate was accepted")
	}
}

// TestDialTimeout: a dial that does not complete is given up at the timeout, not left hanging.
func TestDialTimeout(t *testing.T) {
	d := Dialer{Timeout: 50 * time.Millisecond, Dial: func(ctx context.Context) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	done := make(chan error, 1)
	go func() { _, err := d.DialContext(context.Background()); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("dial: %v, want deadline exceeded", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the dial did not end at its timeout")
	}
}

func TestTLSInfo(t *testing.T) {
	if v, c := TLSInfo(nil); v != "" || c != "" {
		t.Fatalf("nil: %q %q", v, c)
	}
	v, c := TLSInfo(&tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256})
	if v != "TLS1.3" || c != "TLS_AES_128_GCM_SHA256" {
		t.Fatalf("%q %q", v, c)
	}
}
