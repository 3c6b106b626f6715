package pop3proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/metrics"
	"github.com/postern/postern/proxy/pop3"
)

// session is one client connection.
type session struct {
	srv    *Server
	id     string
	log    *slog.Logger
	base   net.Conn // the client connection below TLS
	conn   net.Conn // what POP3 is spoken over: base, or TLS over it
	br     *bufio.Reader
	bw     *bufio.Writer
	cr     *pop3.CommandReader
	tls    *tls.ConnectionState
	remote netip.AddrPort
	ctx    context.Context
	cancel context.CancelFunc
	mf     *mailflow.Session
	up     *upstreamConn

	user     string // the name USER gave, waiting for PASS
	authUser string // who the client authenticated as
	mailbox  string // whose maildrop: set once the upstream logged the client in
	drop     *maildrop

	end    time.Time     // the session time limit
	rate   *rate.Limiter // the command rate
	errors int

	// earlyOK is set while a RETR or TOP whose "+OK" went out ahead of its result is filtered: a refusal can no
	// longer be told to the client (see Limits.EarlyOK).
	earlyOK atomic.Bool

	mu       sync.Mutex
	busy     bool // a command is being carried out
	draining bool
	upRaw    net.Conn
}

func (s *Server) serveConn(conn net.Conn) {
	ss := &session{srv: s, id: newID(), base: conn, conn: conn}
	ss.log = s.log.With("session", ss.id)
	ss.ctx, ss.cancel = context.WithCancel(context.Background())
	defer ss.cancel()
	if ap, err := netAddrPort(conn.RemoteAddr()); err == nil {
		ss.remote = ap
	}
	if !s.ln.Track(ss) {
		handler{s}.Refuse(conn, listener.ErrShuttingDown)
		return
	}
	defer s.ln.Untrack(ss)
	defer conn.Close()
	o := &s.opts
	now := time.Now()
	ss.end = now.Add(o.Limits.SessionTime)
	ss.rate = rate.NewLimiter(rate.Limit(o.Limits.CommandRate), burst(o.Limits.CommandRate))
	if o.TLS.Mode == TLSImplicit {
		if !ss.handshake() {
			return
		}
	}
	ss.br = bufio.NewReaderSize(ss.conn, 4<<10)
	ss.bw = bufio.NewWriterSize(writeTimeout{ss.conn, o.Limits.CommandTimeout}, 16<<10)
	ss.cr = pop3.NewCommandReader(ss.br, o.Limits.LineLength)
	defer ss.bw.Flush()

	mf, err := s.flow.Open(ss.ctx, ss.id)
	if err != nil {
		// No policy to apply (the manager is closing): mail must not be served unchecked.
		ss.log.Warn("no policy available; refusing session")
		ss.reply(pop3.Err(pop3.CodeSysTemp, "Service not available, try again later"))
		return
	}
	ss.mf = mf
	defer mf.Close()

	up, err := s.dialUpstream(ss.ctx, conn.RemoteAddr(), conn.LocalAddr())
	if err != nil {
		metrics.UpstreamError(s.opts.Name, Protocol)
		ss.log.Warn("upstream unavailable; refusing session", "client", ss.remote.String(), "err", err)
		ss.reply(pop3.Err(pop3.CodeSysTemp, "Mail server not available, try again later"))
		return
	}
	ss.mu.Lock()
	ss.up, ss.upRaw = up, up.conn.Raw
	ss.mu.Unlock()
	// Closing without QUIT is what keeps a dropped session from deleting anything (RFC 1939 §6).
	defer up.close()

	greeting := "Postern POP3 proxy ready"
	if up.stamp != "" {
		greeting += " " + up.stamp
	}
	ss.reply(pop3.OK(greeting))
	ss.bw.Flush()
	ss.loop()
}

// burst is the command rate's bucket size.
func burst(rate int) int { return 10 * rate }

