package smtpproxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// tlog writes log records to the test's log, so a failing test shows what the relay did.
type tlog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tlog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &tlog{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startRelay runs a relay with o on a free loopback port until the test ends.
func startRelay(t testing.TB, o smtpproxy.Options) (string, *smtpproxy.Server) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	if o.Hostname == "" {
		o.Hostname = "relay.test"
	}
	s, err := smtpproxy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return ln.Addr().String(), s
}

// hello connects to the relay and says EHLO.
func hello(t testing.TB, addr string) *smtptest.Client {
	t.Helper()
	c := smtptest.Dial(t, addr)
	c.Expect("", 220)
	c.Expect("EHLO client.test", 250)
	return c
}

// seen is what a testFilter saw at one hook.
type seen struct {
	hook pluginhost.Hook
	env  pluginhost.Envelope
	rcpt string
	msg  *message.Message
	raw  []byte
}

// testFilter decides with a function, and records every call. It stands in for the policy engine in tests of
// the relay's own behaviour.
type testFilter struct {
	decide func(hook pluginhost.Hook, in *pluginhost.Input) *policy.Decision
	hooks  pluginhost.HookSet // reported to the relay when non-zero

	mu       sync.Mutex
	calls    []seen
	acquired int
	released int
}

func (f *testFilter) Acquire() (smtpproxy.Filter, func()) {
	f.mu.Lock()
	f.acquired++
	f.mu.Unlock()
	if f.hooks != 0 {
		return hookFilter{f}, f.release
	}
	return f, f.release
}

func (f *testFilter) release() {
	f.mu.Lock()
	f.released++
	f.mu.Unlock()
}

func (f *testFilter) Evaluate(_ context.Context, hook pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
	s := seen{hook: hook, env: in.Env, rcpt: in.RcptCurrent, msg: in.Msg}
	s.env.Rcpts = append([]string(nil), in.Env.Rcpts...)
	if in.Msg != nil {
		s.raw, _ = io.ReadAll(in.Msg.Raw())
	}
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
	var d *policy.Decision
	if f.decide != nil {
		d = f.decide(hook, in)
	}
	if d == nil {
		d = &policy.Decision{Action: pluginhost.Accept}
	}
	d.Hook = hook
	if d.Changes == nil {
		d.Changes = &message.Changes{}
	}
	return d
}

func (f *testFilter) seen() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.calls...)
}

func (f *testFilter) at(h pluginhost.Hook) []seen {
	var out []seen
	for _, s := range f.seen() {
		if s.hook == h {
			out = append(out, s)
		}
	}
	return out
}

// hookFilter reports the testFilter's hooks, as policy.Snapshot does.
type hookFilter struct{ *testFilter }

func (h hookFilter) Hooks() pluginhost.HookSet { return h.testFilter.hooks }

// decideAt returns a decide function giving d at hook h and accept elsewhere.
func decideAt(h pluginhost.Hook, d policy.Decision) func(pluginhost.Hook, *pluginhost.Input) *policy.Decision {
	return func(hook pluginhost.Hook, _ *pluginhost.Input) *policy.Decision {
		if hook != h {
			return nil
		}
		c := d
		return &c
	}
}

const simpleMessage = "From: a@example.org\r\nTo: b@example.net\r\nSubject: hello\r\nMessage-ID: <1@example.org>\r\n\r\nBody line one.\r\nBody line two.\r\n"

// waitFor polls cond until it holds, failing the test after 5 seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// expectUpstreamRefusal checks that a session is refused for want of a usable upstream: the greeting comes at
// once (the upstream is being connected meanwhile), EHLO gets 421 4.4.0 and the connection closes.
func expectUpstreamRefusal(t testing.TB, addr string) {
	t.Helper()
	c := smtptest.Dial(t, addr)
	c.Expect("", 220)
	if r := c.Cmd("EHLO client.test"); r.Code != 421 || !strings.HasPrefix(r.Text(), "4.4.0 ") {
		t.Fatalf("EHLO: %v, want 421 4.4.0", r)
	}
	if r, err := c.ReadReply(); err == nil {
		t.Fatalf("connection open after 421, got %v", r)
	}
}
