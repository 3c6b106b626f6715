package smtpproxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/pluginhost"
)

// connState is everything one client session shares across go-smtp's Session objects (go-smtp makes a new one
// after STARTTLS, but the upstream connection, the policy snapshot and the counters belong to the connection).
type connState struct {
	srv     *Server
	id      string
	lgOnce  sync.Once
	lg      *slog.Logger // with the session id; made on first use
	client  *clientConn
	remote  netip.AddrPort
	started time.Time

	// mf is the session's use of the filtering pipeline; ctx is the session's context, which its plugin calls
	// run under, cancelled when the session ends or is cut off.
	mf         *mailflow.Session
	ctx        context.Context
	cancel     context.CancelFunc
	cutOff     atomic.Bool // Cut was called: no reply reaches the client any more
	clientGone atomic.Bool // the client left while its message was evaluated

	// replies completes go-smtp's replies (replies.go); tap is go-smtp's Debug writer (teedata.go).
	replies replyRewriter
	tap     dataTap

	// upMu serialises use of the upstream between the session's callbacks (BDAT runs Data on its own
	// goroutine) and the final clean-up.
	upMu      sync.Mutex
	up        *upstreamConn   // nil until the first EHLO
	dialed    chan dialResult // the upstream connection being opened
	dialTaken bool            // its result was received
	smtpSrv   *smtp.Server    // this connection's go-smtp server

	mu         sync.Mutex
	smtpConn   *smtp.Conn // the go-smtp connection, once the client said EHLO
	upRaw      net.Conn   // the upstream socket, for interruptUpstream
	top        net.Conn   // the client connection go-smtp serves (inside TLS, the TLS connection)
	cancelDial func()     // stops opening the upstream connection
	tlsState   *tls.ConnectionState
	// upTLSVersion and upTLSCipher describe the upstream connection once it is attached (at the first EHLO).
	upTLSVersion, upTLSCipher string
	helo                      string
	badHelo                   bool // the last EHLO's name had a NUL: MAIL is refused until a good one
	authUser                  string
	inTxn                     bool // between an accepted MAIL FROM and the end of the message
	shuttingDown              bool
	errors                    int
	messages                  int
}

var idEncoding = base32.NewEncoding("0123456789BCDFGHJKLMNPQRSTVWXYZa").WithPadding(base32.NoPadding)

// newID returns a short random identifier for sessions and messages (60 bits).
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])[:12]
}

// log returns the session's logger. It is made on first use: most sessions log nothing at the default level, and
// slog.Logger.With formats its attributes at once.
func (cs *connState) log() *slog.Logger {
	cs.lgOnce.Do(func() { cs.lg = cs.srv.log.With("session", cs.id) })
	return cs.lg
}

// serveConn runs one client session from accept (after the session limit and the PROXY header) to close.
func (s *Server) serveConn(conn net.Conn) {
	cs := &connState{
		srv:     s,
		id:      newID(),
		client:  newClientConn(conn, s.opts.Limits.IdleTimeout, s.opts.Limits.CommandTimeout),
		started: time.Now(),
	}
	cs.ctx, cs.cancel = context.WithCancel(context.Background())
	defer cs.cancel()
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		cs.remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	cs.client.replies = &cs.replies
	cs.replies.offerSTARTTLS.Store(s.opts.TLS.Mode == TLSStartTLS)
	cs.replies.size.Store(s.opts.Limits.MessageSize)
	s.deadlines(cs)
	if !s.ln.Track(cs) {
		s.refuse(conn, listener.ErrShuttingDown)
		return
	}
	defer s.ln.Untrack(cs)
	defer cs.client.closeSocket()
	debug := s.log.Enabled(context.Background(), slog.LevelDebug)
	if debug {
		cs.log().Debug("connected", "client", cs.remote.String())
	}

	var top net.Conn = cs.client
	if s.opts.TLS.Mode == TLSImplicit {
		if top = cs.startTLS(false); top == nil {
			return
		}
	}

	mf, err := s.flow.Open(cs.ctx, cs.id)
	if err != nil {
		// No policy to apply (the policy manager is closing): mail must not pass unchecked.
		cs.log().Warn("no policy available; refusing session")
		writeRaw(top, 421, "4.3.0", s.opts.Hostname+" Service not available, try again later")
		return
	}
	cs.mf = mf
	defer mf.Close()
	if e := cs.connectHook(); e != nil {
		writeRaw(top, e.Code, enhanced(e), e.Message)
		return
	}

	// The upstream connection is opened now, while the client reads the greeting and says EHLO: its set-up
	// (connect, greeting, EHLO, maybe TLS) is then hidden behind the client's first round trip. The client's
	// EHLO waits for it, and gets 421 if the upstream cannot be reached; nothing is ever accepted without it.
	dialCtx, cancelDial := context.WithCancel(context.Background())
	defer cancelDial()
	cs.mu.Lock()
	cs.top, cs.cancelDial = top, cancelDial
	cs.mu.Unlock()
	dialed := make(chan dialResult, 1)
	go func() {
		up, err := s.dialUpstream(dialCtx)
		dialed <- dialResult{up, err}
	}()
	cs.dialed = dialed

	for {
		srv := s.newSMTPServer(cs, top != net.Conn(cs.client))
		cs.mu.Lock()
		cs.smtpSrv, cs.top = srv, top
		cs.mu.Unlock()
		_ = srv.Serve(&oneConnListener{conn: top, done: cs.client.closed, handover: cs.client.handedOver})
		// Serve returned because the connection closed (or, for STARTTLS, go-smtp's plain-text part of it);
		// Shutdown waits until go-smtp's handler has returned, so no callback is still using the upstream.
		_ = srv.Shutdown(context.Background())
		if top != net.Conn(cs.client) || !cs.client.handover.Load() {
			break
		}
		if top = cs.startTLS(true); top == nil {
			break
		}
	}
	if !cs.client.heard.Load() {
		s.earlyDisconnects.Add(1)
		cs.log().Debug("client left before saying anything", "client", cs.remote.String())
	}
	cancelDial()
	cs.upMu.Lock()
	if cs.up == nil && !cs.dialTaken {
		// The client left before EHLO: wait for the dial (now cancelled) and close what it opened.
		if r := <-dialed; r.up != nil {
			cs.up = r.up
		}
	}
	if cs.up != nil {
		cs.up.close()
	}
	cs.upMu.Unlock()
	if debug {
		cs.log().Debug("disconnected", "messages", cs.messages, "duration", time.Since(cs.started).Round(time.Millisecond))
	}
}

