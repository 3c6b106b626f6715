package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/hashicorp/hcl/v2"

	"github.com/postern/postern/proxy/admin"
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/metrics"
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