// loop reads and carries out commands until the session ends.
func (ss *session) loop() {
	o := &ss.srv.opts
	for {
		if ss.br.Buffered() == 0 {
			// Pipelined commands are answered together: flush only when the client waits.
			if err := ss.bw.Flush(); err != nil {
				return
			}
		}
		ss.mu.Lock()
		if ss.draining {
			ss.mu.Unlock()
			ss.reply(pop3.Err(pop3.CodeSysTemp, "Server shutting down, try again later"))
			return
		}
		ss.busy = false
		deadline := time.Now().Add(o.Limits.IdleTimeout)
		if deadline.After(ss.end) {
			deadline = ss.end
		}
		ss.conn.SetReadDeadline(deadline)
		ss.mu.Unlock()

		cmd, err := ss.cr.ReadCommand()

		ss.mu.Lock()
		ss.busy = true
		draining := ss.draining
		ss.mu.Unlock()
		switch {
		case err == nil:
		case errors.Is(err, pop3.ErrSyntax):
			if ss.fail(pop3.Err("", "Unknown command")) {
				return
			}
			continue
		case errors.Is(err, pop3.ErrLineTooLong):
			ss.log.Info("command line too long; closing", "limit", o.Limits.LineLength)
			ss.reply(pop3.Errf("", "Line too long (limit %d bytes)", o.Limits.LineLength))
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			switch {
			case draining:
				ss.reply(pop3.Err(pop3.CodeSysTemp, "Server shutting down, try again later"))
			case !time.Now().Before(ss.end):
				ss.log.Info("session time limit reached; closing", "limit", o.Limits.SessionTime)
				ss.reply(pop3.Err(pop3.CodeSysTemp, "Session time limit reached, nothing was deleted"))
			default:
				ss.reply(pop3.Err("", "Disconnected for inactivity"))
			}
			return
		default:
			return // the client left
		}
		if !ss.rate.Allow() {
			metrics.Throttled(o.Name, Protocol)
			ss.log.Info("command rate exceeded; closing", "rate", o.Limits.CommandRate)
			ss.reply(pop3.Err(pop3.CodeSysTemp, "Too many commands, slow down"))
			return
		}
		if ss.dispatch(cmd) {
			return
		}
	}
}

// reply writes one status line.
func (ss *session) reply(r pop3.Response) {
	r.Text = pop3.SafeText(r.Text)
	pop3.WriteResponse(ss.bw, r)
}

// fail writes an error reply and counts it; it reports whether the session must end (too many errors).
func (ss *session) fail(r pop3.Response) bool {
	ss.errors++
	if ss.errors >= ss.srv.opts.Limits.Errors {
		ss.log.Info("too many errors; closing", "limit", ss.srv.opts.Limits.Errors)
		r = pop3.Err("", "Too many errors, closing connection")
		ss.reply(r)
		return true
	}
	ss.reply(r)
	return false
}

// upstreamLost answers a command the upstream could not carry out, and ends the session.
func (ss *session) upstreamLost(err error) bool {
	if errors.Is(err, errFilterTimeout) {
		ss.reply(pop3.Err(pop3.CodeSysTemp, "Filtering took too long, try again later; nothing was deleted"))
		return true
	}
	metrics.UpstreamError(ss.srv.opts.Name, Protocol)
	ss.log.Warn("upstream failed; closing session", "err", err)
	ss.reply(pop3.Err(pop3.CodeSysTemp, "Mail server not available, try again later; nothing was deleted"))
	return true
}

// relayed writes the upstream's reply to the client, its code and text made safe.
func (ss *session) relayed(r pop3.Response) bool {
	if !r.OK {
		return ss.fail(r)
	}
	ss.reply(r)
	return false
}

func (ss *session) handshake() bool {
	tc := tls.Server(ss.base, ss.srv.tlsConf)
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.opts.Limits.CommandTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		ss.log.Info("TLS handshake failed", "client", ss.remote.String(), "err", err)
		return false
	}
	st := tc.ConnectionState()
	ss.mu.Lock()
	ss.tls, ss.conn = &st, tc
	ss.mu.Unlock()
	return true
}

// dispatch carries out one command; it reports whether the session ends.
func (ss *session) dispatch(cmd pop3.Command) bool {
	if cmd.Name == "CAPA" {
		return ss.capa(cmd)
	}
	if ss.mailbox == "" {
		switch cmd.Name {
		case "STLS":
			return ss.stls(cmd)
		case "USER":
			return ss.userCmd(cmd)
		case "PASS":
			return ss.pass(cmd)
		case "APOP":
			return ss.apop(cmd)
		case "AUTH":
			return ss.auth(cmd)
		case "QUIT":
			ss.up.cmd("QUIT")
			ss.reply(pop3.OK("Bye"))
			return true
		case "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP":
			return ss.fail(pop3.Err("", "Not logged in"))
		}
		return ss.fail(pop3.Err("", "Unknown command"))
	}
	switch cmd.Name {
	case "STAT":
		return ss.stat(cmd)
	case "LIST":
		return ss.list(cmd)
	case "UIDL":
		return ss.uidl(cmd)
	case "RETR":
		return ss.retr(cmd)
	case "TOP":
		return ss.top(cmd)
	case "DELE":
		return ss.dele(cmd)
	case "RSET":
		return ss.rset(cmd)
	case "NOOP":
		return ss.noop(cmd)
	case "QUIT":
		return ss.quit()
	case "USER", "PASS", "APOP", "AUTH", "STLS":
		return ss.fail(pop3.Err("", "Already logged in"))
	}
	return ss.fail(pop3.Err("", "Unknown command"))
}

