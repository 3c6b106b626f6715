package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPOP3Listener(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": `
state_dir = "state"
listener "pop3" "pop" {
  address                 = "127.0.0.1:1110"
  upstream                = "embedded"
  size_mode               = "upstream"
  upstream_proxy_protocol = true
  upstream_tls {
    mode        = "stls"
    server_name = "mail.example.com"
  }
  cache {
    memory   = "32MiB"
    entry    = "512KiB"
    per_user = "4MiB"
    disk     = "1GiB"
  }
  limits {
    session_time = "30m"
    command_rate = 20
    early_ok     = "4s"
  }
}
listener "pop3" "defaults" {
  address  = "127.0.0.1:1111"
  upstream = "127.0.0.1:110"
}
`})
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	want := POP3{SizeMode: "upstream", UpstreamProxyProtocol: true, CacheMemory: 32 << 20, CacheEntry: 512 << 10,
		CacheUser: 4 << 20, CacheDisk: 1 << 30, EarlyOK: 4 * time.Second}
	if l.POP3 != want || l.Limits.SessionTime != 30*time.Minute || l.Limits.CommandRate != 20 ||
		l.Upstream != UpstreamEmbedded || l.UpstreamTLS.Mode != "starttls" || l.Direction != "retrieval" {
		t.Fatalf("pop3 listener %+v", l)
	}
	if d := cfg.Listeners[1]; d.POP3 != (POP3{SizeMode: "exact"}) || d.Limits.IdleTimeout != 10*time.Minute {
		t.Fatalf("defaults %+v", d)
	}
	if err := cfg.CheckServable(); err != nil {
		t.Fatalf("a pop3 listener is not servable: %v", err)
	}
	cfg.StateDir = ""
	if err := cfg.CheckServable(); err == nil || !strings.Contains(err.Error(), "cache.disk keeps its files under state_dir") {
		t.Fatalf("a disk cache without a state directory: %v", err)
	}
}

func TestPOP3SettingsElsewhere(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": `
listener "smtp" "mx" {
  address   = "127.0.0.1:2525"
  upstream  = "127.0.0.1:25"
  size_mode = "exact"
  limits {
    command_rate = 5
  }
}
listener "pop3" "pop" {
  address                 = "127.0.0.1:1110"
  upstream                = "127.0.0.1:110"
  size_mode               = "sometimes"
  xclient                 = true
  upstream_proxy_protocol = true
}
`})
	got := strings.Join(loadErrors(t, dir), "\n")
	for _, want := range []string{
		"main.hcl:5:15: Not a smtp setting", "main.hcl:7:20: Not a smtp setting", "main.hcl:13:29",
		"main.hcl:15:29: Two ways to pass the client address",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
}
