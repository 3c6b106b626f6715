package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/postern/postern/proxy/admin"
	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/control"
	"github.com/postern/postern/proxy/embedimap"
	"github.com/postern/postern/proxy/embedpop3"
	"github.com/postern/postern/proxy/embedsmtp"
	"github.com/postern/postern/proxy/guestprof"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/metrics"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/quarantine"
	"github.com/postern/postern/proxy/smtpproxy"
)

func init() {
	register(command{
		name:    "run",
		summary: "run the proxy",
		run:     runRun,
	})
}

func runRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postern run -config FILE.hcl [flags]")
		fs.PrintDefaults()
	}
	var (
		configPath = fs.String("config", "", "the configuration `FILE` (required)")
		cacheDir   = fs.String("cache", "", "compilation cache `DIR` for the plugins (default: state_dir/cache)")
		logLevel   = fs.String("log-level", "info", "least severe `LEVEL` logged: debug, info, warn or error")
		logFormat  = fs.String("log-format", "text", "log `FORMAT`: text or json")
		grace      = fs.Duration("shutdown-timeout", 30*time.Second, "on SIGTERM, how long messages in flight may take to finish")
		profPath   = fs.String("plugin-cpuprofile", "", "profile the plugins' guest code and write a pprof profile to `FILE` (plugins run several times slower meanwhile)")
		profSecs   = fs.Int("plugin-profile-seconds", 30, "with -plugin-cpuprofile: write the profile after `N` seconds (or at shutdown, if sooner)")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" || fs.NArg() != 0 || *profSecs < 1 {
		fs.Usage()
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "postern run: -log-level: %v\n", err)
		return 2
	}
	hopts := &slog.HandlerOptions{Level: level}
	var logger *slog.Logger
	switch *logFormat {
	case "text":
		logger = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		fmt.Fprintf(stderr, "postern run: -log-format: %q is neither text nor json\n", *logFormat)
		return 2
	}
	slog.SetDefault(logger)

	// Signals are caught before anything starts, so a SIGTERM during start-up is a clean stop, not a kill.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	ctx := context.Background()
	notify := newNotifier(logger)
	defer notify.close()
	var prof *pluginProfile
	if *profPath != "" {
		prof = &pluginProfile{path: *profPath, prof: guestprof.New(), log: logger}
	}
	d, err := startDaemon(ctx, *configPath, *cacheDir, logger, prof.profiler())
	if err != nil {
		return reportConfigError(stderr, err)
	}
	d.notify = notify
	notify.ready("serving")
	if prof != nil {
		logger.Warn("profiling the plugins' guest code: they run several times slower until restarted without -plugin-cpuprofile",
			"file", prof.path, "seconds", *profSecs)
		t := time.AfterFunc(time.Duration(*profSecs)*time.Second, prof.write)
		defer func() {
			t.Stop()
			prof.write()
		}()
	}
	for {
		select {
		case err := <-d.failed:
			logger.Error("a listener stopped; shutting down", "error", err)
			d.shutdown(*grace)
			return 1
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				// Off this loop: a reload reads files and loads plugins, and nothing it does may delay SIGTERM.
				d.hup(ctx)
				continue
			}
			logger.Info("shutting down", "signal", sig.String(), "deadline", grace.String())
			go func() {
				// A second signal is an admin who does not want to wait.
				<-sigs
				logger.Warn("second signal: closing every session now")
				d.closeNow()
			}()
			if !d.shutdown(*grace) {
				return 1
			}
			return 0
		}
	}
}

// pluginProfile is the guest profile of `postern run -plugin-cpuprofile`, written once.
type pluginProfile struct {
	path string
	prof *guestprof.Profiler
	log  *slog.Logger
	once sync.Once
}

func (p *pluginProfile) profiler() *guestprof.Profiler {
	if p == nil {
		return nil
	}
	return p.prof
}

func (p *pluginProfile) write() {
	p.once.Do(func() {
		if err := writeProfile(p.path, p.prof); err != nil {
			p.log.Error("plugin profile", "err", err)
			return
		}
		p.log.Info("plugin profile written", "file", p.path)
	})
}