// startTLS does the TLS handshake with the client (at connect time for implicit TLS, after the relay answered
// STARTTLS otherwise) and returns the connection go-smtp is to serve next, or nil when the handshake failed.
// Nothing the client sent in plain text after STARTTLS is read (clientConn.Write dropped it).
func (cs *connState) startTLS(starttls bool) net.Conn {
	s := cs.srv
	tc := tls.Server(socketSide{cs.client}, s.tlsConf)
	cs.client.reads.SetPhase(listener.PhaseCommand)
	ctx, cancel := context.WithTimeout(cs.ctx, s.opts.Limits.CommandTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	cs.client.reads.SetPhase(listener.PhaseIdle)
	if err != nil {
		cs.log().Info("TLS handshake failed", "client", cs.remote.String(), "starttls", starttls, "err", err)
		return nil
	}
	st := tc.ConnectionState()
	cs.mu.Lock()
	cs.tlsState = &st
	cs.mu.Unlock()
	cs.replies.offerSTARTTLS.Store(false)
	cs.replies.inTLS.Store(true)
	return &tlsView{Conn: tc, cc: cs.client, replies: &cs.replies, noGreeting: starttls,
		track: readTracker{aligned: true}}
}

type dialResult struct {
	up  *upstreamConn
	err error
}

// attachUpstream waits for the upstream connection opened at connect time (once, at the first EHLO) and sets
// what the relay advertises from the upstream's capabilities. A nil result is the reply that ends the session.
func (cs *connState) attachUpstream() *smtp.SMTPError {
	if cs.up != nil {
		return nil
	}
	if cs.dialTaken {
		return cs.closing(errUpstreamLost(cs))
	}
	r := <-cs.dialed
	cs.dialTaken = true
	if r.err != nil {
		cs.log().Warn("upstream unavailable; refusing session", "client", cs.remote.String(), "err", r.err)
		return cs.closing(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 0},
			Message: cs.srv.opts.Hostname + " Service not available, try again later"})
	}
	cs.up = r.up
	cs.mu.Lock()
	cs.upRaw = r.up.raw
	cs.upTLSVersion, cs.upTLSCipher = tlsInfo(r.up.tls)
	cs.mu.Unlock()
	cs.srv.advertise(cs, cs.smtpSrv, r.up)
	if cs.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		v, c := tlsInfo(r.up.tls)
		cs.log().Debug("upstream connected", "upstream_tls", v, "upstream_cipher", c)
	}
	return nil
}

