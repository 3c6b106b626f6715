package imapproxy

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/postern/postern/proxy/listener"
)

// rawClient speaks IMAP lines to the proxy.
type rawClient struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (r *rig) raw() *rawClient {
	r.t.Helper()
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r.t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: r.t, c: c, br: bufio.NewReader(c)}
	if l := rc.line(); !strings.HasPrefix(l, "* OK") {
		r.t.Fatalf("greeting %q", l)
	}
	return rc
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := rc.c.Write([]byte(s)); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawClient) line() string {
	rc.t.Helper()
	l, err := rc.br.ReadString('\n')
	if err != nil {
		return "ERR " + err.Error()
	}
	return strings.TrimRight(l, "\r\n")
}

// until reads lines until one starts with prefix and returns them all.
func (rc *rawClient) until(prefix string) []string {
	rc.t.Helper()
	var lines []string
	for {
		l := rc.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, prefix) || strings.HasPrefix(l, "ERR ") {
			return lines
		}
	}
}

func TestUpstreamDisconnectBecomesUntaggedBye(t *testing.T) {
	up := newMemUpstream(t, nil)
	var mu sync.Mutex
	var conns []net.Conn
	r := newRig(t, up, func(o *Options) {
		o.Dial = func(ctx context.Context) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", up.addr)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			return c, err
		}
	})
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\n")
	rc.until("a OK")
	mu.Lock()
	conns[0].Close()
	mu.Unlock()
	l := rc.line()
	if !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("after the upstream left the client got %q, want an untagged BYE", l)
	}
}

func TestUpstreamDisconnectMidCommand(t *testing.T) {
	up := newMemUpstream(t, nil)
	up.add("INBOX", plainMsg)
	var mu sync.Mutex
	var conns []net.Conn
	r := newRig(t, up, func(o *Options) {
		o.Dial = func(ctx context.Context) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", up.addr)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			return c, err
		}
	})
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\nb SELECT INBOX\r\n")
	rc.until("b OK")
	mu.Lock()
	conns[0].Close()
	mu.Unlock()
	rc.send("c FETCH 1 (BODY.PEEK[])\r\n")
	lines := rc.until("* BYE")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "* BYE") {
		t.Fatalf("FETCH with the upstream gone: %q, want an untagged BYE", lines)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "c BYE") {
			t.Errorf("tagged BYE: %q", l)
		}
	}
}

func TestSlowUpstreamIsCutAtTheCommandTimeout(t *testing.T) {
	up := newMemUpstream(t, nil)
	var stall atomic.Bool // set: the upstream's replies stop
	r := newRig(t, up, func(o *Options) {
		o.Limits.CommandTimeout = 2 * time.Second
		o.Dial = func(ctx context.Context) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", up.addr)
			if err != nil {
				return nil, err
			}
			return &stallConn{Conn: c, stall: &stall, closed: make(chan struct{})}, nil
		}
	})
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\n")
	rc.until("a OK")
	stall.Store(true)
	rc.send("b STATUS INBOX (MESSAGES)\r\n")
	lines := rc.until("* BYE")
	if !strings.HasPrefix(lines[len(lines)-1], "* BYE") {
		t.Fatalf("stalled upstream: %q, want an untagged BYE", lines)
	}
}

// stallConn delivers nothing more once stall is set, until it is closed: an upstream that stopped answering.
type stallConn struct {
	net.Conn
	stall  *atomic.Bool
	once   sync.Once
	closed chan struct{}
}

func (c *stallConn) Read(p []byte) (int, error) {
	if c.stall.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if c.stall.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *stallConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func TestShutdownSendsBye(t *testing.T) {
	r := newRig(t, nil, nil)
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\n")
	rc.until("a OK")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go r.srv.Shutdown(ctx)
	if l := rc.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("at shutdown the client got %q, want an untagged BYE", l)
	}
}

