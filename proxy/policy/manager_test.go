package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/control"
	"github.com/postern/postern/proxy/pluginhost"
)

// versionedConfig writes a configuration whose one plugin tags v=<version>.
func versionedConfig(t testing.TB, dir string, version int) string {
	return scriptedConfig(t, dir, map[string]string{"p": fmt.Sprintf("tag=v:%d", version)},
		"policy \"all\" {\n  plugins = [\"p\"]\n}\n")
}

func evalTag(t testing.TB, s *Snapshot) string {
	t.Helper()
	d := s.Evaluate(context.Background(), pluginhost.HookMessage, testInput(t, testMessage))
	for _, p := range d.Policies {
		for _, pl := range p.Plugins {
			if pl.Error != "" {
				t.Errorf("plugin error: %s", pl.Error)
			}
		}
	}
	return d.Tags["v"]
}

// newManager starts a Manager on the configuration at path with the shared compilation cache. The caller
// closes it.
func newManager(t testing.TB, path string) *Manager {
	t.Helper()
	m, err := NewManager(context.Background(), path, Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitLive waits until the manager has n snapshots alive (current or held), or fails the test after a generous
// time. Closing runs in the background, so tests wait for it rather than sleep.
func waitLive(t testing.TB, m *Manager, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		m.mu.RLock()
		live, drained := len(m.live), m.drained
		m.mu.RUnlock()
		if live == n {
			return
		}
		select {
		case <-drained:
		case <-deadline:
			t.Fatalf("%d snapshots alive, want %d", live, n)
		}
	}
}

func TestReload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := versionedConfig(t, dir, 1)
	m := newManager(t, path)
	s1, release1 := m.Acquire()
	if evalTag(t, s1) != "1" {
		t.Fatal("first configuration not serving")
	}
	v1 := m.Version()

	versionedConfig(t, dir, 2)
	res, err := m.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unchanged || res.Previous != v1 || res.Config.Version == v1 || m.Version() != res.Config.Version ||
		!strings.HasPrefix(res.String(), "reloaded: 0 listeners, 1 plugin, 1 policy (config sha256 ") {
		t.Errorf("reload result %+v: %s", res, res)
	}
	s2, release2 := m.Acquire()
	if evalTag(t, s2) != "2" {
		t.Error("new sessions do not get the new configuration")
	}
	// The session that started before the reload keeps its configuration, plugins and all.
	if evalTag(t, s1) != "1" || s1.Plugin("p").Stats().Live == 0 {
		t.Error("old session lost its configuration")
	}

	if res, err := m.Reload(ctx); err != nil || !res.Unchanged || !strings.HasPrefix(res.String(), "unchanged: config sha256 ") {
		t.Errorf("reload of identical files: %+v, %v", res, err)
	}

	// An invalid file is refused with its diagnostics and the current configuration keeps serving.
	if err := os.WriteFile(path, []byte("policy \"all\" {\n  plugins = [\"missing\"]\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = m.Reload(ctx)
	var ce *config.Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "postern.hcl:2:14: Unknown plugin") {
		t.Errorf("invalid reload: %v", err)
	}
	s3, release3 := m.Acquire()
	if s3 != s2 || evalTag(t, s3) != "2" {
		t.Error("refused reload replaced the configuration")
	}
	release3()

	// Releasing the last session of the old configuration closes its plugins.
	old := s1.Plugin("p")
	release1()
	release1() // harmless
	waitLive(t, m, 1)
	if st := old.Stats(); st.Live != 0 {
		t.Errorf("old plugin still has %d instances", st.Live)
	}
	if r := old.Call(ctx, pluginhost.HookMessage, testInput(t, testMessage)); !errors.Is(r.Err, pluginhost.ErrClosed) {
		t.Errorf("old plugin after release: %v", r.Err)
	}

	// Close waits for sessions.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := m.Close(short); err == nil || !strings.Contains(err.Error(), "still in use") {
		t.Errorf("Close with a session open: %v", err)
	}
	if s, _ := m.Acquire(); s != nil {
		t.Error("Acquire after Close returned a snapshot")
	}
	if _, err := m.Reload(ctx); err == nil {
		t.Error("Reload after Close succeeded")
	}
	release2()
	if err := m.Close(ctx); err != nil {
		t.Errorf("Close after the last session: %v", err)
	}
	if r := s2.Plugin("p").Call(ctx, pluginhost.HookMessage, testInput(t, testMessage)); !errors.Is(r.Err, pluginhost.ErrClosed) {
		t.Errorf("plugin after Close: %v", r.Err)
	}
}

