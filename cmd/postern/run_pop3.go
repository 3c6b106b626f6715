package main

import (
	"net"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/embedpop3"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/pop3proxy"
)

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
	d.bind(l.Name, srv.Options().TLS.CertFile != "", srv, ln)
	return nil
}
