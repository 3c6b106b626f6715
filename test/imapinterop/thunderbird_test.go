package imapinterop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/testdovecot"
)

// tbForward runs inside Thunderbird's network namespace, which has only its own loopback: it forwards
// 127.0.0.1:PORT there to a Unix socket (the file system is shared across namespaces), where the test's PREAUTH
// shim listens.
const tbForward = `
import socket, sys, threading
port, path = int(sys.argv[1]), sys.argv[2]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(16)
open(sys.argv[3], "w").close()  # listening: Thunderbird may start
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except Exception:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except Exception:
            pass
while True:
    c, _ = ls.accept()
    u = socket.socket(socket.AF_UNIX)
    u.connect(path)
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
`

// tbPrefs is the profile's user.js: one IMAP account on 127.0.0.1:PORT (the shim, which greets with PREAUTH, so
// no password is needed), messages kept offline in a Maildir store (one file per message), no first-run UI, and
// online whatever the network looks like: in a namespace with only loopback, Thunderbird's link detection
// (offline.autoDetect, network.manage-offline-status) would otherwise take it offline at some starts, closing its
// connections before the first command.
const tbPrefs = `user_pref("mail.accountmanager.accounts", "account1");
user_pref("mail.accountmanager.defaultaccount", "account1");
user_pref("mail.account.account1.server", "server1");
user_pref("mail.account.account1.identities", "id1");
user_pref("mail.identity.id1.useremail", "alice@example.com");
user_pref("mail.identity.id1.fullName", "Alice");
user_pref("mail.server.server1.type", "imap");
user_pref("mail.server.server1.hostname", "127.0.0.1");
user_pref("mail.server.server1.port", %d);
user_pref("mail.server.server1.userName", "alice");
user_pref("mail.server.server1.name", "postern");
user_pref("mail.server.server1.socketType", 0);
user_pref("mail.server.server1.authMethod", 3);
user_pref("mail.server.server1.login_at_startup", true);
user_pref("mail.server.server1.check_new_mail", true);
user_pref("mail.server.server1.offline_download", true);
user_pref("mail.server.server1.download_bodies_on_get_new_mail", true);
user_pref("mail.server.server1.autosync_offline_stores", true);
user_pref("mail.server.server1.check_time", 1);
user_pref("mail.server.server1.storeContractID", "@mozilla.org/msgstore/maildirstore;1");
user_pref("mail.serverDefaultStoreContractID", "@mozilla.org/msgstore/maildirstore;1");
user_pref("mail.server.server1.directory-rel", "[ProfD]ImapMail/postern");
user_pref("mail.shell.checkDefaultClient", false);
user_pref("mail.provider.suppress_dialog_on_startup", true);
user_pref("mail.startup.enabledMailCheckOnce", true);
user_pref("mailnews.start_page.enabled", false);
user_pref("mail.rights.version", 1);
user_pref("mail.spotlight.firstRunDone", true);
user_pref("mail.winsearch.firstRunDone", true);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.enabled", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("mail.biff.show_alert", false);
user_pref("offline.autoDetect", false);
user_pref("network.manage-offline-status", false);
`

// tbLog keeps what Thunderbird sent, tbServed what it was sent.
var tbLog, tbServed = &syncBuffer{}, &syncBuffer{}

// preauthShim serves the Unix socket: each connection is logged in to Postern as alice, then greeted with PREAUTH
// and relayed byte for byte (test code: Thunderbird cannot be given a password without its key store).
func preauthShim(t *testing.T, sock, proxy string) {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.DialTimeout("tcp", proxy, 10*time.Second)
				if err != nil {
					return
				}
				defer up.Close()
				br := bufio.NewReader(up)
				if _, err := br.ReadString('\n'); err != nil { // the greeting
					return
				}
				fmt.Fprintf(up, "shim1 LOGIN alice alicepass\r\n")
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(line, "shim1 ") {
						if !strings.HasPrefix(line, "shim1 OK") {
							return
						}
						break
					}
				}
				io.WriteString(c, "* PREAUTH Logged in by the test's shim\r\n")
				done := make(chan struct{}, 2)
				go func() { io.Copy(io.MultiWriter(up, tbLog), c); done <- struct{}{} }()
				go func() { io.Copy(io.MultiWriter(c, tbServed), br); done <- struct{}{} }()
				<-done
			}()
		}
	}()
}

