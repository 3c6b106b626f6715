package interop

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/metricstest"
	"github.com/postern/postern/internal/testplugins"
)

// readmeCommands returns the shell commands of the README's "Trying it" example, one per line, without comments.
// The test runs them as written, so the README cannot drift from what works.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testplugins.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Trying it")
	if !ok {
		t.Fatal(`README.md has no "## Trying it" section`)
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	if ok {
		block, _, ok = strings.Cut(block, "```")
	}
	if !ok {
		t.Fatal(`README.md's "Trying it" section has no sh block`)
	}
	var cmds []string
	for _, line := range strings.Split(block, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			cmds = append(cmds, line)
		}
	}
	return cmds
}

// TestReadmeDemo runs `postern run` on policies/demo.hcl (on free ports) and the README's swaks and curl commands
// against it: the clean message is relayed to the embedded upstream with the subject marked, the EICAR message is
// refused with a 554 and stored nowhere, the stored message reads back over POP3 byte for byte with its exact
// size, a message put in the mailbox behind Postern's back is withheld when it is read, both read the same over
// IMAP (sizes and envelopes in the listing, the notice the same at every read), the message over STARTTLS
// goes through under the test certificate made at start, and submission authenticates against the embedded
// upstream's test users after STARTTLS (and not before it, nor with a wrong password).
func TestReadmeDemo(t *testing.T) {
	need(t, "swaks", "curl")
	cmds := readmeCommands(t)
	if len(cmds) != 16 || !strings.HasPrefix(cmds[0], "swaks ") || !strings.HasPrefix(cmds[1], "printf ") ||
		!strings.HasPrefix(cmds[2], "swaks ") || !strings.HasPrefix(cmds[3], "curl ") ||
		!strings.HasPrefix(cmds[4], "curl ") || !strings.HasPrefix(cmds[5], "swaks ") || !strings.HasPrefix(cmds[6], "curl ") ||
		!strings.HasPrefix(cmds[7], "curl -s imap://") || !strings.HasPrefix(cmds[8], "curl -s 'imap://") ||
		!strings.HasPrefix(cmds[9], "curl -s 'imap://") ||
		!strings.Contains(cmds[10], " --tls ") || !strings.Contains(cmds[11], " --auth-user ") ||
		!strings.Contains(cmds[12], "Subject: cards") || !strings.HasPrefix(cmds[13], "build/postern quarantine list ") ||
		!strings.HasPrefix(cmds[14], "build/postern quarantine release ") ||
		!strings.HasPrefix(cmds[15], "curl -s http://127.0.0.1:8025/metrics") {
		t.Fatalf("the README's demo commands changed; update this test:\n%s", strings.Join(cmds, "\n"))
	}

	// The demo's tree: policies/demo.hcl with its plugins at ../build/plugins and its state in ../build/state.
	root := t.TempDir()
	plugins := filepath.Join(root, "build", "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"eicar", "attachment-guard", "verdict", "external-tag", "dlp"} {
		if err := os.Symlink(testplugins.Path(t, "plugins/"+name), filepath.Join(plugins, name+".wasm")); err != nil {
			t.Fatal(err)
		}
	}
	demo, err := os.ReadFile(filepath.Join(testplugins.Root(), "policies", "demo.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	subAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	popAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	imapAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, a := range []string{"127.0.0.1:2525", "127.0.0.1:2587", "127.0.0.1:2110", "127.0.0.1:2143", "127.0.0.1:8025"} {
		if !strings.Contains(string(demo), `"`+a+`"`) {
			t.Fatalf("policies/demo.hcl no longer listens on %s, as the README says", a)
		}
	}
	cfg := filepath.Join(root, "policies", "demo.hcl")
	ports := strings.NewReplacer("127.0.0.1:2525", addr, "127.0.0.1:2587", subAddr, "127.0.0.1:2110", popAddr,
		"127.0.0.1:2143", imapAddr, "127.0.0.1:8025", adminAddr)
	if err := os.WriteFile(cfg, []byte(ports.Replace(string(demo))), 0o644); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(t.TempDir(), "postern")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(testplugins.Root(), "cmd", "postern")).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var log syncBuffer
	cmd := exec.Command(bin, "run", "-cache", testplugins.CacheDir(), "-config", cfg)
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("postern log:\n%s", log.String())
		}
	})
	if !waitListening(addr, exited) || !waitListening(subAddr, exited) || !waitListening(popAddr, exited) ||
		!waitListening(imapAddr, exited) {
		t.Fatalf("postern did not listen on %s:\n%s", addr, log.String())
	}

	sh := func(line string) (string, error) {
		line = ports.Replace(line)
		line = strings.ReplaceAll(line, "build/postern ", bin+" ")
		line = strings.ReplaceAll(line, "/tmp/eicar.com", filepath.Join(root, "eicar.com"))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := exec.CommandContext(ctx, "bash", "-c", line)
		c.Dir = root // the README's commands run from the checkout
		out, err := c.CombinedOutput()
		return string(out), err
	}
	mail := filepath.Join(root, "build", "state", "mail", "demo")

	out, err := sh(cmds[0])
	if err != nil || !strings.Contains(out, "<-  250 2.0.0 Ok: stored as") {
		t.Fatalf("clean message: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(mail, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("%d messages stored in %s, want 1", len(files), mail)
	}
	stored, err := os.ReadFile(files[0])
	if err != nil || !strings.Contains(string(stored), "Subject: [EXTERNAL] lunch") {
		t.Errorf("stored message (%v):\n%s", err, stored)
	}

	if out, err := sh(cmds[1]); err != nil {
		t.Fatalf("%s: %v\n%s", cmds[1], err, out)
	}
	out, err = sh(cmds[2])
	if err == nil || !strings.Contains(out, "554 5.7.1 message contains the EICAR anti-virus test file") {
		t.Fatalf("EICAR message: %v\n%s", err, out)
	}
	if files, _ := filepath.Glob(filepath.Join(mail, "*.eml")); len(files) != 1 {
		t.Errorf("%d messages stored after the EICAR message, want still 1", len(files))
	}

	// POP3: the listing gives the exact size, and the message reads back as it was stored.
	out, err = sh(cmds[3])
	if err != nil || out != fmt.Sprintf("1 %d\r\n", len(stored)) {
		t.Fatalf("%s: %v\n%q (stored %d bytes)", cmds[3], err, out, len(stored))
	}
	out, err = sh(cmds[4])
	if err != nil || out != string(stored) {
		t.Fatalf("%s: %v\n%q\nstored:\n%q", cmds[4], err, out, stored)
	}
	// A message with the EICAR file that reached the mailbox another way is withheld when read.
	if out, err := sh(cmds[5]); err != nil {
		t.Fatalf("%s: %v\n%s", cmds[5], err, out)
	}
	out, err = sh(cmds[6])
	if err != nil || !strings.Contains(out, "Subject: [withheld]") || !strings.Contains(out, "Policy:     malware") ||
		strings.Contains(out, "EICAR-STANDARD") {
		t.Fatalf("%s: %v\n%s", cmds[6], err, out)
	}
	if q, _ := filepath.Glob(filepath.Join(root, "build", "state", "quarantine", "*.eml")); len(q) != 1 {
		t.Errorf("quarantine holds %v, want the withheld original", q)
	}

	// IMAP: the listing gives each UID, the exact size and the envelope; the clean message reads back as it was
	// stored; the EICAR one is withheld, as the same notice at every read.
	out, err = sh(cmds[7])
	if err != nil || !strings.Contains(out, fmt.Sprintf("* 1 FETCH (UID 1 RFC822.SIZE %d ENVELOPE", len(stored))) ||
		!strings.Contains(out, `"[EXTERNAL] lunch"`) || !strings.Contains(out, "* 2 FETCH (UID 2 RFC822.SIZE") ||
		!strings.Contains(out, `"[withheld] `) {
		t.Fatalf("%s: %v\n%s", cmds[7], err, out)
	}
	out, err = sh(cmds[8])
	if err != nil || out != string(stored) {
		t.Fatalf("%s: %v\n%q\nstored:\n%q", cmds[8], err, out, stored)
	}
	notice, err := sh(cmds[9])
	if err != nil || !strings.Contains(notice, "Subject: [withheld]") || !strings.Contains(notice, "Policy:     malware") ||
		strings.Contains(notice, "EICAR-STANDARD") {
		t.Fatalf("%s: %v\n%s", cmds[9], err, notice)
	}
	if again, err := sh(cmds[9]); err != nil || again != notice {
		t.Errorf("the withheld message read again differs: %v\n%s\nfirst:\n%s", err, again, notice)
	}

	// STARTTLS with the test certificate made at start.
	out, err = sh(cmds[10])
	if err != nil || !strings.Contains(out, "TLS started") || !strings.Contains(out, "<~  250 2.0.0 Ok: stored as") {
		t.Fatalf("message over STARTTLS: %v\n%s", err, out)
	}
	certPEM, err := os.ReadFile(filepath.Join(root, "build", "state", "tls", "test-cert.pem"))
	if err != nil || !strings.Contains(string(certPEM), "BEGIN CERTIFICATE") {
		t.Fatalf("no test certificate kept in state_dir/tls: %v", err)
	}
	// Submission: AUTH after STARTTLS, relayed to the embedded upstream's test users.
	out, err = sh(cmds[11])
	if err != nil || !strings.Contains(out, "<~  235 2.0.0 Authentication succeeded") ||
		!strings.Contains(out, "<~  250 2.0.0 Ok: stored as") {
		t.Fatalf("submission with AUTH: %v\n%s", err, out)
	}
	if files, _ := filepath.Glob(filepath.Join(root, "build", "state", "mail", "submission", "*.eml")); len(files) != 1 {
		t.Errorf("%d messages stored by the submission listener, want 1", len(files))
	}
	// A wrong password is refused by the upstream; without TLS, AUTH is not offered at all.
	out, err = sh(strings.Replace(cmds[11], "alice-test-password", "wrong", 1))
	if err == nil || !strings.Contains(out, "535 5.7.8") {
		t.Errorf("wrong password: %v\n%s", err, out)
	}
	out, err = sh(strings.Replace(cmds[11], " --tls ", " ", 1))
	if err == nil || strings.Contains(out, "235 ") {
		t.Errorf("AUTH without TLS: %v\n%s", err, out)
	}

	// The card numbers: quarantined (accepted, not delivered), listed, released to the embedded upstream.
	before, _ := filepath.Glob(filepath.Join(mail, "*.eml"))
	out, err = sh(cmds[12])
	if err != nil || !strings.Contains(out, "<-  250 2.0.0 Ok: accepted as") {
		t.Fatalf("card numbers: %v\n%s", err, out)
	}
	if files, _ := filepath.Glob(filepath.Join(mail, "*.eml")); len(files) != len(before) {
		t.Fatalf("the quarantined message was delivered")
	}
	out, err = sh(cmds[13])
	if err != nil || !strings.Contains(out, "content") || !strings.Contains(out, "cards") || !strings.Contains(out, "3 entries") {
		t.Fatalf("%s: %v\n%s", cmds[13], err, out)
	}
	out, err = sh(cmds[14])
	if err != nil || !strings.Contains(out, "released ") || !strings.Contains(out, "through smtp embedded: 250") {
		t.Fatalf("%s: %v\n%s", cmds[14], err, out)
	}
	after, _ := filepath.Glob(filepath.Join(mail, "*.eml"))
	if len(after) != len(before)+1 {
		t.Fatalf("%d messages delivered after the release, want %d", len(after), len(before)+1)
	}
	var released string
	for _, f := range after {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "4111 1111 1111 1111") {
			released = string(b)
		}
	}
	if !strings.HasPrefix(released, "Received: by ") || !strings.Contains(released, "(Postern quarantine)") ||
		!strings.Contains(released, "\r\nSubject: cards\r\n") {
		t.Errorf("released message:\n%s", released)
	}

	// The metrics count what happened above: the sample lines the README's grep keeps parse as Prometheus text.
	out, err = sh(cmds[15])
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmds[15], err, out)
	}
	m := metricstest.Parse(t, strings.NewReader(out))
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"postern_messages_total", metricstest.L("listener", "demo", "protocol", "smtp", "action", "accept"), 2},
		{"postern_messages_total", metricstest.L("listener", "demo", "protocol", "smtp", "action", "reject"), 1},
		{"postern_messages_total", metricstest.L("listener", "submission", "protocol", "submission", "action", "accept"), 1},
		{"postern_messages_total", metricstest.L("listener", "demo-pop3", "protocol", "pop3", "action", "reject"), 1},
		{"postern_replies_total", metricstest.L("listener", "demo", "class", "5xx"), 1},
		{"postern_replies_total", metricstest.L("listener", "demo-pop3", "class", "+OK"), 2},
	} {
		if v, _ := m.Value(c.name, c.labels); v < c.want {
			t.Errorf("%s%v = %v, want at least %v\n%s", c.name, c.labels, v, c.want, out)
		}
	}

	// The audit log has every decision and an intact chain: each relayed message as a pending record and its
	// outcome (three), the EICAR refusal, the two messages filtered as POP3 read them, the two filtered as IMAP read them (once each: later
	// FETCHes are answered from the cache), the quarantined message,
	// and its release with the release's outcome.
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("postern did not stop on SIGINT")
	}
	vout, err := exec.Command(bin, "audit", "verify", filepath.Join(root, "build", "state", "audit.log")).CombinedOutput()
	if err != nil || !strings.Contains(string(vout), "14 records") {
		t.Errorf("audit verify: %v\n%s", err, vout)
	}
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
