//go:build unix

package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// loadPromptly is Load that fails the test if it blocks: a FIFO must be refused, not waited on.
func loadPromptly(t *testing.T, path string) (*Config, error) {
	t.Helper()
	type result struct {
		cfg *Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		cfg, err := Load(path)
		done <- result{cfg, err}
	}()
	select {
	case r := <-done:
		return r.cfg, r.err
	case <-time.After(30 * time.Second):
		t.Fatal("Load blocked (on a FIFO?)")
		return nil, nil
	}
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A plugin source, an include (named or globbed) or a certificate that is a FIFO is refused at its file:line,
// without blocking.
func TestSpecialFilesRefused(t *testing.T) {
	cases := []struct {
		name, main, fifo, want string
	}{
		{"plugin source", "plugin \"p\" {\n  source = \"p.wasm\"\n}\n", "p.wasm", "main.hcl:2:12: Cannot read plugin module"},
		{"include", "include = [\"conf.d/x.hcl\"]\n", "conf.d/x.hcl", "main.hcl:1:12: Cannot read configuration"},
		{"include glob", "include = [\"conf.d/*.hcl\"]\n", "conf.d/x.hcl", "main.hcl:1:12: Cannot read configuration"},
		{"certificate", "listener \"smtp\" \"mx\" {\n  address = \"127.0.0.1:2525\"\n  upstream = \"embedded\"\n" +
			"  tls {\n    cert = \"cert.pem\"\n    key = \"key.pem\"\n  }\n}\n", "cert.pem", "main.hcl:5:12: Cannot read certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"main.hcl": c.main, "key.pem": "x"})
			os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755)
			mkfifo(t, filepath.Join(dir, c.fifo))
			_, err := loadPromptly(t, filepath.Join(dir, "main.hcl"))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load: %v, want a *config.Error", err)
			}
			got := loadErrors(t, dir)
			if len(got) != 1 || got[0] != c.want {
				t.Fatalf("errors %q, want %q", got, c.want)
			}
			if !strings.Contains(err.Error(), "not a regular file but a FIFO") {
				t.Fatalf("the detail does not say why: %v", err)
			}
		})
	}
	// The root file itself.
	dir := t.TempDir()
	mkfifo(t, filepath.Join(dir, "main.hcl"))
	if _, err := loadPromptly(t, filepath.Join(dir, "main.hcl")); err == nil || !strings.Contains(err.Error(), "FIFO") {
		t.Fatalf("a FIFO as the configuration: %v", err)
	}
}

func TestReloadTimeout(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": okPlugin, "p.wasm": string(emptyModule)})
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReloadTimeout != DefaultReloadTimeout {
		t.Fatalf("default reload timeout %v", cfg.ReloadTimeout)
	}
	dir = writeFiles(t, map[string]string{"main.hcl": "reload_timeout = \"2m\"\n" + okPlugin, "p.wasm": string(emptyModule)})
	if cfg, err = Load(filepath.Join(dir, "main.hcl")); err != nil || cfg.ReloadTimeout != 2*time.Minute {
		t.Fatalf("reload_timeout 2m: %v %v", cfg, err)
	}
	dir = writeFiles(t, map[string]string{"main.hcl": "reload_timeout = \"10ms\"\n"})
	if got := loadErrors(t, dir); len(got) != 1 || !strings.HasPrefix(got[0], "main.hcl:1:18:") {
		t.Fatalf("reload_timeout below a second: %q", got)
	}
}
