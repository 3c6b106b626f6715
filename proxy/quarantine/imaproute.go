package quarantine

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/postern/postern/proxy/upstream"
)

// IMAPRoute puts a released message back into its user's mailbox with IMAP APPEND, logged in with an
// administrative login: Dovecot's master user ("alice*postern" with the master's password), or any login that
// may append to every mailbox. The message arrives as a new, unseen message; the notice that took its place
// keeps its UID.
type IMAPRoute struct {
	// Address is host:port; Dial, when set, opens the connection instead.
	Address string
	Dial    func(ctx context.Context) (net.Conn, error)
	// TLS is none, starttls or tls, with TLSConfig for the last two.
	TLS       upstream.TLSMode
	TLSConfig *tls.Config
	// Login makes the login name from the entry's mailbox user: "%u" is replaced by it ("%u*postern" for a
	// Dovecot master user named postern). Password is the password of that login.
	Login    string
	Password string
	// Mailbox is where the message goes; "" means the mailbox an APPEND-time entry was meant for, and INBOX for
	// one withheld at retrieval.
	Mailbox string
	// Timeout bounds each command (0: one minute).
	Timeout time.Duration
}

func (r *IMAPRoute) String() string {
	mbox := r.Mailbox
	if mbox == "" {
		mbox = "INBOX"
	}
	return "imap " + r.Address + " " + mbox
}

// maxIMAPLine bounds a response line (a server's CAPABILITY can be long; nothing here needs more).
const maxIMAPLine = 64 << 10

