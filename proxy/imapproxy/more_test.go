package imapproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	proxyproto "github.com/pires/go-proxyproto"

	"github.com/postern/postern/internal/metricstest"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/metrics"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/upstream"
)

func testCert(t *testing.T) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := listener.EnsureTestCertificate(cert, key, "localhost"); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return cert, key, pool
}

// TestTLSBothWays: implicit TLS from the client, implicit TLS with verification to the upstream, and a PROXY v2
// header with the client's address before it.
func TestTLSBothWaysAndProxyHeader(t *testing.T) {
	cert, key, pool := testCert(t)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var remotes []string
	up := newMemUpstreamOn(t, nil, func(ln net.Listener) net.Listener {
		return tls.NewListener(&proxyproto.Listener{Listener: ln}, &tls.Config{Certificates: []tls.Certificate{pair}})
	}, func(c *imapserver.Conn) {
		mu.Lock()
		remotes = append(remotes, c.NetConn().RemoteAddr().String())
		mu.Unlock()
	})
	up.add("INBOX", plainMsg)
	r := newRig(t, up, func(o *Options) {
		o.TLS = TLS{Mode: TLSImplicit, CertFile: cert, KeyFile: key}
		o.UpstreamTLS = upstream.TLSOptions{Mode: upstream.TLSImplicit, CAFile: cert, ServerName: "localhost"}
		o.UpstreamProxyProtocol = true
		o.AllowInsecureAuth = false
	})
	conn, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	c := imapclient.New(conn, nil)
	defer c.Close()
	local := c.Caps() // greeting over TLS
	if local.Has(imap.CapStartTLS) {
		t.Error("STARTTLS offered on an implicit TLS connection")
	}
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	fetchOne(t, c, 1, &imap.FetchOptions{RFC822Size: true})
	env := r.filter.last()
	if env.TLSVersion == "" || env.UpstreamTLSVersion == "" {
		t.Errorf("plugins saw TLS %q and upstream TLS %q", env.TLSVersion, env.UpstreamTLSVersion)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(remotes) != 1 || remotes[0] != conn.LocalAddr().String() {
		t.Errorf("upstream saw the client as %v, want %s (the PROXY header's address)", remotes, conn.LocalAddr())
	}
}

func TestUpstreamCertificateVerified(t *testing.T) {
	cert, key, _ := testCert(t)
	pair, _ := tls.LoadX509KeyPair(cert, key)
	up := newMemUpstreamOn(t, nil, func(ln net.Listener) net.Listener {
		return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}})
	}, nil)
	other, _, _ := testCert(t) // a CA that did not sign the upstream's certificate
	r := newRig(t, up, func(o *Options) {
		o.UpstreamTLS = upstream.TLSOptions{Mode: upstream.TLSImplicit, CAFile: other, ServerName: "localhost"}
	})
	expectRefused(t, r.addr, "with an unverifiable upstream")
}

// expectRefused checks that a client connecting to addr is greeted with BYE [UNAVAILABLE].
func expectRefused(t *testing.T, addr, when string) {
	t.Helper()
	rc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rc.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 200)
	n, _ := rc.Read(buf)
	if !bytes.HasPrefix(buf[:n], []byte("* BYE [UNAVAILABLE]")) {
		t.Errorf("%s the client got %q, want BYE [UNAVAILABLE]", when, buf[:n])
	}
}

func TestAppendOverTheLimit(t *testing.T) {
	r := newRig(t, nil, func(o *Options) { o.Limits.MessageSize = 2000 })
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\n")
	rc.until("a OK")
	rc.send("b APPEND Sent {100000}\r\n")
	if l := rc.line(); !strings.HasPrefix(l, "b NO [TOOBIG]") {
		t.Errorf("huge APPEND literal: %q, want NO [TOOBIG] before the literal", l)
	}
	rc.send("c NOOP\r\n")
	if l := rc.until("c "); !strings.HasPrefix(l[len(l)-1], "c OK") {
		t.Errorf("the session did not go on: %q", l)
	}
}