// daemon is a running proxy: its configuration manager, audit log, listeners and control socket.
type daemon struct {
	log     *slog.Logger
	manager *policy.Manager
	audit   *audit.Log
	index   *indexFeed // nil without an audit index
	control *control.Server
	// frontEnds are the SMTP, POP3 and IMAP listeners (run_frontends.go), bound or serving.
	frontEnds []*boundFrontEnd
	embeds    []*embedsmtp.Server
	// embedded are the embedded SMTP upstreams by listener name, for releases from the quarantine.
	embedded map[string]*embedsmtp.Server
	// quarantine is the store every listener shares (nil without one); the control socket's quarantine
	// command and the reviewer page act on it.
	quarantine *quarantine.Store
	embedPOP3  []*embedpop3.Server
	// admin is the admin HTTP listener (run_admin.go), nil without an admin block; adminLn is it bound and not
	// serving yet; serving is its readiness: every listener serves and no shutdown has begun.
	admin      *admin.Server
	adminLn    net.Listener
	adminCerts *listener.Certificates
	// reviewIndex is the audit index the reviewer pages search, closed with the admin listener.
	reviewIndex *lazyIndex
	serving     atomic.Bool
	embedIMAP   []*embedimap.Server
	// listeners is the listener configuration the servers were started with: a reload that changes it is
	// applied to policies and plugins, and the listener change waits for a restart (it is logged).
	listeners []*config.Listener
	failed    chan error
	wg        sync.WaitGroup
	// notify tells systemd about start, reloads and stop (nil: nobody to tell).
	notify    *notifier
	closeOnce sync.Once
	// cut records that sessions were closed before they finished (the shutdown deadline, or a second signal).
	cut atomic.Bool

	reloadMu sync.Mutex
	// reloading is when the reload still running started; zero when none runs.
	reloading time.Time
	// hupRunning is set while SIGHUP reloads run; hupPending when another SIGHUP came meanwhile.
	hupRunning, hupPending bool
}

// startDaemon loads the configuration, opens the audit log, binds every listener and starts serving. Nothing
// serves unless everything could be set up: a listener that cannot bind stops the start, with the others closed.
func startDaemon(ctx context.Context, path, cacheDir string, logger *slog.Logger, prof *guestprof.Profiler) (_ *daemon, err error) {
	manager, err := policy.NewManager(ctx, path, policy.Options{CacheDir: cacheDir, Logger: logger, Profiler: prof})
	if err != nil {
		return nil, err
	}
	d := &daemon{log: logger, manager: manager, failed: make(chan error, 1)}
	defer func() {
		if err != nil {
			d.closeNow()
		}
	}()
	snap, release := manager.Acquire()
	cfg := snap.Config()
	release()
	for _, w := range cfg.Warnings {
		logger.Warn("configuration: "+w.Summary, "where", w.Subject.String(), "detail", w.Detail)
	}

	if cfg.Audit != nil {
		d.index = newIndexFeed(cfg, logger)
		d.audit, err = audit.Open(audit.Options{Path: cfg.Audit.Path, HeadPath: auditHeadPath(cfg),
			MaxBytes: cfg.Audit.MaxBytes, SyncInterval: cfg.Audit.SyncInterval, Logger: logger,
			Written: d.index.written()})
		if errors.Is(err, audit.ErrTruncated) {
			return nil, fmt.Errorf("%w\nto check: postern audit verify -config %s\nto accept: postern audit "+
				"accept-truncation -config %s", err, path, path)
		}
		if err != nil {
			return nil, err
		}
		d.index.start()
	} else {
		logger.Warn("no audit block: decisions are not recorded")
	}

	if err := cfg.CheckServable(); err != nil {
		return nil, err
	}
	hostname, _ := os.Hostname()
	if cfg.Quarantine != nil {
		if d.quarantine, err = openQuarantine(cfg, d.audit, d.router(hostname), hostname, logger); err != nil {
			return nil, err
		}
		for _, l := range cfg.Listeners {
			if l.Direction == "retrieval" && l.Upstream != config.UpstreamEmbedded && cfg.Quarantine.Release(l.Name) == nil {
				logger.Warn("messages this listener withholds are kept in the quarantine but cannot be released "+
					"without a route: add quarantine { release \""+l.Name+"\" { ... } } (docs/QUARANTINE.md)",
					"listener", l.Name)
			}
		}
	}
	var pop3Listeners, imapListeners []*config.Listener
	for _, l := range cfg.Listeners {
		if l.Protocol == config.ProtocolPOP3 {
			pop3Listeners = append(pop3Listeners, l) // after the SMTP ones: an embedded POP3 serves their mail
			continue
		}
		if l.Protocol == config.ProtocolIMAP {
			imapListeners = append(imapListeners, l)
			continue
		}
		lerr := func(err error) error {
			return cfg.NewError(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot start listener " + l.Name,
				Detail: err.Error(), Subject: l.DeclRange.Ptr()}})
		}
		opts := smtpproxy.FromConfig(l)
		opts.Hostname = hostname
		opts.Filters = smtpproxy.Policies(manager)
		opts.Logger = logger
		if d.audit != nil {
			opts.Audit = d.audit
		}
		opts.Quarantine = d.quarantine
		if l.TLS.TestCertificate && l.TLS.Mode != "none" {
			made, err := listener.EnsureTestCertificate(l.TLS.Cert, l.TLS.Key, hostname)
			if err != nil {
				return nil, lerr(err)
			}
			logger.Warn("listener uses a self-signed TEST certificate: clients cannot verify it; not for production",
				"listener", l.Name, "cert", l.TLS.Cert, "made_now", made)
		}
		if l.Upstream == config.UpstreamEmbedded {
			dir, err := embeddedDir(cfg.StateDir, l.Name)
			if err != nil {
				return nil, lerr(err)
			}
			e, err := embedsmtp.New(embedsmtp.Options{Dir: dir, MaxMessageBytes: max(l.Limits.MessageSize, 64<<20),
				Users: embedsmtp.TestUsers, Logger: logger.With("listener", l.Name)})
			if err != nil {
				return nil, lerr(err)
			}
			d.embeds = append(d.embeds, e)
			if d.embedded == nil {
				d.embedded = map[string]*embedsmtp.Server{}
			}
			d.embedded[l.Name] = e
			opts.Embedded = e
			logger.Info("embedded upstream: every relayed message is stored as an .eml file", "listener", l.Name, "dir", dir)
		}
		srv, err := smtpproxy.New(opts)
		if err != nil {
			return nil, lerr(err)
		}
		ln, err := smtpproxy.Listen(l.Address)
		if err != nil {
			return nil, lerr(err)
		}
		d.bind(l.Name, srv.Options().TLS.CertFile != "", srv, ln)
	}
	for _, l := range pop3Listeners {
		if err := d.addPOP3(cfg, l, hostname); err != nil {
			return nil, err
		}
	}
	for _, l := range imapListeners {
		if err := d.addIMAP(cfg, l, hostname); err != nil {
			return nil, err
		}
	}
	d.listeners = cfg.Listeners
	if err := d.addAdmin(cfg, hostname); err != nil {
		return nil, err
	}

	if cfg.ControlSocket != "" {
		handlers := manager.ControlHandlers()
		handlers["reload"] = func(ctx context.Context, _ []string) (string, error) { return d.reload(ctx) }
		if d.quarantine != nil {
			handlers[controlQuarantine] = quarantineHandler(d.quarantine)
		}
		if d.control, err = control.Listen(cfg.ControlSocket, handlers, logger); err != nil {
			return nil, err
		}
	}

	d.serveFrontEnds()
	d.serveAdmin()
	d.serving.Store(true)
	if d.quarantine != nil {
		d.quarantine.Run() // retention: now, then every interval
	}
	publishMetrics(cfg)
	bi := readBuildInfo()
	logger.Info("postern running", "version", bi.Version, "commit", bi.Commit, "config", path,
		"config_sha256", cfg.Version, "summary", cfg.Summary(),
		"control_socket", cfg.ControlSocket)
	return d, nil
}

