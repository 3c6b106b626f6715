// Package listener is what every Postern front end does before and around its protocol: the accept loop (with
// backoff when the process runs out of descriptors), the session limit, the PROXY protocol from trusted sources,
// the client certificate store with reload, read deadlines per session phase, and drain and shutdown.
//
// Shutdown never writes to a client while it holds a lock: a client that does not read its replies can delay
// only its own goodbye, never the shutdown deadline or another session's.
package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/postern/postern/proxy/metrics"
)

// Session is one tracked client session.
type Session interface {
	// Drain is called once when shutdown begins: a session between commands says goodbye in its protocol and
	// closes, one in the middle of a message finishes it first. It is called on a goroutine of its own, with no
	// lock held, and may block on the client; Cut interrupts it.
	Drain()
	// Cut closes the session now: the shutdown deadline passed, or Close was called. It must not block.
	Cut()
}

// Handler runs the sessions of a Server.
type Handler interface {
	// ServeConn runs one session on c, from the first byte to the close. It calls Server.Track with its Session,
	// and Untrack when it ends.
	ServeConn(c net.Conn)
	// Refuse answers a connection the server does not serve (too many sessions, shutting down) in the
	// protocol's words, briefly, and closes it. why is ErrBusy or ErrShuttingDown.
	Refuse(c net.Conn, why error)
}

// The reasons given to Handler.Refuse.
var (
	ErrBusy         = errors.New("too many sessions")
	ErrShuttingDown = errors.New("shutting down")
	// ErrClientBusy: the client's address already holds Options.SessionsPerClient sessions.
	ErrClientBusy = errors.New("too many sessions from this address")
	// ErrClientRate: the client's address opened more than Options.ConnectionRate connections in a window.
	ErrClientRate = errors.New("too many connections from this address")
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("listener: server closed")

// Options configure a Server. Every field is explicit: the configuration package holds the defaults.
type Options struct {
	// Name is the listener's name, in logs, errors and metrics.
	Name string
	// Protocol is the protocol the listener speaks ("smtp", "submission", "pop3", "imap"), in metrics.
	Protocol string
	// Sessions is the number of concurrent sessions; one more is refused (Handler.Refuse with ErrBusy).
	Sessions int
	// ProxyTrusted lists the sources allowed to connect with a PROXY protocol (v1 or v2) header, which every
	// connection from them must start with; its source address becomes the client's. Connections from any other
	// address are closed unanswered. Empty: the PROXY protocol is off.
	ProxyTrusted []netip.Prefix
	// ProxyHeaderTimeout bounds reading the PROXY header.
	ProxyHeaderTimeout time.Duration
	// SessionsPerClient is the number of concurrent sessions one client address may hold (an IPv6 address
	// counts with its /84); one more is refused (ErrClientBusy). 0: no limit. The address is the one the PROXY
	// header gives, when there is one.
	SessionsPerClient int
	// ConnectionRate is the number of connections one client address may open per RateWindow; more are refused
	// (ErrClientRate) until the window ends. 0: no limit.
	ConnectionRate int
	// RateWindow is the window of ConnectionRate (a minute if zero).
	RateWindow time.Duration
	// StressSessions is the number of sessions above which the server is under stress (Stressed): front ends
	// then use their shorter timeouts, as Postfix's stress mode does. It ends when the sessions fall to nine
	// tenths of it. 0: never.
	StressSessions int
	// Logger receives the listener's log (with the listener's name); nil uses slog.Default().
	Logger *slog.Logger
}

// Server accepts connections and tracks the sessions of one listener.
type Server struct {
	opts     Options
	h        Handler
	log      *slog.Logger
	sessions atomic.Int64
	clients  clients
	stressed atomic.Bool
	stats    stats
	metrics  *metrics.Listener

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[Session]struct{}
	closing   bool
	drained   chan struct{} // closed when closing and conns is empty
	wg        sync.WaitGroup
}

// New returns a Server whose sessions h runs.
func New(opts Options, h Handler) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RateWindow <= 0 {
		opts.RateWindow = time.Minute
	}
	return &Server{opts: opts, h: h, log: opts.Logger, metrics: metrics.NewListener(opts.Name, opts.Protocol),
		listeners: map[net.Listener]struct{}{}, conns: map[Session]struct{}{}, drained: make(chan struct{})}
}

// Listen opens a TCP listener. TCP keep-alives are off: sessions are bounded by their timeouts, and each
// keep-alive option is a system call on every accepted connection.
func Listen(address string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", address)
}

// ParsePrefix accepts an address ("10.0.0.1") or a CIDR range ("10.0.0.0/8").
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

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
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors or a transient failure: back off instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("listener %q: %w", s.opts.Name, err)
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

