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
	"github.com/postern/postern/proxy/imapproxy"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
)

// imapListener is an imap listener bound and not serving yet.
type imapListener struct {
	srv *imapproxy.Server
	ln  net.Listener
}

// addIMAP builds and binds an imap listener.
func (d *daemon) addIMAP(cfg *config.Config, l *config.Listener, hostname string) error {
	lerr := func(err error) error {
		return cfg.NewError(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot start listener " + l.Name,
			Detail: err.Error(), Subject: l.DeclRange.Ptr()}})
	}
	opts := imapproxy.FromConfig(l)
	opts.Hostname = hostname
	opts.Filters = mailflow.Policies(d.manager)
	opts.Logger = d.log
	if d.audit != nil {
		opts.Audit = d.audit
	}
	if l.TLS.TestCertificate && l.TLS.Mode != "none" {
		made, err := listener.EnsureTestCertificate(l.TLS.Cert, l.TLS.Key, hostname)
		if err != nil {
			return lerr(err)
		}
		d.log.Warn("listener uses a self-signed TEST certificate: clients cannot verify it; not for production",
			"listener", l.Name, "cert", l.TLS.Cert, "made_now", made)
	}
	if l.Upstream == config.UpstreamEmbedded {
		// TODO(imap-peers): the embedded IMAP upstream (proxy/embedimap) serving the embedded SMTP upstreams'
		// mail as INBOX, with Sent and Drafts: set opts.Dial to its in-process dialer here.
		return lerr(errors.New("the embedded IMAP upstream is not part of this build yet; set upstream to a server's host:port"))
	}
	if cfg.StateDir != "" {
		opts.SpoolDir = filepath.Join(cfg.StateDir, "spool")
		if err := os.MkdirAll(opts.SpoolDir, 0o700); err != nil {
			return lerr(err)
		}
	}
	if opts.Cache.DiskBytes > 0 {
		opts.Cache.Dir = filepath.Join(cfg.StateDir, "imap-cache", l.Name) // emptied at start
	}
	srv, err := imapproxy.New(opts)
	if err != nil {
		return lerr(err)
	}
	ln, err := net.Listen("tcp", l.Address)
	if err != nil {
		return lerr(err)
	}
	d.imap = append(d.imap, srv)
	d.imapBound = append(d.imapBound, imapListener{srv, ln})
	return nil
}

// serveIMAP starts serving the bound imap listeners.
func (d *daemon) serveIMAP() {
	for _, b := range d.imapBound {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := b.srv.Serve(b.ln); err != nil && !errors.Is(err, imapproxy.ErrServerClosed) {
				select {
				case d.failed <- err:
				default:
				}
			}
		}()
	}
	d.imapBound = nil
}

// shutdownIMAP shuts the imap listeners down alongside the others: every session gets an untagged BYE.
func (d *daemon) shutdownIMAP(ctx context.Context, wg *sync.WaitGroup) {
	for _, srv := range d.imap {
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

// closeIMAP closes the imap listeners, bound or serving.
func (d *daemon) closeIMAP() {
	for _, b := range d.imapBound {
		b.ln.Close()
	}
	for _, srv := range d.imap {
		srv.Close()
	}
}

// reloadIMAPCertificates re-reads the imap listeners' certificates.
func (d *daemon) reloadIMAPCertificates() (msgs []string) {
	for _, srv := range d.imap {
		if srv.Options().TLS.CertFile == "" {
			continue
		}
		if err := srv.ReloadCertificates(); err != nil {
			d.log.Error("certificate reload failed; the previous certificate stays in use", "error", err)
			msgs = append(msgs, "certificate of "+srv.Options().Name+" not reloaded: "+err.Error())
		}
	}
	return msgs
}
