package main

import (
	"net"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/embedimap"
	"github.com/postern/postern/proxy/imapproxy"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
)

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
	opts.Quarantine = d.quarantine
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
		e, err := d.embeddedIMAP(cfg, l)
		if err != nil {
			return lerr(err)
		}
		opts.Dial = e.Dial
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
	d.bind(l.Name, srv.Options().TLS.CertFile != "", srv, ln)
	return nil
}

// embeddedIMAP starts the embedded IMAP upstream of an imap listener: INBOX is the mail the configuration's
// embedded SMTP upstreams stored (so the demo's mail can be read back), or state_dir/mail/NAME without one;
// Drafts, Sent and Trash and the mailbox indexes (UIDs, flags) are kept in state_dir/imap/NAME.
func (d *daemon) embeddedIMAP(cfg *config.Config, l *config.Listener) (*embedimap.Server, error) {
	var inbox []string
	for _, e := range d.embeds {
		inbox = append(inbox, e.Dir())
	}
	if len(inbox) == 0 {
		dir, err := embeddedDir(cfg.StateDir, l.Name)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		inbox = append(inbox, dir)
	}
	state := filepath.Join(cfg.StateDir, "imap", l.Name)
	if cfg.StateDir == "" {
		var err error
		if state, err = os.MkdirTemp("", "postern-imap-"+l.Name+"-"); err != nil {
			return nil, err
		}
	}
	e, err := embedimap.New(embedimap.Options{InboxDirs: inbox, StateDir: state,
		MaxMessageBytes: max(l.Limits.MessageSize, 64<<20), Logger: d.log.With("listener", l.Name)})
	if err != nil {
		return nil, err
	}
	d.embedIMAP = append(d.embedIMAP, e)
	d.log.Info("embedded IMAP upstream: serves the stored .eml files as INBOX, with Drafts, Sent and Trash (any user, any password)",
		"listener", l.Name, "inbox", inbox, "state", state)
	return e, nil
}