func TestFetchRangeInChunks(t *testing.T) {
	r := newRig(t, nil, func(o *Options) { o.Limits.UIDSetLength = 100 }) // 9 UIDs per upstream command
	for i := 0; i < 30; i++ {
		r.up.add("INBOX", plainMsg)
	}
	c := r.client(nil)
	r.selectBox(c, "INBOX", true)
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	if err != nil || len(msgs) != 30 {
		t.Fatalf("FETCH 1:* = %d messages, %v", len(msgs), err)
	}
	uids, err := c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 5, Stop: 0}}}}, nil).Wait()
	if err != nil || len(uids.AllUIDs()) != 26 {
		t.Errorf("UID SEARCH UID 5:* = %v, %v", uids.AllUIDs(), err)
	}
	if n := r.filter.count(); n != 30 {
		t.Errorf("policy ran %d times for 30 messages", n)
	}
}

func TestReloadRefilters(t *testing.T) {
	r := newRig(t, nil, nil)
	r.up.add("INBOX", plainMsg)
	read := func() {
		c := r.client(nil)
		r.selectBox(c, "INBOX", true)
		fetchOne(t, c, 1, &imap.FetchOptions{RFC822Size: true})
		c.Logout().Wait()
	}
	read()
	read()
	if n := r.filter.count(); n != 1 {
		t.Fatalf("policy ran %d times for one message read twice", n)
	}
	r.filter.mu.Lock()
	r.filter.version = "v2"
	r.filter.mu.Unlock()
	read()
	if n := r.filter.count(); n != 2 {
		t.Errorf("after a configuration change the cached result was served (policy ran %d times)", n)
	}
}

func TestIdleKeepalive(t *testing.T) {
	r := newRig(t, nil, func(o *Options) { o.IdleKeepalive = 200 * time.Millisecond })
	r.up.add("INBOX", plainMsg)
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\nb SELECT INBOX\r\n")
	rc.until("b OK")
	rc.send("c IDLE\r\n")
	if l := rc.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	if l := rc.line(); l != "* 1 EXISTS" {
		t.Errorf("keep-alive during IDLE: %q, want a repeated * 1 EXISTS", l)
	}
	rc.send("DONE\r\n")
	if l := rc.until("c "); !strings.HasPrefix(l[len(l)-1], "c OK") {
		t.Errorf("IDLE end: %q", l)
	}
}

func TestUnknownCommandBeforeLogin(t *testing.T) {
	r := newRig(t, nil, nil)
	rc := r.raw()
	rc.send("a ID NIL\r\n")
	lines := rc.until("a ")
	if !strings.HasPrefix(lines[len(lines)-1], "a BAD") {
		t.Errorf("ID: %q", lines)
	}
}

func TestCloseUnselectAndUIDExpunge(t *testing.T) {
	r := newRig(t, nil, nil)
	for i := 0; i < 4; i++ {
		r.up.add("INBOX", plainMsg)
	}
	c := r.client(nil)
	count := func() uint32 {
		d := r.up.direct()
		sd, err := d.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return *sd.NumMessages
	}
	deleted := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	r.selectBox(c, "INBOX", false)
	if err := c.Store(imap.SeqSetNum(1, 2), deleted, nil).Close(); err != nil {
		t.Fatal(err)
	}
	// UID EXPUNGE removes only the UIDs named, though two are \Deleted.
	exp, err := c.UIDExpunge(imap.UIDSetNum(2)).Collect()
	if err != nil || len(exp) != 1 || exp[0] != 2 {
		t.Errorf("UID EXPUNGE 2 = %v, %v", exp, err)
	}
	if n := count(); n != 3 {
		t.Errorf("%d messages upstream after UID EXPUNGE, want 3", n)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Errorf("UNSELECT expunged: %d messages", n)
	}
	r.selectBox(c, "INBOX", true)
	if err := c.UnselectAndExpunge().Wait(); err != nil { // CLOSE under EXAMINE: nothing expunged
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Errorf("CLOSE under EXAMINE expunged: %d messages", n)
	}
	r.selectBox(c, "INBOX", false)
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Errorf("%d messages upstream after CLOSE, want 2", n)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Errorf("SELECT after CLOSE: %v", err)
	}
}

func TestLSUB(t *testing.T) {
	r := newRig(t, nil, nil)
	c := r.client(nil)
	if err := c.Subscribe("Archive").Wait(); err != nil {
		t.Fatal(err)
	}
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\nb LSUB \"\" \"*\"\r\n")
	lines := rc.until("b ")
	var found bool
	for _, l := range lines {
		if strings.HasPrefix(l, "* LSUB") && strings.Contains(l, "Archive") {
			found = true
		}
		if strings.HasPrefix(l, "* LSUB") && strings.Contains(l, "INBOX") {
			t.Errorf("an unsubscribed mailbox in LSUB: %q", l)
		}
	}
	if !found || !strings.HasPrefix(lines[len(lines)-1], "b OK") {
		t.Errorf("LSUB: %q", lines)
	}
}

