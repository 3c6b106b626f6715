package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

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
	plugins *pluginSet                                // shared by the snapshots; its host is closed by Close
	load    func(path string) (*config.Config, error) // config.Load; tests make it hang as a dead NFS mount would

	reloadMu   sync.Mutex         // guards reloading and stopReload
	reloading  time.Time          // when the reload still running started; zero when none runs
	stopReload context.CancelFunc // cancels the running reload's context (Close calls it)

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
	m := &Manager{path: path, opts: opts, log: log, plugins: newPluginSet(host), load: config.Load,
		live: map[*Snapshot]struct{}{}, drained: make(chan struct{})}
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

// installOpen is install unless the manager is closed; then it returns nil and s is not installed.
func (m *Manager) installOpen(s *Snapshot) *Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	s.refs.add(1)
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

// ReloadTimeout is how long the next Reload may take: the current configuration's reload_timeout.
func (m *Manager) ReloadTimeout() time.Duration {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.cur == nil || m.cur.Config().ReloadTimeout <= 0 {
		return config.DefaultReloadTimeout
	}
	return m.cur.Config().ReloadTimeout
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

// ErrReloadRunning is wrapped by Reload's error when another reload is still running: reloads run one at a time,
// and one that is stuck (a hung file system) keeps later ones out rather than piling them up behind it.
var ErrReloadRunning = errors.New("policy: a reload is already running")

// ErrReloadTimeout is wrapped by Reload's error when the reload did not finish within the running configuration's
// reload_timeout (or before the caller's context ended). Nothing changed; the reload, if it is stuck reading a
// file, finishes in the background and its result is discarded.
var ErrReloadTimeout = errors.New("policy: reload timed out")

// Reload loads the configuration file again. A valid configuration that differs from the current one is built
// (its plugins loaded) and made current; the error of an invalid one is a *config.Error, logged with every
// diagnostic, and the current configuration keeps serving. Listener changes are visible in the new Config but
// are the caller's to apply.
//
// A reload is bounded by the current configuration's ReloadTimeout and by ctx: past either it returns an error
// wrapping ErrReloadTimeout and changes nothing. Plugin initialisation stops at that deadline; a read blocked in
// the file system cannot be stopped, so that reload goes on in the background, and until it ends every Reload
// returns ErrReloadRunning (so does a Reload while another is running). Close does not wait for it.
func (m *Manager) Reload(ctx context.Context) (ReloadResult, error) {
	m.mu.RLock()
	closed, cur := m.closed, m.cur
	m.mu.RUnlock()
	if closed {
		return ReloadResult{}, errClosed
	}
	m.reloadMu.Lock()
	if started := m.reloading; !started.IsZero() {
		m.reloadMu.Unlock()
		return ReloadResult{}, fmt.Errorf("%w (for %v): try again when it has finished or timed out",
			ErrReloadRunning, time.Since(started).Round(time.Millisecond))
	}
	timeout := cur.Config().ReloadTimeout
	if timeout <= 0 {
		timeout = config.DefaultReloadTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	m.reloading, m.stopReload = start, cancel
	m.reloadMu.Unlock()
	r := &reloadRun{done: make(chan struct{})}
	go func() {
		r.res, r.err = m.reload(ctx, cur, r)
		// Free the slot before the caller hears the result, so that its next Reload is not refused as running.
		m.reloadMu.Lock()
		m.reloading, m.stopReload = time.Time{}, nil
		m.reloadMu.Unlock()
		close(r.done)
	}()
	select {
	case <-r.done:
		cancel()
		return r.res, r.err
	case <-ctx.Done():
	}
	cause := ctx.Err()
	cancel()
	if !r.abandon() {
		<-r.done // it was installing its result just then: that is quick, and the reload took effect
		return r.res, r.err
	}
	err := fmt.Errorf("%w after %v (reload_timeout %v): %w; the current configuration keeps serving",
		ErrReloadTimeout, time.Since(start).Round(time.Millisecond), timeout, cause)
	m.log.Error("policy: reload refused, keeping the current configuration", "path", m.path,
		"version", cur.Version(), "error", err)
	return ReloadResult{}, err
}

// reloadRun is one reload: the waiting Reload and the goroutine doing the work agree through it on whether the
// result is installed (commit) or thrown away (abandon), whichever comes first.
type reloadRun struct {
	mu        sync.Mutex
	abandoned bool
	committed bool
	done      chan struct{}
	res       ReloadResult
	err       error
}

func (r *reloadRun) abandon() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.committed {
		r.abandoned = true
	}
	return r.abandoned
}

func (r *reloadRun) commit() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.abandoned {
		r.committed = true
	}
	return r.committed
}

// reload does Reload's work; r says whether the waiting caller still wants the result.
func (m *Manager) reload(ctx context.Context, cur *Snapshot, r *reloadRun) (ReloadResult, error) {
	cfg, err := m.load(m.path)
	if err == nil && cfg.Version == cur.Version() {
		return ReloadResult{Config: cur.Config(), Previous: cur.Version(), Unchanged: true}, nil
	}
	var s *Snapshot
	if err == nil {
		s, err = m.build(ctx, cfg)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ReloadResult{}, err // the caller reports the timeout
		}
		m.log.Error("policy: reload refused, keeping the current configuration", "path", m.path,
			"version", cur.Version(), "error", err)
		return ReloadResult{}, err
	}
	var old *Snapshot
	if r.commit() {
		old = m.installOpen(s)
	}
	if old == nil {
		// Too late: the caller was told the reload failed, or the manager closed meanwhile.
		_ = s.Close(context.WithoutCancel(ctx))
		m.log.Warn("policy: a reload finished after it had timed out (or the manager closed); its result is "+
			"discarded", "path", m.path, "version", cfg.Version)
		return ReloadResult{}, ErrReloadTimeout
	}
	m.release(old)
	res := ReloadResult{Config: cfg, Previous: old.Version()}
	m.log.Info("policy: configuration reloaded", "path", m.path, "version", cfg.Version, "previous", old.Version())
	return res, nil
}

// Close drops the current snapshot and waits, until ctx is done, for every snapshot to be released by its
// sessions and closed, then closes the plugin host; past ctx's deadline it closes the host anyway. Reload fails
// after Close.
func (m *Manager) Close(ctx context.Context) error {
	// A reload still running is cancelled (its plugins stop initialising) but not waited for: it may be stuck in
	// the file system, and stopping must work anyway. It finds the manager closed and installs nothing.
	m.reloadMu.Lock()
	if m.stopReload != nil {
		m.stopReload()
	}
	m.reloadMu.Unlock()
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