// TestThunderbird runs Thunderbird headless in a network namespace with only loopback, its account on
// Postern in front of Dovecot: it lists INBOX and, as it gets new mail, downloads each message for offline use
// (download_bodies_on_get_new_mail), and every message it stores (but for the X-Mozilla-* lines it adds) equals the
// filtered bytes, the banner included, the EICAR one as its notice.
func TestThunderbird(t *testing.T) {
	r := newRig(t, testdovecot.Options{})
	tg := r.targets[1]
	ref := reference(t, tg.addr)
	checkFiltered(t, tg, ref)

	dir, profile, sock := tbSetUp(t, tg.addr, "")
	tb := startThunderbird(t, dir, profile, sock)
	want := map[string]bool{}
	for _, f := range ref {
		want[digest(f.Body)] = true
	}
	var stored map[string]string
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		stored = tbStored(t, filepath.Join(profile, "ImapMail", "postern"))
		matched := 0
		for _, b := range stored {
			if want[digest([]byte(b))] {
				matched++
			}
		}
		if matched == len(ref) {
			for name, b := range stored {
				t.Logf("stored %s: %d bytes, banner %v", filepath.Base(name), len(b), strings.Contains(b, bannerText))
			}
			return
		}
		time.Sleep(time.Second)
	}
	var got []string
	for name, b := range stored {
		got = append(got, fmt.Sprintf("%s (%d bytes, known %v)", name, len(b), want[digest([]byte(b))]))
	}
	t.Logf("Thunderbird sent:\n%s", lastLines(tbLog.String(), 60))
	t.Fatalf("Thunderbird stored %d messages matching the filtered bytes of %d; stored:\n%s\n%s",
		len(got), len(ref), strings.Join(got, "\n"), tb.report())
}

// tbPort is the account's port inside Thunderbird's namespace: nothing else listens there.
const tbPort = 1143

// tbSetUp checks that Thunderbird can run here, and makes a directory with a profile (tbPrefs, then extra prefs)
// and the PREAUTH shim to proxy on a socket in it; the shim's logs start empty.
func tbSetUp(t *testing.T, proxy, extra string) (dir, profile, sock string) {
	t.Helper()
	need(t, "thunderbird", "python3", "ip")
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare not found: install the Debian package util-linux")
	}
	if os.Geteuid() != 0 {
		t.Fatal("a network namespace needs root")
	}
	dir = t.TempDir()
	sock = filepath.Join(dir, "shim.sock")
	tbLog.Reset()
	tbServed.Reset()
	preauthShim(t, sock, proxy)
	profile = filepath.Join(dir, "profile")
	if err := os.MkdirAll(profile, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(fmt.Sprintf(tbPrefs, tbPort)+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, profile, sock
}

// thunderbird is a running Thunderbird.
type thunderbird struct {
	cmd *exec.Cmd
	out *syncBuffer
	log string // its IMAP log
}

// report is what a failing test shows of Thunderbird: the end of its IMAP log and of its output.
func (tb *thunderbird) report() string {
	imapLog, _ := os.ReadFile(tb.log)
	var out []string // but for GTK's complaints of having no screen
	for _, l := range strings.Split(tb.out.String(), "\n") {
		if strings.TrimSpace(l) != "" && !strings.Contains(l, "Gtk-CRITICAL") && !strings.Contains(l, "WARNING: gtk_") {
			out = append(out, l)
		}
	}
	return fmt.Sprintf("its IMAP log ends:\n%s\nits output ends:\n%s", lastLines(string(imapLog), 40),
		lastLines(strings.Join(out, "\n"), 20))
}

func (tb *thunderbird) stop() {
	syscall.Kill(-tb.cmd.Process.Pid, syscall.SIGKILL)
	tb.cmd.Wait()
}

// startThunderbird runs Thunderbird with profile, headless (MOZ_HEADLESS: no X server, so no display state is
// left between runs), in a network namespace whose 127.0.0.1:tbPort leads to the shim's socket; it is killed when
// the test ends. Its own IMAP log (MOZ_LOG) goes to tb.log.moz_log in dir, for a test that fails to show.
func startThunderbird(t *testing.T, dir, profile, sock string, args ...string) *thunderbird {
	t.Helper()
	fwd := filepath.Join(dir, "forward.py")
	if err := os.WriteFile(fwd, []byte(tbForward), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "forward.ready")
	os.Remove(ready)
	quoted := ""
	for _, a := range args {
		quoted += " '" + a + "'"
	}
	script := fmt.Sprintf(`ip link set lo up && { python3 %s %d %s %s & } && `+
		`while [ ! -e %s ]; do sleep 0.1; done && exec thunderbird --no-remote --profile %s%s`,
		fwd, tbPort, sock, ready, ready, profile, quoted)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	cmd := exec.CommandContext(ctx, "unshare", "-n", "--", "sh", "-c", script)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DISPLAY=") && !strings.HasPrefix(kv, "WAYLAND_DISPLAY=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "HOME="+dir, "MOZ_HEADLESS=1", "MOZ_DISABLE_AUTO_SAFE_MODE=1",
		"MOZ_LOG=IMAP:4,sync,timestamp", "MOZ_LOG_FILE="+filepath.Join(dir, "tb.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	tb := &thunderbird{cmd: cmd, out: &syncBuffer{}, log: filepath.Join(dir, "tb.log.moz_log")}
	cmd.Stdout, cmd.Stderr = tb.out, tb.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tb.stop()
		cancel()
	})
	return tb
}

