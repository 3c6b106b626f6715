package pop3proxy

import (
	"context"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// gate holds the filter of the messages it is given until released.
type gate struct {
	mu      sync.Mutex
	held    map[string]chan struct{} // Subject → release
	entered chan string              // the Subject of each message held, as its filtering starts
}

func newGate(subjects ...string) *gate {
	g := &gate{held: map[string]chan struct{}{}, entered: make(chan string, 10)}
	for _, s := range subjects {
		g.held[s] = make(chan struct{})
	}
	return g
}

func (g *gate) release(subject string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.held[subject]; ok {
		close(c)
		delete(g.held, subject)
	}
}

// decide holds the message while its subject is gated, then gives d (accept when nil).
func (g *gate) decide(d *policy.Decision) func(in *pluginhost.Input) *policy.Decision {
	return func(in *pluginhost.Input) *policy.Decision {
		var subject string
		if v := in.Msg.HeaderValues(0, "Subject", false); len(v) > 0 {
			subject = strings.TrimSpace(v[0])
		}
		g.mu.Lock()
		c := g.held[subject]
		g.mu.Unlock()
		if c != nil {
			g.entered <- subject
			<-c
		}
		if d == nil {
			return &policy.Decision{Action: pluginhost.Accept}
		}
		cp := *d
		return &cp
	}
}

// logTrigger calls fn (once) when a log record with message msg is written.
type logTrigger struct {
	slog.Handler
	msg  string
	once *sync.Once
	fn   func()
}

func (h logTrigger) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(h.fn)
	}
	return h.Handler.Handle(ctx, r)
}
func (h logTrigger) WithAttrs(a []slog.Attr) slog.Handler {
	return logTrigger{h.Handler.WithAttrs(a), h.msg, h.once, h.fn}
}
func (h logTrigger) WithGroup(n string) slog.Handler {
	return logTrigger{h.Handler.WithGroup(n), h.msg, h.once, h.fn}
}

// TestEarlyOKWhileFiltering: a RETR whose message takes longer than early_ok to filter gets "+OK" before the
// filter has decided (the filter is held until then, so without the early +OK the client would wait for ever),
// then the filtered message, byte for byte; in upstream size mode, where RETR is the first to filter.
func TestEarlyOKWhileFiltering(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	r := newRig(t, up, func(o *Options) {
		o.SizeMode = SizeUpstream
		o.Limits.EarlyOK = 50 * time.Millisecond
	})
	g := newGate("hello")
	r.filter.set(g.decide(nil), "v1")
	c := r.dial()
	c.login()
	c.n.SetDeadline(time.Now().Add(10 * time.Second))
	st := c.cmd("RETR 1")
	if !st.OK || st.Text != "message follows" {
		t.Fatalf("RETR: %s", st.Line())
	}
	select {
	case <-g.entered:
	default:
		t.Fatal("+OK came before the filter started")
	}
	g.release("hello")
	if got := c.body(); got != msg1 {
		t.Fatalf("message %q, want %q", got, msg1)
	}
	c.ok("QUIT")
	recs := r.audit.all()
	if len(recs) != 1 || recs[0].Reply == nil || recs[0].Reply.Status != "+OK" || recs[0].SHA256Served == "" {
		t.Fatalf("audit records: %+v", recs)
	}
}

// TestEarlyOKThenTempfail: when the outcome after an early "+OK" is a tempfail, the connection is closed instead
// of the message (no "." that would pass for an empty message), nothing is deleted upstream, the audit record
// says the client got no reply, and the next session gets the message.
func TestEarlyOKThenTempfail(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	r := newRig(t, up, func(o *Options) {
		o.SizeMode = SizeUpstream
		o.Limits.EarlyOK = 50 * time.Millisecond
	})
	g := newGate("hello")
	r.filter.set(g.decide(&policy.Decision{Action: pluginhost.Tempfail, Text: "scanner busy"}), "v1")
	c := r.dial()
	c.login()
	c.ok("DELE 1") // marked, but deleted only at QUIT
	c.ok("RSET")
	c.n.SetDeadline(time.Now().Add(10 * time.Second))
	if st := c.cmd("RETR 1"); !st.OK {
		t.Fatalf("RETR: %s", st.Line())
	}
	g.release("hello")
	if !c.closed() {
		t.Fatal("connection open after a tempfail that followed +OK")
	}
	recs := r.audit.all()
	if len(recs) != 1 || recs[0].Reply == nil || recs[0].Reply.Status != "cut" ||
		!strings.Contains(recs[0].Reply.Text, "scanner busy") {
		t.Fatalf("audit records: %+v", *recs[0].Reply)
	}
	if d := up.deletedOf("alice"); len(d) != 0 {
		t.Fatalf("deleted upstream: %v", d)
	}
	r.filter.set(nil, "v1")
	c = r.dial()
	c.login()
	if got := c.retr("1"); got != msg1 {
		t.Fatalf("second session got %q", got)
	}
}

// TestListStreamsWhileFiltering: in exact size mode the first LIST filters every message; its lines go out as
// each is filtered, so the client sees the first while the second is still being filtered.
func TestListStreamsWhileFiltering(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1, msg2)
	r := newRig(t, up, nil)
	g := newGate("invoice")
	r.filter.set(g.decide(nil), "v1")
	c := r.dial()
	c.login()
	c.n.SetDeadline(time.Now().Add(10 * time.Second))
	if st := c.cmd("LIST"); !st.OK || st.Text != "2 messages" {
		t.Fatalf("LIST: %s", st.Line())
	}
	var first []byte
	body := c.c.Body()
	for !strings.HasSuffix(string(first), "\n") {
		b := make([]byte, 1)
		if _, err := body.Read(b); err != nil {
			t.Fatal(err)
		}
		first = append(first, b...)
	}
	if line := string(first); line != "1 "+itoa(len(msg1))+"\r\n" {
		t.Fatalf("first line %q before the second message was filtered", line)
	}
	if s := <-g.entered; s != "invoice" {
		t.Fatalf("held %q", s)
	}
	g.release("invoice")
	rest := c.lines()
	if len(rest) != 1 || rest[0] != "2 "+itoa(len(msg2)) {
		t.Fatalf("rest of LIST: %q", rest)
	}
}

// TestEarlyOKWithPoplib: python's poplib, with a socket timeout, retrieves a message whose filter is held until
// the proxy has sent its early "+OK": it gets the message, which without the early +OK it would never get.
func TestEarlyOKWithPoplib(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	g := newGate("hello")
	var once sync.Once
	r := newRig(t, up, func(o *Options) {
		o.SizeMode = SizeUpstream
		o.Limits.EarlyOK = 50 * time.Millisecond
		o.Logger = slog.New(logTrigger{o.Logger.Handler(), "filtering takes long; +OK sent ahead of the message",
			&once, func() { g.release("hello") }})
	})
	r.filter.set(g.decide(nil), "v1")
	host, port, _ := strings.Cut(r.addr, ":")
	out, err := exec.Command("python3", "-c", `
import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=20)
p.user('alice'); p.pass_('secret')
resp, lines, octets = p.retr(1)
print(resp.decode()); sys.stdout.write(b'\r\n'.join(lines).decode() + '\r\n')
p.quit()
`, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, out)
	}
	got := string(out)
	if !strings.HasPrefix(got, "+OK message follows\n") || strings.TrimPrefix(got, "+OK message follows\n") != msg1 {
		t.Fatalf("poplib got %q", got)
	}
}
