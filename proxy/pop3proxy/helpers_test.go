package pop3proxy

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/pop3"
)

// fakeFilter decides with a function and counts its calls.
type fakeFilter struct {
	mu      sync.Mutex
	decide  func(in *pluginhost.Input) *policy.Decision
	calls   int
	inputs  []pluginhost.Envelope
	version string
	slow    bool // Evaluate waits for its context to end, then tempfails as a cancelled plugin would
}

func (f *fakeFilter) Evaluate(ctx context.Context, h pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
	f.mu.Lock()
	slow := f.slow
	f.mu.Unlock()
	if slow {
		<-ctx.Done()
		return &policy.Decision{Hook: h, Action: pluginhost.Tempfail, Changes: &message.Changes{}}
	}
	f.mu.Lock()
	f.calls++
	f.inputs = append(f.inputs, in.Env)
	decide := f.decide
	f.mu.Unlock()
	if decide == nil {
		return &policy.Decision{Hook: h, Action: pluginhost.Accept, Changes: &message.Changes{}}
	}
	d := decide(in)
	d.Hook = h
	if d.Changes == nil {
		d.Changes = &message.Changes{}
	}
	return d
}
func (f *fakeFilter) Hooks() pluginhost.HookSet { return ^pluginhost.HookSet(0) }
func (f *fakeFilter) Version() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version
}

func (f *fakeFilter) set(decide func(in *pluginhost.Input) *policy.Decision, version string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decide, f.version = decide, version
}
func (f *fakeFilter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

type fakeSource struct{ f mailflow.Filter }

func (s fakeSource) Acquire() (mailflow.Filter, func()) { return s.f, func() {} }

type records struct {
	mu   sync.Mutex
	recs []*audit.Record
}

// Append numbers the records as the audit log does, so that quarantine entries are linked to them.
func (r *records) Append(rec *audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	rec.Seq, rec.Hash = uint64(len(r.recs)), strings.Repeat("0", 63)+string(rune('0'+len(r.recs)%10))
	return nil
}

func (r *records) all() []*audit.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*audit.Record(nil), r.recs...)
}

type rig struct {
	t      *testing.T
	up     *testUpstream
	srv    *Server
	addr   string
	filter *fakeFilter
	audit  *records
	qdir   string
}

// newRig starts a proxy in front of a test upstream; edit adjusts the options first.
func newRig(t *testing.T, up *testUpstream, edit func(*Options)) *rig {
	t.Helper()
	up.start()
	r := &rig{t: t, up: up, filter: &fakeFilter{version: "v1"}, audit: &records{}, qdir: t.TempDir()}
	o := Options{Name: "pop3-test", Hostname: "proxy.test", Upstream: up.addr(), AllowInsecureAuth: true,
		Filters: fakeSource{r.filter}, Audit: r.audit, QuarantineDir: r.qdir, SpoolDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if edit != nil {
		edit(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	r.srv, r.addr = srv, ln.Addr().String()
	return r
}

// client is a test POP3 client on the proxy.
type client struct {
	t *testing.T
	c *pop3.Client
	n net.Conn
}

func (r *rig) dial() *client {
	r.t.Helper()
	n, err := net.Dial("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	n.SetDeadline(time.Now().Add(30 * time.Second))
	r.t.Cleanup(func() { n.Close() })
	c := &client{t: r.t, c: pop3.NewClient(n, 1<<20), n: n}
	if g := c.status(); !g.OK {
		r.t.Fatalf("greeting %q", g.Line())
	}
	return c
}

func (c *client) status() pop3.Response {
	c.t.Helper()
	resp, err := c.c.ReadResponse()
	if err != nil {
		c.t.Fatalf("reading a response: %v", err)
	}
	return resp
}

func (c *client) cmd(line string) pop3.Response {
	c.t.Helper()
	resp, err := c.c.Cmd(line)
	if err != nil {
		c.t.Fatalf("%s: %v", line, err)
	}
	return resp
}

func (c *client) ok(line string) pop3.Response {
	c.t.Helper()
	resp := c.cmd(line)
	if !resp.OK {
		c.t.Fatalf("%s: %s", line, resp.Line())
	}
	return resp
}

func (c *client) lines() []string {
	c.t.Helper()
	l, err := c.c.Lines(1 << 20)
	if err != nil {
		c.t.Fatal(err)
	}
	return l
}

func (c *client) body() string {
	c.t.Helper()
	b, err := io.ReadAll(c.c.Body())
	if err != nil {
		c.t.Fatal(err)
	}
	return string(b)
}

func (c *client) login() {
	c.t.Helper()
	c.ok("USER alice")
	c.ok("PASS secret")
}

func (c *client) retr(n string) string {
	c.t.Helper()
	c.ok("RETR " + n)
	return c.body()
}

// closed reports whether the proxy closed the connection.
func (c *client) closed() bool {
	c.n.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.n.Read(make([]byte, 1))
	return err != nil
}

const msg1 = "From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nline 1\r\n.dotted line\r\nline 3\r\n"
const msg2 = "From: eve@evil.test\r\nSubject: invoice\r\nMessage-ID: <m2@evil.test>\r\n\r\nopen the attachment\r\n"

func contains(list []string, s string) bool {
	for _, l := range list {
		if strings.HasPrefix(l, s) {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}

func apopDigest(stamp, pw string) string {
	sum := md5.Sum([]byte(stamp + pw))
	return hex.EncodeToString(sum[:])
}
