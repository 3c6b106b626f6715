// Package embedpop3 is a small POP3 server that serves the .eml files of one or more directories as a maildrop:
// the messages the embedded SMTP upstream (proxy/embedsmtp) stored.
//
// It is the embedded upstream of a pop3 listener with `upstream = "embedded"`, so that a newcomer can send a
// message through the SMTP demo and read it back, filtered, through the POP3 proxy, without a mail server. It is
// for demonstrations and tests, not a mail store: it accepts any user name and password, every user sees the
// same maildrop, and DELE followed by QUIT removes the files.
package embedpop3

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/proxy/pop3"
)

// Options configure a Server.
type Options struct {
	// Dirs hold the messages, NAME.eml each; they are listed at each login, in name order (embedsmtp's names
	// start with the time of storing). A missing directory is an empty one.
	Dirs []string
	// Timeout bounds each read from a client (default 10 minutes).
	Timeout time.Duration
	// Logger receives a line per login and per deletion; nil uses slog.Default().
	Logger *slog.Logger
}

// Server is the embedded POP3 upstream.
type Server struct {
	opts Options
	log  *slog.Logger
	done chan struct{}
	once sync.Once
}

// New returns a server ready for Dial.
func New(opts Options) (*Server, error) {
	if len(opts.Dirs) == 0 {
		return nil, errors.New("embedpop3: no directory to serve")
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{opts: opts, log: opts.Logger.With("component", "embedded-pop3"), done: make(chan struct{})}, nil
}

// Dial opens an in-process connection to the server, as a TCP dial would.
func (s *Server) Dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case <-s.done:
		return nil, fmt.Errorf("embedpop3: %w", net.ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	default:
	}
	go s.serve(server)
	return client, nil
}

// Serve serves connections from ln too (a loopback port for other tools) until ln fails or Close.
func (s *Server) Serve(ln net.Listener) error {
	go func() { <-s.done; ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
				return err
			}
		}
		go s.serve(c)
	}
}

// Close stops accepting sessions; the open ones end when their client closes the connection, or at their read
// timeout.
func (s *Server) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

type message struct {
	path string
	uidl string
	size int64
}

// list reads the maildrop.
func (s *Server) list() ([]message, error) {
	var msgs []message
	for _, dir := range s.opts.Dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".eml") || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			msgs = append(msgs, message{path: filepath.Join(dir, e.Name()), uidl: uidl(e.Name()), size: info.Size()})
		}
	}
	sort.Slice(msgs, func(i, j int) bool { return filepath.Base(msgs[i].path) < filepath.Base(msgs[j].path) })
	return msgs, nil
}