func TestStartTLSDiscardsPipelinedCommands(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := listener.EnsureTestCertificate(cert, key, "localhost"); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, nil, func(o *Options) {
		o.TLS = TLS{Mode: TLSStartTLS, CertFile: cert, KeyFile: key}
		o.AllowInsecureAuth = false
	})
	rc := r.raw()
	rc.send("x LOGIN alice secret\r\n")
	if l := rc.line(); !strings.HasPrefix(l, "x NO [PRIVACYREQUIRED]") {
		t.Errorf("LOGIN before TLS: %q", l)
	}
	rc.send("a STARTTLS\r\nb NOOP\r\n")
	if l := rc.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("STARTTLS: %q", l)
	}
	rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	rest := make([]byte, 256)
	n, _ := rc.br.Read(rest)
	if bytes.Contains(rest[:n], []byte("b OK")) {
		t.Errorf("a command pipelined after STARTTLS was answered in clear text: %q", rest[:n])
	}
}

func TestOversizedMessageServedAsNotice(t *testing.T) {
	r := newRig(t, nil, func(o *Options) { o.Limits.MessageSize = 64 })
	r.up.add("INBOX", plainMsg)
	c := r.client(nil)
	r.selectBox(c, "INBOX", true)
	m := fetchOne(t, c, 1, &imap.FetchOptions{RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	b := m.FindBodySection(&imap.FetchItemBodySection{Peek: true})
	if !bytes.Contains(b, []byte("larger than the 64 bytes")) || m.RFC822Size != int64(len(b)) {
		t.Fatalf("oversized message served as %d bytes (RFC822.SIZE %d):\n%s", len(b), m.RFC822Size, b)
	}
	// The original was not quarantined: the notice must not send the reader to a quarantine that has nothing.
	if bytes.Contains(b, []byte("quarantine")) || !bytes.Contains(b, []byte("still on the mail server, unchanged")) {
		t.Errorf("the notice misstates where the original is:\n%s", b)
	}
	if r.filter.count() != 0 {
		t.Error("the policy ran on a message it could not inspect whole")
	}
	if len(r.audit.all()) != 1 {
		t.Errorf("%d audit records, want the refusal's", len(r.audit.all()))
	}
}

// cutConn closes itself once armed and limit more bytes were read: an upstream that dies in the middle of a
// literal.
type cutConn struct {
	net.Conn
	armed *atomic.Bool
	limit *atomic.Int64
}

func (c *cutConn) Read(p []byte) (int, error) {
	if c.armed.Load() {
		if c.limit.Load() <= 0 {
			c.Conn.Close()
			return 0, net.ErrClosed
		}
		if int64(len(p)) > c.limit.Load() {
			p = p[:c.limit.Load()]
		}
	}
	n, err := c.Conn.Read(p)
	if c.armed.Load() {
		c.limit.Add(-int64(n))
	}
	return n, err
}

func TestUpstreamDiesMidFetch(t *testing.T) {
	up := newMemUpstream(t, nil)
	big := plainMsg + strings.Repeat("x", 200_000) + "\r\n"
	up.add("INBOX", big)
	var armed atomic.Bool
	var limit atomic.Int64
	limit.Store(50_000)
	r := newRig(t, up, func(o *Options) {
		o.Dial = func(ctx context.Context) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", up.addr)
			if err != nil {
				return nil, err
			}
			return &cutConn{Conn: c, armed: &armed, limit: &limit}, nil
		}
	})
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\nb SELECT INBOX\r\n")
	rc.until("b OK")
	armed.Store(true)
	rc.send("c FETCH 1 (BODY.PEEK[])\r\n")
	lines := rc.until("* BYE")
	if !strings.HasPrefix(lines[len(lines)-1], "* BYE") {
		t.Fatalf("upstream died mid-FETCH: %q, want an untagged BYE", lines)
	}
	for _, l := range lines {
		if strings.Contains(l, "BODY[]") {
			t.Errorf("part of a message was served: %q", l)
		}
	}
	if r.filter.count() != 0 {
		t.Error("the policy ran on a truncated message")
	}
}
