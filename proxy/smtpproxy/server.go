package smtpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/postern/postern/proxy/mailflow"
)

// Server is one SMTP or submission listener relaying to one upstream.
type Server struct {
	opts     Options
	log      *slog.Logger
	flow     *mailflow.Flow
	certs    *certStore // nil without client TLS
	tlsConf  *tls.Config
	upTLS    *tls.Config // nil without upstream TLS
	trusted  []netip.Prefix
	sessions atomic.Int64
	errLog   smtp.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*connState]struct{}
	closing   bool
	drained   chan struct{} // closed when closing and conns is empty
	wg        sync.WaitGroup
}

// New checks the options, loads the certificates and returns a Server ready to Serve.
func New(opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("smtpproxy: listener %q: %w", opts.Name, err)
	}
	s := &Server{
		opts:      o,
		log:       o.Logger.With("listener", o.Name),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*connState]struct{}{},
		drained:   make(chan struct{}),
	}
	s.errLog = slogErrorLog{s.log}
	if o.TLS.Mode != TLSNone {
		s.certs, err = newCertStore(o.TLS.CertFile, o.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("smtpproxy: listener %q: %w", o.Name, err)
		}
		s.tlsConf = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: s.certs.get,
		}
	}
	if o.UpstreamTLS.Mode != UpstreamTLSNone {
		s.upTLS, err = upstreamTLSConfig(o)
		if err != nil {
			return nil, fmt.Errorf("smtpproxy: listener %q: %w", o.Name, err)
		}
	}
	for _, t := range o.ProxyProtocol.Trusted {
		p, _ := parsePrefix(t) // checked by withDefaults
		s.trusted = append(s.trusted, p)
	}
	fo := mailflow.Options{Filters: o.Filters, Audit: o.Audit, SpoolDir: o.SpoolDir,
		MemoryThreshold: o.MemoryThreshold, MessageSize: o.Limits.MessageSize,
		NormalizeNewlines: o.BareNewline == BareNewlineNormalize, MessageLimits: o.MessageLimits,
		ResultHeaders: o.ResultHeaders, Logger: s.log}
	if o.QuarantineDir != "" {
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
	if err := s.certs.reload(); err != nil {
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

// Listen opens a TCP listener for a Server. TCP keep-alives are off: sessions are bounded by the idle timeout,
// and each keep-alive option is a system call on every accepted connection.
func Listen(address string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", address)
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("smtpproxy: server closed")

// Serve accepts connections on ln until Shutdown or Close, and returns ErrServerClosed then. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	s.log.Info("listening", "address", ln.Addr().String(), "protocol", s.opts.Protocol,
		"tls", string(s.opts.TLS.Mode), "upstream", s.upstreamName())

	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				// Out of descriptors or a transient failure: back off instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("smtpproxy: listener %q: %w", s.opts.Name, err)
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

// Shutdown stops accepting connections, closes the sessions that are between messages (with 421) and lets the
// ones in the middle of a message finish it, up to ctx's deadline; then it closes whatever is left. It returns
// ctx.Err() if it had to cut sessions off.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		for ln := range s.listeners {
			ln.Close()
		}
		if len(s.conns) == 0 {
			close(s.drained)
		}
	}
	for cs := range s.conns {
		cs.shutdown()
	}
	s.mu.Unlock()
	var err error
	select {
	case <-s.drained:
	case <-ctx.Done():
		err = ctx.Err()
		s.closeAll()
	}
	s.wg.Wait()
	return err
}

// Close closes the listeners and every session at once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for cs := range s.conns {
		cs.cancel()
		cs.client.Close()
		cs.interruptUpstream()
	}
}

// track registers a session; it reports false when the server is shutting down.
func (s *Server) track(cs *connState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[cs] = struct{}{}
	return true
}

func (s *Server) untrack(cs *connState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, cs)
	if s.closing && len(s.conns) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
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

// isTrustedProxy reports whether addr may send a PROXY header.
func (s *Server) isTrustedProxy(addr net.Addr) bool {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range s.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// acceptProxy reads the PROXY header of a connection from a trusted source and returns the connection that
// reports the client's address.
func (s *Server) acceptProxy(c net.Conn) (net.Conn, error) {
	if !s.isTrustedProxy(c.RemoteAddr()) {
		return nil, fmt.Errorf("PROXY protocol: %s is not a trusted proxy", c.RemoteAddr())
	}
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE),
		proxyproto.SetReadHeaderTimeout(s.opts.ProxyProtocol.HeaderTimeout))
	// A zero-length read makes the library read and check the header now, before anything is written.
	if _, err := pc.Read(nil); err != nil {
		return nil, fmt.Errorf("PROXY protocol header from %s: %w", c.RemoteAddr(), err)
	}
	return pc, nil
}

// slogErrorLog adapts go-smtp's Logger to slog.
type slogErrorLog struct{ l *slog.Logger }

func (s slogErrorLog) Printf(format string, v ...any) {
	s.l.Warn("smtp server: " + fmt.Sprintf(format, v...))
}
func (s slogErrorLog) Println(v ...any) { s.l.Warn("smtp server: " + fmt.Sprint(v...)) }