// tbStored reads the messages of Thunderbird's offline Maildir store for the account, without the X-Mozilla-*
// header lines Thunderbird adds to what it downloaded.
func tbStored(t *testing.T, root string) map[string]string {
	out := map[string]string{}
	filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(path, ".eml") {
			return nil
		}
		if rel, err := filepath.Rel(root, path); err != nil || !strings.Contains("/"+rel, "/cur/") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		var kept []string
		header := true
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if header && strings.HasPrefix(line, "X-Mozilla-") {
				continue
			}
			if line == "\r\n" || line == "\n" {
				header = false
			}
			kept = append(kept, line)
		}
		out[path] = strings.Join(kept, "")
		return nil
	})
	return out
}

// tbHeadersOnly makes the account download headers only: a message's text is fetched when it is opened.
const tbHeadersOnly = `user_pref("mail.server.server1.offline_download", false);
user_pref("mail.server.server1.download_bodies_on_get_new_mail", false);
user_pref("mail.server.server1.autosync_offline_stores", false);
`

// TestThunderbirdOpensMessage: Thunderbird, keeping only headers, lists INBOX through Postern; started again with
// -mail and a message's URI it opens the message in a window of its own (MailUtils.displayMessage): it fetches the
// message's text then, and what it is served carries the retrieval policy's banner.
func TestThunderbirdOpensMessage(t *testing.T) {
	r := newRig(t, testdovecot.Options{})
	tg := r.targets[1]
	dir, profile, sock := tbSetUp(t, tg.addr, tbHeadersOnly)
	// First the listing: Thunderbird keeps the headers in its folder database.
	tb := startThunderbird(t, dir, profile, sock)
	db := filepath.Join(profile, "ImapMail", "postern", "INBOX.msf")
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(tbLog.String(), "HEADER.FIELDS") || !exists(db) {
		if time.Now().After(deadline) {
			t.Fatalf("Thunderbird did not list INBOX; it sent:\n%s\n%s", lastLines(tbLog.String(), 40), tb.report())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if strings.Contains(tbServed.String(), bannerText) {
		t.Fatal("Thunderbird downloaded message text while keeping headers only: the test would prove nothing")
	}
	time.Sleep(3 * time.Second) // the database is written
	tb.stop()
	// Then the message, as a user opening it.
	sent := len(tbLog.String())
	tb = startThunderbird(t, dir, profile, sock, "-mail", "imap-message://alice@127.0.0.1/INBOX#1")
	deadline = time.Now().Add(2 * time.Minute)
	for !strings.Contains(tbServed.String(), bannerText) {
		if time.Now().After(deadline) {
			t.Fatalf("Thunderbird did not open the message; it sent:\n%s\n%s", lastLines(tbLog.String()[sent:], 40), tb.report())
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The only text Thunderbird fetches is the opened message's (the listing fetched none, above).
	var fetches []string
	for _, l := range strings.Split(tbLog.String()[sent:], "\n") {
		u := strings.ToUpper(l)
		if strings.Contains(u, "FETCH") && (strings.Contains(u, "BODY[]") || strings.Contains(u, "BODY.PEEK[]")) {
			fetches = append(fetches, strings.TrimSpace(l))
		}
	}
	if len(fetches) == 0 || !slices.ContainsFunc(fetches, func(l string) bool { return strings.Contains(strings.ToUpper(l), "FETCH 1 ") }) {
		t.Fatalf("the banner was served but Thunderbird sent no FETCH of UID 1's text: %q", fetches)
	}
	t.Logf("Thunderbird opened UID 1 with %q", fetches)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
