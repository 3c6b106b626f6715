package listener

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testHandler serves sessions that wait until drained or cut; drain blocks for sessions marked stuck, as a write
// to a client that does not read would, until the session is cut.
type testHandler struct {
	srv     *Server
	mu      sync.Mutex
	refused []error
	started chan *testSession
	stuck   atomic.Bool
}

type testSession struct {
	c       net.Conn
	stuck   bool
	done    chan struct{}
	once    sync.Once
	drained chan struct{}
}

func (s *testSession) end() { s.once.Do(func() { close(s.done); s.c.Close() }) }

func (s *testSession) Drain() {
	close(s.drained)
	if s.stuck {
		<-s.done // blocked until Cut
		return
	}
	s.end()
}

func (s *testSession) Cut() { s.end() }

func (h *testHandler) ServeConn(c net.Conn) {
	s := &testSession{c: c, stuck: h.stuck.Load(), done: make(chan struct{}), drained: make(chan struct{})}
	if !h.srv.Track(s) {
		h.Refuse(c, ErrShuttingDown)
		return
	}
	defer h.srv.Untrack(s)
	h.started <- s
	<-s.done
}

func (h *testHandler) Refuse(c net.Conn, why error) {
	h.mu.Lock()
	h.refused = append(h.refused, why)
	h.mu.Unlock()
	c.Write([]byte("refused\n"))
	c.Close()
}

func start(t *testing.T, sessions int, stuck bool) (*testHandler, string) {
	t.Helper()
	h := &testHandler{started: make(chan *testSession, 16)}
	h.stuck.Store(stuck)
	h.srv = New(Options{Name: "test", Sessions: sessions}, h)
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h.srv.Serve(ln)
	t.Cleanup(func() { h.srv.Close() })
	return h, ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSessionLimit(t *testing.T) {
	h, addr := start(t, 1, false)
	dial(t, addr)
	<-h.started
	c := dial(t, addr)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(c); string(b) != "refused\n" {
		t.Fatalf("second session got %q, want to be refused", b)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.refused) != 1 || !errors.Is(h.refused[0], ErrBusy) {
		t.Fatalf("refused %v, want ErrBusy", h.refused)
	}
}

// TestShutdownDrainsConcurrently: one session whose drain blocks does not hold up the others' drain, nor the
// deadline, after which it is cut; Serve returns ErrServerClosed.
func TestShutdownDrainsConcurrently(t *testing.T) {
	h, addr := start(t, 10, true)
	dial(t, addr)
	stuck := <-h.started
	h.stuck.Store(false)
	dial(t, addr)
	fine := <-h.started

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.srv.Shutdown(ctx) }()
	for _, s := range []*testSession{stuck, fine} {
		select {
		case <-s.drained:
		case <-time.After(10 * time.Second):
			t.Fatal("a session was not drained while another's drain blocked")
		}
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want deadline exceeded", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not cut the blocked session at its deadline")
	}
	// A connection after shutdown is not served.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		if len(b) != 0 && string(b) != "refused\n" {
			t.Fatalf("after shutdown: %q", b)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.1": "10.0.0.1/32", "10.1.2.3/8": "10.0.0.0/8",
		"::ffff:10.0.0.1": "10.0.0.1/32", "2001:db8::1": "2001:db8::1/128"} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("%s: %v %v, want %s", in, p, err, want)
		}
	}
	if _, err := ParsePrefix("example.org"); err == nil {
		t.Error("a host name taken as an address")
	}
}

func TestReadDeadlines(t *testing.T) {
	d := ReadDeadlines{Timeouts: Timeouts{Idle: time.Minute, Command: time.Hour, Wait: 29 * time.Minute}}
	now := time.Now()
	if dl, set := d.Next(now); !set || !dl.Equal(now.Add(time.Minute)) {
		t.Fatalf("idle: %v %v", dl, set)
	}
	if _, set := d.Next(now.Add(time.Millisecond)); set {
		t.Fatal("a deadline moved by less than the slack was set again")
	}
	d.SetPhase(PhaseCommand)
	if dl, set := d.Next(now); !set || !dl.Equal(now.Add(time.Hour)) {
		t.Fatalf("command: %v %v", dl, set)
	}
	d.SetPhase(PhaseWait)
	if dl, set := d.Next(now); !set || !dl.Equal(now.Add(29*time.Minute)) {
		t.Fatalf("wait (an earlier deadline is always set): %v %v", dl, set)
	}
}