// newSMTPServer configures a go-smtp server for one connection (for STARTTLS, one for each side of it). Each
// connection gets its own, because what the relay may advertise depends on this session's upstream (see
// advertise). go-smtp gets no TLS configuration and no message size limit: the relay does both itself (see
// replyRewriter), so the server is told when the connection is TLS.
func (s *Server) newSMTPServer(cs *connState, inTLS bool) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(cs.newSession))
	srv.Domain = s.opts.Hostname
	srv.ErrorLog = connErrorLog{cs}
	srv.Debug = &cs.tap
	srv.MaxRecipients = s.opts.Limits.Recipients
	srv.MaxLineLength = s.opts.Limits.LineLength
	srv.WriteTimeout = s.opts.Limits.CommandTimeout
	srv.AllowInsecureAuth = s.opts.AllowInsecureAuth || inTLS
	if cs.up != nil {
		// A second go-smtp server, inside TLS: the upstream is attached already.
		s.advertise(cs, srv, cs.up)
	}
	return srv
}

// advertise sets what depends on the upstream: SIZE is the smaller of both limits, and DSN, SMTPUTF8, REQUIRETLS
// (inside TLS only) and the other pass-through extensions are offered only when the upstream offers them. It runs
// inside go-smtp's EHLO handling, before the reply is built from these fields.
func (s *Server) advertise(cs *connState, srv *smtp.Server, up *upstreamConn) {
	if n, ok := up.c.MaxMessageSize(); ok && n > 0 && int64(n) < cs.replies.size.Load() {
		cs.replies.size.Store(int64(n))
	}
	has := func(ext string) bool { ok, _ := up.c.Extension(ext); return ok }
	srv.EnableSMTPUTF8 = has("SMTPUTF8")
	srv.EnableDSN = has("DSN")
	requireTLS := has("REQUIRETLS") && cs.replies.inTLS.Load()
	srv.EnableREQUIRETLS = requireTLS
	cs.replies.requireTLS.Store(requireTLS)
	srv.EnableRRVS = has("RRVS")
	srv.EnableDELIVERBY = has("DELIVERBY")
	srv.EnableMTPRIORITY = has("MT-PRIORITY")
}

// newSession is go-smtp's Backend: it runs when the client says EHLO/HELO, and again after STARTTLS.
func (cs *connState) newSession(c *smtp.Conn) (smtp.Session, error) {
	if strings.IndexByte(c.Hostname(), 0) >= 0 {
		// Postfix refuses NUL in any command; the name would go into Received: and XCLIENT.
		cs.log().Info("refused: NUL in EHLO")
		return nil, cs.countError(&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
			Message: "Syntax: EHLO hostname"})
	}
	if cs.handingOver() {
		// An EHLO pipelined after STARTTLS: never answered (clientConn.Write), never acted on.
		return nil, errHandedOver
	}
	cs.mu.Lock()
	cs.smtpConn = c
	cs.helo = c.Hostname()
	cs.mu.Unlock()
	cs.upMu.Lock()
	defer cs.upMu.Unlock()
	if e := cs.attachUpstream(); e != nil {
		return nil, e
	}
	if cs.up.dead != nil {
		return nil, cs.closing(errUpstreamLost(cs))
	}
	if cs.srv.opts.XClient {
		if err := cs.up.sendXClient(cs.remote, c.Hostname()); err != nil {
			cs.log().Warn("XCLIENT failed; closing session", "err", err)
			return nil, cs.closing(errUpstreamLost(cs))
		}
	}
	return &session{cs: cs}, nil
}

// Drain is called when shutdown begins (listener.Session): a session between messages is closed now with 421, one
// inside a message finishes it and is closed after the reply.
func (cs *connState) Drain() {
	cs.mu.Lock()
	cs.shuttingDown = true
	idle := !cs.inTxn
	cs.mu.Unlock()
	if idle {
		cs.sayAndClose(421, "4.3.2", cs.srv.opts.Hostname+" Service shutting down, try again later")
	}
}

// Cut closes the session now (listener.Session): its plugin calls are cancelled, the client connection is closed
// and a command waiting for the upstream returns at once.
func (cs *connState) Cut() {
	cs.cutOff.Store(true)
	cs.cancel()
	// The socket first: a write blocked on a client that does not read holds the reply buffer, which
	// clientConn.Close would wait for to send what is pending.
	cs.client.Conn.Close()
	cs.client.closeSocket()
	cs.interruptUpstream()
}

// interruptUpstream closes the upstream socket, so a command waiting for the upstream returns at once. It does not
// take upMu: the point is to interrupt whoever holds it.
func (cs *connState) interruptUpstream() {
	cs.mu.Lock()
	up, cancel := cs.upRaw, cs.cancelDial
	cs.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if up != nil {
		up.Close()
	}
}

// sayAndClose writes a reply outside go-smtp's command loop (the session is idle) and closes the connection.
func (cs *connState) sayAndClose(code int, enh, text string) {
	cs.mu.Lock()
	var top net.Conn = cs.client
	if cs.top != nil {
		top = cs.top // inside TLS, the TLS connection
	}
	cs.mu.Unlock()
	writeRaw(top, code, enh, text)
	cs.client.closeSocket()
}

