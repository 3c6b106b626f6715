package smtptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one message an Upstream accepted.
type Message struct {
	HELO     string
	AuthUser string
	From     string
	MailOpts smtp.MailOptions
	Rcpts    []string
	RcptOpts []smtp.RcptOptions
	Data     []byte
}

// Upstream is an SMTP server built on go-smtp that records every message it accepts. Set its fields, then call
// Start. The hooks let a test fail any step: a hook returning an *smtp.SMTPError gives that reply.
type Upstream struct {
	// TLS offers STARTTLS (or, with Implicit, serves TLS from the first byte).
	TLS      *tls.Config
	Implicit bool
	// Users enables AUTH PLAIN and LOGIN against this user → password list.
	Users map[string]string
	// Configure adjusts the go-smtp server (extensions, limits) before it starts.
	Configure func(*smtp.Server)
	// WrapConn, if set, wraps every accepted connection (a throttled reader, a connection that stalls).
	WrapConn func(net.Conn) net.Conn

	OnMail func(from string, opts *smtp.MailOptions) error
	OnRcpt func(to string, opts *smtp.RcptOptions) error
	// OnData runs after the whole message was read; conn lets it drop the connection instead of answering.
	OnData func(conn *smtp.Conn, data []byte) error
	// DropInData closes the connection after reading this many bytes of a message (0: never).
	DropInData int

	Addr   string
	Server *smtp.Server

	mu       sync.Mutex
	messages []Message
	sessions int
	resets   int
	changed  chan struct{}
}

// Start listens on a free loopback port and serves until the test ends.
func (u *Upstream) Start(t testing.TB) *Upstream {
	t.Helper()
	u.changed = make(chan struct{}, 1)
	srv := smtp.NewServer(smtp.BackendFunc(u.newSession))
	srv.Domain = "upstream.test"
	srv.AllowInsecureAuth = true
	srv.MaxLineLength = 1 << 20
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.ErrorLog = nopLogger{}
	if !u.Implicit {
		srv.TLSConfig = u.TLS
	}
	if u.Configure != nil {
		u.Configure(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if u.WrapConn != nil {
		ln = wrapListener{ln, u.WrapConn}
	}
	if u.Implicit {
		ln = tls.NewListener(ln, u.TLS)
	}
	u.Addr = ln.Addr().String()
	u.Server = srv
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return u
}

// Messages returns a copy of the messages accepted so far.
func (u *Upstream) Messages() []Message {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Message(nil), u.messages...)
}

// Sessions returns how many sessions said EHLO (or HELO).
func (u *Upstream) Sessions() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sessions
}

// Resets returns how many times a transaction was reset (RSET, or the end of a message).
func (u *Upstream) Resets() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.resets
}

// WaitMessages waits until n messages were accepted or the timeout passed, and returns them.
func (u *Upstream) WaitMessages(n int, timeout time.Duration) []Message {
	deadline := time.After(timeout)
	for {
		if m := u.Messages(); len(m) >= n {
			return m
		}
		select {
		case <-u.changed:
		case <-deadline:
			return u.Messages()
		}
	}
}

func (u *Upstream) newSession(c *smtp.Conn) (smtp.Session, error) {
	u.mu.Lock()
	u.sessions++
	u.mu.Unlock()
	return &upSession{u: u, conn: c}, nil
}

type upSession struct {
	u    *Upstream
	conn *smtp.Conn
	user string
	msg  Message
}

func (s *upSession) Reset() {
	s.msg = Message{}
	s.u.mu.Lock()
	s.u.resets++
	s.u.mu.Unlock()
}

func (s *upSession) Logout() error { return nil }

func (s *upSession) AuthMechanisms() []string {
	if s.u.Users == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *upSession) Auth(mech string) (sasl.Server, error) {
	check := func(identity, user, pass string) error {
		if identity != "" && identity != user {
			return smtp.ErrAuthFailed
		}
		if p, ok := s.u.Users[user]; !ok || p != pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
				Message: "upstream says: bad credentials for " + user}
		}
		s.user = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(check), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *upSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.u.OnMail != nil {
		if err := s.u.OnMail(from, opts); err != nil {
			return err
		}
	}
	s.msg = Message{HELO: s.conn.Hostname(), AuthUser: s.user, From: from}
	if opts != nil {
		s.msg.MailOpts = *opts
	}
	return nil
}

func (s *upSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.u.OnRcpt != nil {
		if err := s.u.OnRcpt(to, opts); err != nil {
			return err
		}
	}
	s.msg.Rcpts = append(s.msg.Rcpts, to)
	var o smtp.RcptOptions
	if opts != nil {
		o = *opts
	}
	s.msg.RcptOpts = append(s.msg.RcptOpts, o)
	return nil
}

func (s *upSession) Data(r io.Reader) error {
	if n := s.u.DropInData; n > 0 {
		io.CopyN(io.Discard, r, int64(n))
		s.conn.Close()
		return errors.New("dropped on purpose")
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.u.OnData != nil {
		if err := s.u.OnData(s.conn, data); err != nil {
			return err
		}
	}
	m := s.msg
	m.Data = bytes.Clone(data)
	s.u.mu.Lock()
	s.u.messages = append(s.u.messages, m)
	n := len(s.u.messages)
	s.u.mu.Unlock()
	select {
	case s.u.changed <- struct{}{}:
	default:
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
		Message: "Ok: queued as UP" + itoa(n)}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

type loginServer struct {
	check func(identity, user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.user = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check("", l.user, string(resp))
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// wrapListener wraps the connections a listener accepts.
type wrapListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}
