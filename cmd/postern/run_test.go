package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// binary builds the postern command once per test run: `postern run` is tested as a process, because signals and
// exit statuses are its interface.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "postern-bin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "postern")
	cmd := exec.Command("go", "build", "-o", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return out, nil
})

// syncBuffer collects a process's log while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// proc is a running `postern run`.
type proc struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

func startPostern(t *testing.T, args ...string) *proc {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(bin, append([]string{"run", "-cache", testplugins.CacheDir()}, args...)...),
		log: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("postern log:\n%s", p.log.String())
		}
	})
	return p
}

// waitLog waits until the process's log contains s.
func (p *proc) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after a minute:\n%s", s, p.log.String())
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("postern exited (%v) before logging %q:\n%s", err, s, p.log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wait waits for the process to exit and returns its status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(time.Minute):
		t.Fatalf("postern did not exit:\n%s", p.log.String())
		return -1
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runConfig writes a configuration beside the example tree's plugins (../build/plugins) with an SMTP listener on
// addr in front of the embedded upstream; prefix is external-tag's subject prefix, so a reload is visible in the
// delivered mail.
func runConfig(t *testing.T, path, addr, prefix string) {
	t.Helper()
	cfg := fmt.Sprintf(`
state_dir = "state"
audit {
  path = "state/audit.log"
}
listener "smtp" "in" {
  address  = %q
  upstream = "embedded"
}
plugin "eicar" {
  source = "../build/plugins/eicar.wasm"
}
plugin "external-tag" {
  source = "../build/plugins/external-tag.wasm"
  config = { internal_domains = ["example.com"], subject_prefix = %q }
}
policy "all" {
  plugins = ["eicar", "external-tag"]
}
`, addr, prefix)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// send relays one message through addr and returns the error of the transaction (nil: the upstream took it).
func send(addr, subject, body string) error {
	msg := "From: bob@other.test\r\nTo: alice@example.com\r\nSubject: " + subject + "\r\n\r\n" + body + "\r\n"
	return smtp.SendMail(addr, nil, "bob@other.test", []string{"alice@example.com"}, []byte(msg))
}

// delivered returns the subjects of the messages the embedded upstream stored.
func delivered(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	var subjects []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(b))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		subjects = append(subjects, h.Get("Subject"))
	}
	return subjects
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestRunEndToEnd runs the proxy as an admin would: it relays a clean message to the embedded upstream, refuses
// the EICAR file, takes a new configuration on SIGHUP and on `postern reload`, refuses an invalid one and keeps
// serving, and stops cleanly on SIGTERM with an intact audit log.
func TestRunEndToEnd(t *testing.T) {
	dir := exampleTree(t)
	cfgPath := filepath.Join(dir, "run.hcl")
	addr := freePort(t)
	runConfig(t, cfgPath, addr, "[ONE] ")
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")
	mail := filepath.Join(dir, "state", "mail", "in")

	if err := send(addr, "first", "hello"); err != nil {
		t.Fatalf("clean message: %v", err)
	}
	if got := delivered(t, mail); !contains(got, "[ONE] first") {
		t.Errorf("delivered %q", got)
	}
	err := send(addr, "virus", `X5O!P%@AP[4\PZX54(P^)7CC)7}$`+"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
	if e, ok := err.(*textproto.Error); !ok || e.Code != 554 {
		t.Errorf("EICAR: %v, want a 554", err)
	}

	// SIGHUP: the new prefix serves new sessions.
	runConfig(t, cfgPath, addr, "[TWO] ")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "reload: reloaded")
	if err := send(addr, "second", "hello"); err != nil {
		t.Fatal(err)
	}
	if got := delivered(t, mail); !contains(got, "[TWO] second") {
		t.Errorf("after SIGHUP: delivered %q", got)
	}

	// An invalid file: `postern reload` says why, and the proxy keeps the current configuration.
	if err := os.WriteFile(cfgPath, []byte("listener \"smtp\" \"in\" {\n  adress = \"x\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "state", "control.sock")
	code, _, errs := run("reload", "-socket", sock)
	if code != 1 || !strings.Contains(errs, "run.hcl:2") {
		t.Errorf("invalid reload: exit %d, stderr:\n%s", code, errs)
	}
	if err := send(addr, "third", "hello"); err != nil {
		t.Fatal(err)
	}
	if got := delivered(t, mail); !contains(got, "[TWO] third") {
		t.Errorf("after a refused reload: delivered %q", got)
	}

	// A valid file again, through the control socket found from the configuration.
	runConfig(t, cfgPath, addr, "[THREE] ")
	code, out, errs := run("reload", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "reloaded") {
		t.Errorf("reload: exit %d\n%s%s", code, out, errs)
	}
	if err := send(addr, "fourth", "hello"); err != nil {
		t.Fatal(err)
	}
	if got := delivered(t, mail); !contains(got, "[THREE] fourth") {
		t.Errorf("after postern reload: delivered %q", got)
	}
	if code, out, _ := run("reload", "-status", "-socket", sock); code != 0 || !strings.Contains(out, "serving 1 listener") {
		t.Errorf("status: exit %d: %s", code, out)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	code, out, errs = run("audit", "verify", filepath.Join(dir, "state", "audit.log"))
	if code != 0 || !strings.Contains(out, "9 records") { // each delivered message: a pending record and its outcome
		t.Errorf("audit verify: exit %d\n%s%s", code, out, errs)
	}
}

// TestRunGracefulShutdown sends SIGTERM while a message is halfway through DATA: the proxy stops accepting new
// connections, lets that message finish and be delivered, and then exits 0.
func TestRunGracefulShutdown(t *testing.T) {
	dir := exampleTree(t)
	cfgPath := filepath.Join(dir, "run.hcl")
	addr := freePort(t)
	runConfig(t, cfgPath, addr, "[EXT] ")
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")

	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("bob@other.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@example.com"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "Subject: in flight\r\n\r\nfirst half\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "shutting down")
	// New connections are refused once the listener is closed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts connections after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := io.WriteString(w, "second half\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("the message in flight was not accepted: %v", err)
	}
	c.Quit()
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d", code)
	}
	if got := delivered(t, filepath.Join(dir, "state", "mail", "in")); !contains(got, "[EXT] in flight") {
		t.Errorf("delivered %q", got)
	}
}

// TestRunRefuses covers what stops `postern run` from starting: an invalid configuration (the diagnostics of
// `postern check`), a protocol this version does not proxy, and an address already in use, each with the
// listener's file:line.
func TestRunRefuses(t *testing.T) {
	dir := exampleTree(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name, cfg string
		want      []string
	}{
		{"invalid", "listener \"smtp\" \"in\" {\n  adress = \"127.0.0.1:1\"\n}\n", []string{"bad.hcl:2", "Unsupported argument"}},
		{"address in use", fmt.Sprintf("listener \"smtp\" \"in\" {\n  address = %q\n  upstream = \"embedded\"\n}\n",
			busy.Addr().String()), []string{"bad.hcl:1", "address already in use"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad.hcl")
			if err := os.WriteFile(path, []byte(tc.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			p := startPostern(t, "-config", path)
			if code := p.wait(t); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(p.log.String(), w) {
					t.Errorf("no %q in:\n%s", w, p.log.String())
				}
			}
		})
	}
}

// TestRunShutdownCutsOff: a message that does not finish within -shutdown-timeout is cut off and the exit status
// says so (1); a second signal cuts at once, without waiting for the deadline.
func TestRunShutdownCutsOff(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout string
		signals int
	}{
		{"deadline", "1s", 1},
		{"second signal", "10m", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := exampleTree(t)
			cfgPath := filepath.Join(dir, "run.hcl")
			addr := freePort(t)
			runConfig(t, cfgPath, addr, "[EXT] ")
			p := startPostern(t, "-config", cfgPath, "-shutdown-timeout", tc.timeout)
			p.waitLog(t, "postern running")

			c, err := smtp.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Mail("bob@other.test"); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt("alice@example.com"); err != nil {
				t.Fatal(err)
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(w, "Subject: never finished\r\n\r\nhalf\r\n"); err != nil {
				t.Fatal(err)
			}
			for i := range tc.signals {
				if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					p.waitLog(t, "shutting down")
				}
			}
			if code := p.wait(t); code != 1 {
				t.Errorf("exit status %d, want 1 (a session was cut off)", code)
			}
			if tc.signals == 2 && !strings.Contains(p.log.String(), "second signal") {
				t.Errorf("no second-signal log line:\n%s", p.log.String())
			}
			// The client never got a final reply, so it will retry: nothing was accepted.
			if err := w.Close(); err == nil {
				t.Error("the cut-off message was acknowledged")
			}
			if got := delivered(t, filepath.Join(dir, "state", "mail", "in")); len(got) != 0 {
				t.Errorf("delivered %q", got)
			}
		})
	}
}

// TestReloadListenerChangeWaitsForRestart: a reload that changes a listener block applies the new policies and
// plugins and says the listener change waits for a restart; moving the block around in the file is no change.
func TestReloadListenerChangeWaitsForRestart(t *testing.T) {
	load := func(src string) []*config.Listener {
		t.Helper()
		path := filepath.Join(t.TempDir(), "p.hcl")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Listeners
	}
	base := load("listener \"smtp\" \"in\" {\n  address = \"127.0.0.1:2525\"\n  upstream = \"embedded\"\n}\n")
	moved := load("\n\n# moved down\nlistener \"smtp\" \"in\" {\n  address  = \"127.0.0.1:2525\"\n  upstream = \"embedded\"\n}\n")
	readdressed := load("listener \"smtp\" \"in\" {\n  address = \"127.0.0.1:2526\"\n  upstream = \"embedded\"\n}\n")
	if !sameListeners(base, moved) {
		t.Error("a listener moved in the file counts as changed")
	}
	if sameListeners(base, readdressed) || sameListeners(base, nil) {
		t.Error("a changed listener counts as unchanged")
	}

	// Through the binary: the reload's answer says so.
	dir := exampleTree(t)
	cfgPath := filepath.Join(dir, "run.hcl")
	addr := freePort(t)
	runConfig(t, cfgPath, addr, "[ONE] ")
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")
	runConfig(t, cfgPath, freePort(t), "[TWO] ")
	code, out, errs := run("reload", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "listener changes take effect at the next restart") {
		t.Errorf("reload: exit %d\n%s%s", code, out, errs)
	}
	if err := send(addr, "still here", "hello"); err != nil {
		t.Fatalf("the old address no longer serves: %v", err)
	}
	if got := delivered(t, filepath.Join(dir, "state", "mail", "in")); !contains(got, "[TWO] still here") {
		t.Errorf("delivered %q: the new policy should serve on the old listener", got)
	}
}

// TestRunReloadsCertificate: SIGHUP makes new handshakes use the certificate and key now in the files, as after
// a renewal, without a restart.
func TestRunReloadsCertificate(t *testing.T) {
	dir := exampleTree(t)
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	install := func(c *smtptest.Cert) {
		t.Helper()
		for src, dst := range map[string]string{c.CertFile: certPath, c.KeyFile: keyPath} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	first, second := smtptest.NewCert(t), smtptest.NewCert(t)
	install(first)
	addr := freePort(t)
	cfgPath := filepath.Join(dir, "run.hcl")
	cfg := fmt.Sprintf("state_dir = \"state\"\nlistener \"smtp\" \"in\" {\n  address  = %q\n  upstream = \"embedded\"\n"+
		"  tls {\n    mode = \"implicit\"\n    cert = \"cert.pem\"\n    key  = \"key.pem\"\n  }\n}\n", addr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")

	// served returns the serial number of the certificate a new connection is given.
	served := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got, want := served(), first.Pair.Leaf.SerialNumber.String(); got != want {
		t.Fatalf("serial %s, want the first certificate's %s", got, want)
	}
	install(second)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "certificate reloaded")
	if got, want := served(), second.Pair.Leaf.SerialNumber.String(); got != want {
		t.Errorf("after SIGHUP: serial %s, want the renewed certificate's %s", got, want)
	}
}