// closing makes e the last reply of the session.
func (cs *connState) closing(e *smtp.SMTPError) *smtp.SMTPError {
	cs.client.closeAfterWrite()
	return e
}

// setInTxn records whether a message transaction is open; it reports false when the server is shutting down and
// no new transaction may start.
func (cs *connState) setInTxn(v bool) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if v && cs.shuttingDown {
		return false
	}
	cs.inTxn = v
	return true
}

func (cs *connState) isShuttingDown() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.shuttingDown
}

// countError counts an error reply; when the session has had too many, the reply becomes a 421 that closes it.
func (cs *connState) countError(e *smtp.SMTPError) *smtp.SMTPError {
	if e == nil || e.Code < 400 {
		return e
	}
	cs.mu.Lock()
	cs.errors++
	n := cs.errors
	cs.mu.Unlock()
	if n >= cs.srv.opts.Limits.Errors {
		cs.log().Warn("too many errors; closing session", "errors", n, "last_code", e.Code)
		return cs.closing(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
			Message: cs.srv.opts.Hostname + " Too many errors, closing connection"})
	}
	return e
}

// envelope returns what plugins see of the connection.
func (cs *connState) envelope() pluginhost.Envelope {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	env := pluginhost.Envelope{
		Protocol:  cs.srv.opts.Protocol,
		Direction: cs.srv.opts.Direction,
		Listener:  cs.srv.opts.Name,
		HELO:      cs.helo,
		AuthUser:  cs.authUser,
	}
	if cs.remote.IsValid() {
		env.ClientIP = cs.remote.Addr().String()
		env.ClientPort = int(cs.remote.Port())
	}
	env.TLSVersion, env.TLSCipher = tlsInfo(cs.tlsState)
	env.UpstreamTLSVersion, env.UpstreamTLSCipher = cs.upTLSVersion, cs.upTLSCipher
	return env
}

// connectHook runs the connect hook; a non-nil result is the reply that ends the session.
func (cs *connState) connectHook() *smtp.SMTPError {
	if !cs.mf.Wants(pluginhost.HookConnect) {
		return nil
	}
	in := ConnectInput(cs.envelope())
	d := cs.mf.Stage(pluginhost.HookConnect, in)
	e := refusal(d)
	if e == nil {
		if d.Action != pluginhost.Accept {
			cs.log().Warn("verdict has no meaning at connect; accepting", "action", d.Action.String())
		}
		return nil
	}
	if e.Code/100 == 5 {
		// RFC 5321 §3.1: a server refusing service at connection time answers 554.
		e.Code = 554
	} else {
		e.Code = 421
	}
	cs.log().Info("connection refused by policy", "client", cs.remote.String(), "action", d.Action.String(),
		"code", e.Code)
	cs.mf.Record(in, d, cs.auditReply(e))
	return e
}

// writeRaw writes one reply line directly on the connection, with a short deadline: it is used before go-smtp
// takes the connection over, or after it stopped listening.
func writeRaw(c net.Conn, code int, enh, text string) {
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	line := fmt.Sprintf("%d %s %s\r\n", code, enh, strings.ReplaceAll(strings.ReplaceAll(text, "\r", " "), "\n", " "))
	if enh == "" {
		line = fmt.Sprintf("%d %s\r\n", code, text)
	}
	_, _ = c.Write([]byte(line))
}

// enhanced formats an SMTPError's enhanced code for writeRaw.
func enhanced(e *smtp.SMTPError) string {
	ec := e.EnhancedCode
	if ec == smtp.NoEnhancedCode {
		return ""
	}
	if ec == smtp.EnhancedCodeNotSet {
		ec = smtp.EnhancedCode{e.Code / 100, 0, 0}
	}
	return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
}

// deadlines sets what bounds the client's reads besides the idle and command timeouts: the stress timeouts, the
// minimum data rate, and the count and log line of a session cut off by them.
func (s *Server) deadlines(cs *connState) {
	l := &s.opts.Limits
	d := &cs.client.reads
	if l.StressTimeout > 0 {
		d.Stress = listener.Timeouts{Idle: l.StressTimeout, Command: l.StressTimeout}
		d.Stressed = s.ln.Stressed
	}
	if l.MinDataRate > 0 {
		d.MinRate = l.MinDataRate
	}
	cs.client.timedOut = func(p listener.Phase) {
		s.ln.CountTimeout(p)
		what := "waiting for a command"
		if p == listener.PhaseCommand {
			what = "inside a command (message or handshake too slow)"
		}
		cs.log().Info("client timed out; closing session", "client", cs.remote.String(), "while", what,
			"timeout", d.Timeout().String(), "stress", s.ln.Stressed())
	}
}