func (s *Server) serveConn(raw net.Conn) {
	n := s.sessions.Add(1)
	defer s.leave()
	s.metrics.Accepted()
	raw = countingConn{raw, s.metrics}
	if n > int64(s.opts.Sessions) {
		s.stats.refusedBusy.Add(1)
		s.metrics.Refused(metrics.RefusedSessions)
		s.log.Warn("session limit reached; refusing connection", "client", raw.RemoteAddr().String(),
			"limit", s.opts.Sessions)
		s.h.Refuse(raw, ErrBusy)
		return
	}
	s.checkStress(n)
	conn := raw
	if len(s.opts.ProxyTrusted) > 0 {
		var err error
		if conn, err = s.acceptProxy(raw); err != nil {
			s.metrics.Refused(metrics.RefusedProxyHeader)
			s.log.Warn("connection refused", "err", err)
			raw.Close()
			return
		}
	}
	if s.opts.SessionsPerClient > 0 || s.opts.ConnectionRate > 0 {
		if key, ok := clientKeyOf(conn.RemoteAddr()); ok {
			if err := s.clients.admit(key, s.opts.SessionsPerClient, s.opts.ConnectionRate, s.opts.RateWindow,
				time.Now()); err != nil {
				s.refuseClient(conn, key, err)
				return
			}
			defer s.clients.release(key)
		}
	}
	s.h.ServeConn(conn)
}

// refuseClient refuses a connection over a per-client limit, with a counter and a log line.
func (s *Server) refuseClient(c net.Conn, key netip.Prefix, why error) {
	if errors.Is(why, ErrClientRate) {
		s.stats.refusedClientRate.Add(1)
		s.metrics.Refused(metrics.RefusedClientRate)
		s.log.Warn("client connection rate limit reached; refusing connection", "client", c.RemoteAddr().String(),
			"network", key.String(), "limit", s.opts.ConnectionRate, "window", s.opts.RateWindow.String())
	} else {
		s.stats.refusedClientBusy.Add(1)
		s.metrics.Refused(metrics.RefusedClientSessions)
		s.log.Warn("per-client session limit reached; refusing connection", "client", c.RemoteAddr().String(),
			"network", key.String(), "limit", s.opts.SessionsPerClient)
	}
	s.h.Refuse(c, why)
}

// leave counts a session out, and ends stress mode when the sessions fell far enough.
func (s *Server) leave() {
	s.metrics.Closed()
	n := s.sessions.Add(-1)
	if t := int64(s.opts.StressSessions); t > 0 && n <= t*9/10 && s.stressed.CompareAndSwap(true, false) {
		s.log.Info("stress mode off: timeouts back to normal", "sessions", n)
	}
}

// checkStress begins stress mode when n sessions are more than Options.StressSessions.
func (s *Server) checkStress(n int64) {
	if t := int64(s.opts.StressSessions); t > 0 && n > t && s.stressed.CompareAndSwap(false, true) {
		s.stats.stress.Add(1)
		s.log.Warn("stress mode on: shorter timeouts while sessions are above the threshold", "sessions", n,
			"threshold", t, "limit", s.opts.Sessions)
	}
}

// Stressed reports whether the server is in stress mode (Options.StressSessions). It is cheap enough for every
// read.
func (s *Server) Stressed() bool { return s.stressed.Load() }

// CountTimeout counts a session cut off by its read deadline in phase p (Stats).
func (s *Server) CountTimeout(p Phase) {
	if p == PhaseCommand {
		s.stats.commandTimeouts.Add(1)
	} else {
		s.stats.idleTimeouts.Add(1)
	}
}

// Track registers a session, so that Shutdown drains it; it reports false when the server is shutting down (the
// session must then be refused, with Handler.Refuse).
func (s *Server) Track(c Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		s.metrics.Refused(metrics.RefusedShuttingDown)
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// Untrack removes a session that ended.
func (s *Server) Untrack(c Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if s.closing && len(s.conns) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// Shutdown stops accepting connections, drains every session (Session.Drain, each on its own goroutine) and
// waits until they ended or ctx is done; then it cuts whatever is left. It returns ctx.Err() if it had to cut
// sessions off. It may be called again (a second signal, with a cancelled context) while a first call waits.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closing
	if first {
		s.closing = true
		for ln := range s.listeners {
			ln.Close()
		}
		if len(s.conns) == 0 {
			close(s.drained)
		}
	}
	sessions := s.snapshot()
	s.mu.Unlock()
	// Written outside the lock: a client that does not read holds up only its own goodbye.
	if first {
		for _, c := range sessions {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c.Drain()
			}()
		}
	}
	var err error
	select {
	case <-s.drained:
	case <-ctx.Done():
		err = ctx.Err()
		s.cutAll()
	}
	s.wg.Wait()
	return err
}

// Close closes the listeners and cuts every session at once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func (s *Server) snapshot() []Session {
	out := make([]Session, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

func (s *Server) cutAll() {
	s.mu.Lock()
	sessions := s.snapshot()
	s.mu.Unlock()
	for _, c := range sessions {
		c.Cut()
	}
}

// isTrustedProxy reports whether addr may send a PROXY header.
func (s *Server) isTrustedProxy(addr net.Addr) bool {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range s.opts.ProxyTrusted {
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
		proxyproto.SetReadHeaderTimeout(s.opts.ProxyHeaderTimeout))
	// A zero-length read makes the library read and check the header now, before anything is written.
	if _, err := pc.Read(nil); err != nil {
		return nil, fmt.Errorf("PROXY protocol header from %s: %w", c.RemoteAddr(), err)
	}
	return pc, nil
}

// countingConn counts a client connection's bytes in the listener's metrics.
type countingConn struct {
	net.Conn
	m *metrics.Listener
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.m.BytesIn(n)
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.m.BytesOut(n)
	return n, err
}
