package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/testdovecot"
	"github.com/postern/postern/internal/testplugins"
)

// posternBin builds the postern command once for the tests that run it as a process.
var posternBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "postern-interop-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "postern")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(testplugins.Root(), "cmd", "postern")).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// posternRun starts `postern run -config cfg` until the test ends and waits until addr listens.
func posternRun(t *testing.T, cfg, addr string) {
	t.Helper()
	bin, err := posternBin()
	if err != nil {
		t.Fatal(err)
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
	if !waitListening(addr, exited) {
		t.Fatalf("postern did not listen on %s:\n%s", addr, log.String())
	}
}

// posternCmd runs a postern command to its end and returns its exit status and output.
func posternCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin, err := posternBin()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// quarantineIDs lists the quarantine of cfg and returns the entries' IDs and the whole JSON lines.
func quarantineIDs(t *testing.T, cfg string) ([]string, []map[string]any) {
	t.Helper()
	code, out := posternCmd(t, "quarantine", "list", "-config", cfg, "-json")
	if code != 0 {
		t.Fatalf("quarantine list: exit %d\n%s", code, out)
	}
	var ids []string
	var entries []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		ids = append(ids, m["id"].(string))
		entries = append(entries, m)
	}
	return ids, entries
}

// holdPlugin is the configuration of a plugin that quarantines every message it sees.
func holdPlugin(t *testing.T) string {
	return fmt.Sprintf(`
plugin "hold" {
  source = %q
  config = { action = "quarantine", text = "held for review" }
}
policy "review" {
  plugins = ["hold"]
}
`, testplugins.Path(t, "plugins/verdict"))
}

