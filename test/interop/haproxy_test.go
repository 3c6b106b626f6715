package interop

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/listener"
)

// fleetNode is one `postern run` behind HAProxy.
type fleetNode struct {
	name       string
	smtp       string // its SMTP listener
	adminPort  int
	dir        string
	cmd        *exec.Cmd
	log        *syncBuffer
	exited     chan struct{}
	exitStatus error
}

// startFleetNode runs a node: an SMTP listener in front of upstream that believes PROXY headers from 127.0.0.1
// (HAProxy), an audit log, the EICAR plugin, and an HTTPS admin listener with cert and key.
func startFleetNode(t *testing.T, bin, name, upstream, cert, key string) *fleetNode {
	t.Helper()
	n := &fleetNode{name: name, smtp: fmt.Sprintf("127.0.0.1:%d", freePort(t)), adminPort: freePort(t),
		dir: t.TempDir(), log: &syncBuffer{}, exited: make(chan struct{})}
	cfg := fmt.Sprintf(`
state_dir = %q
audit {
  path = "audit.log"
}
admin {
  address = "127.0.0.1:%d"
  tls {
    cert = %q
    key  = %q
  }
}
listener "smtp" "mx" {
  address  = %q
  upstream = %q
  proxy_protocol {
    trusted = ["127.0.0.1"]
  }
}
plugin "eicar" {
  source = %q
}
policy "all" {
  plugins = ["eicar"]
}
`, n.dir, n.adminPort, cert, key, n.smtp, upstream, testplugins.Path(t, "plugins/eicar"))
	path := filepath.Join(n.dir, "postern.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(bin, "run", "-cache", testplugins.CacheDir(), "-config", path)
	n.cmd.Stderr = n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.exitStatus = n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.exited
		if t.Failed() {
			t.Logf("%s log:\n%s", name, n.log.String())
		}
	})
	if !waitListening(n.smtp, n.exited) {
		t.Fatalf("%s did not listen:\n%s", name, n.log.String())
	}
	return n
}

