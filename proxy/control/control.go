// Package control is Postern's local control socket: a unix socket on which a running proxy accepts one-line
// commands from `postern reload` (and other local tools), so that an admin can reload the configuration without
// sending signals or knowing the process id.
//
// The protocol is one request and one reply per connection. The client sends a command line ("reload\n"); the
// server answers "ok <text>" or "error <text>", where the text may continue over more lines (the diagnostics of a
// refused configuration), and closes the connection. The socket is created with mode 0600: whoever may use it may
// change what the proxy does to mail, so it is restricted to the proxy's own user (and root).
package control

import (
	"bufio"
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
)

// Bounds of one exchange.
const (
	maxCommand   = 1024    // bytes of a command line
	maxReply     = 4 << 20 // bytes of a reply the client accepts
	readTimeout  = 10 * time.Second
	writeTimeout = 10 * time.Second
)

// Handler runs one command. args are the words after the command name. The returned text follows "ok " in the
// reply; an error's text follows "error ".
type Handler func(ctx context.Context, args []string) (string, error)

// Server serves a control socket.
type Server struct {
	path     string
	ln       net.Listener
	handlers map[string]Handler
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex // serialises commands: two reloads at once help no one
}

// Listen creates the socket at path (its directory is created with mode 0700 if missing) and serves commands in
// the background until Close. A stale socket file left by a crashed process is replaced; a socket another
// process still answers on is an error, so two proxies never share one.
func Listen(path string, handlers map[string]Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control: %s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control: removing stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	// Listen creates the file with the umask's mode; tighten it before anyone can use it for long. A client
	// that connected in between still only gets what the server answers, and the directory is 0700 when we
	// made it.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{path: path, ln: ln, handlers: handlers, log: log, ctx: ctx, cancel: cancel}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("control: accept", "error", err)
			}
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	line, err := bufio.NewReader(io.LimitReader(c, maxCommand)).ReadString('\n')
	if err != nil {
		s.reply(c, "", fmt.Errorf("expected one command line of at most %d bytes", maxCommand))
		return
	}
	words := strings.Fields(line)
	if len(words) == 0 {
		s.reply(c, "", errors.New("empty command"))
		return
	}
	h, ok := s.handlers[words[0]]
	if !ok {
		s.reply(c, "", fmt.Errorf("unknown command %q (known: %s)", words[0], strings.Join(s.names(), ", ")))
		return
	}
	s.mu.Lock()
	text, err := h(s.ctx, words[1:])
	s.mu.Unlock()
	s.log.Info("control: command", "command", words[0], "ok", err == nil)
	s.reply(c, text, err)
}

func (s *Server) names() []string {
	out := make([]string, 0, len(s.handlers))
	for n := range s.handlers {
		out = append(out, n)
	}
	return out
}

func (s *Server) reply(c net.Conn, text string, err error) {
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	msg := "ok " + text
	if err != nil {
		msg = "error " + err.Error()
	}
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	if _, werr := io.WriteString(c, msg); werr != nil {
		s.log.Warn("control: reply", "error", werr)
	}
}

// Close stops accepting, cancels the context of commands in progress, waits for them, and removes the socket.
func (s *Server) Close() error {
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	// net's unix listener unlinks the file on Close; remove it ourselves in case it did not.
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// Send sends one command to the socket at path and returns the reply's text. A reply of "error ..." becomes an
// error carrying the whole text (the diagnostics of a refused reload, for example).
func Send(ctx context.Context, path, command string) (string, error) {
	if strings.ContainsAny(command, "\r\n") || len(command) >= maxCommand {
		return "", fmt.Errorf("control: invalid command %q", command)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return "", fmt.Errorf("control: is postern running? %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(c, command+"\n"); err != nil {
		return "", fmt.Errorf("control: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(c, maxReply))
	if err != nil {
		return "", fmt.Errorf("control: %w", err)
	}
	reply := strings.TrimSuffix(string(b), "\n")
	switch {
	case strings.HasPrefix(reply, "ok"):
		return strings.TrimPrefix(strings.TrimPrefix(reply, "ok"), " "), nil
	case strings.HasPrefix(reply, "error"):
		return "", &ReplyError{Text: strings.TrimPrefix(strings.TrimPrefix(reply, "error"), " ")}
	}
	return "", fmt.Errorf("control: unexpected reply %q", reply)
}

// ReplyError is a command the server refused; Text is its reply, possibly over several lines.
type ReplyError struct{ Text string }

func (e *ReplyError) Error() string { return e.Text }
