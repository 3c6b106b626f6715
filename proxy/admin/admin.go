// Package admin is Postern's admin HTTP listener: the liveness and readiness checks a load balancer or
// Kubernetes probes, and the place where the metrics and the reviewer pages are mounted. It is off unless the
// configuration has an admin block, and on the loopback unless it has TLS.
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// Options configure a Server.
type Options struct {
	// TLS, when not nil, makes the listener HTTPS (its GetCertificate may reload certificates).
	TLS *tls.Config
	// Logger receives the server's errors; nil means slog.Default().
	Logger *slog.Logger
	// CheckTimeout bounds each readiness check; 0 means 2 s.
	CheckTimeout time.Duration
}

// Server is the admin HTTP server. Handlers and readiness checks may be added until Serve is called.
type Server struct {
	opts Options
	mux  *http.ServeMux
	srv  *http.Server

	mu     sync.Mutex
	checks map[string]func(context.Context) error
}

// New returns a server answering /healthz and /readyz.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = 2 * time.Second
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), checks: map[string]func(context.Context) error{}}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.srv = &http.Server{
		Handler:           s.mux,
		TLSConfig:         opts.TLS,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      5 * time.Minute, // a download of a quarantined message may be large
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	return s
}

// Handle mounts h at pattern (net/http ServeMux syntax).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Ready adds a readiness check: /readyz answers 503 while any check fails.
func (s *Server) Ready(name string, check func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = check
}

// readyz runs every check, each bounded by CheckTimeout, and lists them as Kubernetes' components do: one line
// per check, "[+]name ok" or "[-]name failed: reason".
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make(map[string]func(context.Context) error, len(s.checks))
	for n, c := range s.checks {
		checks[n] = c
	}
	s.mu.Unlock()
	sort.Strings(names)

	results := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.Context(), s.opts.CheckTimeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- checks[n](ctx) }()
			select {
			case results[i] = <-done:
			case <-ctx.Done():
				results[i] = fmt.Errorf("no answer within %v", s.opts.CheckTimeout)
			}
		}()
	}
	wg.Wait()

	var b strings.Builder
	ok := true
	for i, n := range names {
		if results[i] != nil {
			ok = false
			fmt.Fprintf(&b, "[-]%s failed: %v\n", n, results[i])
		} else {
			fmt.Fprintf(&b, "[+]%s ok\n", n)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		s.opts.Logger.Warn("admin: not ready", "checks", strings.TrimSpace(b.String()))
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(&b, "not ready\n")
	} else {
		fmt.Fprint(&b, "ready\n")
	}
	fmt.Fprint(w, b.String())
}

// Listen binds address for Serve.
func Listen(address string) (net.Listener, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	return ln, nil
}

// Serve serves on ln until Shutdown or Close, with TLS when Options.TLS is set.
func (s *Server) Serve(ln net.Listener) error {
	if s.opts.TLS != nil {
		return s.srv.ServeTLS(ln, "", "")
	}
	return s.srv.Serve(ln)
}

// Shutdown stops accepting and waits for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin listener: %w", err)
	}
	return nil
}

// Close closes the listener and every connection now.
func (s *Server) Close() error { return s.srv.Close() }
