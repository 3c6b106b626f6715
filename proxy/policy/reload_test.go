package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/postern/postern/internal/testplugins"
)

// stuckConfig writes a configuration with reload_timeout and one scripted plugin; loop makes its postern_init
// never return (its own init timeout, 10 minutes, is far away).
func stuckConfig(t *testing.T, dir, reloadTimeout string, loop bool, tag int) string {
	t.Helper()
	spec := fmt.Sprintf("tag=v:%d", tag)
	if loop {
		spec = "initloop"
	}
	cfg := fmt.Sprintf("reload_timeout = %q\nplugin \"p\" {\n  source = %q\n  config = %q\n  timeout = \"10m\"\n}\n"+
		"policy \"all\" {\n  plugins = [\"p\"]\n}\n", reloadTimeout,
		testplugins.Path(t, "proxy/policy/testdata/policytest-scripted"), spec)
	path := filepath.Join(dir, "postern.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// reloadIdle waits until no reload runs in the background.
func reloadIdle(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m.reloadMu.Lock()
		idle := m.reloading.IsZero()
		m.reloadMu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a reload is still running after 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A plugin whose initialisation never returns is stopped at the running configuration's reload_timeout, the
// reload is refused and the current configuration keeps serving; the next reload works.
func TestReloadBoundedByReloadTimeout(t *testing.T) {
	dir := t.TempDir()
	path := stuckConfig(t, dir, "1s", false, 1)
	m := newManager(t, path)
	defer m.Close(context.Background())
	version := m.Version()

	stuckConfig(t, dir, "1s", true, 0)
	_, err := m.Reload(context.Background())
	if !errors.Is(err, ErrReloadTimeout) {
		t.Fatalf("reload of a plugin stuck in init: %v, want ErrReloadTimeout", err)
	}
	if m.Version() != version {
		t.Fatal("a timed-out reload changed the configuration")
	}
	s, release := m.Acquire()
	if got := evalTag(t, s); got != "1" {
		t.Fatalf("serving tag %q after the refused reload", got)
	}
	release()

	reloadIdle(t, m) // plugin initialisation stops at the deadline: the reload ends soon after
	stuckConfig(t, dir, "1s", false, 2)
	if _, err := m.Reload(context.Background()); err != nil {
		t.Fatalf("reload after a timed-out one: %v", err)
	}
	s, release = m.Acquire()
	defer release()
	if got := evalTag(t, s); got != "2" {
		t.Fatalf("serving tag %q after the good reload", got)
	}
}

// While a reload runs, another is refused at once with ErrReloadRunning, and Close does not wait for it.
func TestReloadOneAtATimeAndCloseDoesNotWait(t *testing.T) {
	dir := t.TempDir()
	path := stuckConfig(t, dir, "10m", false, 1)
	m := newManager(t, path)
	stuckConfig(t, dir, "10m", true, 0)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := m.Reload(ctx)
		first <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m.reloadMu.Lock()
		running := !m.reloading.IsZero()
		m.reloadMu.Unlock()
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first reload never started")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := m.Reload(context.Background()); !errors.Is(err, ErrReloadRunning) {
		t.Fatalf("a reload during a running one: %v, want ErrReloadRunning", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- m.Close(context.Background()) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for a stuck reload")
	}
	select {
	case err := <-first:
		// Close cancelled it: it reports the timeout (or the closed manager) and installed nothing.
		if err == nil {
			t.Fatal("the stuck reload succeeded after Close")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stuck reload did not end after Close")
	}
	if m.Version() != "" {
		t.Fatal("a snapshot was installed after Close")
	}
}

// A reload that has returned no longer counts as running: back-to-back reloads are never refused.
func TestReloadBackToBack(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, stuckConfig(t, dir, "30s", false, 1))
	defer m.Close(context.Background())
	for i := range 50 {
		if _, err := m.Reload(context.Background()); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
}