// TestQuarantineReleaseToSmtpSink quarantines a message at SMTP time and releases it with the command line: it
// reaches the listener's upstream, Postfix's smtp-sink, from its original sender to both original recipients,
// byte for byte as received under one Received: field that says who released it.
func TestQuarantineReleaseToSmtpSink(t *testing.T) {
	s := startSink(t)
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := filepath.Join(dir, "q.hcl")
	conf := fmt.Sprintf(`state_dir = "state"
audit {
  path = "state/audit.log"
}
listener "smtp" "mx" {
  address  = %q
  upstream = %q
}
`, addr, s.addr) + holdPlugin(t)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	posternRun(t, cfg, addr)
	msg := "From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: held\r\nMessage-ID: <held@example.org>\r\n\r\n" +
		"First line.\r\n.A line that starts with a dot\r\nLast line.\r\n"
	if err := smtp.SendMail(addr, nil, "sender@example.org", []string{"rcpt@example.net", "other@example.net"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if tr := s.transactions(); len(tr) != 0 {
		t.Fatalf("a quarantined message reached the upstream:\n%s", tr[0])
	}
	ids, _ := quarantineIDs(t, cfg)
	if len(ids) != 1 {
		t.Fatalf("quarantine holds %v", ids)
	}
	code, out := posternCmd(t, "quarantine", "release", "-config", cfg, "-by", "compliance", "-reason", "cleared", ids[0])
	if code != 0 || !strings.Contains(out, "through smtp "+s.addr+": 250 ") {
		t.Fatalf("release: exit %d\n%s", code, out)
	}
	// smtp-sink appends to its dump as the message arrives: wait for all of it.
	var tr []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if tr = s.transactions(); len(tr) == 1 && strings.Contains(tr[0], "Last line.\n") {
			break
		}
	}
	if len(tr) != 1 {
		t.Fatalf("smtp-sink has %d transactions", len(tr))
	}
	// The dump has LF line ends.
	got := strings.ReplaceAll(tr[0], "\r\n", "\n")
	msgLF := strings.ReplaceAll(msg, "\r\n", "\n")
	for _, want := range []string{"X-Mail-Args: <sender@example.org>", "X-Rcpt-Args: <rcpt@example.net>",
		"X-Rcpt-Args: <other@example.net>"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	_, content, ok := strings.Cut(got, "Received: by ")
	if !ok {
		t.Fatalf("no trace field:\n%s", got)
	}
	// smtp-sink adds its own Received: above what it got; the release's comes next, then the original.
	trace, rest, _ := strings.Cut(content, "\nFrom: ")
	if !strings.Contains(trace, "(Postern quarantine) with ESMTP id "+ids[0]) || !strings.Contains(trace, "released by compliance via cli") {
		t.Errorf("trace field: %q", trace)
	}
	if !strings.HasPrefix("From: "+rest, msgLF) {
		t.Errorf("the released message is not the original:\n%q\nwant\n%q", "From: "+rest, msgLF)
	}
	if code, out := posternCmd(t, "audit", "verify", filepath.Join(dir, "state", "audit.log")); code != 0 {
		t.Fatalf("audit verify: %s", out)
	}
}

// quarantineRig is Dovecot with a master user and alice's mailbox holding the EICAR message, and Postern's POP3
// listener in front of it, with the given release block.
func quarantineRig(t *testing.T, release func(dc *testdovecot.Dovecot, dir string) string) (dc *testdovecot.Dovecot, cfg, pop string) {
	t.Helper()
	dc = testdovecot.Start(t, testdovecot.Options{MasterUsers: []testdovecot.User{{Name: "postern", Password: "masterpass"}}})
	dc.Deliver(t, "alice", eicarMessage)
	dir := t.TempDir()
	pop = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg = filepath.Join(dir, "q.hcl")
	conf := fmt.Sprintf(`state_dir = "state"
audit {
  path = "state/audit.log"
}
quarantine {
%s
}
listener "pop3" "pop" {
  address  = %q
  upstream = %q
  allow_insecure_auth = true
}
plugin "eicar" {
  source = %q
}
policy "malware" {
  plugins = ["eicar"]
}
`, release(dc, dir), pop, dc.POP3, testplugins.Path(t, "plugins/eicar"))
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	posternRun(t, cfg, pop)
	return dc, cfg, pop
}

const eicarMessage = "From: bob@example.org\r\nTo: alice@example.com\r\nSubject: old mail\r\nMessage-ID: <eicar@example.org>\r\n\r\n" +
	`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\r\n"

// retrieveWithheld reads alice's first message through Postern: the notice, with the original quarantined.
func retrieveWithheld(t *testing.T, pop, cfg string) string {
	t.Helper()
	notice := pop3Retr(t, pop, "alice", "alicepass", 1)
	if !strings.Contains(notice, "Subject: [withheld]") || strings.Contains(notice, "EICAR-STANDARD") {
		t.Fatalf("not withheld:\n%s", notice)
	}
	ids, entries := quarantineIDs(t, cfg)
	if len(ids) != 1 || entries[0]["stage"] != "retrieval" || entries[0]["mailbox_user"] != "alice" ||
		entries[0]["policy"] != "malware" || !strings.Contains(notice, ids[0]) {
		t.Fatalf("quarantine %v %v", ids, entries)
	}
	return ids[0]
}

// pop3Retr logs in to a POP3 server and returns message n.
func pop3Retr(t *testing.T, addr, user, pass string, n int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	line := func() string {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("POP3 %s: %v", addr, err)
		}
		return l
	}
	ok := func(cmd string) {
		if cmd != "" {
			fmt.Fprintf(c, "%s\r\n", cmd)
		}
		if l := line(); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("POP3 %q: %s", cmd, l)
		}
	}
	ok("")
	ok("USER " + user)
	ok("PASS " + pass)
	ok(fmt.Sprintf("RETR %d", n))
	var b strings.Builder
	for {
		l := line()
		if l == ".\r\n" {
			break
		}
		b.WriteString(strings.TrimPrefix(l, "."))
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return b.String()
}

// popCount returns how many messages a POP3 mailbox has, asking Dovecot directly.
func popCount(t *testing.T, addr string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	var n int
	for _, cmd := range []string{"", "USER alice", "PASS alicepass", "STAT"} {
		if cmd != "" {
			fmt.Fprintf(c, "%s\r\n", cmd)
		}
		l, _ := br.ReadString('\n')
		if !strings.HasPrefix(l, "+OK") {
			t.Fatalf("POP3 %q: %s", cmd, l)
		}
		if cmd == "STAT" {
			fmt.Sscanf(l, "+OK %d", &n)
		}
	}
	return n
}

// TestQuarantineReleaseToDovecot releases a message withheld at retrieval back into the mailbox, as a new
// message, both ways a mail server takes one: LMTP delivery, and IMAP APPEND logged in as the user through
// Dovecot's master user. The notice keeps its place (the mailbox then holds two messages), and the new message is
// the original under the release's Received: field.
func TestQuarantineReleaseToDovecot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		release func(dc *testdovecot.Dovecot, dir string) string
		route   string
	}{
		{"lmtp", func(dc *testdovecot.Dovecot, _ string) string {
			return fmt.Sprintf("  release \"pop\" {\n    via = \"lmtp\"\n    address = %q\n  }", dc.LMTP)
		}, "lmtp"},
		{"imap master user", func(dc *testdovecot.Dovecot, dir string) string {
			pw := filepath.Join(dir, "master.pw")
			if err := os.WriteFile(pw, []byte("masterpass\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("  release \"pop\" {\n    via = \"imap\"\n    address = %q\n    master_user = \"postern\"\n"+
				"    password_file = %q\n    tls {\n      mode = \"starttls\"\n      ca_file = %q\n      server_name = \"localhost\"\n    }\n  }",
				dc.IMAP, pw, dc.CertFile)
		}, "imap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc, cfg, pop := quarantineRig(t, tc.release)
			id := retrieveWithheld(t, pop, cfg)
			code, out := posternCmd(t, "quarantine", "release", "-config", cfg, "-by", "helpdesk", "-reason", "test file", id)
			if code != 0 || !strings.Contains(out, "through "+tc.route+" ") {
				t.Fatalf("release: exit %d\n%s\n%s", code, out, dc.Log())
			}
			if n := popCount(t, dc.POP3); n != 2 {
				t.Fatalf("the mailbox holds %d messages, want the original and the released copy", n)
			}
			got := directRetr(t, dc.POP3, 2)[1]
			i := strings.Index(got, "Received: by ")
			if i < 0 || !strings.Contains(got[i:], "released by helpdesk via cli") || !strings.HasSuffix(got, eicarMessage) {
				t.Fatalf("released message:\n%s", got)
			}
			if code, out := posternCmd(t, "quarantine", "release", "-config", cfg, "-reason", "again", id); code != 1 ||
				!strings.Contains(out, "already released") {
				t.Fatalf("second release: exit %d\n%s", code, out)
			}
		})
	}
}

// TestQuarantineReleaseRefusedByDovecot: a master password Dovecot refuses is the release's error, the entry stays
// held, and the refusal is on record.
func TestQuarantineReleaseRefusedByDovecot(t *testing.T) {
	dc, cfg, pop := quarantineRig(t, func(dc *testdovecot.Dovecot, dir string) string {
		pw := filepath.Join(dir, "master.pw")
		if err := os.WriteFile(pw, []byte("wrong\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("  release \"pop\" {\n    via = \"imap\"\n    address = %q\n    master_user = \"postern\"\n"+
			"    password_file = %q\n  }", dc.IMAP, pw)
	})
	id := retrieveWithheld(t, pop, cfg)
	code, out := posternCmd(t, "quarantine", "release", "-config", cfg, "-reason", "test", id)
	if code != 1 || !strings.Contains(out, "LOGIN as alice*postern") || !strings.Contains(out, "NO") {
		t.Fatalf("release with a wrong password: exit %d\n%s", code, out)
	}
	if n := popCount(t, dc.POP3); n != 1 {
		t.Fatalf("the mailbox holds %d messages", n)
	}
	if _, entries := quarantineIDs(t, cfg); entries[0]["released"] != nil {
		t.Fatal("marked released")
	}
}