// noIdleConn hides the upstream's IDLE capability (the bytes " IDLE" read become " XIDL") and notes whether an
// IDLE command was sent.
type noIdleConn struct {
	net.Conn
	sent *atomic.Bool
}

func (c noIdleConn) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(" IDLE\r\n")) {
		c.sent.Store(true)
	}
	return c.Conn.Write(p)
}

func (c noIdleConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	copy(p[:n], bytes.ReplaceAll(p[:n], []byte(" IDLE"), []byte(" XIDL")))
	return n, err
}

func TestIdleWithoutUpstreamIdlePolls(t *testing.T) {
	up := newMemUpstream(t, nil)
	up.add("INBOX", plainMsg)
	var idleSent atomic.Bool
	r := newRig(t, up, func(o *Options) {
		o.IdlePoll = 200 * time.Millisecond
		o.IdleKeepalive = 50 * time.Millisecond
		o.Dial = func(ctx context.Context) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", up.addr)
			if err != nil {
				return nil, err
			}
			return noIdleConn{c, &idleSent}, nil
		}
	})
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\nb SELECT INBOX\r\n")
	rc.until("b OK")
	rc.send("c IDLE\r\n")
	if l := rc.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	if l := rc.line(); l != "* 1 EXISTS" { // a keep-alive: the IDLE loop runs
		t.Fatalf("during IDLE: %q", l)
	}
	up.add("INBOX", plainMsg)
	for {
		l := rc.line()
		if l == "* 2 EXISTS" {
			break
		}
		if l != "* 1 EXISTS" {
			t.Fatalf("during IDLE with a polled upstream: %q, want * 2 EXISTS", l)
		}
	}
	if idleSent.Load() {
		t.Error("IDLE sent to an upstream without it")
	}
	rc.send("DONE\r\n")
	if l := rc.until("c "); !strings.HasPrefix(l[len(l)-1], "c OK") {
		t.Errorf("IDLE end: %q", l)
	}
}

func TestListingAgainAfterEvictionRunsNoPlugin(t *testing.T) {
	r := newRig(t, nil, func(o *Options) {
		// Room for about one message's bytes: every other one is evicted to its metadata.
		o.Cache = Cache{MemoryBytes: 2*entryOverhead + 600, EntryBytes: 600, UserBytes: 2*entryOverhead + 600}
		o.ResultHeaders = true
	})
	for i := 0; i < 5; i++ {
		r.up.add("INBOX", strings.Replace(plainMsg, "hello", "msg "+string(rune('a'+i)), 1))
	}
	c := r.client(nil)
	r.selectBox(c, "INBOX", true)
	hdr := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject", "X-Postern-Verdict"}}
	list := func() []*imapclient.FetchMessageBuffer {
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{RFC822Size: true, Envelope: true,
			BodyStructure: &imap.FetchItemBodyStructure{}, BodySection: []*imap.FetchItemBodySection{hdr}}).Collect()
		if err != nil || len(msgs) != 5 {
			t.Fatalf("listing: %d messages, %v", len(msgs), err)
		}
		return msgs
	}
	first := list()
	second := list()
	if n := r.filter.count(); n != 5 {
		t.Errorf("policy ran %d times for 5 messages listed twice", n)
	}
	for i := range first {
		a, b := first[i], second[i]
		if a.RFC822Size != b.RFC822Size || a.Envelope.Subject != b.Envelope.Subject ||
			!bytes.Equal(a.FindBodySection(hdr), b.FindBodySection(hdr)) || !bytes.Contains(b.FindBodySection(hdr), []byte("X-Postern-Verdict")) {
			t.Errorf("message %d listed differently the second time", a.SeqNum)
		}
	}
	// The body of an evicted message is filtered again, and agrees with the size listed.
	m := fetchOne(t, c, 1, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	if got := int64(len(m.FindBodySection(&imap.FetchItemBodySection{Peek: true}))); got != first[0].RFC822Size {
		t.Errorf("BODY[] %d bytes, listed RFC822.SIZE %d", got, first[0].RFC822Size)
	}
}

