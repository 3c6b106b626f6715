package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/hashicorp/hcl/v2"

	"github.com/postern/postern/proxy/admin"
	"github.com/postern/postern/proxy/auditindex"
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/metrics"
	"github.com/postern/postern/proxy/review"
)

// addAdmin builds and binds the admin listener of cfg's admin block, if any. Its readiness checks: the
// configuration is loaded, every listener is serving (false from the start of a shutdown, so a load balancer
// stops sending new sessions to a node that drains), the audit log can be written, and with ready_upstream each
// listener's upstream accepts a connection.
func (d *daemon) addAdmin(cfg *config.Config, hostname string) error {
	a := cfg.Admin
	if a == nil {
		return nil
	}
	fail := func(err error) error {
		return cfg.NewError(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot start the admin listener",
			Detail: err.Error(), Subject: a.DeclRange.Ptr()}})
	}
	opts := admin.Options{Logger: d.log.With("listener", "admin")}
	if a.TLS.Mode != "none" {
		if a.TLS.TestCertificate {
			if _, err := listener.EnsureTestCertificate(a.TLS.Cert, a.TLS.Key, hostname); err != nil {
				return fail(err)
			}
			d.log.Warn("admin listener uses a self-signed TEST certificate: not for production", "cert", a.TLS.Cert)
		}
		certs, err := listener.LoadCertificates(a.TLS.Cert, a.TLS.Key)
		if err != nil {
			return fail(err)
		}
		d.adminCerts = certs
		opts.TLS = certs.TLSConfig()
	}
	srv := admin.New(opts)
	srv.Handle("GET /metrics", metrics.Handler())
	srv.Ready("config", func(context.Context) error {
		snap, release := d.manager.Acquire()
		defer release()
		if snap.Config().Version == "" {
			return errors.New("no configuration loaded")
		}
		return nil
	})
	srv.Ready("listeners", func(context.Context) error {
		if !d.serving.Load() {
			return errors.New("not serving (starting or shutting down)")
		}
		return nil
	})
	if d.audit != nil {
		srv.Ready("audit", func(context.Context) error { return d.audit.Writable() })
	}
	if a.ReadyUpstream {
		for _, l := range cfg.Listeners {
			if l.Upstream == config.UpstreamEmbedded {
				continue
			}
			address := l.Upstream
			srv.Ready("upstream:"+l.Name, func(ctx context.Context) error {
				// A connect only, closed at once: what the node needs to serve, without a session upstream.
				var nd net.Dialer
				c, err := nd.DialContext(ctx, "tcp", address)
				if err != nil {
					return fmt.Errorf("%s: %w", address, err)
				}
				return c.Close()
			})
		}
	}
	if a.Review != nil {
		h, err := d.reviewPages(cfg, a.Review)
		if err != nil {
			return err
		}
		srv.Handle("/", h)
	}
	ln, err := admin.Listen(a.Address)
	if err != nil {
		return fail(err)
	}
	d.admin, d.adminLn = srv, ln
	return nil
}

// serveAdmin starts serving the bound admin listener.
func (d *daemon) serveAdmin() {
	if d.admin == nil {
		return
	}
	ln := d.adminLn
	d.adminLn = nil
	scheme := "http"
	if d.adminCerts != nil {
		scheme = "https"
	}
	d.log.Info("admin listener serving", "url", fmt.Sprintf("%s://%s/", scheme, ln.Addr()))
	// Not in d.wg: the sessions' wait at a shutdown must not wait for the admin listener, which closes last.
	go func() {
		if err := d.admin.Serve(ln); err != nil && !errors.Is(err, admin.ErrServerClosed) {
			select {
			case d.failed <- fmt.Errorf("admin listener: %w", err):
			default:
			}
		}
	}()
}

// closeAdmin closes the admin listener, bound or serving. It is the last to close at a shutdown, so health
// checks see the node drain.
func (d *daemon) closeAdmin(ctx context.Context) {
	if d.adminLn != nil {
		d.adminLn.Close()
		d.adminLn = nil
	}
	if d.admin != nil {
		if err := d.admin.Shutdown(ctx); err != nil {
			d.admin.Close()
		}
	}
	if d.reviewIndex != nil {
		d.reviewIndex.Close()
		d.reviewIndex = nil
	}
}

