package smtpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/metrics"
	"github.com/postern/postern/proxy/upstream"
)

// upstreamConn is the relay's connection to the upstream server for one client session. It is used by one goroutine
// at a time (the session's, under connState.upMu).
type upstreamConn struct {
	conn    net.Conn // what the go-smtp client talks over (TLS when there is TLS)
	raw     net.Conn // the network connection, closed to interrupt the session on forced shutdown
	c       *smtp.Client
	tls     *tls.ConnectionState
	timeout time.Duration
	host    string    // our EHLO name
	metrics [2]string // listener and protocol, for the upstream error metric
	xclient []string
	sentXC  string // the XCLIENT line last sent, to send it again only when something changed
	inTxn   bool   // a MAIL FROM was accepted and the transaction is not finished
	dead    error  // set once the connection failed; nothing more is sent
}

// upstreamTLSConfig builds the TLS configuration for the upstream connection (upstream.TLSConfig).
func upstreamTLSConfig(o Options) (*tls.Config, error) {
	addr := o.Upstream
	if addr == "embedded" {
		addr = ""
	}
	return upstream.TLSConfig(addr, o.UpstreamTLS)
}

// dialUpstream opens the upstream connection for a new session: connect, TLS as configured, greeting and EHLO. An
// error means the client must get a 421 greeting.
func (s *Server) dialUpstream(ctx context.Context) (_ *upstreamConn, err error) {
	defer func() {
		if err != nil && !errors.Is(err, context.Canceled) {
			metrics.UpstreamError(s.opts.Name, s.opts.Protocol)
		}
	}()
	timeout := s.opts.Limits.CommandTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := upstream.Dialer{Address: s.opts.Upstream, Dial: s.opts.Dial, Timeout: timeout, Listener: s.opts.Name,
		Protocol: s.opts.Protocol}
	if s.opts.Dial == nil && s.opts.Upstream == "embedded" {
		d.Dial = s.opts.Embedded.Dial
	}
	if s.opts.UpstreamTLS.Mode == UpstreamTLSImplicit {
		d.TLS = s.upTLS
	}
	uc, err := d.DialContext(ctx)
	if err != nil {
		return nil, err
	}
	up := &upstreamConn{raw: uc.Raw, conn: uc.Conn, tls: uc.TLS, timeout: timeout, host: s.opts.Hostname,
		metrics: [2]string{s.opts.Name, s.opts.Protocol}}
	// The client may leave while the upstream is still greeting: give up then rather than at the timeout.
	stop := context.AfterFunc(ctx, func() { uc.Raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := up.open(ctx, s.opts.UpstreamTLS.Mode, s.upTLS); err != nil {
		uc.Raw.Close()
		return nil, err
	}
	if s.opts.XClient {
		ok, params := up.c.Extension("XCLIENT")
		if !ok {
			up.close()
			return nil, errors.New("upstream does not offer XCLIENT to this relay (Postfix: smtpd_authorized_xclient_hosts)")
		}
		up.xclient = strings.Fields(strings.ToUpper(params))
	}
	return up, nil
}

func (up *upstreamConn) open(ctx context.Context, mode UpstreamTLSMode, cfg *tls.Config) error {
	if mode == UpstreamTLSStartTLS {
		if err := up.startTLS(ctx, cfg); err != nil {
			return err
		}
	}
	up.conn = &upConn{Conn: up.conn, timeout: up.timeout}
	up.c = smtp.NewClient(up.conn)
	up.c.CommandTimeout = up.timeout
	up.c.SubmissionTimeout = up.timeout
	if err := up.c.Hello(up.host); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	return nil
}

// startTLS upgrades the connection before the go-smtp client takes it over: the client can only upgrade after
// saying EHLO as "localhost", and the relay wants the upstream to see its real name from the first command.
func (up *upstreamConn) startTLS(ctx context.Context, cfg *tls.Config) error {
	deadline, _ := ctx.Deadline()
	up.conn.SetDeadline(deadline)
	tp := textproto.NewConn(up.conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return fmt.Errorf("greeting: %w", protoErr(err))
	}
	if err := tp.PrintfLine("EHLO %s", up.host); err != nil {
		return err
	}
	_, caps, err := tp.ReadResponse(250)
	if err != nil {
		return fmt.Errorf("EHLO: %w", protoErr(err))
	}
	if !hasCap(caps, "STARTTLS") {
		return errors.New("upstream does not offer STARTTLS (upstream_tls mode starttls)")
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return err
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return fmt.Errorf("STARTTLS: %w", protoErr(err))
	}
	uc := &upstream.Conn{Conn: up.conn, Raw: up.raw}
	if err := uc.StartTLS(ctx, cfg); err != nil {
		return err
	}
	up.conn.SetDeadline(time.Time{})
	up.tls = uc.TLS
	up.conn = &replayConn{Conn: uc.Conn, pending: []byte("220 after STARTTLS\r\n")}
	return nil
}

func hasCap(ehlo, name string) bool {
	for _, line := range strings.Split(ehlo, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 0 && strings.EqualFold(f[0], name) {
			return true
		}
	}
	return false
}

// protoErr turns net/textproto's reply errors into *smtp.SMTPError for logs and replies.
func protoErr(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		return parseReply(te.Code, te.Msg)
	}
	return err
}

// parseReply splits an enhanced status code off the reply text, as go-smtp's client does for errors.
func parseReply(code int, msg string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, Message: msg}
	first, rest, ok := strings.Cut(msg, " ")
	if !ok {
		return e
	}
	if ec, ok := parseEnhanced(first); ok && ec[0] == code/100 {
		e.EnhancedCode = ec
		e.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	}
	return e
}