func TestMailboxOverTheLimit(t *testing.T) {
	r := newRig(t, nil, func(o *Options) { o.Limits.Messages = 2 })
	for i := 0; i < 3; i++ {
		r.up.add("INBOX", plainMsg)
	}
	r.up.add("Archive", plainMsg)
	c := r.client(nil)
	_, err := c.Select("INBOX", nil).Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeLimit {
		t.Errorf("SELECT of 3 messages with a limit of 2: %v, want NO [LIMIT]", err)
	}
	if _, err := c.Select("Archive", nil).Wait(); err != nil {
		t.Errorf("the session did not go on: %v", err)
	}
}

func TestStatusRecentAndNoopPollsUpstream(t *testing.T) {
	r := newRig(t, nil, nil)
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\nb SELECT INBOX\r\nc STATUS INBOX (MESSAGES RECENT)\r\n")
	lines := rc.until("c ")
	if !strings.HasPrefix(lines[len(lines)-1], "c OK") || !strings.Contains(strings.Join(lines, "\n"), "RECENT 0") {
		t.Errorf("STATUS (MESSAGES RECENT): %q", lines)
	}
	// Right after SELECT, a NOOP still asks the upstream: new mail shows.
	rc.send("d SELECT INBOX\r\n")
	rc.until("d OK")
	r.up.add("INBOX", plainMsg)
	rc.send("e NOOP\r\n")
	lines = rc.until("e ")
	if !slicesContains(lines, "* 1 EXISTS") {
		t.Errorf("NOOP after SELECT: %q, want * 1 EXISTS", lines)
	}
}

func slicesContains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

// TestSessionTimeLimit: past limits.session_time a session waiting for a command, or in IDLE, is sent BYE.
func TestSessionTimeLimit(t *testing.T) {
	r := newRig(t, nil, func(o *Options) { o.Limits.SessionTime = 300 * time.Millisecond })
	r.up.add("INBOX", plainMsg)
	waiting, idling := r.raw(), r.raw()
	waiting.send("a LOGIN alice secret\r\n")
	waiting.until("a OK")
	idling.send("a LOGIN alice secret\r\nb SELECT INBOX\r\nc IDLE\r\n")
	idling.until("+")
	for name, rc := range map[string]*rawClient{"waiting": waiting, "in IDLE": idling} {
		l := rc.until("* BYE")
		if last := l[len(l)-1]; !strings.Contains(last, "Session time limit reached") {
			t.Errorf("%s: %q, want a BYE for the session time", name, l)
		}
		if l := rc.line(); !strings.HasPrefix(l, "ERR ") {
			t.Errorf("%s: %q after BYE, want the connection closed", name, l)
		}
	}
}

// TestCommandRatePaces: commands past limits.command_rate (after a burst of ten times as many) are delayed, not
// refused: 120 pipelined commands at 10 a second, 100 of them at once, take at least the two seconds the other 20
// must wait, and every one is answered OK.
func TestCommandRatePaces(t *testing.T) {
	r := newRig(t, nil, func(o *Options) { o.Limits.CommandRate = 10 })
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\n")
	rc.until("a OK")
	// NOOP (paced in Poll) and STATUS (a relayed command, paced in begin) in turn: both ways count.
	var b strings.Builder
	for i := range 120 {
		if i%2 == 0 {
			fmt.Fprintf(&b, "n%d NOOP\r\n", i)
		} else {
			fmt.Fprintf(&b, "n%d STATUS INBOX (MESSAGES)\r\n", i)
		}
	}
	before := metricstest.Serve(t, metrics.Handler())
	start := time.Now()
	rc.c.SetDeadline(time.Now().Add(30 * time.Second))
	rc.send(b.String())
	for i := range 120 {
		if l := rc.until(fmt.Sprintf("n%d ", i)); !strings.HasPrefix(l[len(l)-1], fmt.Sprintf("n%d OK", i)) {
			t.Fatalf("command %d: %q", i, l)
		}
	}
	// The LOGIN took a token too: 121 commands, 100 at once, 21 at 10 a second.
	if d := time.Since(start); d < 1900*time.Millisecond {
		t.Errorf("120 commands answered in %v: not paced at 10 a second", d)
	}
	metricstest.Rise(t, before, metricstest.Serve(t, metrics.Handler()), "postern_commands_throttled_total",
		metricstest.L("listener", "imap-test", "protocol", "imap"), 20)
}

