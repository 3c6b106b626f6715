package imapproxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// fakeFilter decides with a function and counts its calls.
type fakeFilter struct {
	mu      sync.Mutex
	decide  func(in *pluginhost.Input) *policy.Decision
	calls   int
	inputs  []pluginhost.Envelope
	version string
}

func (f *fakeFilter) Evaluate(ctx context.Context, h pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
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
func (f *fakeFilter) set(decide func(in *pluginhost.Input) *policy.Decision) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decide = decide
}
func (f *fakeFilter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}
func (f *fakeFilter) last() pluginhost.Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inputs[len(f.inputs)-1]
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
	rec.Seq, rec.Hash = uint64(len(r.recs)), fmt.Sprintf("%064x", len(r.recs))
	return nil
}

func (r *records) all() []*audit.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*audit.Record(nil), r.recs...)
}

// literal is an imap.LiteralReader over bytes.
type literal struct {
	*bytes.Reader
	n int64
}

func (l literal) Size() int64 { return l.n }

func newLiteral(b []byte) literal { return literal{bytes.NewReader(b), int64(len(b))} }

// memUpstream is an in-process IMAP server (go-imap's imapmemserver) with user alice.
type memUpstream struct {
	t    testing.TB
	user *imapmemserver.User
	srv  *imapserver.Server
	addr string
	caps imap.CapSet
}

func newMemUpstream(t testing.TB, caps imap.CapSet) *memUpstream {
	t.Helper()
	return newMemUpstreamOn(t, caps, nil, nil)
}

// newMemUpstreamOn is newMemUpstream with the listener wrapped (TLS, PROXY protocol) and each connection seen.
func newMemUpstreamOn(t testing.TB, caps imap.CapSet, wrap func(net.Listener) net.Listener, seen func(*imapserver.Conn)) *memUpstream {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("alice", "secret")
	mem.AddUser(u)
	for _, m := range []string{"INBOX", "Sent", "Archive"} {
		if err := u.Create(m, nil); err != nil {
			t.Fatal(err)
		}
	}
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapNamespace: {},
			imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapSpecialUse: {}, imap.CapESearch: {}}
	}
	up := &memUpstream{t: t, user: u, caps: caps}
	up.srv = imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			if seen != nil {
				seen(c)
			}
			return mem.NewSession(), nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
		Logger:       discardLogger{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up.addr = ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	go up.srv.Serve(ln)
	t.Cleanup(func() { up.srv.Close() })
	return up
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// add appends a message to mailbox upstream and returns its UID.
func (up *memUpstream) add(mailbox, msg string) imap.UID {
	up.t.Helper()
	d, err := up.user.Append(mailbox, newLiteral([]byte(msg)), &imap.AppendOptions{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	if err != nil {
		up.t.Fatal(err)
	}
	return d.UID
}

// direct logs in to the upstream itself (another client of the same mailbox).
func (up *memUpstream) direct() *imapclient.Client {
	up.t.Helper()
	c, err := imapclient.DialInsecure(up.addr, nil)
	if err != nil {
		up.t.Fatal(err)
	}
	up.t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", "secret").Wait(); err != nil {
		up.t.Fatal(err)
	}
	return c
}

type rig struct {
	t      testing.TB
	up     *memUpstream
	srv    *Server
	addr   string
	filter *fakeFilter
	audit  *records
	qdir   string
}

func newRig(t testing.TB, up *memUpstream, edit func(*Options)) *rig {
	t.Helper()
	if up == nil {
		up = newMemUpstream(t, nil)
	}
	r := &rig{t: t, up: up, filter: &fakeFilter{version: "v1"}, audit: &records{}, qdir: t.TempDir()}
	o := Options{Name: "imap-test", Hostname: "proxy.test", Upstream: up.addr, AllowInsecureAuth: true,
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

// client logs in to the proxy with imapclient.
func (r *rig) client(h *imapclient.UnilateralDataHandler) *imapclient.Client {
	r.t.Helper()
	c, err := imapclient.DialInsecure(r.addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", "secret").Wait(); err != nil {
		r.t.Fatal(err)
	}
	return c
}

func (r *rig) selectBox(c *imapclient.Client, mailbox string, readOnly bool) *imap.SelectData {
	r.t.Helper()
	d, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

// fetchOne fetches one message by sequence number and returns its buffer.
func fetchOne(t *testing.T, c *imapclient.Client, seq uint32, o *imap.FetchOptions) *imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(imap.SeqSetNum(seq), o).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("FETCH %d answered %d messages", seq, len(msgs))
	}
	return msgs[0]
}

const plainMsg = "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: hello\r\nDate: Fri, 02 Jan 2026 03:04:05 +0000\r\nMessage-ID: <m1@example.org>\r\n\r\nHello Alice.\r\n"

const multipartMsg = "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--XX--\r\n"

func saslPlain(user, pass string) sasl.Client { return sasl.NewPlainClient("", user, pass) }

// scriptedUpstream listens on loopback and serves each connection with serve, which the tests write as a few
// lines of an upstream that answers what go-imap's memory server cannot (a fault, an answer RFC 3501 allows); it
// returns the address. The connection is closed when serve returns.
func scriptedUpstream(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}
