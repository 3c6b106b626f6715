package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIMAPListener(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": `
state_dir = "state"
listener "imap" "imap" {
  address  = "127.0.0.1:1143"
  upstream = "127.0.0.1:143"
  upstream_tls {
    mode        = "starttls"
    server_name = "mail.example.com"
  }
  imap {
    upstream_proxy_protocol = true
    cache_size              = "32MiB"
    cache_entry             = "512KiB"
    cache_per_user          = "4MiB"
    cache_disk              = "1GiB"
    cache_metadata          = "8MiB"
    idle_keepalive          = "1m"
    prefilter               = 0
  }
  limits {
    session_time = "48h"
    command_rate = 50
  }
}
listener "imap" "defaults" {
  address  = "127.0.0.1:1144"
  upstream = "127.0.0.1:143"
}
`})
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	want := IMAP{UpstreamProxyProtocol: true, CacheMemory: 32 << 20, CacheEntry: 512 << 10, CacheUser: 4 << 20,
		CacheDisk: 1 << 30, CacheMeta: 8 << 20, IdleKeepalive: time.Minute, Prefilter: 0, PrefilterSet: true}
	if l.IMAP != want || l.Direction != "retrieval" || l.UpstreamTLS.Mode != "starttls" ||
		l.Limits.SessionTime != 48*time.Hour || l.Limits.CommandRate != 50 {
		t.Fatalf("imap listener %+v", l)
	}
	if d := cfg.Listeners[1]; d.IMAP != (IMAP{}) || d.Limits.IdleTimeout != 30*time.Minute {
		t.Fatalf("defaults %+v", d)
	}
	if err := cfg.CheckServable(); err != nil {
		t.Fatalf("an imap listener is not servable: %v", err)
	}
	cfg.StateDir = ""
	if err := cfg.CheckServable(); err == nil || !strings.Contains(err.Error(), "under state_dir") {
		t.Fatalf("a disk cache without a state directory: %v", err)
	}
}

func TestIMAPBlockErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": `
listener "pop3" "pop" {
  address  = "127.0.0.1:1110"
  upstream = "127.0.0.1:110"
  imap {
    cache_size = "32MiB"
  }
}
listener "imap" "imap" {
  address  = "127.0.0.1:1143"
  upstream = "127.0.0.1:143"
  imap {
    cache_size     = "1KiB"
    idle_keepalive = "1s"
    bogus          = 1
  }
  limits {
    early_ok     = "5s"
    session_time = "8d"
  }
}
`})
	got := strings.Join(loadErrors(t, dir), "\n")
	for _, want := range []string{
		"main.hcl:5:3: Not a pop3 setting", "main.hcl:13:22", "main.hcl:14:22", "main.hcl:15:5: Unsupported argument",
		"main.hcl:18:20: Not a imap setting", "main.hcl:19:20",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
}