// TestUpstreamStartTLS: the proxy's own STARTTLS to the upstream goes on only from an OK greeting and an OK reply
// with nothing after it: what an upstream (or a man in the middle) sends in plain text after the reply must not be
// read as if it came under TLS, and a PREAUTH greeting or a refused STARTTLS ends the session too. The same fake
// upstream without those faults is served, so each refusal is the check's.
func TestUpstreamStartTLS(t *testing.T) {
	cert, key, _ := testCert(t)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, greeting, reply string
		served                bool
	}{
		{"clean", "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready", "P0 OK Begin TLS", true},
		{"injected after the reply", "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready", "P0 OK Begin TLS\r\n* PREAUTH injected", false},
		{"PREAUTH greeting", "* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] logged in", "P0 OK Begin TLS", false},
		{"STARTTLS refused", "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready", "P0 NO not now", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := scriptedUpstream(t, func(c net.Conn) {
				c.Write([]byte(tc.greeting + "\r\n"))
				br := bufio.NewReader(c)
				br.ReadString('\n')
				c.Write([]byte(tc.reply + "\r\n"))
				// A real handshake follows: only the proxy's checks refuse the session.
				tlsConn := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{pair}})
				if tlsConn.Handshake() != nil {
					return
				}
				// Under TLS: every command is OK, CAPABILITY answered.
				tr := bufio.NewReader(tlsConn)
				for {
					l, err := tr.ReadString('\n')
					if err != nil {
						return
					}
					tag, _, _ := strings.Cut(l, " ")
					if strings.Contains(strings.ToUpper(l), "CAPABILITY") {
						tlsConn.Write([]byte("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"))
					}
					tlsConn.Write([]byte(tag + " OK done\r\n"))
				}
			})
			r := newRig(t, &memUpstream{addr: addr}, func(o *Options) {
				o.UpstreamTLS = upstream.TLSOptions{Mode: upstream.TLSStartTLS, CAFile: cert, ServerName: "localhost"}
			})
			if tc.served {
				rc := r.raw() // fails unless greeted with OK
				rc.send("a NOOP\r\n")
				if l := rc.until("a "); !strings.HasPrefix(l[len(l)-1], "a OK") {
					t.Errorf("NOOP through the clean upstream: %q", l)
				}
				return
			}
			expectRefused(t, r.addr, tc.name+":")
		})
	}
}

// recordingConn keeps the command lines the proxy sends upstream.
type recordingConn struct {
	net.Conn
	mu    *sync.Mutex
	lines *[]string
}

func (c recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for _, l := range strings.SplitAfter(string(p), "\r\n") {
		if l != "" {
			*c.lines = append(*c.lines, strings.TrimRight(l, "\r\n"))
		}
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// recordingRig is newRig whose upstream connections record the command lines sent; sent returns those sent
// since it was last called.
func recordingRig(t *testing.T, up *memUpstream) (r *rig, sent func() []string) {
	var mu sync.Mutex
	var lines []string
	r = newRig(t, up, func(o *Options) {
		o.Dial = func(ctx context.Context) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", up.addr)
			if err != nil {
				return nil, err
			}
			return recordingConn{c, &mu, &lines}, nil
		}
	})
	return r, func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := lines
		lines = nil
		return out
	}
}

// TestNewMailListsOnlyNewUIDs: new mail is listed by the UIDs above the last one known, not by listing the whole
// mailbox again (at each new message, for a mailbox of any size); an expunge still compares the whole list.
func TestNewMailListsOnlyNewUIDs(t *testing.T) {
	up := newMemUpstream(t, nil)
	up.add("INBOX", plainMsg)
	up.add("INBOX", plainMsg)
	r, sent := recordingRig(t, up)
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\nb SELECT INBOX\r\n")
	rc.until("b OK")
	searches := func() []string {
		var out []string
		for _, l := range sent() {
			if strings.Contains(l, " SEARCH ") {
				out = append(out, l[strings.Index(l, " ")+1:])
			}
		}
		return out
	}
	searches()
	up.add("INBOX", plainMsg)
	rc.send("c NOOP\r\n")
	if l := rc.until("c "); !slices.Contains(l, "* 3 EXISTS") {
		t.Fatalf("NOOP after new mail: %q", l)
	}
	if s := searches(); len(s) != 1 || !strings.Contains(s[0], "UID 3:*") {
		t.Errorf("new mail listed upstream with %q, want one UID SEARCH of UID 3:*", s)
	}
	d := up.direct()
	if _, err := d.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := d.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true,
		Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	rc.send("e NOOP\r\n")
	if l := rc.until("e "); !slices.Contains(l, "* 1 EXPUNGE") {
		t.Fatalf("NOOP after an expunge: %q", l)
	}
	if s := searches(); len(s) != 1 || strings.Contains(s[0], ":*") {
		t.Errorf("after an expunge the proxy searched %q, want the whole list", s)
	}
}

