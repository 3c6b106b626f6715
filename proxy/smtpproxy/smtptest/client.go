package smtptest

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Client is a line-level SMTP client: it writes exactly what the test says, so that a test can pipeline, send
// malformed input or split writes, and it reads replies as they come.
type Client struct {
	t    testing.TB
	Conn net.Conn
	r    *bufio.Reader
}

// Reply is one complete (possibly multi-line) SMTP reply.
type Reply struct {
	Code  int
	Lines []string // the text of each line, without the code and separator
}

// Text returns the last line's text.
func (r Reply) Text() string {
	if len(r.Lines) == 0 {
		return ""
	}
	return r.Lines[len(r.Lines)-1]
}

// String renders the reply as "code text".
func (r Reply) String() string { return strconv.Itoa(r.Code) + " " + strings.Join(r.Lines, " / ") }

// Dial connects to addr; every read and write has a 10 second deadline.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return NewClient(t, c)
}

// NewClient wraps an open connection.
func NewClient(t testing.TB, c net.Conn) *Client {
	return &Client{t: t, Conn: c, r: bufio.NewReader(c)}
}

// Write sends raw bytes.
func (c *Client) Write(s string) {
	c.t.Helper()
	c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// ReadReply reads one reply; a closed connection gives Code 0 and Err set.
func (c *Client) ReadReply() (Reply, error) {
	var rep Reply
	c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return rep, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return rep, io.ErrUnexpectedEOF
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return rep, err
		}
		rep.Code = code
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		rep.Lines = append(rep.Lines, text)
		if len(line) == 3 || line[3] == ' ' {
			return rep, nil
		}
	}
}

// Reply reads one reply and fails the test if there is none.
func (c *Client) Reply() Reply {
	c.t.Helper()
	r, err := c.ReadReply()
	if err != nil {
		c.t.Fatalf("reading reply: %v (got %v so far)", err, r)
	}
	return r
}

// Cmd sends one command line and reads its reply.
func (c *Client) Cmd(line string) Reply {
	c.t.Helper()
	c.Write(line + "\r\n")
	return c.Reply()
}

// Expect sends a command (unless line is "") and fails the test unless the reply has code.
func (c *Client) Expect(line string, code int) Reply {
	c.t.Helper()
	var r Reply
	if line == "" {
		r = c.Reply()
	} else {
		r = c.Cmd(line)
	}
	if r.Code != code {
		c.t.Fatalf("%q: got %v, want %d", line, r, code)
	}
	return r
}

// StartTLS upgrades the connection after a 220 to STARTTLS.
func (c *Client) StartTLS(cfg *tls.Config) {
	c.t.Helper()
	c.Expect("STARTTLS", 220)
	tc := tls.Client(c.Conn, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.Conn = tc
	c.r = bufio.NewReader(tc)
}

// Send runs a whole transaction (MAIL, RCPTs, DATA with data dot-stuffed as given) and returns the final reply.
// It fails the test if MAIL, a RCPT or DATA is refused.
func (c *Client) Send(from string, rcpts []string, data string) Reply {
	c.t.Helper()
	c.Expect("MAIL FROM:<"+from+">", 250)
	for _, r := range rcpts {
		c.Expect("RCPT TO:<"+r+">", 250)
	}
	c.Expect("DATA", 354)
	c.Write(data + ".\r\n")
	return c.Reply()
}
