package imapinterop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/internal/testdovecot"
	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/imapproxy"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/policy"
)

// tools maps the programs of the suite to their Debian packages.
var tools = map[string]string{
	"curl": "curl", "python3": "python3", "mbsync": "isync", "node": "nodejs", "npm": "npm",
	"thunderbird": "thunderbird", "ip": "iproute2",
}

// need fails the test when a tool is missing, naming the package to install.
func need(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: install the Debian package %q (.ci/deps does)", n, tools[n])
		}
	}
}

// bannerText is the line the retrieval policy of the rig appends to every text body read through Postern.
const bannerText = "[read through Postern: retrieval policy applied]"

// eicar is the anti-virus test file, in two halves so that no scanner flags this source file.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// messages are delivered to alice: plain, dot-stuffing bait, multipart with an attachment, 200 KiB (Thunderbird
// reads it in chunks), and one carrying the EICAR file (withheld at retrieval).
var messages = []string{
	"From: Bob <bob@other.test>\r\nTo: alice@example.com\r\nSubject: plain\r\nMessage-ID: <m1@other.test>\r\n" +
		"Date: Mon, 01 Jun 2026 10:00:00 +0000\r\n\r\nHello Alice.\r\n",
	"From: bob@other.test\r\nTo: alice@example.com\r\nSubject: dots\r\nMessage-ID: <m2@other.test>\r\n" +
		"Date: Mon, 01 Jun 2026 10:01:00 +0000\r\n\r\n.\r\n..two\r\n.end\r\n",
	"From: bob@other.test\r\nTo: alice@example.com\r\nSubject: with attachment\r\nMessage-ID: <m3@other.test>\r\n" +
		"Date: Mon, 01 Jun 2026 10:02:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		"See the notes.\r\n--b1\r\nContent-Type: text/plain; name=\"notes.txt\"\r\n" +
		"Content-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nsome notes\r\n--b1--\r\n",
	"From: bob@other.test\r\nTo: alice@example.com\r\nSubject: large\r\nMessage-ID: <m4@other.test>\r\n" +
		"Date: Mon, 01 Jun 2026 10:03:00 +0000\r\n\r\n" +
		strings.Repeat("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n", 3200),
	"From: bob@other.test\r\nTo: alice@example.com\r\nSubject: old virus\r\nMessage-ID: <m5@other.test>\r\n" +
		"Date: Mon, 01 Jun 2026 10:04:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n" +
		"--b2\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\n" +
		"Content-Disposition: attachment; filename=\"eicar.com\"\r\n\r\n" + eicar + "\r\n--b2--\r\n",
}

// target is an IMAP server a client talks to: Dovecot itself, or Postern in front of it.
type target struct {
	name string
	addr string
	// filtered says whether the retrieval policy applies (through Postern): messages carry the banner and the
	// EICAR one is withheld.
	filtered bool
}

// rig is Dovecot with the messages delivered to alice, and the targets to run each client against.
type rig struct {
	dc      *testdovecot.Dovecot
	targets []target
}

// newRig starts Dovecot with the messages and, when the build has an imap listener, `postern run` in front of it.
func newRig(t *testing.T, opts testdovecot.Options) *rig {
	t.Helper()
	dc := testdovecot.Start(t, opts)
	for _, m := range messages {
		dc.Deliver(t, "alice", m)
	}
	r := &rig{dc: dc, targets: []target{{name: "dovecot", addr: dc.IMAP}}}
	r.targets = append(r.targets, proxyTarget(t, dc.IMAP, true))
	return r
}

// proxyTarget is `postern run` in front of upstream.
func proxyTarget(t *testing.T, upstream string, banner bool) target {
	t.Helper()
	return target{name: "postern", addr: startPostern(t, upstream, banner), filtered: banner}
}