// TestCachedReadAsksNothingUpstream: reading a message whose filtered bytes are cached, without flags or \Seen,
// sends no command upstream; one that sets \Seen does (the STORE, and the flags to report).
func TestCachedReadAsksNothingUpstream(t *testing.T) {
	up := newMemUpstream(t, nil)
	up.add("INBOX", plainMsg)
	r, sent := recordingRig(t, up)
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\nb SELECT INBOX\r\nc FETCH 1 (RFC822.SIZE BODY.PEEK[])\r\n")
	rc.until("c OK")
	sent()
	rc.send("d FETCH 1 (BODYSTRUCTURE BODY.PEEK[]<0.100>)\r\n")
	if l := rc.until("d "); !strings.HasPrefix(l[len(l)-1], "d OK") {
		t.Fatalf("cached FETCH: %q", l)
	}
	if s := sent(); len(s) != 0 {
		t.Errorf("a cached read sent %q upstream, want nothing", s)
	}
	rc.send("e FETCH 1 (BODY[])\r\n")
	if l := rc.until("e "); !strings.HasPrefix(l[len(l)-1], "e OK") || !slices.ContainsFunc(l, func(s string) bool { return strings.Contains(s, `\Seen`) }) {
		t.Fatalf("FETCH BODY[]: %q", l)
	}
	if s := sent(); !slices.ContainsFunc(s, func(l string) bool { return strings.Contains(l, "STORE") }) {
		t.Errorf("a read setting \\Seen sent %q upstream, want a STORE", s)
	}
	if r.filter.count() != 1 {
		t.Errorf("the policy ran %d times, want once", r.filter.count())
	}
}

// TestAppendNonSyncLiteralOverTheLimit: a non-synchronising literal over the limit is refused and the connection
// closed; its bytes (here a command) are never run.
func TestAppendNonSyncLiteralOverTheLimit(t *testing.T) {
	r := newRig(t, nil, func(o *Options) { o.Limits.MessageSize = 1024 })
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\n")
	rc.until("a OK")
	body := strings.Repeat("x", 1500) + "\r\nz NOOP\r\n"
	rc.send(fmt.Sprintf("b APPEND INBOX {%d+}\r\n%s\r\nc NOOP\r\n", len(body), body))
	lines := rc.until("ERR ")
	if !strings.HasPrefix(lines[0], "b NO [TOOBIG]") || slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "z ") }) {
		t.Errorf("APPEND of a literal over the limit: %q, want NO [TOOBIG] and the connection closed", lines)
	}
}

// TestFetchFiltersAtOnceServesInOrder: the messages of one FETCH are filtered at once (as many as filterWorkers),
// and served in order whichever finishes first.
func TestFetchFiltersAtOnceServesInOrder(t *testing.T) {
	r := newRig(t, nil, nil)
	for range 8 {
		r.up.add("INBOX", plainMsg)
	}
	var mu sync.Mutex
	running, most := 0, 0
	other := make(chan struct{})
	var once sync.Once
	r.filter.set(func(in *pluginhost.Input) *policy.Decision {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		defer func() {
			mu.Lock()
			running--
			mu.Unlock()
		}()
		if in.Env.UID == 1 {
			// The first message is the slowest: it waits for another to be filtered beside it.
			select {
			case <-other:
			case <-time.After(5 * time.Second):
			}
		} else {
			once.Do(func() { close(other) })
		}
		return &policy.Decision{Action: pluginhost.Accept}
	})
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\nb EXAMINE INBOX\r\nc FETCH 1:8 (RFC822.SIZE)\r\n")
	rc.until("b OK")
	var seqs []string
	for _, l := range rc.until("c ") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == "*" && f[2] == "FETCH" {
			seqs = append(seqs, f[1])
		}
	}
	if want := []string{"1", "2", "3", "4", "5", "6", "7", "8"}; !slices.Equal(seqs, want) {
		t.Errorf("FETCH responses for %v, want %v in order", seqs, want)
	}
	// One worker per CPU, at most four: with two CPUs or more, at least two at once.
	if cpus := runtime.GOMAXPROCS(0); (cpus >= 2 && most < 2) || most > min(cpus, 4) {
		t.Errorf("%d messages filtered at once on %d CPUs, want between 2 and %d", most, cpus, min(cpus, 4))
	}
}

