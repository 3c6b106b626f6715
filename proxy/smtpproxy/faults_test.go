package smtpproxy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// faultPolicy writes a configuration whose policies run the host's faulting test guests (pluginhost/testdata):
// "trap" executes unreachable (on_error reject) for the subject "trap", "loop" never returns (on_error tempfail,
// the given timeout) for the subject "loop", and anything else passes.
func faultPolicy(t *testing.T, loopTimeout string) *policy.Manager {
	t.Helper()
	testdata := filepath.Join(testplugins.Root(), "proxy", "pluginhost", "testdata")
	cfg := fmt.Sprintf(`plugin "trap" {
  source   = %q
  on_error = "reject"
}
plugin "loop" {
  source   = %q
  timeout  = %q
  on_error = "tempfail"
}
policy "trap" {
  when    = msg.subject == "trap"
  plugins = ["trap"]
}
policy "loop" {
  when    = msg.subject == "loop"
  plugins = ["loop"]
}
`, filepath.Join(testdata, "trap.wasm"), filepath.Join(testdata, "loop.wasm"), loopTimeout)
	path := filepath.Join(t.TempDir(), "postern.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := policy.NewManager(context.Background(), path, policy.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func subjectMessage(subject string) string {
	return "From: a@example.org\r\nTo: b@example.net\r\nSubject: " + subject + "\r\n\r\nbody\r\n"
}

// TestFaultingPluginsThroughRelay: a plugin that traps and one that runs past its timeout give their on_error
// verdicts to the client, the audit log says why, and the session carries on.
func TestFaultingPluginsThroughRelay(t *testing.T) {
	m := faultPolicy(t, "200ms")
	up := (&smtptest.Upstream{}).Start(t)
	rec := &recorder{}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: smtpproxy.Policies(m), Audit: rec})
	c := hello(t, addr)
	if r := c.Send("a@example.org", []string{"b@example.net"}, subjectMessage("trap")); r.Code != 550 {
		t.Fatalf("trapping plugin (on_error reject): %v, want 550", r)
	}
	if r := c.Send("a@example.org", []string{"b@example.net"}, subjectMessage("loop")); r.Code != 451 {
		t.Fatalf("plugin past its timeout (on_error tempfail): %v, want 451", r)
	}
	if r := c.Send("a@example.org", []string{"b@example.net"}, subjectMessage("fine")); r.Code != 250 {
		t.Fatalf("the session did not carry on: %v", r)
	}
	c.Expect("QUIT", 221)
	if msgs := up.Messages(); len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), "Subject: fine") {
		t.Fatalf("upstream got %d messages", len(msgs))
	}
	recs := rec.records()
	if len(recs) != 3 {
		t.Fatalf("%d audit records, want 3", len(recs))
	}
	for i, want := range []struct{ action, err string }{{"reject", "trap"}, {"tempfail", "timeout"}} {
		r := recs[i]
		var pluginErr string
		for _, p := range r.Policies {
			for _, pl := range p.Plugins {
				pluginErr += pl.Error
			}
		}
		if r.Action != want.action || r.Reply == nil || r.Reply.Code != []int{550, 451}[i] ||
			!strings.Contains(strings.ToLower(pluginErr), want.err) {
			t.Errorf("record %d: %+v, want %s with a plugin error about %q", i, r, want.action, want.err)
		}
	}
}

// TestCutSessionStopsPluginCall: a plugin call runs under its session's context, so cutting the session (Close,
// the second signal) stops a chain that would otherwise run to its one-minute timeout.
func TestCutSessionStopsPluginCall(t *testing.T) {
	m := faultPolicy(t, "1m")
	up := (&smtptest.Upstream{}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: smtpproxy.Policies(m)})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("DATA", 354)
	c.Write(subjectMessage("loop") + ".\r\n")
	time.Sleep(200 * time.Millisecond) // the message is with the plugin (or about to be: the cut stops it either way)
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for a plugin call of a cut session")
	}
	if n := len(up.Messages()); n != 0 {
		t.Fatalf("upstream got %d messages", n)
	}
}
