package listener

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"testing"
	"time"
)

func startWith(t *testing.T, o Options) (*testHandler, string) {
	t.Helper()
	h := &testHandler{started: make(chan *testSession, 16)}
	o.Name = "test"
	h.srv = New(o, h)
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h.srv.Serve(ln)
	t.Cleanup(func() { h.srv.Close() })
	return h, ln.Addr().String()
}

func expectRefused(t *testing.T, h *testHandler, addr string, want error) {
	t.Helper()
	c := dial(t, addr)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(c); string(b) != "refused\n" {
		t.Fatalf("got %q, want to be refused", b)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.refused) == 0 || !errors.Is(h.refused[len(h.refused)-1], want) {
		t.Fatalf("refused %v, want %v", h.refused, want)
	}
}

// TestSessionsPerClient: one address holds at most SessionsPerClient sessions; when one ends, another may start.
func TestSessionsPerClient(t *testing.T) {
	h, addr := startWith(t, Options{Sessions: 100, SessionsPerClient: 2})
	dial(t, addr)
	first := <-h.started
	dial(t, addr)
	<-h.started
	expectRefused(t, h, addr, ErrClientBusy)
	if st := h.srv.Stats(); st.RefusedClientBusy != 1 || st.RefusedBusy != 0 {
		t.Fatalf("stats %+v", st)
	}
	first.end()
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.Stats().Sessions != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the ended session is still counted")
		}
		time.Sleep(time.Millisecond)
	}
	dial(t, addr)
	select {
	case <-h.started:
	case <-time.After(10 * time.Second):
		t.Fatal("a new session after one ended was not served")
	}
}