// sizeLiar makes the upstream's RFC822.SIZE say 10 bytes, whatever the message.
type sizeLiar struct{ net.Conn }

var rfc822Size = regexp.MustCompile(`RFC822\.SIZE \d+`)

func (c sizeLiar) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	out := rfc822Size.ReplaceAll(p[:n], []byte("RFC822.SIZE 10"))
	return copy(p, out), err
}

// TestMessageLargerThanItsSizeSaid: a message the upstream says is small but that is over the scan size when it
// arrives is not inspected: it is served as the notice that says so, and no plugin runs.
func TestMessageLargerThanItsSizeSaid(t *testing.T) {
	up := newMemUpstream(t, nil)
	up.add("INBOX", plainMsg)
	r := newRig(t, up, func(o *Options) {
		o.Limits.MessageSize = 64
		o.Dial = func(ctx context.Context) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", up.addr)
			if err != nil {
				return nil, err
			}
			return sizeLiar{c}, nil
		}
	})
	c := r.client(nil)
	r.selectBox(c, "INBOX", true)
	m := fetchOne(t, c, 1, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	b := m.FindBodySection(&imap.FetchItemBodySection{Peek: true})
	if !bytes.Contains(b, []byte("not inspected")) || bytes.Contains(b, []byte("hello")) {
		t.Errorf("a message over the scan size served as:\n%s", b)
	}
	if r.filter.count() != 0 {
		t.Error("the policy ran on a message it could not inspect whole")
	}
}

// TestCachedMessageExpungedElsewhere: a message another client expunged, not yet announced, is served as it was,
// the same bytes (RFC 2180 §4.1.1), and the next NOOP announces the expunge. (go-imap's memory server still
// serves such a message to a session it has not told; that the cache answers without asking the upstream at
// all is TestCachedReadAsksNothingUpstream's.)
func TestCachedMessageExpungedElsewhere(t *testing.T) {
	r := newRig(t, nil, nil)
	r.up.add("INBOX", plainMsg)
	r.up.add("INBOX", plainMsg)
	var expunged syncList
	c := r.client(&imapclient.UnilateralDataHandler{Expunge: func(seq uint32) { expunged.add(seq) }})
	r.selectBox(c, "INBOX", false)
	peek := &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}
	first := fetchOne(t, c, 1, peek).FindBodySection(peek.BodySection[0])
	d := r.up.direct()
	d.Select("INBOX", nil).Wait()
	d.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	d.Expunge().Close()
	again := fetchOne(t, c, 1, peek).FindBodySection(peek.BodySection[0])
	if len(first) == 0 || !bytes.Equal(first, again) {
		t.Errorf("the expunged message read again: %q, was %q", again, first)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if got := expunged.get(); !slices.Equal(got, []uint32{1}) {
		t.Errorf("EXPUNGEs after NOOP = %v, want [1]", got)
	}
}

