package quarantine

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/proxy/upstream"
)

// SMTPRoute delivers over SMTP or LMTP: an SMTP-time entry from its original sender to its original recipients
// (the listener's upstream), a retrieval-time one to its mailbox user (Recipient) with the null sender, as a
// mail server's delivery agent would.
type SMTPRoute struct {
	// Address is host:port; Dial, when set, opens the connection instead (the embedded upstream).
	Address string
	Dial    func(ctx context.Context) (net.Conn, error)
	// LMTP speaks LMTP (RFC 2033: LHLO, one reply per recipient), as to Dovecot's or Cyrus's delivery socket.
	LMTP bool
	// TLS is none, starttls or tls, with TLSConfig (upstream.TLSConfig) for the last two.
	TLS       upstream.TLSMode
	TLSConfig *tls.Config
	// Username and Password, when set, authenticate with AUTH PLAIN (after TLS).
	Username, Password string
	// Recipient makes the recipient address of a retrieval-time entry from its mailbox user: "%u" is replaced
	// by the user ("%u@example.org"); "" means the user as it is.
	Recipient string
	// Hostname is the name given in EHLO/LHLO.
	Hostname string
	// Timeout bounds each command (0: one minute).
	Timeout time.Duration
}

func (r *SMTPRoute) String() string {
	proto := "smtp"
	if r.LMTP {
		proto = "lmtp"
	}
	addr := r.Address
	if addr == "" {
		addr = "embedded"
	}
	return proto + " " + addr
}

// Envelope returns the sender and recipients a release of m uses.
func (r *SMTPRoute) Envelope(m *Meta) (from string, rcpts []string, err error) {
	if m.Stage == StageSMTP {
		if len(m.Rcpts) == 0 {
			return "", nil, errors.New("the entry has no recipients")
		}
		return m.MailFrom, m.Rcpts, nil
	}
	if m.MailboxUser == "" {
		return "", nil, errors.New("the entry has no mailbox user")
	}
	to := m.MailboxUser
	if r.Recipient != "" {
		to = strings.ReplaceAll(r.Recipient, "%u", m.MailboxUser)
	}
	return "", []string{to}, nil
}

// Deliver sends the message in one transaction. A recipient refused at RCPT ends it before DATA: a release goes
// to every original recipient or to none (an LMTP server may still refuse single recipients after DATA; that is
// an error naming them, and the others have it).
func (r *SMTPRoute) Deliver(ctx context.Context, m *Meta, msg io.Reader, _ int64) (string, error) {
	from, rcpts, err := r.Envelope(m)
	if err != nil {
		return "", err
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	host := r.Hostname
	if host == "" {
		host = "localhost"
	}
	d := upstream.Dialer{Address: r.Address, Dial: r.Dial, Timeout: timeout}
	if r.TLS == upstream.TLSImplicit {
		d.TLS = r.TLSConfig
	}
	uc, err := d.DialContext(ctx)
	if err != nil {
		return "", err
	}
	defer uc.Raw.Close()
	stop := context.AfterFunc(ctx, func() { uc.Raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn := uc.Conn
	if r.TLS == upstream.TLSStartTLS {
		if conn, err = startTLS(ctx, uc, host, r.TLSConfig, timeout); err != nil {
			return "", err
		}
	}
	var c *smtp.Client
	if r.LMTP {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout, c.SubmissionTimeout = timeout, timeout
	if err := c.Hello(host); err != nil {
		return "", smtpErr("greeting", err)
	}
	if r.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", r.Username, r.Password)); err != nil {
			return "", smtpErr("AUTH", err)
		}
	}
	var mo *smtp.MailOptions
	if !isASCII(from) || !isASCII(strings.Join(rcpts, "")) {
		mo = &smtp.MailOptions{UTF8: true}
	}
	if err := c.Mail(from, mo); err != nil {
		return "", smtpErr("MAIL FROM", err)
	}
	for _, to := range rcpts {
		if err := c.Rcpt(to, nil); err != nil {
			return "", smtpErr("RCPT TO:<"+to+">", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", smtpErr("DATA", err)
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	if _, err := io.Copy(bw, msg); err != nil {
		w.Close()
		return "", fmt.Errorf("sending the message: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return "", fmt.Errorf("sending the message: %w", err)
	}
	var reply string
	if r.LMTP {
		resp, err := w.CloseWithLMTPResponse()
		if err != nil {
			return "", smtpErr("end of data", err)
		}
		for _, to := range rcpts {
			if dr := resp[to]; dr != nil {
				reply = "250 " + dr.StatusText
			}
		}
	} else {
		resp, err := w.CloseWithResponse()
		if err != nil {
			return "", smtpErr("end of data", err)
		}
		reply = "250 " + resp.StatusText
	}
	_ = c.Quit()
	return reply, nil
}

// smtpErr makes a server's refusal a *ReplyError with its reply line.
func smtpErr(what string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		line := fmt.Sprintf("%d", se.Code)
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			line += fmt.Sprintf(" %d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		return fmt.Errorf("%s: %w", what, &ReplyError{Reply: line + " " + se.Message})
	}
	var le smtp.LMTPDataError
	if errors.As(err, &le) {
		var parts []string
		for rcpt, e := range le {
			parts = append(parts, fmt.Sprintf("<%s>: %d %s", rcpt, e.Code, e.Message))
		}
		return fmt.Errorf("%s: %w", what, &ReplyError{Reply: strings.Join(parts, "; ")})
	}
	return fmt.Errorf("%s: %w", what, err)
}

// startTLS says EHLO and STARTTLS before the go-smtp client takes the connection over (it can only upgrade after
// introducing itself as "localhost"); the client then reads a replayed greeting.
func startTLS(ctx context.Context, uc *upstream.Conn, host string, cfg *tls.Config, timeout time.Duration) (net.Conn, error) {
	uc.Raw.SetDeadline(time.Now().Add(timeout))
	tp := textproto.NewConn(uc.Conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := tp.PrintfLine("EHLO %s", host); err != nil {
		return nil, err
	}
	_, caps, err := tp.ReadResponse(250)
	if err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	found := false
	for _, l := range strings.Split(caps, "\n") {
		found = found || strings.EqualFold(strings.TrimSpace(l), "STARTTLS")
	}
	if !found {
		return nil, errors.New("the server does not offer STARTTLS (tls = starttls)")
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, err
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	if err := uc.StartTLS(ctx, cfg); err != nil {
		return nil, err
	}
	uc.Raw.SetDeadline(time.Time{})
	return &replayConn{Conn: uc.Conn, pending: []byte("220 after STARTTLS\r\n")}, nil
}

// replayConn serves pending before reading from Conn.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
