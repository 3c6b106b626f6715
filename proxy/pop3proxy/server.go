package pop3proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/postern/postern/proxy/frontend"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/pop3"
)

// Server is one POP3 listener in front of one upstream.
type Server struct {
	opts    Options
	base    *frontend.Base
	log     *slog.Logger
	flow    *mailflow.Flow
	ln      *listener.Server
	tlsConf *tls.Config
	upTLS   *tls.Config
	cache   *resultCache
}

// New checks the options, loads the certificates and returns a Server ready to Serve.
func New(opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("pop3proxy: listener %q: %w", opts.Name, err)
	}
	s := &Server{opts: o, log: o.Logger.With("listener", o.Name)}
	if s.cache, err = newResultCache(o.Cache, s.log); err != nil {
		return nil, fmt.Errorf("pop3proxy: listener %q: %w", o.Name, err)
	}
	up := o.Upstream
	if o.Dial != nil {
		up = ""
	}
	// A mailbox cannot be sent back: bare line ends are repaired (as Dovecot serves them), never a reason to
	// withhold a message.
	b, err := frontend.New(frontend.Setup{Package: "pop3proxy", ClientTLS: o.TLS, Upstream: up, UpstreamTLS: o.UpstreamTLS,
		Listener: listener.Options{Name: o.Name, Protocol: Protocol, Sessions: o.Limits.Sessions,
			ProxyHeaderTimeout: o.ProxyProtocol.HeaderTimeout, SessionsPerClient: max(o.Limits.SessionsPerClient, 0),
			ConnectionRate: o.Limits.ConnectionRate},
		ProxyTrusted: o.ProxyProtocol.Trusted,
		Flow: mailflow.Options{Filters: o.Filters, Audit: o.Audit, SpoolDir: o.SpoolDir, MemoryThreshold: o.MemoryThreshold,
			MessageSize: o.Limits.MessageSize, NormalizeNewlines: true, MessageLimits: o.MessageLimits,
			ResultHeaders: o.ResultHeaders, Quarantine: o.Quarantine},
		QuarantineDir: o.QuarantineDir, Logger: s.log}, handler{s})
	if err != nil {
		return nil, err
	}
	// The shared parts, under the names the protocol code uses.
	s.base, s.flow, s.ln, s.tlsConf, s.upTLS = b, b.Flow, b.Listener, b.TLS, b.UpstreamTLS
	return s, nil
}

// Options returns the options in effect, defaults filled in.
func (s *Server) Options() Options { return s.opts }

// ReloadCertificate reads the certificate and key again; on error the old pair stays in use.
func (s *Server) ReloadCertificate() error { return s.base.ReloadCertificate() }

// ListenAndServe listens on Options.Address and serves until Shutdown or Close.
func (s *Server) ListenAndServe() error {
	ln, err := listener.Listen(s.opts.Address)
	if err != nil {
		return fmt.Errorf("pop3proxy: listener %q: %w", s.opts.Name, err)
	}
	return s.Serve(ln)
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = listener.ErrServerClosed

// Serve accepts connections on ln until Shutdown or Close, and returns ErrServerClosed then. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	return s.base.Serve(ln, "protocol", Protocol, "tls", string(s.opts.TLS.Mode),
		"upstream", s.upstreamName(), "size_mode", string(s.opts.SizeMode))
}

// Shutdown stops accepting, ends the sessions that are between commands (-ERR [SYS/TEMP], nothing deleted) and
// lets a command in progress finish, up to ctx's deadline; then it closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error { return s.base.Shutdown(ctx) }

// Close closes the listeners and every session at once.
func (s *Server) Close() error { return s.base.Close() }

func (s *Server) upstreamName() string {
	if s.opts.Upstream != "" {
		return s.opts.Upstream
	}
	return "custom dialer"
}

type handler struct{ s *Server }

func (h handler) ServeConn(c net.Conn) { h.s.serveConn(c) }
func (h handler) Refuse(c net.Conn, why error) {
	text := frontend.RefusalText(why)
	if h.s.opts.TLS.Mode != TLSImplicit {
		w := bufio.NewWriter(c)
		pop3.WriteResponse(w, pop3.Err(pop3.CodeSysTemp, text))
		w.Flush()
	}
	c.Close()
}

var idEncoding = base32.NewEncoding("0123456789BCDFGHJKLMNPQRSTVWXYZa").WithPadding(base32.NoPadding)

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])[:12]
}

func netAddrPort(a net.Addr) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return ap, fmt.Errorf("client address %q: %w", a, err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
