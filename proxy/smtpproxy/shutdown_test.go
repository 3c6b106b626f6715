package smtpproxy_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// stopReading connects, says EHLO and then pipelines NOOPs without ever reading a reply, until the relay's
// replies have filled the socket buffers both ways and the relay stopped reading too: the relay's session is
// then blocked writing to a client that does not read.
func stopReading(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("EHLO client.test\r\n")); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("NOOP\r\n"), 10000)
	for sent := 0; ; sent += len(chunk) {
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(chunk); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return c
			}
			t.Fatal(err)
		}
		if sent > 1<<30 {
			t.Fatal("the relay kept reading without its replies being read")
		}
	}
}

// TestShutdownWithClientThatDoesNotRead: the closing 421 of an idle session cannot be written to a client whose
// receive window is full, and the shutdown deadline must hold all the same (the command timeout, which bounds
// that write, is 5 minutes here), and other sessions still get their 421.
func TestShutdownWithClientThatDoesNotRead(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
		Limits: smtpproxy.Limits{CommandTimeout: 5 * time.Minute, IdleTimeout: 5 * time.Minute}})
	stopReading(t, addr)
	other := hello(t, addr)

	done := make(chan error, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	if r := other.Reply(); r.Code != 421 {
		t.Fatalf("idle session: %v, want 421", r)
	}
	// A generous bound: far below the 5-minute command timeout that bounded it before, far above any delay a
	// loaded machine adds to a 100ms deadline.
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want deadline exceeded (the session that does not read was cut)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Shutdown with a 100ms deadline still running after %v", time.Since(start))
	}
}

// TestSecondShutdownWithClientThatDoesNotRead: while a shutdown with a long deadline waits for a client that does
// not read, Close (what a second signal does) cuts every session at once.
func TestSecondShutdownWithClientThatDoesNotRead(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr,
		Limits: smtpproxy.Limits{CommandTimeout: 5 * time.Minute, IdleTimeout: 5 * time.Minute}})
	stopReading(t, addr)
	other := hello(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	if r := other.Reply(); r.Code != 421 {
		t.Fatalf("idle session: %v, want 421", r)
	}
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	for _, ch := range []<-chan struct{}{closed, chanOf(done)} {
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatal("Close (the second signal) blocked by a client that does not read")
		}
	}
}

func chanOf(errs <-chan error) <-chan struct{} {
	c := make(chan struct{})
	go func() { <-errs; close(c) }()
	return c
}

// TestCutSessionRecordsNoReply: a message whose session is cut at the shutdown deadline while the upstream is
// still answering is recorded as cut, not with a reply the client never got.
func TestCutSessionRecordsNoReply(t *testing.T) {
	up := (&smtptest.RawUpstream{Delay: map[string]time.Duration{"DOT": 2 * time.Second}}).Start(t)
	rec := &recorder{}
	f := &testFilter{decide: decideAt(pluginhost.HookMessage, policy.Decision{Action: pluginhost.Accept, Tags: map[string]string{"t": "1"}})}
	addr, srv := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, Audit: rec})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("DATA", 354)
	c.Write(simpleMessage + ".\r\n")
	waitFor(t, func() bool { return slices.Contains(up.Commands(), "DATA") }) // the upstream is receiving it
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v", err)
	}
	if r, err := c.ReadReply(); err == nil {
		t.Fatalf("client got %v after the cut", r)
	}
	waitFor(t, func() bool { return len(rec.records()) == 1 && rec.records()[0].Reply != nil })
	r := rec.records()[0].Reply
	if r.Status != "cut" || r.Code != 0 || !strings.Contains(r.Text, "421") {
		t.Fatalf("recorded reply %+v, want status cut", r)
	}
}
