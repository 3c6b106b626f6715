package pop3proxy

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/postern/postern/proxy/config"
)

func TestFromConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.hcl")
	os.WriteFile(path, []byte(`
listener "pop3" "pop" {
  address             = "127.0.0.1:1110"
  upstream            = "127.0.0.1:110"
  size_mode           = "upstream"
  xclient             = true
  allow_insecure_auth = true
  quarantine_dir      = "q"
  upstream_tls {
    mode = "stls"
  }
  cache {
    memory = "8MiB"
  }
  limits {
    session_time = "20m"
    command_rate = 7
    early_ok     = "3s"
    idle_timeout = "2m"
  }
}
`), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	o, err := FromConfig(cfg.Listeners[0]).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.SizeMode != SizeUpstream || o.ClientAddress != ClientAddressXClient || !o.AllowInsecureAuth ||
		o.UpstreamTLS.Mode != "starttls" || o.UpstreamTLS.SkipVerify || o.Cache.MemoryBytes != 8<<20 ||
		o.Cache.UserBytes != 2<<20 || o.Limits.SessionTime != 20*time.Minute || o.Limits.CommandRate != 7 ||
		o.Limits.EarlyOK != 3*time.Second ||
		o.Limits.IdleTimeout != 2*time.Minute || o.QuarantineDir != filepath.Join(dir, "q") {
		t.Fatalf("options %+v", o)
	}
}