// clientIPs returns the client_ip of every decision record in the node's audit log.
func (n *fleetNode) clientIPs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct {
			Event    string `json:"event"`
			ClientIP string `json:"client_ip"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%s audit line %q: %v", n.name, line, err)
		}
		if rec.Event == "decision" || rec.Event == "pending" {
			ips = append(ips, rec.ClientIP)
		}
	}
	return ips
}

// haproxyConfig is dist/haproxy/postern.cfg with this machine's addresses: the frontend on front, the nodes'
// SMTP and admin ports, the nodes' certificate as the CA, logs on stdout, fewer connections, and checks every
// 300 ms instead of 2 s.
func haproxyConfig(t *testing.T, front, ca string, nodes ...*fleetNode) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testplugins.Root(), "dist", "haproxy", "postern.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for _, want := range []string{"send-proxy-v2", "option httpchk GET /readyz", "http-check expect status 200",
		"check-ssl verify required", "option redispatch"} {
		if !strings.Contains(cfg, want) {
			t.Fatalf("dist/haproxy/postern.cfg lacks %q", want)
		}
	}
	r := strings.NewReplacer(
		"log /dev/log local0", "log stdout format raw local0",
		"maxconn 20000", "maxconn 2000", // within the descriptors a test may open
		"bind :25", "bind "+front,
		"ca-file /etc/haproxy/postern-admin-ca.pem", "ca-file "+ca,
		"inter 2s", "inter 300ms",
		"192.0.2.11:25", nodes[0].smtp+fmt.Sprintf(" port %d", nodes[0].adminPort),
		"192.0.2.12:25", nodes[1].smtp+fmt.Sprintf(" port %d", nodes[1].adminPort),
	)
	return r.Replace(cfg)
}

// dialFrom connects to addr from the loopback address src, so that the client's address differs from HAProxy's.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return d.Dial("tcp", addr)
}

// sendFrom sends one message through addr from src and returns the transaction's error.
func sendFrom(src, addr, subject string) error {
	conn, err := dialFrom(src, addr)
	if err != nil {
		return err
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Mail("bob@client.test"); err != nil {
		return err
	}
	if err := c.Rcpt("alice@example.com"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: bob@client.test\r\nTo: alice@example.com\r\nSubject: %s\r\n\r\nbody\r\n", subject)
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// openData starts a transaction through addr and leaves it inside DATA, half a message sent.
func openData(t *testing.T, src, addr, subject string) (*smtp.Client, io.WriteCloser) {
	t.Helper()
	conn, err := dialFrom(src, addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("bob@client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@example.com"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "From: bob@client.test\r\nTo: alice@example.com\r\nSubject: %s\r\n\r\nfirst half\r\n", subject)
	return c, w
}

// TestHAProxyFleet runs real HAProxy, with the example configuration, in front of two `postern run` nodes
// relaying to smtp-sink. It checks that the nodes' audit records carry the client's own address (127.0.0.2, not
// HAProxy's 127.0.0.1) from the PROXY v2 header, and that draining one node (SIGTERM) loses no message: its
// /readyz turns 503 and HAProxy marks it down, new sessions go to the other node, and the message it was
// receiving is finished and delivered.
func TestHAProxyFleet(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy not found: install the Debian package \"haproxy\" (.ci/deps does)")
	}
	if c, err := dialFrom("127.0.0.2", "127.0.0.1:1"); err != nil && !strings.Contains(err.Error(), "refused") {
		t.Skipf("cannot use 127.0.0.2 as a client address here: %v", err)
	} else if c != nil {
		c.Close()
	}
	sink := startSink(t)
	bin := filepath.Join(t.TempDir(), "postern")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(testplugins.Root(), "cmd", "postern")).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	certDir := t.TempDir()
	cert, key := filepath.Join(certDir, "admin.pem"), filepath.Join(certDir, "admin-key.pem")
	if _, err := listener.EnsureTestCertificate(cert, key); err != nil {
		t.Fatal(err)
	}
	node1 := startFleetNode(t, bin, "node1", sink.addr, cert, key)
	node2 := startFleetNode(t, bin, "node2", sink.addr, cert, key)

	front := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfgPath := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(haproxyConfig(t, front, cert, node1, node2)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	hlog := &syncBuffer{}
	hap := exec.Command("haproxy", "-db", "-f", cfgPath)
	hap.Stdout, hap.Stderr = hlog, hlog
	if err := hap.Start(); err != nil {
		t.Fatal(err)
	}
	hapExited := make(chan struct{})
	go func() { hap.Wait(); close(hapExited) }()
	t.Cleanup(func() {
		hap.Process.Kill()
		<-hapExited
		if t.Failed() {
			t.Logf("haproxy log:\n%s", hlog.String())
		}
	})
	if !waitListening(front, hapExited) {
		t.Fatalf("haproxy did not listen on %s:\n%s", front, hlog.String())
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30 s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// A few rounds of checks (each node's /readyz over HTTPS, its certificate verified) before the first message:
	// with fall 2, a failing check would have marked a node down by now.
	time.Sleep(time.Second)
	if strings.Contains(hlog.String(), "is DOWN") {
		t.Fatalf("a node is down before the test:\n%s", hlog.String())
	}

	// Spread over both nodes, each with the client's address from the PROXY header.
	const before = 6
	for i := range before {
		if err := sendFrom("127.0.0.2", front, fmt.Sprintf("before %d", i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	ips1, ips2 := node1.clientIPs(t), node2.clientIPs(t)
	if len(ips1) == 0 || len(ips2) == 0 || len(ips1)+len(ips2) != before {
		t.Fatalf("records: node1 %v, node2 %v; want %d spread over both", ips1, ips2, before)
	}
	for _, ip := range append(ips1, ips2...) {
		if ip != "127.0.0.2" {
			t.Errorf("audit client_ip %q, want the client's 127.0.0.2 (HAProxy is 127.0.0.1)", ip)
		}
	}

	// Two messages in flight, one on each node (leastconn), then node1 drains.
	c1, w1 := openData(t, "127.0.0.2", front, "in flight 1")
	c2, w2 := openData(t, "127.0.0.2", front, "in flight 2")
	if err := node1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("node1 drains", func() bool { return strings.Contains(node1.log.String(), "shutting down") })

	// New sessions meanwhile: all delivered, by node2.
	const during = 8
	var wg sync.WaitGroup
	errs := make([]error, during)
	for i := range during {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sendFrom("127.0.0.2", front, fmt.Sprintf("during %d", i))
		}()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("message during the drain %d: %v", i, err)
		}
	}
	// Marked down by its readiness check (HTTP 503 from /readyz), with its session still active.
	down := regexp.MustCompile(`node1 failed, reason: Layer7 wrong status, code: 503[^\n]*status: 0/2 DOWN`)
	waitFor("HAProxy marks node1 down on its /readyz", func() bool { return down.MatchString(hlog.String()) })
	if !regexp.MustCompile(`node1 is DOWN[^\n]* 1 sessions active`).MatchString(hlog.String()) {
		t.Errorf("node1's message in flight was not left to finish on it")
	}

	// The messages in flight finish, node1's on the draining node.
	for i, cw := range []struct {
		c *smtp.Client
		w io.WriteCloser
	}{{c1, w1}, {c2, w2}} {
		io.WriteString(cw.w, "second half\r\n")
		if err := cw.w.Close(); err != nil {
			t.Errorf("message in flight %d: %v", i+1, err)
		}
		cw.c.Quit()
	}
	select {
	case <-node1.exited:
		if node1.exitStatus != nil {
			t.Errorf("node1 exit: %v", node1.exitStatus)
		}
	case <-time.After(time.Minute):
		t.Fatal("node1 did not stop after its last session")
	}

	// Every message reached smtp-sink, once.
	got := map[string]int{}
	for _, tr := range sink.wait(before + during + 2) {
		sc := bufio.NewScanner(strings.NewReader(tr))
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "Subject: "); ok {
				got[s]++
			}
		}
	}
	var want []string
	for i := range before {
		want = append(want, fmt.Sprintf("before %d", i))
	}
	for i := range during {
		want = append(want, fmt.Sprintf("during %d", i))
	}
	want = append(want, "in flight 1", "in flight 2")
	for _, s := range want {
		if got[s] != 1 {
			t.Errorf("smtp-sink got %q %d times, want once", s, got[s])
		}
	}
	// node1's last records are its drain: the message it finished and nothing after it; node2 took the rest.
	if n := len(node2.clientIPs(t)); n < during {
		t.Errorf("node2 recorded %d messages, want at least the %d sent during the drain", n, during)
	}
}