// parseEnhanced parses an RFC 3463 status code such as "5.7.1".
func parseEnhanced(s string) (smtp.EnhancedCode, bool) {
	var ec smtp.EnhancedCode
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return ec, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || len(p) > 3 {
			return ec, false
		}
		ec[i] = n
	}
	if ec[0] != 2 && ec[0] != 4 && ec[0] != 5 {
		return ec, false
	}
	return ec, true
}

// xclientLine builds Postfix's XCLIENT command with the attributes the upstream offers.
func (up *upstreamConn) xclientLine(client netip.AddrPort, helo string) string {
	var b strings.Builder
	b.WriteString("XCLIENT")
	for _, attr := range up.xclient {
		var v string
		switch attr {
		case "ADDR":
			if !client.IsValid() {
				continue
			}
			a := client.Addr().Unmap()
			v = a.String()
			if a.Is6() {
				v = "IPV6:" + v
			}
		case "PORT":
			if !client.IsValid() {
				continue
			}
			v = strconv.Itoa(int(client.Port()))
		case "HELO":
			if helo == "" {
				continue
			}
			v = xtext(helo)
		case "PROTO":
			v = "ESMTP"
		case "NAME":
			// No reverse DNS lookup is done; Postfix spells "unknown" like this.
			v = "[UNAVAILABLE]"
		default:
			continue
		}
		b.WriteString(" " + attr + "=" + v)
	}
	return b.String()
}

// sendXClient tells the upstream who the client is. The upstream answers like a new connection (220), after which
// a new go-smtp client takes over the same connection and says EHLO again.
func (up *upstreamConn) sendXClient(client netip.AddrPort, helo string) error {
	line := up.xclientLine(client, helo)
	if line == up.sentXC {
		return nil
	}
	up.conn.SetDeadline(time.Now().Add(up.timeout))
	_, err := io.WriteString(up.conn, line+"\r\n")
	up.conn.SetDeadline(time.Time{})
	if err != nil {
		return up.fail(err)
	}
	c := smtp.NewClient(up.conn)
	c.CommandTimeout = up.timeout
	c.SubmissionTimeout = up.timeout
	if err := c.Hello(up.host); err != nil {
		return up.fail(fmt.Errorf("XCLIENT: %w", err))
	}
	up.c = c
	up.sentXC = line
	return nil
}

// xtext encodes an XCLIENT attribute value (RFC 3461 xtext).
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '+' && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "+%02X", c)
		}
	}
	return b.String()
}

// fail records that the connection is unusable and returns err.
func (up *upstreamConn) fail(err error) error {
	if up.dead == nil {
		metrics.UpstreamError(up.metrics[0], up.metrics[1])
		up.dead = err
		up.raw.Close()
	}
	return err
}