// authAllowed reports whether credentials may be taken on this connection.
func (ss *session) authAllowed() bool { return ss.tls != nil || ss.srv.opts.AllowInsecureAuth }

func (ss *session) capa(pop3.Command) bool {
	lines := []string{"TOP"}
	if ss.mailbox != "" && ss.drop.hasUIDL || ss.mailbox == "" && ss.up.caps.Has("UIDL") {
		lines = append(lines, "UIDL")
	}
	if ss.mailbox == "" && ss.authAllowed() {
		lines = append(lines, "USER", "SASL PLAIN LOGIN")
	}
	lines = append(lines, "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING")
	if ss.mailbox == "" && ss.srv.opts.TLS.Mode == TLSStartTLS && ss.tls == nil {
		lines = append(lines, "STLS")
	}
	// Server policy the upstream announces is the client's to know (RFC 2449 §6.5, §6.8).
	for _, name := range []string{"EXPIRE", "LOGIN-DELAY"} {
		if args, ok := ss.up.caps[name]; ok {
			lines = append(lines, joinCap(name, args))
		}
	}
	lines = append(lines, "IMPLEMENTATION Postern")
	ss.reply(pop3.OK("Capability list follows"))
	pop3.WriteLines(ss.bw, lines)
	return false
}

func joinCap(name string, args []string) string {
	for _, a := range args {
		name += " " + pop3.SafeText(a)
	}
	return name
}

// stls upgrades the connection (RFC 2595). What the client sent after STLS in the same packets is discarded,
// never answered inside TLS: a man in the middle could have added it.
func (ss *session) stls(pop3.Command) bool {
	if ss.srv.opts.TLS.Mode != TLSStartTLS || ss.tls != nil {
		return ss.fail(pop3.Err("", "STLS not available"))
	}
	ss.reply(pop3.OK("Begin TLS negotiation"))
	if err := ss.bw.Flush(); err != nil {
		return true
	}
	if n := ss.br.Buffered(); n > 0 {
		ss.log.Info("commands pipelined after STLS discarded", "bytes", n)
		ss.br.Discard(n)
	}
	if !ss.handshake() {
		return true
	}
	ss.br.Reset(ss.conn)
	ss.bw.Reset(writeTimeout{ss.conn, ss.srv.opts.Limits.CommandTimeout})
	ss.user = ""
	return false
}

// writeTimeout gives every write to the client a fresh deadline: a client that stops reading is cut off, a slow
// one that reads is not.
type writeTimeout struct {
	c net.Conn
	d time.Duration
}

func (w writeTimeout) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.d))
	return w.c.Write(p)
}

// Drain is called when shutdown begins: a session waiting for a command is told and closed; one carrying out a
// command finishes it first.
func (ss *session) Drain() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.draining = true
	if !ss.busy && ss.conn != nil {
		ss.conn.SetReadDeadline(time.Now())
	}
}

// Cut closes the session now: plugin calls are cancelled, both connections closed. Nothing is deleted upstream.
func (ss *session) Cut() {
	ss.cancel()
	ss.base.Close()
	ss.mu.Lock()
	up := ss.upRaw
	ss.mu.Unlock()
	if up != nil {
		up.Close()
	}
}

// msgArg parses a message-number argument and checks it against the maildrop: an error reply, or the index.
func (ss *session) msgArg(arg string) (int, *pop3.Response) {
	n, ok := pop3.MessageNumber(arg)
	if !ok {
		r := pop3.Err("", "Invalid message number")
		return 0, &r
	}
	if n > len(ss.drop.msgs) {
		r := pop3.Err("", "No such message")
		return 0, &r
	}
	if ss.drop.msgs[n-1].deleted {
		r := pop3.Err("", "Message "+strconv.Itoa(n)+" already deleted")
		return 0, &r
	}
	return n - 1, nil
}
