package policy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/control"
	"github.com/postern/postern/proxy/pluginhost"
)

// Manager holds the current snapshot of a configuration file and replaces it on Reload, the way hot reload
// works: a valid new configuration serves every session that starts afterwards, sessions already running keep
// the snapshot they acquired, and an old snapshot's plugins are closed once its last session has released it. An
// invalid configuration is refused with its diagnostics and the current one keeps serving.
type Manager struct {
	path    string
	opts    Options
	log     *slog.Logger
	plugins *pluginSet // shared by the snapshots; its host is closed by Close

	reloadMu sync.Mutex // one reload at a time

	mu      sync.RWMutex
	cur     *Snapshot
	live    map[*Snapshot]struct{} // every snapshot not yet closed, current or held by sessions
	drained chan struct{}          // closed and replaced whenever a snapshot is closed
	closed  bool
}

// NewManager loads the configuration at path and builds its first snapshot. The error of an invalid
// configuration is a *config.Error.
func NewManager(ctx context.Context, path string, opts Options) (*Manager, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	// The compilation cache is where the first configuration says; a reload that moves state_dir takes effect
	// for the cache at the next start.
	host, err := newHost(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{path: path, opts: opts, log: log, plugins: newPluginSet(host), live: map[*Snapshot]struct{}{},
		drained: make(chan struct{})}
	s, err := m.build(ctx, cfg)
	if err != nil {
		_ = host.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	m.install(s)
	return m, nil
}

// build builds a snapshot of cfg over the manager's shared plugins: a plugin block unchanged since a snapshot
// still alive reuses that snapshot's loaded plugin.
func (m *Manager) build(ctx context.Context, cfg *config.Config) (*Snapshot, error) {
	var keys []pluginKey
	s, err := build(ctx, cfg, m.opts, func(pc pluginhost.Config) (caller, error) {
		p, k, err := m.plugins.acquire(ctx, pc)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
		return p, nil
	})
	if err != nil {
		_ = m.plugins.release(context.WithoutCancel(ctx), keys)
		return nil, err
	}
	s.close = func(ctx context.Context) error { return m.plugins.release(ctx, keys) }
	return s, nil
}

// install makes s current, holding the manager's reference on it, and returns the previous snapshot.
func (m *Manager) install(s *Snapshot) *Snapshot {
	s.refs.add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.cur
	m.cur = s
	m.live[s] = struct{}{}
	return old
}

// Acquire returns the current snapshot for a session, and the function the session calls when it ends (calling
// it more than once is harmless). The snapshot stays usable until then, whatever reloads happen meanwhile. After
// Close, Acquire returns nil.
func (m *Manager) Acquire() (*Snapshot, func()) {
	m.mu.RLock()
	s := m.cur
	if s != nil {
		s.refs.add(1)
	}
	m.mu.RUnlock()
	if s == nil {
		return nil, func() {}
	}
	var once sync.Once
	return s, func() { once.Do(func() { m.release(s) }) }
}

// Version is the version of the current configuration ("" after Close).
func (m *Manager) Version() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.cur == nil {
		return ""
	}
	return m.cur.Version()
}

// release drops one reference; the last one closes the snapshot's plugins in the background, so that a session
// ending is never delayed by it.
func (m *Manager) release(s *Snapshot) {
	if s.refs.add(-1) > 0 {
		return
	}
	go func() {
		if err := s.Close(context.Background()); err != nil {
			m.log.Warn("policy: closing an old configuration", "version", s.Version(), "error", err)
		}
		m.mu.Lock()
		delete(m.live, s)
		close(m.drained)
		m.drained = make(chan struct{})
		m.mu.Unlock()
		m.log.Debug("policy: configuration closed", "version", s.Version())
	}()
}

// ReloadResult describes a successful reload.
type ReloadResult struct {
	Config   *config.Config // the configuration now serving
	Previous string         // the version it replaced
	// Unchanged is true when every file and plugin module was identical, in which case nothing was rebuilt.
	Unchanged bool
}

// String is a one-line summary for logs and the control socket.
func (r ReloadResult) String() string {
	if r.Unchanged {
		return fmt.Sprintf("unchanged: config sha256 %s", r.Config.Version)
	}
	return fmt.Sprintf("reloaded: %s (config sha256 %s, was %s)", r.Config.Summary(), r.Config.Version, r.Previous)
}

// Reload loads the configuration file again. A valid configuration that differs from the current one is built
// (its plugins loaded) and made current; the error of an invalid one is a *config.Error, logged with every
// diagnostic, and the current configuration keeps serving. Listener changes are visible in the new Config but
// are the caller's to apply.
func (m *Manager) Reload(ctx context.Context) (ReloadResult, error) {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	m.mu.RLock()
	closed, cur := m.closed, m.cur
	m.mu.RUnlock()
	if closed {
		return ReloadResult{}, errClosed
	}
	cfg, err := config.Load(m.path)
	if err == nil && cfg.Version == cur.Version() {
		return ReloadResult{Config: cur.Config(), Previous: cur.Version(), Unchanged: true}, nil
	}
	var s *Snapshot
	if err == nil {
		s, err = m.build(ctx, cfg)
	}
	if err != nil {
		m.log.Error("policy: reload refused, keeping the current configuration", "path", m.path,
			"version", cur.Version(), "error", err)
		return ReloadResult{}, err
	}
	old := m.install(s)
	m.release(old)
	res := ReloadResult{Config: cfg, Previous: old.Version()}
	m.log.Info("policy: configuration reloaded", "path", m.path, "version", cfg.Version, "previous", old.Version())
	return res, nil
}

// Close drops the current snapshot and waits, until ctx is done, for every snapshot to be released by its
// sessions and closed, then closes the plugin host; past ctx's deadline it closes the host anyway. Reload fails
// after Close.
func (m *Manager) Close(ctx context.Context) error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	m.mu.Lock()
	cur := m.cur
	m.cur = nil
	m.closed = true
	m.mu.Unlock()
	if cur != nil {
		m.release(cur)
	}
	for {
		m.mu.RLock()
		n, drained := len(m.live), m.drained
		m.mu.RUnlock()
		if n == 0 {
			return m.plugins.host.Close(ctx)
		}
		select {
		case <-drained:
		case <-ctx.Done():
			// Past the deadline the plugins go anyway: calls still in flight fail, and their sessions answer
			// with the plugins' on_error outcome.
			_ = m.plugins.host.Close(context.WithoutCancel(ctx))
			return fmt.Errorf("policy: %d configuration(s) still in use by sessions: %w", n, ctx.Err())
		}
	}
}

// ControlHandlers are the control socket commands for this manager: "reload" (reply: the ReloadResult, or the
// refused configuration's diagnostics, one per line) and "status" (the current version and how many older
// configurations sessions still hold).
func (m *Manager) ControlHandlers() map[string]control.Handler {
	return map[string]control.Handler{
		"reload": func(ctx context.Context, _ []string) (string, error) {
			res, err := m.Reload(ctx)
			if err != nil {
				return "", err
			}
			return res.String(), nil
		},
		"status": func(context.Context, []string) (string, error) {
			m.mu.RLock()
			defer m.mu.RUnlock()
			if m.cur == nil {
				return "", errClosed
			}
			return fmt.Sprintf("serving %s (config sha256 %s); %d older configuration(s) still in use",
				m.cur.Config().Summary(), m.cur.Version(), len(m.live)-1), nil
		},
	}
}