// embeddedDir is where an embedded upstream stores its messages: state_dir/mail/LISTENER, or a new temporary
// folder without a state directory (logged, so the user can find it).
func embeddedDir(stateDir, listener string) (string, error) {
	if stateDir != "" {
		return filepath.Join(stateDir, "mail", listener), nil
	}
	return os.MkdirTemp("", "postern-mail-"+listener+"-")
}

// reloadGrace is how long past reload_timeout a reload's caller waits: the policy manager reports its own
// timeout first; this bounds what it does not cover (re-reading the certificates).
const reloadGrace = 5 * time.Second

// hup runs a reload for SIGHUP in the background. SIGHUPs that arrive while it runs are coalesced into one more
// reload after it, so an edit saved during a reload is not missed and a burst of signals does not queue up.
func (d *daemon) hup(ctx context.Context) {
	d.reloadMu.Lock()
	if d.hupRunning {
		d.hupPending = true
		d.reloadMu.Unlock()
		d.log.Info("SIGHUP while a reload runs: reloading once more when it ends")
		return
	}
	d.hupRunning = true
	d.reloadMu.Unlock()
	go func() {
		for {
			if msg, err := d.reload(ctx); err != nil {
				d.log.Error("reload refused", "error", err)
			} else {
				d.log.Info("reload: " + msg)
			}
			d.reloadMu.Lock()
			again := d.hupPending
			d.hupPending, d.hupRunning = false, again
			d.reloadMu.Unlock()
			if !again {
				return
			}
		}
	}()
}