// uidl is the file's name without .eml when that is a valid UIDL (RFC 1939 §7), else a digest of the name.
func uidl(name string) string {
	u := strings.TrimSuffix(name, ".eml")
	ok := len(u) > 0 && len(u) <= 70
	for i := 0; ok && i < len(u); i++ {
		ok = u[i] > 0x20 && u[i] < 0x7f
	}
	if ok {
		return u
	}
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:16])
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	cr := pop3.NewCommandReader(br, 64<<10)
	say := func(r pop3.Response) { pop3.WriteResponse(bw, r) }
	say(pop3.OK("Postern embedded POP3 ready"))
	var (
		user   string
		msgs   []message
		dele   map[int]bool
		logged bool
	)
	arg := func(cmd pop3.Command, i int) (int, bool) {
		if i >= len(cmd.Args) {
			return 0, false
		}
		n, ok := pop3.MessageNumber(cmd.Args[i])
		if !ok || n > len(msgs) || dele[n] {
			return 0, false
		}
		return n, true
	}
	login := func(name string) {
		var err error
		if msgs, err = s.list(); err != nil {
			s.log.Error("listing the maildrop", "err", err)
			say(pop3.Err(pop3.CodeSysTemp, "Maildrop not readable"))
			return
		}
		user, logged, dele = name, true, map[int]bool{}
		s.log.Info("logged in", "user", user, "messages", len(msgs))
		say(pop3.OK("Logged in"))
	}
	for {
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
		c.SetReadDeadline(time.Now().Add(s.opts.Timeout))
		cmd, err := cr.ReadCommand()
		if errors.Is(err, pop3.ErrSyntax) {
			say(pop3.Err("", "Unknown command"))
			continue
		}
		if err != nil {
			return
		}
		switch {
		case cmd.Name == "CAPA":
			say(pop3.OK("Capability list follows"))
			pop3.WriteLines(bw, []string{"TOP", "UIDL", "USER", "SASL PLAIN", "RESP-CODES", "PIPELINING"})
		case cmd.Name == "QUIT":
			if logged {
				s.expunge(msgs, dele)
			}
			say(pop3.OK("Bye"))
			bw.Flush()
			return
		case !logged && cmd.Name == "USER" && len(cmd.Args) == 1:
			user = cmd.Args[0]
			say(pop3.OK(""))
		case !logged && cmd.Name == "PASS" && user != "":
			login(user)
		case !logged && cmd.Name == "AUTH" && len(cmd.Args) == 2 && strings.EqualFold(cmd.Args[0], "PLAIN"):
			b, err := pop3.DecodeSASL(cmd.Args[1])
			parts := strings.Split(string(b), "\x00")
			if err != nil || len(parts) != 3 || parts[1] == "" {
				say(pop3.Err(pop3.CodeAuth, "Invalid credentials"))
				continue
			}
			login(parts[1])
		case !logged:
			say(pop3.Err("", "Not logged in"))
		case cmd.Name == "STAT":
			var n int
			var total int64
			for i, m := range msgs {
				if !dele[i+1] {
					n++
					total += m.size
				}
			}
			say(pop3.OK(fmt.Sprintf("%d %d", n, total)))
		case cmd.Name == "LIST" || cmd.Name == "UIDL":
			line := func(i int) string {
				if cmd.Name == "LIST" {
					return strconv.Itoa(i+1) + " " + strconv.FormatInt(msgs[i].size, 10)
				}
				return strconv.Itoa(i+1) + " " + msgs[i].uidl
			}
			if len(cmd.Args) == 1 {
				if n, ok := arg(cmd, 0); ok {
					say(pop3.OK(line(n - 1)))
				} else {
					say(pop3.Err("", "No such message"))
				}
				continue
			}
			var lines []string
			for i := range msgs {
				if !dele[i+1] {
					lines = append(lines, line(i))
				}
			}
			say(pop3.OK(""))
			pop3.WriteLines(bw, lines)
		case cmd.Name == "RETR" || cmd.Name == "TOP":
			n, ok := arg(cmd, 0)
			lines := -1
			if cmd.Name == "TOP" {
				l, lok := 0, len(cmd.Args) == 2
				if lok {
					l, lok = pop3.Count(cmd.Args[1])
				}
				ok, lines = ok && lok, l
			}
			if !ok {
				say(pop3.Err("", "No such message"))
				continue
			}
			if err := s.send(bw, msgs[n-1], lines); err != nil {
				s.log.Error("serving a message", "file", msgs[n-1].path, "err", err)
				return
			}
		case cmd.Name == "DELE":
			if n, ok := arg(cmd, 0); ok {
				dele[n] = true
				say(pop3.OK("Marked to be deleted"))
			} else {
				say(pop3.Err("", "No such message"))
			}
		case cmd.Name == "RSET":
			dele = map[int]bool{}
			say(pop3.OK(""))
		case cmd.Name == "NOOP":
			say(pop3.OK(""))
		default:
			say(pop3.Err("", "Unknown command"))
		}
	}
}

// send writes a message, or its first lines for TOP (lines >= 0).
func (s *Server) send(bw *bufio.Writer, m message, lines int) error {
	f, err := os.Open(m.path)
	if err != nil {
		pop3.WriteResponse(bw, pop3.Err(pop3.CodeSysTemp, "Message not readable"))
		return nil
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	size := info.Size()
	if lines >= 0 {
		if size, err = pop3.TopLength(f, size, lines); err != nil {
			return err
		}
	}
	pop3.WriteResponse(bw, pop3.OK(strconv.FormatInt(size, 10)+" octets"))
	return pop3.WriteMessage(bw, io.NewSectionReader(f, 0, size), make([]byte, 32<<10))
}

// expunge removes the files marked for deletion (RFC 1939's UPDATE state).
func (s *Server) expunge(msgs []message, dele map[int]bool) {
	for n := range dele {
		if err := os.Remove(msgs[n-1].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("deleting a message", "file", msgs[n-1].path, "err", err)
			continue
		}
		s.log.Info("message deleted", "file", msgs[n-1].path)
	}
}