// TestNewMailSearchNamesNoOldUID: `UID SEARCH UID n:*` names the last message even when its UID is below n
// (RFC 3501 §6.4.8: "*" is the largest UID in use), which is what a server answers when the message its EXISTS
// announced is gone by the time the proxy asks. That UID is one the session has: it must not be added again as
// a new message. A scripted upstream answers so; go-imap's memory server cannot.
func TestNewMailSearchNamesNoOldUID(t *testing.T) {
	searches := make(chan string, 8)
	addr := scriptedUpstream(t, func(c net.Conn) {
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"))
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			tag, rest, _ := strings.Cut(strings.TrimRight(l, "\r\n"), " ")
			cmd := strings.ToUpper(rest)
			var out string
			switch {
			case strings.HasPrefix(cmd, "CAPABILITY"):
				out = "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
			case strings.HasPrefix(cmd, "SELECT"), strings.HasPrefix(cmd, "EXAMINE"):
				out = "* 2 EXISTS\r\n* FLAGS (\\Seen)\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 4] n\r\n"
			case strings.HasPrefix(cmd, "NOOP"):
				out = "* 3 EXISTS\r\n" // message 3 arrives, and is gone before the proxy asks for it
			case strings.HasPrefix(cmd, "UID SEARCH"):
				searches <- rest
				if strings.Contains(cmd, ":*") {
					out = "* SEARCH 2\r\n" // "3:*" with 3 gone: the largest UID in use, 2
				} else {
					out = "* SEARCH 1 2\r\n"
				}
			case strings.HasPrefix(cmd, "UID FETCH"):
				out = "* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 2 FLAGS ())\r\n"
			}
			c.Write([]byte(out + tag + " OK done\r\n"))
		}
	})
	r := newRig(t, &memUpstream{addr: addr}, nil)
	rc := r.raw()
	rc.send("a LOGIN alice secret\r\nb SELECT INBOX\r\n")
	if l := rc.until("b "); !strings.HasPrefix(l[len(l)-1], "b OK") {
		t.Fatalf("SELECT: %q", l)
	}
	rc.send("c NOOP\r\n")
	l := rc.until("c ")
	if !strings.HasPrefix(l[len(l)-1], "c OK") || slices.ContainsFunc(l, func(s string) bool { return strings.HasSuffix(s, " EXISTS") }) {
		t.Fatalf("NOOP after an arrival whose message is gone: %q, want no EXISTS", l)
	}
	var asked []string
	for len(searches) > 0 {
		asked = append(asked, <-searches)
	}
	if !slices.ContainsFunc(asked, func(s string) bool { return strings.Contains(s, "UID 3:*") }) {
		t.Fatalf("the proxy searched %q, not UID 3:*: the test proves nothing", asked)
	}
	rc.send("d FETCH 1:* (UID)\r\n")
	l = rc.until("d ")
	var fetched []string
	for _, s := range l {
		if strings.HasPrefix(s, "* ") && strings.Contains(s, " FETCH ") {
			fetched = append(fetched, s)
		}
	}
	if len(fetched) != 2 || !strings.HasPrefix(l[len(l)-1], "d OK") {
		t.Fatalf("FETCH 1:* (UID) = %q, want UIDs 1 and 2 once each", l)
	}
}

// TestNewMailIsFilteredOnArrival: a message whose EXISTS reaches the session is filtered then, so that the
// client's FETCH of it is answered from the cache; one larger than the cache can keep is left for the FETCH (it
// would be filtered twice), and prefilter = -1 turns it off.
func TestNewMailIsFilteredOnArrival(t *testing.T) {
	big := plainMsg + strings.Repeat("x", 2000) + "\r\n"
	for _, tc := range []struct {
		name       string
		msg        string
		prefilter  int
		onArrival  int // policy runs when the EXISTS arrives
		afterFetch int // and once the client fetched it
	}{
		{"new mail", plainMsg, 0, 1, 1},
		{"too large to keep", big, 0, 0, 1},
		{"turned off", plainMsg, -1, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil, func(o *Options) {
				o.Prefilter = tc.prefilter
				o.Cache = Cache{MemoryBytes: 1 << 20, EntryBytes: 1000, UserBytes: 1 << 20}
			})
			r.up.add("INBOX", plainMsg)
			rc := r.raw()
			rc.send("a LOGIN alice secret\r\nb SELECT INBOX\r\n")
			rc.until("b OK")
			r.up.add("INBOX", tc.msg)
			rc.send("c NOOP\r\n")
			if l := rc.until("c "); !slices.Contains(l, "* 2 EXISTS") {
				t.Fatalf("NOOP after new mail: %q", l)
			}
			if n := r.filter.count(); n != tc.onArrival {
				t.Errorf("policy ran %d times when the EXISTS arrived, want %d", n, tc.onArrival)
			}
			rc.send("d FETCH 2 (BODY.PEEK[])\r\n")
			if l := rc.until("d "); !strings.HasPrefix(l[len(l)-1], "d OK") {
				t.Fatalf("FETCH: %q", l)
			}
			if n := r.filter.count(); n != tc.afterFetch {
				t.Errorf("policy ran %d times once the message was fetched, want %d", n, tc.afterFetch)
			}
		})
	}
}