// startInProcessPolicy serves imapproxy in front of upstream with the plugin and policy blocks in policyHCL until
// the test ends: the benchmarks measure the proxy's own memory and time with it.
func startInProcessPolicy(t testing.TB, upstream, policyHCL string) string {
	t.Helper()
	state := t.TempDir()
	cfg := filepath.Join(state, "policy.hcl")
	if err := os.WriteFile(cfg, []byte(policyHCL), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := policy.NewManager(context.Background(), cfg, policy.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	var log syncBuffer
	srv, err := imapproxy.New(imapproxy.Options{Name: "imap", Hostname: "postern.test", Upstream: upstream,
		AllowInsecureAuth: true, Filters: mailflow.Policies(m), QuarantineDir: filepath.Join(state, "quarantine"),
		SpoolDir: state, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("imapproxy log:\n%s", log.String())
		}
	})
	return ln.Addr().String()
}

// each runs f once per target, as a subtest.
func (r *rig) each(t *testing.T, f func(t *testing.T, tg target)) { eachTarget(t, r.targets, f) }

func eachTarget(t *testing.T, targets []target, f func(t *testing.T, tg target)) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) { f(t, tg) })
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// postern builds the postern binary once per test run.
func postern(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "imapinterop-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "postern")
		out, err := exec.Command("go", "build", "-o", binPath, filepath.Join(testplugins.Root(), "cmd", "postern")).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// posternConfig is the configuration of the rig's Postern: an imap listener in front of Dovecot, the EICAR plugin
// (a message carrying the file is withheld when it is read) and, with banner, external-tag adding a banner at
// retrieval. Without it no clean message is changed, so a client must see exactly what Dovecot serves.
func posternConfig(t testing.TB, state, addr, upstream string, banner bool) string {
	content := `
plugin "external-tag" {
  source = %q
  config = { internal_domains = ["example.com"], banner_text = "\n%s\n" }
}

policy "content" {
  plugins = ["external-tag"]
}
`
	if banner {
		content = fmt.Sprintf(content, testplugins.Path(t, "plugins/external-tag"), bannerText)
	} else {
		content = ""
	}
	return fmt.Sprintf(`state_dir = %q

audit {
  path = %q
}

listener "imap" "imap" {
  address             = %q
  upstream            = %q
  allow_insecure_auth = true
}

plugin "eicar" {
  source = %q
}

policy "malware" {
  plugins = ["eicar"]
}
%s`, state, filepath.Join(state, "audit.log"), addr, upstream, testplugins.Path(t, "plugins/eicar"), content)
}

// startPostern runs `postern run` with an imap listener in front of upstream until the test ends.
func startPostern(t *testing.T, upstream string, banner bool) string {
	t.Helper()
	state := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := filepath.Join(state, "postern.hcl")
	if err := os.WriteFile(cfg, []byte(posternConfig(t, state, addr, upstream, banner)), 0o644); err != nil {
		t.Fatal(err)
	}
	startPosternConfig(t, cfg, addr)
	return addr
}

// startPosternConfig runs `postern run -config cfg` until the test ends and waits until it listens on addr.
func startPosternConfig(t *testing.T, cfg, addr string) {
	t.Helper()
	bin := postern(t)
	var log syncBuffer
	cmd := exec.Command(bin, "run", "-cache", testplugins.CacheDir(), "-config", cfg)
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("postern log:\n%s", log.String())
		}
	})
	if !waitListening(addr, exited) {
		t.Fatalf("postern did not listen on %s:\n%s", addr, log.String())
	}
}

// fetched is one message as a client got it.
type fetched struct {
	UID  uint32
	Size int64
	Body []byte
}

// reference reads every INBOX message of alice with go-imap's client, BODY.PEEK[] and RFC822.SIZE: what every
// other client must receive from the same target.
func reference(t *testing.T, addr string) []fetched {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "alicepass").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []fetched
	for _, m := range msgs {
		f := fetched{UID: uint32(m.UID), Size: m.RFC822Size}
		for _, b := range m.BodySection {
			f.Body = b.Bytes
		}
		out = append(out, f)
	}
	c.Logout().Wait()
	if len(out) != len(messages) {
		t.Fatalf("reference read %d messages, want %d", len(out), len(messages))
	}
	return out
}

// checkFiltered checks what a target served against the delivered messages: byte for byte from Dovecot (but for
// the headers Dovecot's LMTP adds), with the banner and the EICAR message withheld through Postern, and the size
// always that of the body.
func checkFiltered(t *testing.T, tg target, ref []fetched) {
	t.Helper()
	for i, f := range ref {
		if f.Size != int64(len(f.Body)) {
			t.Errorf("%s: message %d: RFC822.SIZE %d, body %d bytes", tg.name, i+1, f.Size, len(f.Body))
		}
		body := string(f.Body)
		switch {
		case !tg.filtered:
			_, want, _ := strings.Cut(messages[i], "\r\n\r\n")
			if !strings.HasSuffix(body, want) {
				t.Errorf("%s: message %d is not the delivered one:\n%.300s", tg.name, i+1, body)
			}
		case i == 4:
			if strings.Contains(body, "EICAR-STANDARD") || !strings.Contains(body, "withheld") {
				t.Errorf("%s: the EICAR message is not withheld:\n%.600s", tg.name, body)
			}
		default:
			if !strings.Contains(body, bannerText) {
				t.Errorf("%s: message %d has no banner:\n%.600s", tg.name, i+1, body)
			}
		}
	}
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitListening waits until addr accepts connections, or the process exits.
func waitListening(addr string, exited chan struct{}) bool {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// run runs a program with a deadline and a private HOME, and returns its combined output.
func run(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s did not finish in %s", name, timeout)
	}
	return out.String(), err
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}