// TestReloadLeak reloads 50 times, each time with a session on the old configuration, and checks that every
// snapshot's plugins were closed and that goroutines and heap return to where they were.
func TestReloadLeak(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := versionedConfig(t, dir, 0)
	m := newManager(t, path)
	defer m.Close(ctx)
	// Warm up: one reload and evaluation, so lazily created runtime state is not counted as a leak.
	versionedConfig(t, dir, 1)
	if _, err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	s, release := m.Acquire()
	evalTag(t, s)
	release()
	waitLive(t, m, 1)
	goroutines, heap := settle()

	var plugins []*pluginhost.Plugin
	for i := 2; i < 52; i++ {
		s, release := m.Acquire()
		versionedConfig(t, dir, i)
		if _, err := m.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if got := evalTag(t, s); got != fmt.Sprint(i-1) {
			t.Fatalf("session saw v=%s, want %d", got, i-1)
		}
		plugins = append(plugins, s.Plugin("p"))
		release()
	}
	waitLive(t, m, 1)
	for i, p := range plugins {
		if st := p.Stats(); st.Live != 0 {
			t.Errorf("snapshot %d: plugin still has %d live instances", i, st.Live)
		}
	}
	plugins = nil
	g, h := settle()
	t.Logf("goroutines %d -> %d, heap %d KiB -> %d KiB", goroutines, g, heap>>10, h>>10)
	if g > goroutines {
		t.Errorf("goroutines grew from %d to %d after 50 reloads", goroutines, g)
	}
	if h > heap+4<<20 {
		t.Errorf("heap grew from %d KiB to %d KiB after 50 reloads", heap>>10, h>>10)
	}
}

// settle lets background work finish and returns the goroutine count and live heap.
func settle() (int, uint64) {
	var ms runtime.MemStats
	g := runtime.NumGoroutine()
	for range 50 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		if n := runtime.NumGoroutine(); n == g {
			break
		} else {
			g = n
		}
	}
	runtime.ReadMemStats(&ms)
	return g, ms.HeapAlloc
}

// TestReloadConcurrent has sessions evaluate while reloads happen: no session may ever see its plugins closed.
func TestReloadConcurrent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := versionedConfig(t, dir, 0)
	m := newManager(t, path)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, release := m.Acquire()
				for range 3 {
					d := s.Evaluate(ctx, pluginhost.HookMessage, testInput(t, testMessage))
					if d.Action != pluginhost.Accept || d.Tags["v"] == "" {
						mu.Lock()
						failures = append(failures, summary(d)+" "+d.Policies[0].Plugins[0].Error)
						mu.Unlock()
					}
				}
				release()
			}
		}()
	}
	for i := 1; i <= 10; i++ {
		versionedConfig(t, dir, i)
		if _, err := m.Reload(ctx); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	if err := m.Close(ctx); err != nil {
		t.Error(err)
	}
	if len(failures) > 0 {
		t.Errorf("%d evaluations failed during reloads, first: %s", len(failures), failures[0])
	}
}