// reload loads the configuration again (policies and plugins) and re-reads every listener's certificate. It is
// what SIGHUP and `postern reload` do. One runs at a time: a reload asked for while another runs is refused with
// the reason, and a reload that does not finish within reload_timeout is reported as such while it ends in the
// background (a file system can hang a read beyond any cancellation).
func (d *daemon) reload(ctx context.Context) (msg string, err error) {
	defer func() { metrics.ConfigReload(err) }()
	d.reloadMu.Lock()
	if started := d.reloading; !started.IsZero() {
		d.reloadMu.Unlock()
		return "", fmt.Errorf("a reload is already running (for %v); try again when it has finished",
			time.Since(started).Round(time.Millisecond))
	}
	d.reloading = time.Now()
	d.reloadMu.Unlock()
	d.notify.reloading()
	d.log.Info("reload started", "timeout", d.manager.ReloadTimeout().String())
	type reply struct {
		msg string
		err error
	}
	done := make(chan reply, 1)
	go func() {
		msg, err := d.reloadNow(ctx)
		// Free the slot before the caller hears the result, so that its next reload is not refused as running.
		d.reloadMu.Lock()
		d.reloading = time.Time{}
		d.reloadMu.Unlock()
		if err != nil {
			d.notify.ready("serving; the last reload was refused: " + firstLine(err.Error()))
		} else {
			d.notify.ready("serving")
		}
		done <- reply{msg, err}
	}()
	limit := d.manager.ReloadTimeout() + reloadGrace
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case r := <-done:
		return r.msg, r.err
	case <-t.C:
		return "", fmt.Errorf("the reload is still running after %v; it ends in the background and later "+
			"reloads are refused until it has", limit)
	case <-ctx.Done():
		return "", fmt.Errorf("reload abandoned: %w", ctx.Err()) // shutting down: the control socket is closing
	}
}

func (d *daemon) reloadNow(ctx context.Context) (string, error) {
	res, err := d.manager.Reload(ctx)
	if err != nil {
		return "", err
	}
	metrics.ConfigLoaded(res.Config.Version)
	msgs := []string{res.String()}
	msgs = append(msgs, d.reloadCertificates()...)
	msgs = append(msgs, d.reloadAdminCertificate()...)
	if !res.Unchanged && !sameListeners(d.listeners, res.Config.Listeners) {
		d.log.Warn("listener blocks changed: the new policies and plugins serve now, the listener settings " +
			"(addresses, upstreams, limits, TLS modes) take effect at the next restart")
		msgs = append(msgs, "listener changes take effect at the next restart")
	}
	return strings.Join(msgs, "; "), nil
}

// firstLine is s up to its first line end.
func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// sameListeners reports whether two configurations declare the same listeners, wherever in the file they are.
func sameListeners(a, b []*config.Listener) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := *a[i], *b[i]
		x.DeclRange, y.DeclRange = hcl.Range{}, hcl.Range{}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

// shutdown stops accepting, lets the messages in flight finish until the deadline, then closes everything. It
// reports whether every session finished in time.
func (d *daemon) shutdown(grace time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	d.notify.stopping()
	d.serving.Store(false)
	if d.control != nil {
		d.control.Close()
	}
	d.shutdownFrontEnds(ctx)
	d.wg.Wait()
	d.closeRest(ctx)
	d.log.Info("postern stopped", "clean", !d.cut.Load())
	return !d.cut.Load()
}

// closeNow closes every session and resource without waiting.
func (d *daemon) closeNow() {
	d.cut.Store(true)
	d.serving.Store(false)
	if d.control != nil {
		d.control.Close()
	}
	d.closeFrontEnds()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	d.closeRest(ctx)
}

// closeRest closes what the servers used, once.
func (d *daemon) closeRest(ctx context.Context) {
	d.closeOnce.Do(func() { d.closeResources(ctx) })
}

func (d *daemon) closeResources(ctx context.Context) {
	d.closeAdmin(ctx)
	if err := d.manager.Close(ctx); err != nil {
		d.log.Warn("closing plugins", "error", err)
	}
	for _, e := range d.embeds {
		e.Close()
	}
	for _, e := range d.embedPOP3 {
		e.Close()
	}
	for _, e := range d.embedIMAP {
		e.Close()
	}
	if d.quarantine != nil {
		d.quarantine.Close() // before the audit log its expiries are recorded in
	}
	if d.audit != nil {
		if err := d.audit.Close(); err != nil {
			d.log.Error("closing the audit log", "error", err)
		}
	}
	d.index.stop() // after the log: the records of the last sessions are indexed too
}

// router is how the daemon's quarantine releases entries: with the configuration current at the release and the
// embedded upstreams this process runs.
func (d *daemon) router(hostname string) quarantine.Router {
	return &quarantineRouter{
		hostname: hostname,
		config: func() *config.Config {
			snap, release := d.manager.Acquire()
			defer release()
			if snap == nil {
				return nil
			}
			return snap.Config()
		},
		embedded: func(listener string) func(ctx context.Context) (net.Conn, error) {
			if e := d.embedded[listener]; e != nil {
				return e.Dial
			}
			if listener == "" && len(d.embeds) > 0 {
				return d.embeds[0].Dial
			}
			return nil
		},
	}
}
