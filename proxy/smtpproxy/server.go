package smtpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
)

// Server is one SMTP or submission listener relaying to one upstream.
type Server struct {
	opts    Options
	log     *slog.Logger
	flow    *mailflow.Flow
	ln      *listener.Server
	certs   *listener.Certificates // nil without client TLS
	tlsConf *tls.Config
	upTLS   *tls.Config // nil without upstream TLS
	errLog  smtp.Logger
	stats   counters

	earlyDisconnects atomic.Uint64 // see EarlyDisconnects
}

// New checks the options, loads the certificates and returns a Server ready to Serve.
func New(opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("smtpproxy: listener %q: %w", opts.Name, err)
	}
	s := &Server{
		opts: o,
		log:  o.Logger.With("listener", o.Name),
	}
	s.errLog = slogErrorLog{s.log}
	if o.TLS.Mode != TLSNone {
		s.certs, err = listener.LoadCertificates(o.TLS.CertFile, o.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("smtpproxy: listener %q: %w", o.Name, err)
		}
		s.tlsConf = s.certs.TLSConfig()
	}
	if o.UpstreamTLS.Mode != UpstreamTLSNone {
		s.upTLS, err = upstreamTLSConfig(o)
		if err != nil {
			return nil, fmt.Errorf("smtpproxy: listener %q: %w", o.Name, err)
		}
	}
	lo := listener.Options{Name: o.Name, Sessions: o.Limits.Sessions, ProxyHeaderTimeout: o.ProxyProtocol.HeaderTimeout,
		SessionsPerClient: max(o.Limits.SessionsPerClient, 0), ConnectionRate: o.Limits.ConnectionRate,
		StressSessions: max(o.Limits.StressSessions, 0), Logger: s.log}
	for _, t := range o.ProxyProtocol.Trusted {
		p, _ := listener.ParsePrefix(t) // checked by withDefaults
		lo.ProxyTrusted = append(lo.ProxyTrusted, p)
	}
	s.ln = listener.New(lo, handler{s})
	fo := mailflow.Options{Filters: o.Filters, Audit: o.Audit, SpoolDir: o.SpoolDir,
		MemoryThreshold: o.MemoryThreshold, MessageSize: o.Limits.MessageSize,
		NormalizeNewlines: o.BareNewline == BareNewlineNormalize, MessageLimits: o.MessageLimits,
		ResultHeaders: o.ResultHeaders, Logger: s.log}
	fo.Quarantine = o.Quarantine
	if fo.Quarantine == nil && o.QuarantineDir != "" {
		if fo.Quarantine, err = mailflow.OpenQuarantine(o.QuarantineDir); err != nil {
			return nil, fmt.Errorf("smtpproxy: listener %q: quarantine_dir: %w", o.Name, err)
		}
	}
	if s.flow, err = mailflow.New(fo); err != nil {
		return nil, fmt.Errorf("smtpproxy: listener %q: %w", o.Name, err)
	}
	return s, nil
}

// Options returns the options in effect, defaults filled in.
func (s *Server) Options() Options { return s.opts }

// ReloadCertificate reads the certificate and key files again. New handshakes use the new pair; on error the old
// one stays in use.
func (s *Server) ReloadCertificate() error {
	if s.certs == nil {
		return nil
	}
	if err := s.certs.Reload(); err != nil {
		return fmt.Errorf("smtpproxy: listener %q: %w", s.opts.Name, err)
	}
	s.log.Info("certificate reloaded", "cert", s.opts.TLS.CertFile)
	return nil
}

// ListenAndServe listens on Options.Address and serves until Shutdown or Close.
func (s *Server) ListenAndServe() error {
	ln, err := Listen(s.opts.Address)
	if err != nil {
		return fmt.Errorf("smtpproxy: listener %q: %w", s.opts.Name, err)
	}
	return s.Serve(ln)
}

// Listen opens a TCP listener for a Server (listener.Listen).
func Listen(address string) (net.Listener, error) { return listener.Listen(address) }

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = listener.ErrServerClosed

// Serve accepts connections on ln until Shutdown or Close, and returns ErrServerClosed then. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info("listening", "address", ln.Addr().String(), "protocol", s.opts.Protocol,
		"tls", string(s.opts.TLS.Mode), "upstream", s.upstreamName())
	err := s.ln.Serve(ln)
	if err != nil && !errors.Is(err, ErrServerClosed) {
		return fmt.Errorf("smtpproxy: %w", err)
	}
	return err
}

// Shutdown stops accepting connections, closes the sessions that are between messages (with 421) and lets the
// ones in the middle of a message finish it, up to ctx's deadline; then it closes whatever is left. It returns
// ctx.Err() if it had to cut sessions off. The 421s are written without any lock held, so a client that does not
// read delays neither the deadline nor a second call (Close, on a second signal).
func (s *Server) Shutdown(ctx context.Context) error { return s.ln.Shutdown(ctx) }

// Close closes the listeners and every session at once.
func (s *Server) Close() error { return s.ln.Close() }

// handler runs the listener's sessions (listener.Handler).
type handler struct{ s *Server }

func (h handler) ServeConn(c net.Conn)         { h.s.serveConn(c) }
func (h handler) Refuse(c net.Conn, why error) { h.s.refuse(c, why) }

// refuse answers a connection the listener does not serve.
func (s *Server) refuse(c net.Conn, why error) {
	text, enh := s.opts.Hostname+" Service shutting down", "4.3.2"
	switch {
	case errors.Is(why, listener.ErrBusy):
		text = s.opts.Hostname + " Too many sessions, try again later"
	case errors.Is(why, listener.ErrClientBusy):
		// Postfix: "421 4.7.0 host Error: too many connections from addr".
		text, enh = s.opts.Hostname+" Too many sessions from your address, try again later", "4.7.0"
	case errors.Is(why, listener.ErrClientRate):
		text, enh = s.opts.Hostname+" Too many connections from your address, try again later", "4.7.0"
	}
	writeRaw(c, 421, enh, text)
	c.Close()
}

func (s *Server) upstreamName() string {
	switch {
	case s.opts.Dial != nil:
		return "custom dialer"
	case s.opts.Upstream == "embedded":
		return "embedded"
	}
	return s.opts.Upstream
}

// slogErrorLog adapts go-smtp's Logger to slog.
type slogErrorLog struct{ l *slog.Logger }

func (s slogErrorLog) Printf(format string, v ...any) {
	s.l.Warn("smtp server: " + fmt.Sprintf(format, v...))
}
func (s slogErrorLog) Println(v ...any) { s.l.Warn("smtp server: " + fmt.Sprint(v...)) }
