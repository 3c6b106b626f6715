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
	"github.com/postern/postern/proxy/config"
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
	path := stuckConfig(t, dir, "3s", false, 1)
	m := newManager(t, path)
	defer m.Close(context.Background())
	version := m.Version()

	stuckConfig(t, dir, "3s", true, 0)
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
	stuckConfig(t, dir, "3s", false, 2)
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
	reloadRunning(t, m)
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

// A read that hangs in the file system cannot be cancelled: the reload is reported timed out at reload_timeout,
// later reloads are refused while it lingers, Close does not wait for it, and when it finally returns its
// configuration is thrown away.
func TestReloadStuckInLoadIsAbandoned(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, stuckConfig(t, dir, "3s", false, 1))
	version := m.Version()
	stuckConfig(t, dir, "3s", false, 2)
	unblock := make(chan struct{})
	entered := make(chan struct{}, 1)
	m.load = func(path string) (*config.Config, error) {
		entered <- struct{}{}
		<-unblock
		return config.Load(path)
	}
	if _, err := m.Reload(context.Background()); !errors.Is(err, ErrReloadTimeout) {
		t.Fatalf("reload stuck in Load: %v, want ErrReloadTimeout", err)
	}
	<-entered
	if _, err := m.Reload(context.Background()); !errors.Is(err, ErrReloadRunning) {
		t.Fatalf("reload while a stuck one lingers: %v, want ErrReloadRunning", err)
	}
	if m.Version() != version {
		t.Fatal("the configuration changed")
	}
	// The stuck load returns at last (the mount came back): its result is not installed.
	close(unblock)
	reloadIdle(t, m)
	if m.Version() != version {
		t.Fatal("an abandoned reload was installed")
	}
	s, release := m.Acquire()
	if got := evalTag(t, s); got != "1" {
		t.Fatalf("serving tag %q", got)
	}
	release()
	waitLive(t, m, 1) // the abandoned snapshot's plugins were released
	m.load = config.Load
	if _, err := m.Reload(context.Background()); err != nil {
		t.Fatalf("reload after the stuck one ended: %v", err)
	}
	if m.Version() == version {
		t.Fatal("the good reload did not take")
	}
	m.Close(context.Background())
}

func TestCloseDuringStuckLoad(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, stuckConfig(t, dir, "1h", false, 1))
	stuckConfig(t, dir, "1h", false, 2)
	unblock := make(chan struct{})
	defer close(unblock)
	m.load = func(path string) (*config.Config, error) {
		<-unblock
		return config.Load(path)
	}
	go m.Reload(context.Background())
	reloadRunning(t, m)
	closed := make(chan error, 1)
	go func() { closed <- m.Close(context.Background()) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for a reload stuck in the file system")
	}
}

// reloadRunning waits until a reload has started.
func reloadRunning(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m.reloadMu.Lock()
		running := !m.reloading.IsZero()
		m.reloadMu.Unlock()
		if running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the reload never started")
		}
		time.Sleep(time.Millisecond)
	}
}
