package config

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

const quarantineListeners = `
listener "smtp" "mx" {
  address  = "127.0.0.1:2525"
  upstream = "127.0.0.1:25"
}
listener "pop3" "pop" {
  address  = "127.0.0.1:1110"
  upstream = "127.0.0.1:110"
}
`

func TestQuarantineBlock(t *testing.T) {
	dir := writeFiles(t, map[string]string{"pw": "secret\n", "main.hcl": `state_dir = "state"
quarantine {
  dir       = "q"
  max_age   = "30d"
  max_bytes = "1GiB"
  interval  = "1m"
  release "pop" {
    via         = "imap"
    address     = "127.0.0.1:143"
    master_user = "postern"
    password_file = "pw"
    mailbox     = "INBOX"
    tls {
      mode = "starttls"
      server_name = "mail.example.org"
    }
  }
  release "mx" {
    via       = "lmtp"
    address   = "127.0.0.1:24"
    recipient = "%u@example.org"
  }
}
` + quarantineListeners})
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	q := cfg.Quarantine
	if q == nil || q.Dir != filepath.Join(dir, "q") || q.MaxAge != 30*24*time.Hour || q.MaxBytes != 1<<30 ||
		q.Interval != time.Minute || len(q.Releases) != 2 {
		t.Fatalf("quarantine %+v", q)
	}
	r := q.Release("pop")
	if r.Via != "imap" || r.Login != "%u*postern" || r.PasswordFile != filepath.Join(dir, "pw") ||
		r.TLS.Mode != "starttls" || r.TLS.ServerName != "mail.example.org" || !r.TLS.Verify {
		t.Fatalf("route %+v", r)
	}
	if m := q.Release("mx"); m.Via != "lmtp" || m.Recipient != "%u@example.org" || m.TLS.Mode != "none" {
		t.Fatalf("route %+v", m)
	}
	for _, l := range cfg.Listeners {
		if l.QuarantineDir != q.Dir {
			t.Fatalf("listener %s uses %q", l.Name, l.QuarantineDir)
		}
	}
}

func TestQuarantineDefaults(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": `state_dir = "state"` + quarantineListeners})
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if q := cfg.Quarantine; q == nil || q.Dir != filepath.Join(dir, "state", "quarantine") || q.MaxAge != DefaultQuarantineMaxAge || q.MaxBytes != 0 ||
		q.Interval != DefaultQuarantineInterval {
		t.Fatalf("quarantine %+v", q)
	}
	// Without a state directory there is no store (a quarantine verdict then defers the message).
	dir = writeFiles(t, map[string]string{"main.hcl": quarantineListeners})
	cfg, err = Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Quarantine != nil || cfg.Listeners[0].QuarantineDir != "" {
		t.Fatalf("quarantine %+v", cfg.Quarantine)
	}
	// A listener's quarantine_dir, as before the store was shared, names the store for all.
	dir = writeFiles(t, map[string]string{"main.hcl": `
listener "smtp" "mx" {
  address  = "127.0.0.1:2525"
  upstream = "127.0.0.1:25"
  quarantine_dir = "old"
}
listener "pop3" "pop" {
  address  = "127.0.0.1:1110"
  upstream = "127.0.0.1:110"
}
`})
	cfg, err = Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Quarantine == nil || cfg.Quarantine.Dir != filepath.Join(dir, "old") || cfg.Listeners[1].QuarantineDir != cfg.Quarantine.Dir {
		t.Fatalf("quarantine %+v", cfg.Quarantine)
	}
}

func TestQuarantineKeptForEver(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": "state_dir = \"s\"\nquarantine {\n  max_age = \"0s\"\n}\n" + quarantineListeners})
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Quarantine.MaxAge != 0 {
		t.Fatalf("max_age %v", cfg.Quarantine.MaxAge)
	}
	got := loadErrors(t, writeFiles(t, map[string]string{"main.hcl": "state_dir = \"s\"\nquarantine {\n  max_age = \"5s\"\n}\n" + quarantineListeners}))
	if !slices.Contains(got, "main.hcl:3:13: Invalid max_age") {
		t.Fatalf("errors %q", got)
	}
}

func TestQuarantineErrors(t *testing.T) {
	for _, tc := range []struct {
		name, hcl string
		want      []string
	}{
		{"two directories", `state_dir = "s"
quarantine {
  dir = "q"
}
listener "smtp" "mx" {
  address  = "127.0.0.1:2525"
  upstream = "127.0.0.1:25"
  quarantine_dir = "other"
}
`, []string{"main.hcl:5:1: Second quarantine directory"}},
		{"unknown listener", `state_dir = "s"
quarantine {
  release "mxx" {
    via = "smtp"
    address = "127.0.0.1:25"
  }
}
` + quarantineListeners, []string{"main.hcl:3:3: Unknown listener"}},
		{"bad via and age", `state_dir = "s"
quarantine {
  max_age = "forever"
  release "pop" {
    via = "pigeon"
    address = "127.0.0.1:25"
  }
}
` + quarantineListeners, []string{"main.hcl:3:13: Invalid max_age", "main.hcl:5:11: Invalid via"}},
		{"imap without password", `state_dir = "s"
quarantine {
  release "pop" {
    via = "imap"
    address = "127.0.0.1:143"
    master_user = "postern"
  }
}
` + quarantineListeners, []string{"main.hcl:3:3: No password"}},
		{"setting of another route", `state_dir = "s"
quarantine {
  release "pop" {
    via = "imap"
    address = "127.0.0.1:143"
    recipient = "%u"
  }
}
` + quarantineListeners, []string{"main.hcl:6:17: Not a imap setting"}},
		{"no directory", `quarantine {
  max_age = "1d"
}
` + quarantineListeners, []string{"main.hcl:1:1: No quarantine directory"}},
		{"missing password file", `state_dir = "s"
quarantine {
  release "pop" {
    via = "imap"
    address = "127.0.0.1:143"
    master_user = "postern"
    password_file = "nope"
  }
}
` + quarantineListeners, []string{"main.hcl:7:21: Cannot read password file"}},
		{"duplicate route", `state_dir = "s"
quarantine {
  release "pop" {
    via = "lmtp"
    address = "127.0.0.1:24"
  }
  release "pop" {
    via = "lmtp"
    address = "127.0.0.1:24"
  }
}
` + quarantineListeners, []string{"main.hcl:7:11: Duplicate release route"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loadErrors(t, writeFiles(t, map[string]string{"main.hcl": tc.hcl}))
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("errors %q, want %q", got, w)
				}
			}
		})
	}
}
