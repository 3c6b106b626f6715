package pop3

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/postern/postern/proxy/mailflow"
)

// Client speaks POP3 to a server (Postern's upstream). It does no I/O of its own beyond what each method says,
// and sets no deadlines: the caller bounds each exchange on the connection.
type Client struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	max  int
}

// ErrProtocol is a server reply that is not POP3: garbage, or a multi-line response where none was expected.
var ErrProtocol = errors.New("pop3: protocol error")

// NewClient returns a client on conn whose status and listing lines may be at most maxLine bytes.
func NewClient(conn net.Conn, maxLine int) *Client {
	return &Client{conn: conn, br: bufio.NewReaderSize(conn, 32<<10), bw: bufio.NewWriterSize(conn, 4<<10),
		max: max(maxLine, MinLineLength)}
}

// Conn is the connection the client talks over.
func (c *Client) Conn() net.Conn { return c.conn }

// Reset moves the client to a new connection (after a TLS handshake). Nothing may be buffered: a server that
// sent bytes after its STLS reply is refused, like a client doing so would be.
func (c *Client) Reset(conn net.Conn) error {
	if c.br.Buffered() > 0 {
		return fmt.Errorf("%w: data after the STLS reply", ErrProtocol)
	}
	c.conn = conn
	c.br.Reset(conn)
	c.bw.Reset(conn)
	return nil
}

// ReadResponse reads one status line.
func (c *Client) ReadResponse() (Response, error) {
	line, err := readLine(c.br, c.max)
	if err != nil {
		return Response{}, err
	}
	r, err := ParseResponse(line)
	if err != nil {
		return r, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return r, nil
}

// Cmd sends one command line and reads its status line. It refuses a line with CR or LF in it (an argument from
// the client must never become two commands upstream).
func (c *Client) Cmd(line string) (Response, error) {
	if err := c.Send(line); err != nil {
		return Response{}, err
	}
	return c.ReadResponse()
}

// Send writes one command line and flushes it.
func (c *Client) Send(line string) error {
	if strings.ContainsAny(line, "\r\n\x00") {
		return fmt.Errorf("pop3: command with a line break or NUL refused")
	}
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
	return c.bw.Flush()
}

// Lines reads the body of a multi-line response (after its +OK) as lines, unstuffed: a listing (CAPA, LIST,
// UIDL). At most maxLines lines are kept; more is an error (the upstream's maildrop is larger than the proxy
// serves).
func (c *Client) Lines(maxLines int) ([]string, error) {
	var out []string
	for {
		line, err := readLine(c.br, c.max)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(line) == 1 && line[0] == '.' {
			return out, nil
		}
		if len(out) >= maxLines {
			return nil, fmt.Errorf("pop3: listing longer than %d lines", maxLines)
		}
		if len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		out = append(out, string(line))
	}
}

// Body returns a reader of a multi-line response's body (RETR, TOP) with dot-unstuffing and every line ending
// kept; it returns io.EOF after the terminating line. It must be read to the end before the next command.
func (c *Client) Body() *mailflow.DotReader { return mailflow.NewDotReader(c.br) }

// Capabilities is a CAPA listing: the capability names in upper case, each with its parameters.
type Capabilities map[string][]string

// Has reports whether the capability is listed.
func (c Capabilities) Has(name string) bool {
	_, ok := c[name]
	return ok
}

// ParseCapabilities parses CAPA lines.
func ParseCapabilities(lines []string) Capabilities {
	caps := Capabilities{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		caps[strings.ToUpper(f[0])] = f[1:]
	}
	return caps
}

// Capa asks for the server's capabilities (RFC 2449). A server without CAPA answers -ERR: that is an empty
// list, not an error.
func (c *Client) Capa() (Capabilities, error) {
	r, err := c.Cmd("CAPA")
	if err != nil {
		return nil, err
	}
	if !r.OK {
		return Capabilities{}, nil
	}
	lines, err := c.Lines(256)
	if err != nil {
		return nil, err
	}
	return ParseCapabilities(lines), nil
}

// Auth runs a SASL exchange (RFC 5034) with the server: the initial response on the AUTH line when there is one,
// then challenges and responses until the server's status line, which it returns.
func (c *Client) Auth(mech sasl.Client) (Response, error) {
	name, ir, err := mech.Start()
	if err != nil {
		return Response{}, fmt.Errorf("pop3: AUTH: %w", err)
	}
	line := "AUTH " + name
	if ir != nil {
		line += " " + EncodeSASL(ir)
	}
	if err := c.Send(line); err != nil {
		return Response{}, err
	}
	for {
		raw, err := readLine(c.br, c.max)
		if err != nil {
			return Response{}, err
		}
		if len(raw) < 1 || raw[0] != '+' || len(raw) >= 3 && string(raw[:3]) == "+OK" {
			r, err := ParseResponse(raw)
			if err != nil {
				return r, fmt.Errorf("%w: %w", ErrProtocol, err)
			}
			return r, nil
		}
		chal, err := DecodeSASL(strings.TrimPrefix(strings.TrimPrefix(string(raw), "+"), " "))
		if err != nil {
			c.Send("*")
			return Response{}, fmt.Errorf("%w: AUTH challenge: %w", ErrProtocol, err)
		}
		resp, err := mech.Next(chal)
		if err != nil {
			c.Send("*")
			if r, rerr := c.ReadResponse(); rerr == nil {
				return r, nil
			}
			return Response{}, fmt.Errorf("pop3: AUTH: %w", err)
		}
		if err := c.Send(EncodeSASL(resp)); err != nil {
			return Response{}, err
		}
	}
}
