// Package embedsmtp is a small SMTP server that stores every message it receives as an .eml file in a directory.
//
// It is Postern's "embedded upstream": a listener configured with `upstream = "embedded"` relays to it in-process,
// so a newcomer can run the proxy and look at what came out without installing a mail server. It is a sink for
// demonstrations and tests, not a mail store: it accepts any sender and recipient, delivers nothing further, and
// keeps each message byte for byte as the relay sent it, so the files show exactly what a real upstream would
// have received.
package embedsmtp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configure a Server.
type Options struct {
	// Dir receives one NAME.eml file per message; it is created (mode 0700) if missing. Required.
	Dir string
	// Hostname names the server in its greeting (default "postern-embedded").
	Hostname string
	// MaxMessageBytes is the largest message accepted (default 64 MiB); it is advertised as SIZE.
	MaxMessageBytes int64
	// Users, when set, are the accounts AUTH PLAIN accepts (user → password). Mail is accepted without AUTH
	// too: the server is a sink, AUTH is there so that a relay's AUTH can be tried against it.
	Users map[string]string
	// Logger receives one line per stored message; nil uses slog.Default().
	Logger *slog.Logger
}

// TestUsers are the accounts of the demonstration: well known, so never a real mailbox's.
var TestUsers = map[string]string{
	"alice@example.com": "alice-test-password",
	"bob@example.com":   "bob-test-password",
}

// Server is the embedded upstream. It serves in-process connections made with Dial and, optionally, a real
// listener given to Serve.
type Server struct {
	opts Options
	smtp *smtp.Server
	pipe *pipeListener
	log  *slog.Logger
	done chan struct{}
}

// New creates the directory and starts serving in-process connections.
func New(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("embedsmtp: no directory for received messages")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedsmtp: %w", err)
	}
	if opts.Hostname == "" {
		opts.Hostname = "postern-embedded"
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "embedded-upstream"), done: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{s: s}, nil
	}))
	srv.Domain = opts.Hostname
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.MaxLineLength = 1 << 20
	srv.EnableSMTPUTF8 = true
	// The connections are in-process (or a loopback port for tools): AUTH needs no TLS to protect it.
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = 5 * time.Minute
	srv.ErrorLog = slogLogger{s.log}
	s.smtp = srv
	s.pipe = newPipeListener()
	go func() {
		defer close(s.done)
		_ = srv.Serve(s.pipe)
	}()
	return s, nil
}

// Dir returns the directory messages are stored in.
func (s *Server) Dir() string { return s.opts.Dir }

// Dial opens an in-process connection to the server, as a TCP dial would.
func (s *Server) Dial(ctx context.Context) (net.Conn, error) {
	return s.pipe.dial(ctx)
}

// Serve also serves connections from ln (for example a loopback port for other tools). It returns when ln fails
// or the server is closed.
func (s *Server) Serve(ln net.Listener) error {
	return s.smtp.Serve(ln)
}

// Close stops the server and closes every connection.
func (s *Server) Close() error {
	err := s.smtp.Close()
	// Serve may not have registered the in-process listener with go-smtp yet; closing it here ends Serve anyway.
	s.pipe.Close()
	<-s.done
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	return err
}

type session struct {
	s     *Server
	user  string
	from  string
	rcpts []string
}

var _ smtp.AuthSession = (*session)(nil)

// AuthMechanisms offers PLAIN when there are Users.
func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

// Auth checks a PLAIN exchange against Users.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || ss.s.opts.Users == nil {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		want, ok := ss.s.opts.Users[user]
		if !ok || (identity != "" && identity != user) ||
			subtle.ConstantTimeCompare([]byte(want), []byte(pass)) != 1 {
			ss.s.log.Info("authentication failed", "user", user)
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
				Message: "Authentication credentials invalid"}
		}
		ss.user = user
		ss.s.log.Info("authenticated", "user", user)
		return nil
	}), nil
}

func (ss *session) Reset()        { ss.from, ss.rcpts = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	id, path, size, sum, err := ss.s.store(r)
	if err != nil {
		ss.s.log.Error("storing message failed", "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Could not store the message"}
	}
	ss.s.log.Info("message stored", "id", id, "file", path, "from", ss.from, "rcpts", ss.rcpts,
		"size", size, "sha256", sum, "auth_user", ss.user)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: stored as " + id}
}

// store writes the message to a temporary file, syncs it and renames it into place, so that a file named .eml is
// always complete.
func (s *Server) store(r io.Reader) (id, path string, size int64, sum string, err error) {
	id = newID()
	name := time.Now().UTC().Format("20060102T150405.000000000Z") + "-" + id + ".eml"
	f, err := os.CreateTemp(s.opts.Dir, ".incoming-*")
	if err != nil {
		return "", "", 0, "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		return "", "", 0, "", err
	}
	if err = f.Sync(); err != nil {
		return "", "", 0, "", err
	}
	if err = f.Close(); err != nil {
		return "", "", 0, "", err
	}
	path = filepath.Join(s.opts.Dir, name)
	if err = os.Rename(f.Name(), path); err != nil {
		return "", "", 0, "", err
	}
	return id, path, size, hex.EncodeToString(h.Sum(nil)), nil
}

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pipeListener is a net.Listener whose connections are made in-process with dial.
type pipeListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

var errClosed = fmt.Errorf("embedsmtp: %w", net.ErrClosed)

func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- pipeConn{server}:
		return client, nil
	case <-l.closed:
		return nil, errClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pipeConn reports the other end's close as a connection end, as a socket would: net.Pipe says
// io.ErrClosedPipe, which go-smtp would log as an error for every session.
type pipeConn struct{ net.Conn }

func (c pipeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if errors.Is(err, io.ErrClosedPipe) {
		err = io.EOF
	}
	return n, err
}

func (c pipeConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	return n, closedErr(err)
}

func (c pipeConn) SetReadDeadline(t time.Time) error { return closedErr(c.Conn.SetReadDeadline(t)) }

func closedErr(err error) error {
	if errors.Is(err, io.ErrClosedPipe) {
		return net.ErrClosed
	}
	return err
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, errClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "embedded" }

// slogLogger adapts go-smtp's Logger to slog.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(format string, v ...any) { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s slogLogger) Println(v ...any)               { s.l.Warn(fmt.Sprint(v...)) }