// Deliver logs in as the entry's user through the administrative login and appends the message.
func (r *IMAPRoute) Deliver(ctx context.Context, m *Meta, msg io.Reader, size int64) (string, error) {
	if m.MailboxUser == "" {
		return "", errors.New("the entry has no mailbox user")
	}
	mailbox := r.Mailbox
	if mailbox == "" {
		mailbox = "INBOX"
		if m.Stage == StageAppend && m.Mailbox != "" {
			mailbox = m.Mailbox
		}
	}
	login := m.MailboxUser
	if r.Login != "" {
		login = strings.ReplaceAll(r.Login, "%u", m.MailboxUser)
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = time.Minute
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
	c := &imapConn{raw: uc.Raw, timeout: timeout}
	c.setConn(uc.Conn)
	greeting, err := c.line()
	if err != nil {
		return "", fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(greeting, "* OK") {
		return "", fmt.Errorf("greeting: %w", &ReplyError{Reply: greeting})
	}
	if r.TLS == upstream.TLSStartTLS {
		if _, err := c.command("STARTTLS"); err != nil {
			return "", fmt.Errorf("STARTTLS: %w", err)
		}
		if err := uc.StartTLS(ctx, r.TLSConfig); err != nil {
			return "", err
		}
		c.setConn(uc.Conn)
	}
	user, err := c.astring(login)
	if err != nil {
		return "", fmt.Errorf("LOGIN: %w", err)
	}
	pass, err := c.astring(r.Password)
	if err != nil {
		return "", fmt.Errorf("LOGIN: %w", err)
	}
	if _, err := c.commandLiterals("LOGIN", user, pass); err != nil {
		return "", fmt.Errorf("LOGIN as %s: %w", login, err)
	}
	box, err := c.astring(encodeMailbox(mailbox))
	if err != nil {
		return "", fmt.Errorf("APPEND: %w", err)
	}
	tag := c.nextTag()
	if err := c.send(tag + " APPEND " + box.text + box.literalHead()); err != nil {
		return "", err
	}
	if err := c.sendLiteralBody(box.literal); err != nil {
		return "", fmt.Errorf("APPEND: %w", err)
	}
	if err := c.send(" {" + strconv.FormatInt(size, 10) + "}\r\n"); err != nil {
		return "", err
	}
	if err := c.waitContinuation(tag); err != nil {
		return "", fmt.Errorf("APPEND to %s: %w", mailbox, err)
	}
	c.raw.SetDeadline(time.Now().Add(timeout + time.Duration(size/(64<<10))*time.Second))
	n, err := io.Copy(c.w, msg)
	if err == nil && n != size {
		err = fmt.Errorf("sent %d bytes of %d", n, size)
	}
	if err != nil {
		return "", fmt.Errorf("APPEND: sending the message: %w", err)
	}
	if err := c.send("\r\n"); err != nil {
		return "", err
	}
	reply, err := c.tagged(tag)
	if err != nil {
		return "", fmt.Errorf("APPEND to %s: %w", mailbox, err)
	}
	_, _ = c.command("LOGOUT")
	return reply, nil
}

// imapConn is the little of an IMAP client a release needs.
type imapConn struct {
	raw     net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
	tagN    int
}

func (c *imapConn) setConn(conn net.Conn) {
	c.r = bufio.NewReaderSize(conn, 4096)
	c.w = bufio.NewWriterSize(conn, 32<<10)
}

func (c *imapConn) nextTag() string {
	c.tagN++
	return "r" + strconv.Itoa(c.tagN)
}

func (c *imapConn) send(s string) error {
	c.raw.SetDeadline(time.Now().Add(c.timeout))
	_, err := c.w.WriteString(s)
	return err
}

// line reads one response line without its CRLF, bounded by maxIMAPLine; a literal at its end ("{12}") is read
// and kept in the line.
func (c *imapConn) line() (string, error) {
	if err := c.w.Flush(); err != nil {
		return "", err
	}
	c.raw.SetDeadline(time.Now().Add(c.timeout))
	var b strings.Builder
	for {
		part, err := c.r.ReadSlice('\n')
		if b.Len()+len(part) > maxIMAPLine {
			return "", errors.New("response line too long")
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			b.Write(part)
			continue
		}
		if err != nil {
			return "", err
		}
		b.Write(part)
		s := strings.TrimRight(b.String(), "\r\n")
		if n, ok := trailingLiteral(s); ok {
			if b.Len()+n > maxIMAPLine {
				return "", errors.New("response literal too long")
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(c.r, buf); err != nil {
				return "", err
			}
			b.Reset()
			b.WriteString(s)
			b.Write(buf)
			continue
		}
		return s, nil
	}
}

func trailingLiteral(s string) (int, bool) {
	if !strings.HasSuffix(s, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(s, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(s[i+1:len(s)-1], "+"))
	return n, err == nil && n >= 0
}

// tagged reads until the tagged response of tag and returns it ("OK ..." without the tag); NO and BAD are
// *ReplyErrors, and so is a BYE before it.
func (c *imapConn) tagged(tag string) (string, error) {
	for {
		l, err := c.line()
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(l, "* BYE") {
			return "", &ReplyError{Reply: strings.TrimPrefix(l, "* ")}
		}
		rest, ok := strings.CutPrefix(l, tag+" ")
		if !ok {
			continue // untagged data, or a continuation nobody asked for
		}
		if strings.HasPrefix(strings.ToUpper(rest), "OK") {
			return rest, nil
		}
		return "", &ReplyError{Reply: rest}
	}
}

// waitContinuation reads until the server asks for the literal ("+"), or refuses the command.
func (c *imapConn) waitContinuation(tag string) error {
	for {
		l, err := c.line()
		if err != nil {
			return err
		}
		if strings.HasPrefix(l, "+") {
			return nil
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return &ReplyError{Reply: rest}
		}
		if strings.HasPrefix(l, "* BYE") {
			return &ReplyError{Reply: strings.TrimPrefix(l, "* ")}
		}
	}
}

func (c *imapConn) command(cmd string) (string, error) {
	tag := c.nextTag()
	if err := c.send(tag + " " + cmd + "\r\n"); err != nil {
		return "", err
	}
	return c.tagged(tag)
}

// astring is an argument: a quoted string, or a literal for what a quoted string cannot hold.
type astring struct {
	text    string // the quoted string, "" for a literal
	literal []byte
}

func (a astring) literalHead() string {
	if a.literal == nil {
		return ""
	}
	return "{" + strconv.Itoa(len(a.literal)) + "}"
}

func (c *imapConn) astring(s string) (astring, error) {
	if strings.ContainsAny(s, "\x00") {
		return astring{}, errors.New("NUL in an argument")
	}
	quotable := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			quotable = false
		}
	}
	if quotable {
		return astring{text: `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`}, nil
	}
	return astring{literal: []byte(s)}, nil
}

// sendLiteralBody waits for the continuation of a literal just announced and sends it; nothing for a quoted one.
func (c *imapConn) sendLiteralBody(lit []byte) error {
	if lit == nil {
		return nil
	}
	if err := c.send("\r\n"); err != nil {
		return err
	}
	if err := c.waitContinuation(fmt.Sprintf("r%d", c.tagN)); err != nil {
		return err
	}
	c.raw.SetDeadline(time.Now().Add(c.timeout))
	_, err := c.w.Write(lit)
	return err
}

// commandLiterals sends a command whose arguments may be literals.
func (c *imapConn) commandLiterals(cmd string, args ...astring) (string, error) {
	tag := c.nextTag()
	if err := c.send(tag + " " + cmd); err != nil {
		return "", err
	}
	for _, a := range args {
		if err := c.send(" " + a.text + a.literalHead()); err != nil {
			return "", err
		}
		if err := c.sendLiteralBody(a.literal); err != nil {
			return "", err
		}
	}
	if err := c.send("\r\n"); err != nil {
		return "", err
	}
	return c.tagged(tag)
}

// encodeMailbox encodes a UTF-8 mailbox name in IMAP's modified UTF-7 (RFC 3501 §5.1.3).
func encodeMailbox(name string) string {
	var b strings.Builder
	var pending []rune
	flush := func() {
		if len(pending) == 0 {
			return
		}
		u := utf16.Encode(pending)
		raw := make([]byte, 0, 2*len(u))
		for _, x := range u {
			raw = append(raw, byte(x>>8), byte(x))
		}
		b.WriteByte('&')
		b.WriteString(strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(raw), "/", ","))
		b.WriteByte('-')
		pending = pending[:0]
	}
	for _, r := range name {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		pending = append(pending, r)
	}
	flush()
	return b.String()
}