// TestConnectionRate: an address may open ConnectionRate connections per window, and is refused after.
func TestConnectionRate(t *testing.T) {
	h, addr := startWith(t, Options{Sessions: 100, ConnectionRate: 3, RateWindow: time.Hour})
	for range 3 {
		dial(t, addr)
		(<-h.started).end()
	}
	expectRefused(t, h, addr, ErrClientRate)
	if st := h.srv.Stats(); st.RefusedClientRate != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClientRateWindowEnds(t *testing.T) {
	var cs clients
	key := ClientKey(netip.MustParseAddr("192.0.2.7"))
	now := time.Unix(1000, 0)
	for i := range 3 {
		if err := cs.admit(key, 0, 2, time.Minute, now); (err != nil) != (i == 2) {
			t.Fatalf("connection %d: %v", i+1, err)
		}
	}
	if err := cs.admit(key, 0, 2, time.Minute, now.Add(time.Minute)); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	// Another network is counted apart; an IPv6 client with its /84.
	if err := cs.admit(ClientKey(netip.MustParseAddr("192.0.2.8")), 0, 2, time.Minute, now); err != nil {
		t.Fatal(err)
	}
	a, b := ClientKey(netip.MustParseAddr("2001:db8::1")), ClientKey(netip.MustParseAddr("2001:db8::ffff:1"))
	if a != b || a.Bits() != 84 {
		t.Fatalf("IPv6 keys %v %v, want one /84", a, b)
	}
	if k := ClientKey(netip.MustParseAddr("::ffff:192.0.2.7")); k != key {
		t.Fatalf("mapped IPv4 key %v", k)
	}
}

// TestStressMode: above StressSessions the server is stressed, counted once; it ends when sessions fall.
func TestStressMode(t *testing.T) {
	h, addr := startWith(t, Options{Sessions: 100, StressSessions: 1})
	dial(t, addr)
	a := <-h.started
	if h.srv.Stressed() {
		t.Fatal("stressed at the threshold")
	}
	dial(t, addr)
	b := <-h.started
	if !h.srv.Stressed() || h.srv.Stats().StressEntered != 1 {
		t.Fatalf("not stressed above the threshold: %+v", h.srv.Stats())
	}
	a.end()
	b.end()
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.Stressed() {
		if time.Now().After(deadline) {
			t.Fatal("still stressed with no sessions")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReadDeadlinesPerRequest: between commands the deadline is fixed from the start of the wait, so reads do
// not extend it; a new request (a reply went out) starts a new one.
func TestReadDeadlinesPerRequest(t *testing.T) {
	d := ReadDeadlines{Timeouts: Timeouts{Idle: time.Minute, Command: time.Hour}}
	now := time.Now()
	d.Next(now)
	if dl, _ := d.Next(now.Add(50 * time.Second)); !dl.Equal(now.Add(time.Minute)) {
		t.Fatalf("a read within the request moved the deadline to %v", dl.Sub(now))
	}
	d.Request()
	if dl, set := d.Next(now.Add(50 * time.Second)); !set || !dl.Equal(now.Add(110*time.Second)) {
		t.Fatalf("new request: %v %v", dl.Sub(now), set)
	}
}

// TestReadDeadlinesMinRate: inside a command, the deadline moves by the bytes received over MinRate, never
// past the command timeout from now.
func TestReadDeadlinesMinRate(t *testing.T) {
	d := ReadDeadlines{Timeouts: Timeouts{Idle: time.Minute, Command: 10 * time.Second}, MinRate: 100}
	d.SetPhase(PhaseCommand)
	now := time.Now()
	if dl, _ := d.Next(now); !dl.Equal(now.Add(10 * time.Second)) {
		t.Fatalf("start: %v", dl.Sub(now))
	}
	// 5 s later, 100 bytes (one second's worth) came: the limit is 11 s after the start.
	d.Progress(100, now.Add(5*time.Second))
	if dl, _ := d.Next(now.Add(5 * time.Second)); !dl.Equal(now.Add(11 * time.Second)) {
		t.Fatalf("after 100 bytes: %v", dl.Sub(now))
	}
	// A fast burst gives at most the command timeout from now.
	d.Progress(1<<20, now.Add(6*time.Second))
	if dl, _ := d.Next(now.Add(6 * time.Second)); !dl.Equal(now.Add(16 * time.Second)) {
		t.Fatalf("after a burst: %v", dl.Sub(now))
	}
}

func TestReadDeadlinesStress(t *testing.T) {
	stressed := false
	d := ReadDeadlines{Timeouts: Timeouts{Idle: time.Minute, Command: time.Hour},
		Stress: Timeouts{Idle: 10 * time.Second, Command: 10 * time.Second}, Stressed: func() bool { return stressed }}
	if d.Timeout() != time.Minute {
		t.Fatal(d.Timeout())
	}
	stressed = true
	if d.Timeout() != 10*time.Second {
		t.Fatal(d.Timeout())
	}
	d.SetPhase(PhaseCommand)
	if d.Timeout() != 10*time.Second {
		t.Fatal(d.Timeout())
	}
}

func TestEnsureTestCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key := dir+"/tls/cert.pem", dir+"/tls/key.pem"
	made, err := EnsureTestCertificate(cert, key, "mail.example.test")
	if err != nil || !made {
		t.Fatalf("first start: %v %v", made, err)
	}
	c, err := LoadCertificates(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := c.GetCertificate(nil)
	if leaf.Leaf.Subject.CommonName != TestCertificateName || leaf.Leaf.VerifyHostname("mail.example.test") != nil ||
		leaf.Leaf.VerifyHostname("127.0.0.1") != nil {
		t.Fatalf("certificate %v %v", leaf.Leaf.Subject, leaf.Leaf.DNSNames)
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode())
	}
	// Kept: the second start uses the same pair.
	if made, err := EnsureTestCertificate(cert, key); err != nil || made {
		t.Fatalf("second start: %v %v", made, err)
	}
	// Something unusable in its place is not overwritten.
	os.WriteFile(cert, []byte("not a certificate"), 0o644)
	if _, err := EnsureTestCertificate(cert, key); err == nil {
		t.Fatal("an unusable file was replaced silently")
	}
}

// TestSessionsPerClientBehindProxy: behind a load balancer speaking the PROXY protocol, clients are counted by
// the address in the header, not the balancer's.
func TestSessionsPerClientBehindProxy(t *testing.T) {
	h, addr := startWith(t, Options{Sessions: 100, SessionsPerClient: 1,
		ProxyTrusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, ProxyHeaderTimeout: 10 * time.Second})
	for _, src := range []string{"192.0.2.1", "192.0.2.2"} {
		c := dial(t, addr)
		c.Write([]byte("PROXY TCP4 " + src + " 127.0.0.1 40000 25\r\n"))
		select {
		case <-h.started:
		case <-time.After(10 * time.Second):
			t.Fatalf("client %s behind the proxy not served", src)
		}
	}
	c := dial(t, addr)
	c.Write([]byte("PROXY TCP4 192.0.2.1 127.0.0.1 40001 25\r\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(c); string(b) != "refused\n" {
		t.Fatalf("second session of 192.0.2.1: %q, want refused", b)
	}
	if st := h.srv.Stats(); st.RefusedClientBusy != 1 {
		t.Fatalf("stats %+v", st)
	}
}