// isConnErr reports whether err means the upstream connection is broken (as opposed to a reply from it).
func isConnErr(err error) bool {
	var se *smtp.SMTPError
	return err != nil && !errors.As(err, &se)
}

// reset aborts the upstream transaction if one is open.
func (up *upstreamConn) reset() {
	if up.dead != nil || !up.inTxn {
		return
	}
	up.inTxn = false
	if err := up.c.Reset(); err != nil {
		up.fail(err)
	}
}

// close says QUIT, waits briefly for the answer so that the upstream sees an orderly end, and closes the
// connection. It does not go through the go-smtp client, which would say EHLO first after an RSET.
func (up *upstreamConn) close() {
	if up.dead == nil {
		up.conn.SetDeadline(time.Now().Add(min(up.timeout, 2*time.Second)))
		if _, err := io.WriteString(up.conn, "QUIT\r\n"); err == nil {
			var buf [512]byte
			_, _ = up.conn.Read(buf[:])
		}
	}
	up.raw.Close()
}

func tlsInfo(st *tls.ConnectionState) (version, cipher string) { return upstream.TLSInfo(st) }

// sendContent writes the message after the upstream's 354. The bulk goes to the connection dot-stuffed by a
// dotStuffer; the last CRLF goes through go-smtp's DotWriter so that it knows the content ended at the start of a
// line and closes with just ".\r\n" (fed the whole message, it would do the same work a byte at a time). The
// connection holds the writes until the reply is awaited, so a small message and its final dot go out together.
func (up *upstreamConn) sendContent(w io.Writer, content io.ReaderAt, size int64) error {
	direct := size
	if size >= 2 {
		var tail [2]byte
		if _, err := content.ReadAt(tail[:], size-2); err != nil {
			return err
		}
		if tail == [2]byte{'\r', '\n'} {
			direct = size - 2
		}
	}
	if direct > 0 {
		pw := &progressWriter{c: up.conn, timeout: up.timeout}
		err := mailflow.CopyBuffer(func(buf []byte) error {
			_, err := io.CopyBuffer(&mailflow.DotStuffer{W: pw}, io.NewSectionReader(content, 0, direct), buf)
			return err
		})
		up.conn.SetWriteDeadline(time.Time{})
		if err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "\r\n")
	return err
}

// progressWriter bounds each write to the upstream by the timeout, not the whole message: a large message to a
// slow but reading upstream goes through, one that stops reading fails after the timeout (as Postfix's
// smtp_data_xfer_timeout). Writes are split into pieces of progressChunk so that a large write is bounded by
// progress too; the connection only reaches the runtime's timers when the deadline moved by more than the slack.
type progressWriter struct {
	c       net.Conn
	timeout time.Duration
}

// progressChunk is the most written under one deadline.
const progressChunk = 64 << 10

func (w *progressWriter) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		chunk := p[:min(len(p), progressChunk)]
		if err := w.c.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
			return n, err
		}
		m, err := w.c.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// keepUpstreamAlive sends NOOP to the upstream every Limits.UpstreamKeepalive while the relay receives a message
// and its plugins run, so that an upstream which drops silent clients (Postfix's smtpd_timeout, 300 s and 10 s
// under stress) still holds the transaction when the message is ready to go. RFC 5321 allows NOOP at any point of
// a transaction. A NOOP that fails marks the connection dead, and relay then connects again (redial). It returns
// the function that stops the keep-alive, after a NOOP in flight has finished; it is a timer, not a goroutine, so
// that a message costs nothing while no NOOP is due.
func (cs *connState) keepUpstreamAlive() (stop func()) {
	every := cs.srv.opts.Limits.UpstreamKeepalive
	if every <= 0 {
		return func() {}
	}
	k := &keepalive{cs: cs, every: every}
	cs.upMu.Lock()
	k.t = time.AfterFunc(every, k.tick)
	cs.upMu.Unlock()
	return k.stop
}

// keepalive is one message's keep-alive timer; its fields are guarded by connState.upMu.
type keepalive struct {
	cs      *connState
	every   time.Duration
	t       *time.Timer
	stopped bool
}