// reviewPages builds the reviewer pages of the review block: users from its file, the shared quarantine, and
// decisions from the audit index (or, without one, from the log files). Every action on them is recorded, so
// they need the audit log, which the configuration guarantees.
func (d *daemon) reviewPages(cfg *config.Config, r *config.Review) (http.Handler, error) {
	fail := func(rng hcl.Range, summary string, err error) error {
		return cfg.NewError(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: err.Error(), Subject: rng.Ptr()}})
	}
	// The configuration has an audit block (config.Load refuses a review block without one).
	users, err := review.OpenUsers(r.UsersFile)
	if err != nil {
		return nil, fail(r.UsersFileRange, "Cannot read the reviewer users", fmt.Errorf("%w\nAdd a user with: "+
			"postern review adduser -config FILE -role reviewer NAME", err))
	}
	logger := d.log.With("listener", "admin")
	opts := review.Options{Users: users, Audit: d.audit, Logger: logger, Secure: r.SecureCookies,
		IdleTimeout: r.SessionIdle, MaxAge: r.SessionMaxAge}
	if d.quarantine != nil {
		opts.Quarantine = review.Store{S: d.quarantine}
	}
	if ix := cfg.Audit.Index; ix != nil {
		d.reviewIndex = &lazyIndex{opts: auditIndexOptions(ix, logger)}
		opts.Decisions = review.Index{S: d.reviewIndex, Node: auditNode(ix)}
	} else {
		opts.Decisions = review.LogScan{Path: cfg.Audit.Path}
	}
	h, err := review.New(opts)
	if err != nil {
		return nil, fail(r.DeclRange, "Cannot start the reviewer pages", err)
	}
	if users.Empty() {
		logger.Warn("no reviewer can log in yet: add one with postern review adduser -config FILE -role reviewer NAME",
			"users_file", r.UsersFile)
	}
	logger.Info("reviewer pages on the admin listener", "users", len(users.All()), "quarantine", d.quarantine != nil,
		"index", cfg.Audit.Index != nil)
	return h, nil
}

// reloadAdminCertificate re-reads the admin listener's certificate.
func (d *daemon) reloadAdminCertificate() []string {
	if d.adminCerts == nil {
		return nil
	}
	if err := d.adminCerts.Reload(); err != nil {
		d.log.Error("admin certificate reload failed; the previous certificate stays in use", "error", err)
		return []string{"certificate of the admin listener not reloaded: " + err.Error()}
	}
	return nil
}

// lazyIndex opens the audit index at the first search, and again after a failed open: at start the index's
// feeder creates and migrates the database, and a second connection opened at that moment finds it locked.
type lazyIndex struct {
	opts auditindex.Options

	mu sync.Mutex
	ix *auditindex.Index
}

func (l *lazyIndex) get(ctx context.Context) (*auditindex.Index, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ix == nil {
		ix, err := auditindex.Open(ctx, l.opts)
		if err != nil {
			return nil, fmt.Errorf("opening the audit index: %w", err)
		}
		l.ix = ix
	}
	return l.ix, nil
}

func (l *lazyIndex) Search(ctx context.Context, q auditindex.Query) ([]auditindex.Row, error) {
	ix, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return ix.Search(ctx, q)
}

func (l *lazyIndex) Count(ctx context.Context, q auditindex.Query) (int64, error) {
	ix, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	return ix.Count(ctx, q)
}

func (l *lazyIndex) Get(ctx context.Context, node string, seq uint64) (auditindex.Row, error) {
	ix, err := l.get(ctx)
	if err != nil {
		return auditindex.Row{}, err
	}
	return ix.Get(ctx, node, seq)
}

// Close closes the index if it was opened.
func (l *lazyIndex) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ix == nil {
		return nil
	}
	err := l.ix.Close()
	l.ix = nil
	return err
}
