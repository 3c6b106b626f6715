// Package embedimap is a small IMAP server over .eml files: INBOX holds the messages the embedded SMTP upstream
// (proxy/embedsmtp) stored, and Drafts, Sent and Trash hold what clients APPEND, COPY or MOVE there.
//
// It is the embedded upstream of an imap listener with `upstream = "embedded"`, so that a newcomer can send a
// message through the SMTP demo and read it back, filtered, with any IMAP client, without a mail server. It is
// for demonstrations and tests, not a mail store: it accepts any user name and password and every user sees the
// same mailboxes. What it does keep right is what IMAP clients rely on: UIDs and UIDVALIDITY stay the same across
// restarts (an index file per mailbox in the state directory), a file that appears in a directory is a new
// message with a new UID (announced to selected and idling sessions), a file that disappears (a POP3 client
// deleted it) is expunged, and flags persist.
//
// It is built on go-imap's imapserver with its MailboxTracker, not on imapmemserver: imapmemserver keeps messages
// in memory, numbers them from 1 at every start and cannot learn of files that appear or disappear, which are the
// three things this server is for. Its search rules are reused (search.go).
package embedimap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Options configure a Server.
type Options struct {
	// InboxDirs hold INBOX's messages, NAME.eml each (embedsmtp's directories); a missing directory is an empty
	// one. A message appended, copied or moved to INBOX is written to the first. Required.
	InboxDirs []string
	// StateDir holds the index of every mailbox and the files of Drafts, Sent and Trash; it is created (mode
	// 0700) if missing. Required.
	StateDir string
	// MaxMessageBytes is the largest message served or appended (default 64 MiB, advertised as APPENDLIMIT);
	// larger files in a directory are left out, with a log line.
	MaxMessageBytes int64
	// Logger receives a line per login, appended and expunged message; nil uses slog.Default().
	Logger *slog.Logger
}

// Mailboxes besides INBOX, with their RFC 6154 special use; they always exist.
var specialMailboxes = []struct {
	name string
	attr imap.MailboxAttr
}{
	{"Drafts", imap.MailboxAttrDrafts},
	{"Sent", imap.MailboxAttrSent},
	{"Trash", imap.MailboxAttrTrash},
}

// Server is the embedded IMAP upstream. It serves in-process connections made with Dial and, optionally, a real
// listener given to Serve.
type Server struct {
	opts    Options
	log     *slog.Logger
	imap    *imapserver.Server
	pipe    *pipeListener
	boxes   []*mailbox // INBOX first
	served  chan struct{}
	closing sync.Once
}

// New loads the mailbox indexes and starts serving in-process connections.
func New(opts Options) (*Server, error) {
	if len(opts.InboxDirs) == 0 {
		return nil, errors.New("embedimap: no directory for INBOX")
	}
	if opts.StateDir == "" {
		return nil, errors.New("embedimap: no state directory")
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "embedded-imap"), served: make(chan struct{})}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedimap: %w", err)
	}
	inbox, err := s.openMailbox("INBOX", "", opts.InboxDirs)
	if err != nil {
		return nil, err
	}
	s.boxes = append(s.boxes, inbox)
	for _, sm := range specialMailboxes {
		dir := filepath.Join(opts.StateDir, sm.name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("embedimap: %w", err)
		}
		mb, err := s.openMailbox(sm.name, sm.attr, []string{dir})
		if err != nil {
			return nil, err
		}
		s.boxes = append(s.boxes, mb)
	}
	s.imap = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &session{s: s}, nil, nil
		},
		Caps: imap.CapSet{
			imap.CapIMAP4rev1: {}, imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapMove: {},
			imap.CapSpecialUse: {}, imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapESearch: {},
			imap.CapChildren: {},
		},
		// No LITERAL+: imapserver refuses an APPEND over the limit before reading its literal, and a
		// non-synchronising literal would then be read as commands.
		// The connections are in-process (or a loopback port for tools): there is no TLS to require.
		InsecureAuth: true,
		Logger:       slogLogger{s.log},
	})
	s.pipe = newPipeListener()
	go func() {
		defer close(s.served)
		_ = s.imap.Serve(s.pipe)
	}()
	return s, nil
}

// Dial opens an in-process connection to the server, as a TCP dial would.
func (s *Server) Dial(ctx context.Context) (net.Conn, error) {
	return s.pipe.dial(ctx)
}

// Serve also serves connections from ln (for example a loopback port for other tools). It returns when ln fails
// or the server is closed.
func (s *Server) Serve(ln net.Listener) error {
	return s.imap.Serve(ln)
}

// Close stops the server and closes every connection.
func (s *Server) Close() error {
	s.closing.Do(func() {
		_ = s.imap.Close()
		s.pipe.Close()
		<-s.served
	})
	return nil
}

// mailbox looks a mailbox up by name; INBOX in any case (RFC 3501 §5.1).
func (s *Server) mailbox(name string) *mailbox {
	if strings.EqualFold(name, "INBOX") {
		return s.boxes[0]
	}
	for _, mb := range s.boxes[1:] {
		if mb.name == name {
			return mb
		}
	}
	return nil
}

var errNoMailbox = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent,
	Text: "No such mailbox (the embedded upstream has INBOX, Drafts, Sent and Trash)"}

// pipeListener is a net.Listener whose connections are made in-process with dial.
type pipeListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

var errClosed = fmt.Errorf("embedimap: %w", net.ErrClosed)

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
// io.ErrClosedPipe, which imapserver would log as an error for every session.
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
	if errors.Is(err, io.ErrClosedPipe) {
		err = net.ErrClosed
	}
	return n, err
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

// slogLogger adapts imapserver's Logger to slog.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(format string, v ...any) {
	s.l.Warn(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// now is the clock of APPEND's default internal date.
var now = time.Now
