package smtpproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/mailflow"
)

// upstream is the relay's connection to the upstream server for one client session. It is used by one goroutine
// at a time (the session's, under connState.upMu).
type upstream struct {
	conn    net.Conn // what the go-smtp client talks over (TLS when there is TLS)
	raw     net.Conn // the network connection, closed to interrupt the session on forced shutdown
	c       *smtp.Client
	tls     *tls.ConnectionState
	timeout time.Duration
	host    string // our EHLO name
	xclient []string
	sentXC  string // the XCLIENT line last sent, to send it again only when something changed
	inTxn   bool   // a MAIL FROM was accepted and the transaction is not finished
	dead    error  // set once the connection failed; nothing more is sent
}

// upstreamTLSConfig builds the TLS configuration for the upstream connection: verification on unless SkipVerify,
// with CAFile or the system pool, TLS 1.2 at least.
func upstreamTLSConfig(o Options) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.UpstreamTLS.ServerName,
		InsecureSkipVerify: o.UpstreamTLS.SkipVerify}
	if cfg.ServerName == "" && o.Upstream != "embedded" && o.Upstream != "" {
		host, _, _ := net.SplitHostPort(o.Upstream)
		cfg.ServerName = host
	}
	if o.UpstreamTLS.CAFile != "" {
		pem, err := os.ReadFile(o.UpstreamTLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream_tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream_tls ca_file %s: no PEM certificate found", o.UpstreamTLS.CAFile)
		}
		cfg.RootCAs = pool
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		return nil, errors.New("upstream_tls: set server_name (the upstream address has no host name to verify)")
	}
	return cfg, nil
}

// dialUpstream opens the upstream connection for a new session: connect, TLS as configured, greeting and EHLO. An
// error means the client must get a 421 greeting.
func (s *Server) dialUpstream(ctx context.Context) (*upstream, error) {
	timeout := s.opts.Limits.CommandTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		conn net.Conn
		err  error
	)
	switch {
	case s.opts.Dial != nil:
		conn, err = s.opts.Dial(ctx)
	case s.opts.Upstream == "embedded":
		conn, err = s.opts.Embedded.Dial(ctx)
	default:
		d := net.Dialer{KeepAlive: -1} // the session's timeouts bound it; see Listen
		conn, err = d.DialContext(ctx, "tcp", s.opts.Upstream)
	}
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	up := &upstream{raw: conn, conn: conn, timeout: timeout, host: s.opts.Hostname}
	// The client may leave while the upstream is still greeting: give up then rather than at the timeout.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := up.open(ctx, s.opts.UpstreamTLS.Mode, s.upTLS); err != nil {
		conn.Close()
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

func (up *upstream) open(ctx context.Context, mode UpstreamTLSMode, cfg *tls.Config) error {
	switch mode {
	case UpstreamTLSImplicit:
		tc := tls.Client(up.conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		st := tc.ConnectionState()
		up.conn, up.tls = tc, &st
	case UpstreamTLSStartTLS:
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
func (up *upstream) startTLS(ctx context.Context, cfg *tls.Config) error {
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
	tc := tls.Client(up.conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	up.conn.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	up.tls = &st
	up.conn = &replayConn{Conn: tc, pending: []byte("220 after STARTTLS\r\n")}
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
func (up *upstream) xclientLine(client netip.AddrPort, helo string) string {
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
func (up *upstream) sendXClient(client netip.AddrPort, helo string) error {
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
func (up *upstream) fail(err error) error {
	if up.dead == nil {
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
func (up *upstream) reset() {
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
func (up *upstream) close() {
	if up.dead == nil {
		up.conn.SetDeadline(time.Now().Add(min(up.timeout, 2*time.Second)))
		if _, err := io.WriteString(up.conn, "QUIT\r\n"); err == nil {
			var buf [512]byte
			_, _ = up.conn.Read(buf[:])
		}
	}
	up.raw.Close()
}

// tlsInfo describes a TLS connection state for logs and plugins: "TLS1.3" and the IANA cipher suite name.
func tlsInfo(st *tls.ConnectionState) (version, cipher string) {
	if st == nil {
		return "", ""
	}
	switch st.Version {
	case tls.VersionTLS12:
		version = "TLS1.2"
	case tls.VersionTLS13:
		version = "TLS1.3"
	default:
		version = strings.ReplaceAll(tls.VersionName(st.Version), " ", "")
	}
	return version, tls.CipherSuiteName(st.CipherSuite)
}

// sendContent writes the message after the upstream's 354. The bulk goes to the connection dot-stuffed by a
// dotStuffer; the last CRLF goes through go-smtp's DotWriter so that it knows the content ended at the start of a
// line and closes with just ".\r\n" (fed the whole message, it would do the same work a byte at a time). The
// connection holds the writes until the reply is awaited, so a small message and its final dot go out together.
func (up *upstream) sendContent(w io.Writer, content io.ReaderAt, size int64) error {
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
		up.conn.SetWriteDeadline(time.Now().Add(up.timeout))
		err := mailflow.CopyBuffer(func(buf []byte) error {
			_, err := io.CopyBuffer(&mailflow.DotStuffer{W: up.conn}, io.NewSectionReader(content, 0, direct), buf)
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
