package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/testplugins"
)

// scriptedRunConfig writes a configuration with one SMTP listener in front of the embedded upstream and the
// scripted test plugin with the given configuration (initloop: its initialisation never returns) and source.
func scriptedRunConfig(t *testing.T, path, addr, reloadTimeout, spec, source string) {
	t.Helper()
	if source == "" {
		source = testplugins.Path(t, "proxy/policy/testdata/policytest-scripted")
	}
	cfg := fmt.Sprintf(`state_dir = "state"
reload_timeout = %q
audit {
  path = "state/audit.log"
}
listener "smtp" "in" {
  address  = %q
  upstream = "embedded"
}
plugin "p" {
  source  = %q
  config  = %q
  timeout = "10m"
}
policy "all" {
  plugins = ["p"]
}
`, reloadTimeout, addr, source, spec)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A FIFO as a plugin's source is refused, with its file:line and at once, by `postern check`, by `postern
// reload` and by SIGHUP; the proxy keeps serving and stops on SIGTERM.
func TestRunReloadRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "run.hcl")
	addr := freePort(t)
	scriptedRunConfig(t, cfgPath, addr, "30s", "tag=v:1", "")
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")

	fifo := filepath.Join(dir, "module.wasm")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	scriptedRunConfig(t, cfgPath, addr, "30s", "tag=v:2", fifo)
	const where = "run.hcl:11:"
	code, _, errs := runPostern(t, "check", cfgPath)
	if code != 1 || !strings.Contains(errs, where) || !strings.Contains(errs, "FIFO") {
		t.Fatalf("check: exit %d\n%s", code, errs)
	}
	code, _, errs = runPostern(t, "reload", "-timeout", "30s", "-socket", filepath.Join(dir, "state", "control.sock"))
	if code != 1 || !strings.Contains(errs, where) || !strings.Contains(errs, "FIFO") {
		t.Fatalf("reload: exit %d\n%s", code, errs)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "reload refused")
	if err := send(addr, "still serving", "hello"); err != nil {
		t.Fatalf("after the refused reloads: %v", err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

// A reload stuck in a plugin's initialisation is cut at reload_timeout; the proxy serves on the old
// configuration, and the next reload works.
func TestRunReloadTimeout(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "run.hcl")
	addr := freePort(t)
	scriptedRunConfig(t, cfgPath, addr, "3s", "tag=v:1", "")
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")
	sock := filepath.Join(dir, "state", "control.sock")

	scriptedRunConfig(t, cfgPath, addr, "3s", "initloop", "")
	code, _, errs := runPostern(t, "reload", "-socket", sock)
	if code != 1 || !strings.Contains(errs, "reload timed out") || !strings.Contains(errs, "reload_timeout 3s") {
		t.Fatalf("stuck reload: exit %d\n%s", code, errs)
	}
	if err := send(addr, "still serving", "hello"); err != nil {
		t.Fatalf("after the timed-out reload: %v", err)
	}
	scriptedRunConfig(t, cfgPath, addr, "3s", "tag=v:2", "")
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, errs := runPostern(t, "reload", "-socket", sock)
		if code == 0 && strings.Contains(out, "reloaded") {
			break
		}
		// The stuck reload ends just after its deadline; until then a reload is refused as running.
		if !strings.Contains(errs, "already running") || time.Now().After(deadline) {
			t.Fatalf("reload after the timeout: exit %d\n%s%s", code, out, errs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

// SIGTERM works while a reload is stuck (here in a plugin's initialisation, with a reload_timeout far away):
// reloads run off the signal loop. Meanwhile another reload is refused as running, and SIGHUPs are coalesced.
func TestRunSIGTERMDuringStuckReload(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "run.hcl")
	addr := freePort(t)
	scriptedRunConfig(t, cfgPath, addr, "1h", "tag=v:1", "")
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")

	scriptedRunConfig(t, cfgPath, addr, "1h", "initloop", "")
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "reload started")
	code, _, errs := runPostern(t, "reload", "-timeout", "30s", "-socket", filepath.Join(dir, "state", "control.sock"))
	if code != 1 || !strings.Contains(errs, "already running") {
		t.Fatalf("reload during a stuck one: exit %d\n%s", code, errs)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "reloading once more when it ends")
	if err := send(addr, "during the reload", "hello"); err != nil {
		t.Fatalf("serving during the stuck reload: %v", err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM during a stuck reload", code)
	}
	if log := p.log.String(); !strings.Contains(log, "postern stopped") {
		t.Fatalf("log:\n%s", log)
	}
}
