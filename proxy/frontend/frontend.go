// Package frontend is what the retrieval front ends (pop3proxy, imapproxy) set up alike around their protocol
// code: the listener with its session limits and PROXY protocol, the client-side certificates, the upstream's TLS
// configuration, and the pipeline every message they serve passes. A front end keeps only its protocol. The
// option checks and defaults every front end shares, smtpproxy's included, are here too (defaults.go).
package frontend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/upstream"
)

// Setup is what a front end gives New, its own options translated.
type Setup struct {
	// Package names the front end in errors ("pop3proxy").
	Package string
	// ClientTLS is the client side's TLS; certificates are loaded unless its mode is none.
	ClientTLS listener.TLS
	// Upstream is the upstream's host:port, checked against its certificate; "" with a custom dialer.
	Upstream    string
	UpstreamTLS upstream.TLSOptions
	// Listener has everything but the handler; Logger is set by New. ProxyTrusted lists the networks whose
	// PROXY headers are believed (checked by the front end's option defaults).
	Listener     listener.Options
	ProxyTrusted []string
	// Flow is the pipeline's options; Logger is set by New. Without Flow.Quarantine, QuarantineDir (if any)
	// opens a store of the front end's own.
	Flow          mailflow.Options
	QuarantineDir string
	Logger        *slog.Logger // the listener's logger, "listener" attribute included
}

// Base is the part of a front end every protocol shares.
type Base struct {
	pkg, name   string
	Log         *slog.Logger
	Flow        *mailflow.Flow
	Listener    *listener.Server
	Certs       *listener.Certificates // nil without client TLS
	TLS         *tls.Config            // the client side's, nil without client TLS
	UpstreamTLS *tls.Config            // nil without upstream TLS
}

// New loads the certificates, prepares the upstream's TLS, and builds the listener (serving h) and the pipeline.
func New(s Setup, h listener.Handler) (*Base, error) {
	b := &Base{pkg: s.Package, name: s.Listener.Name, Log: s.Logger}
	var err error
	if s.ClientTLS.Mode != listener.TLSNone {
		if b.Certs, err = listener.LoadCertificates(s.ClientTLS.CertFile, s.ClientTLS.KeyFile); err != nil {
			return nil, b.wrap(err)
		}
		b.TLS = b.Certs.TLSConfig()
	}
	if s.UpstreamTLS.Mode != upstream.TLSNone {
		if b.UpstreamTLS, err = upstream.TLSConfig(s.Upstream, s.UpstreamTLS); err != nil {
			return nil, b.wrap(err)
		}
	}
	lo := s.Listener
	lo.Logger = s.Logger
	for _, t := range s.ProxyTrusted {
		p, err := listener.ParsePrefix(t)
		if err != nil {
			return nil, b.wrap(fmt.Errorf("proxy_protocol: %w", err))
		}
		lo.ProxyTrusted = append(lo.ProxyTrusted, p)
	}
	b.Listener = listener.New(lo, h)
	fo := s.Flow
	fo.Logger = s.Logger
	if fo.Quarantine == nil && s.QuarantineDir != "" {
		if fo.Quarantine, err = mailflow.OpenQuarantine(s.QuarantineDir); err != nil {
			return nil, b.wrap(fmt.Errorf("quarantine_dir: %w", err))
		}
	}
	if b.Flow, err = mailflow.New(fo); err != nil {
		return nil, b.wrap(err)
	}
	return b, nil
}

func (b *Base) wrap(err error) error { return fmt.Errorf("%s: listener %q: %w", b.pkg, b.name, err) }

// ReloadCertificate reads the certificate and key again; on error the old pair stays in use.
func (b *Base) ReloadCertificate() error {
	if b.Certs == nil {
		return nil
	}
	if err := b.Certs.Reload(); err != nil {
		return b.wrap(err)
	}
	return nil
}

// Serve accepts connections on ln until Shutdown or Close, and returns listener.ErrServerClosed then. It logs
// the listener with attrs, and closes ln.
func (b *Base) Serve(ln net.Listener, attrs ...any) error {
	b.Log.Info("listening", append([]any{"address", ln.Addr().String()}, attrs...)...)
	err := b.Listener.Serve(ln)
	if err != nil && !errors.Is(err, listener.ErrServerClosed) {
		return fmt.Errorf("%s: %w", b.pkg, err)
	}
	return err
}

// Shutdown stops accepting and drains the sessions until ctx ends (how a session is told depends on the
// protocol: the front end's Drain); then it closes whatever is left.
func (b *Base) Shutdown(ctx context.Context) error { return b.Listener.Shutdown(ctx) }

// Close closes the listener and every session at once.
func (b *Base) Close() error { return b.Listener.Close() }

// RefusalText is what a client refused at connect is told, by the reason the listener gave.
func RefusalText(why error) string {
	switch {
	case errors.Is(why, listener.ErrBusy):
		return "Too many sessions, try again later"
	case errors.Is(why, listener.ErrClientBusy):
		return "Too many sessions from your address, try again later"
	case errors.Is(why, listener.ErrClientRate):
		return "Too many connections from your address, try again later"
	}
	return "Server shutting down, try again later"
}
