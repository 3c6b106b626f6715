package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/hcl/v2"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/embedpop3"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/pop3proxy"
)

// pop3Listener is a pop3 listener bound and not serving yet.
type pop3Listener struct {
	srv *pop3proxy.Server
	ln  net.Listener
}

// addPOP3 builds and binds a pop3 listener. An embedded upstream serves the messages the configuration's
// embedded SMTP upstreams stored (so the demo's mail can be read back), or state_dir/mail/NAME without one.
func (d *daemon) addPOP3(cfg *config.Config, l *config.Listener, hostname string) error {
	lerr := func(err error) error {
		return cfg.NewError(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot start listener " + l.Name,
			Detail: err.Error(), Subject: l.DeclRange.Ptr()}})
	}
	opts := pop3proxy.FromConfig(l)
	opts.Hostname = hostname
	opts.Filters = mailflow.Policies(d.manager)
	opts.Logger = d.log
	if d.audit != nil {
		opts.Audit = d.audit
	}
	opts.Quarantine = d.quarantine
	if l.Upstream == config.UpstreamEmbedded {
		var dirs []string
		for _, e := range d.embeds {
			dirs = append(dirs, e.Dir())
		}
		if len(dirs) == 0 {
			dir, err := embeddedDir(cfg.StateDir, l.Name)
			if err != nil {
				return lerr(err)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return lerr(err)
			}
			dirs = append(dirs, dir)
		}
		e, err := embedpop3.New(embedpop3.Options{Dirs: dirs, Logger: d.log.With("listener", l.Name)})
		if err != nil {
			return lerr(err)
		}
		d.embedPOP3 = append(d.embedPOP3, e)
		opts.Dial = e.Dial
		d.log.Info("embedded POP3 upstream: serves the stored .eml files as a maildrop (any user, any password)",
			"listener", l.Name, "dirs", dirs)
	}
	if opts.SpoolDir == "" && cfg.StateDir != "" {
		opts.SpoolDir = filepath.Join(cfg.StateDir, "spool")
		if err := os.MkdirAll(opts.SpoolDir, 0o700); err != nil {
			return lerr(err)
		}
	}
	if opts.Cache.DiskBytes > 0 {
		opts.Cache.Dir = filepath.Join(cfg.StateDir, "pop3-cache", l.Name) // emptied at start
	}
	srv, err := pop3proxy.New(opts)
	if err != nil {
		return lerr(err)
	}
	ln, err := net.Listen("tcp", l.Address)
	if err != nil {
		return lerr(err)
	}
	d.pop3 = append(d.pop3, srv)
	d.pop3Bound = append(d.pop3Bound, pop3Listener{srv, ln})
	return nil
}

// servePOP3 starts serving the bound pop3 listeners.
func (d *daemon) servePOP3() {
	for _, b := range d.pop3Bound {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := b.srv.Serve(b.ln); err != nil && !errors.Is(err, pop3proxy.ErrServerClosed) {
				select {
				case d.failed <- err:
				default:
				}
			}
		}()
	}
	d.pop3Bound = nil
}

// shutdownPOP3 shuts the pop3 listeners down alongside the others.
func (d *daemon) shutdownPOP3(ctx context.Context, wg *sync.WaitGroup) {
	for _, srv := range d.pop3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				d.cut.Store(true)
				d.log.Warn("sessions cut off at the shutdown deadline", "listener", srv.Options().Name, "error", err)
			}
		}()
	}
}

// closePOP3 closes the pop3 listeners, bound or serving, and their embedded upstreams.
func (d *daemon) closePOP3() {
	for _, b := range d.pop3Bound {
		b.ln.Close()
	}
	for _, srv := range d.pop3 {
		srv.Close()
	}
}

// reloadPOP3Certificates re-reads the pop3 listeners' certificates.
func (d *daemon) reloadPOP3Certificates() (msgs []string) {
	for _, srv := range d.pop3 {
		if srv.Options().TLS.CertFile == "" {
			continue
		}
		if err := srv.ReloadCertificate(); err != nil {
			d.log.Error("certificate reload failed; the previous certificate stays in use", "error", err)
			msgs = append(msgs, "certificate of "+srv.Options().Name+" not reloaded: "+err.Error())
		}
	}
	return msgs
}