func (k *keepalive) tick() {
	cs := k.cs
	cs.upMu.Lock()
	defer cs.upMu.Unlock()
	up := cs.up
	if k.stopped || up == nil || up.dead != nil || cs.ctx.Err() != nil {
		return
	}
	err := up.c.Noop()
	cs.srv.stats.keepalives.Add(1)
	if err != nil {
		up.fail(err)
		cs.log().Warn("upstream keep-alive failed", "err", err)
		return
	}
	k.t.Reset(k.every)
}

func (k *keepalive) stop() {
	k.cs.upMu.Lock()
	if !k.stopped {
		k.stopped = true
		k.t.Stop()
	}
	k.cs.upMu.Unlock()
}

// redial replaces a lost upstream connection in the middle of a transaction: a new connection (with XCLIENT
// again) gets the transaction's MAIL FROM and RCPT TOs, with their parameters, before the message is sent. This
// is what saves a message whose upstream dropped the idle transaction despite the keep-alive (an upstream that
// counts NOOPs as junk commands, as Postfix does past smtpd_junk_command_limit). It returns the client's reply when
// that cannot be done: an authenticated session (the relay keeps no credentials to log in again), a server
// shutting down, or an upstream that now refuses what it accepted; the message is then a temporary failure. It
// must be called with upMu held.
func (cs *connState) redial(t *txn) *smtp.SMTPError {
	lost := cs.up.dead
	cs.mu.Lock()
	authUser, helo, shutting := cs.authUser, cs.helo, cs.shuttingDown
	cs.mu.Unlock()
	if authUser != "" || shutting || cs.ctx.Err() != nil {
		return cs.closing(errUpstreamLost(cs))
	}
	cs.log().Info("upstream connection lost during the transaction; connecting again to replay the envelope",
		"txn", t.id, "err", lost)
	up, err := cs.srv.dialUpstream(cs.ctx)
	if err == nil && cs.srv.opts.XClient {
		err = up.sendXClient(cs.remote, helo)
	}
	if err == nil {
		err = up.c.Mail(t.from, t.mailOpts)
	}
	for i := 0; err == nil && i < len(t.rcpts); i++ {
		err = up.c.Rcpt(t.rcpts[i], t.rcptOpts[i])
	}
	if err != nil {
		if up != nil {
			up.close()
		}
		cs.log().Warn("replaying the envelope on a new upstream connection failed", "txn", t.id, "err", err)
		return cs.closing(errUpstreamLost(cs))
	}
	up.inTxn = true
	cs.srv.stats.redials.Add(1)
	cs.up.close()
	cs.up = up
	cs.mu.Lock()
	cs.upRaw = up.raw
	cs.upTLSVersion, cs.upTLSCipher = tlsInfo(up.tls)
	cs.mu.Unlock()
	return nil
}

// forgetAuth discards an authentication made before STARTTLS (see Logout): the user is forgotten, and the
// upstream connection, logged in as that user, is replaced by a new one (with XCLIENT again). When no new
// connection can be had, the old one is closed and the session's next command gets the upstream-lost 421.
func (cs *connState) forgetAuth() {
	cs.mu.Lock()
	user, helo := cs.authUser, cs.helo
	cs.authUser = ""
	cs.mu.Unlock()
	if user == "" {
		return
	}
	cs.upMu.Lock()
	defer cs.upMu.Unlock()
	if cs.up == nil {
		return
	}
	up, err := cs.srv.dialUpstream(cs.ctx)
	if err == nil && cs.srv.opts.XClient {
		err = up.sendXClient(cs.remote, helo)
	}
	if err != nil {
		if up != nil {
			up.close()
		}
		cs.log().Warn("STARTTLS after AUTH: no new upstream connection; the session ends", "user", user, "err", err)
		cs.up.fail(fmt.Errorf("upstream connection replaced after STARTTLS: %w", err))
		return
	}
	cs.log().Info("STARTTLS after AUTH: the authentication is discarded and the upstream connection replaced",
		"user", user)
	cs.up.close()
	cs.up = up
	cs.mu.Lock()
	cs.upRaw = up.raw
	cs.upTLSVersion, cs.upTLSCipher = tlsInfo(up.tls)
	cs.mu.Unlock()
}

// upstreamDropped reports whether err means the upstream let go of the connection (closed, reset, or said 421
// as a server does when it times out an idle client), as opposed to refusing the command.
func upstreamDropped(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code == 421
	}
	return err != nil
}