// TestControlReload drives a reload through the control socket, as `postern reload` does.
func TestControlReload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := versionedConfig(t, dir, 1)
	m := newManager(t, path)
	defer m.Close(ctx)
	sock := filepath.Join(t.TempDir(), "control.sock")
	srv, err := control.Listen(sock, m.ControlHandlers(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	versionedConfig(t, dir, 2)
	reply, err := control.Send(ctx, sock, "reload")
	if err != nil || !strings.HasPrefix(reply, "reloaded: 0 listeners, 1 plugin, 1 policy (config sha256 "+m.Version()) {
		t.Errorf("reload: %q, %v", reply, err)
	}
	if err := os.WriteFile(path, []byte("policy \"all\" {\n  plugins = [\"p\"]\n  when = msg.nope\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = control.Send(ctx, sock, "reload")
	var re *control.ReplyError
	if !errors.As(err, &re) || !strings.Contains(re.Text, "postern.hcl:3:13: Unsupported attribute") ||
		!strings.Contains(re.Text, "postern.hcl:2:14: Unknown plugin") {
		t.Errorf("refused reload: %v", err)
	}
	s, release := m.Acquire()
	reply, err = control.Send(ctx, sock, "status")
	if err != nil || !strings.Contains(reply, "serving 0 listeners, 1 plugin, 1 policy") || evalTag(t, s) != "2" {
		t.Errorf("status: %q, %v", reply, err)
	}
	release()
}

// TestReloadSharesUnchangedPlugins: a reload that changes only the policies keeps the loaded plugins, warm
// instances included; a changed plugin block loads a new plugin beside the old one, and the old one is closed
// when the last session holding the old configuration ends.
func TestReloadSharesUnchangedPlugins(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	plugins := map[string]string{"a": "tag=a:1", "b": "tag=b:1"}
	path := scriptedConfig(t, dir, plugins, "policy \"all\" {\n  plugins = [\"a\", \"b\"]\n}\n")
	m := newManager(t, path)
	defer m.Close(ctx)
	s1, release1 := m.Acquire()
	a1, b1 := s1.Plugin("a"), s1.Plugin("b")

	// Only the policy changes: both plugins are the same loaded plugins.
	scriptedConfig(t, dir, plugins, "policy \"only-a\" {\n  plugins = [\"a\"]\n}\npolicy \"b\" {\n  plugins = [\"b\"]\n}\n")
	if _, err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	s2, release2 := m.Acquire()
	if s2 == s1 || s2.Plugin("a") != a1 || s2.Plugin("b") != b1 || m.plugins.len() != 2 {
		t.Fatalf("policy-only reload: plugins a %p/%p, b %p/%p, %d loaded", a1, s2.Plugin("a"), b1, s2.Plugin("b"),
			m.plugins.len())
	}
	if st := a1.Stats(); st.Created != 1 {
		t.Errorf("plugin a created %d instances, want the first one reused", st.Created)
	}

	// b's configuration changes: a new b beside the old one, which the sessions on the older snapshots keep.
	plugins["b"] = "tag=b:2"
	scriptedConfig(t, dir, plugins, "policy \"all\" {\n  plugins = [\"a\", \"b\"]\n}\n")
	if _, err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	s3, release3 := m.Acquire()
	defer release3()
	b3 := s3.Plugin("b")
	if s3.Plugin("a") != a1 || b3 == b1 || m.plugins.len() != 3 {
		t.Fatalf("plugin reload: a reused %v, b new %v, %d loaded", s3.Plugin("a") == a1, b3 != b1, m.plugins.len())
	}
	d1 := s1.Evaluate(ctx, pluginhost.HookMessage, testInput(t, testMessage))
	d3 := s3.Evaluate(ctx, pluginhost.HookMessage, testInput(t, testMessage))
	if d1.Tags["b"] != "1" || d3.Tags["b"] != "2" {
		t.Errorf("old session sees b=%s (want 1), new one b=%s (want 2)", d1.Tags["b"], d3.Tags["b"])
	}

	// The old b goes when the last snapshot using it does; a stays, in use by the current one.
	release1()
	release2()
	waitLive(t, m, 1)
	if n := m.plugins.len(); n != 2 {
		t.Errorf("%d plugins loaded after the old sessions ended, want 2", n)
	}
	if res := b1.Call(ctx, pluginhost.HookMessage, testInput(t, testMessage)); !errors.Is(res.Err, pluginhost.ErrClosed) {
		t.Errorf("old plugin b still serves: %v", res.Err)
	}
	if d := s3.Evaluate(ctx, pluginhost.HookMessage, testInput(t, testMessage)); d.Tags["a"] != "1" || d.Tags["b"] != "2" {
		t.Errorf("current configuration: tags %v", d.Tags)
	}
}
