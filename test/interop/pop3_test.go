package interop

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testdovecot"
	"github.com/postern/postern/proxy/pop3"
	"github.com/postern/postern/proxy/pop3proxy"
	"github.com/postern/postern/proxy/upstream"
)

// pop3Tools maps the POP3 clients of the suite to their Debian packages.
var pop3Tools = map[string]string{
	"fetchmail": "fetchmail", "getmail": "getmail6", "mpop": "mpop", "curl": "curl", "python3": "python3",
}

func needPOP3(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: install the Debian package %q (.ci/deps does)", n, pop3Tools[n])
		}
	}
}

// The messages delivered to Dovecot: one plain, one with lines starting with dots, one of 200 KiB.
var pop3Messages = []string{
	"From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: plain\r\nMessage-ID: <p1@example.org>\r\n\r\nHello Alice.\r\n",
	"From: bob@example.org\r\nSubject: dots\r\nMessage-ID: <p2@example.org>\r\n\r\n.\r\n..two\r\n.end\r\n",
	"From: bob@example.org\r\nSubject: large\r\nMessage-ID: <p3@example.org>\r\n\r\n" +
		strings.Repeat("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n", 3200),
}

// pop3Rig is Dovecot with the messages delivered, and Postern in front of it with client TLS (STLS on one
// port, implicit on another) and STLS upstream.
type pop3Rig struct {
	dc              *testdovecot.Dovecot
	plain, implicit string
	direct          []string // each message as Dovecot's own RETR gives it
}

func newPOP3Rig(t *testing.T) *pop3Rig {
	dc := testdovecot.Start(t, testdovecot.Options{})
	for _, m := range pop3Messages {
		dc.Deliver(t, "alice", m)
	}
	r := &pop3Rig{dc: dc, direct: directRetr(t, dc.POP3, len(pop3Messages))}
	for i, mode := range []pop3proxy.TLSMode{pop3proxy.TLSStartTLS, pop3proxy.TLSImplicit} {
		srv, err := pop3proxy.New(pop3proxy.Options{Name: fmt.Sprintf("pop3-%s", mode), Hostname: "postern.test",
			Upstream: dc.POP3, UpstreamTLS: upstream.TLSOptions{Mode: upstream.TLSStartTLS, CAFile: dc.CertFile},
			TLS: pop3proxy.TLS{Mode: mode, CertFile: dc.CertFile, KeyFile: dc.KeyFile}, AllowInsecureAuth: true,
			QuarantineDir: t.TempDir(), SpoolDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		if i == 0 {
			r.plain = ln.Addr().String()
		} else {
			r.implicit = ln.Addr().String()
		}
	}
	return r
}

// directRetr reads every message straight from Dovecot.
func directRetr(t *testing.T, addr string, n int) []string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := pop3.NewClient(conn, 1<<16)
	c.ReadResponse()
	c.Cmd("USER alice")
	if r, err := c.Cmd("PASS alicepass"); err != nil || !r.OK {
		t.Fatalf("direct login: %+v %v", r, err)
	}
	var out []string
	for i := 1; i <= n; i++ {
		if r, err := c.Cmd(fmt.Sprintf("RETR %d", i)); err != nil || !r.OK {
			t.Fatalf("direct RETR %d: %+v %v", i, r, err)
		}
		b, err := io.ReadAll(c.Body())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	c.Cmd("QUIT")
	return out
}

func hostPort(addr string) (string, string) { h, p, _ := net.SplitHostPort(addr); return h, p }

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%s did not finish:\n%s", name, out.String())
	}
	return out.String()
}

// TestPOP3Clients reads the maildrop through Postern with each client, plain, with STLS and with implicit TLS.
// Postern runs no plugin here: what curl and poplib receive must be byte for byte what Dovecot serves directly,
// and the clients that check sizes must not complain.
func TestPOP3Clients(t *testing.T) {
	needPOP3(t, "curl", "python3", "fetchmail", "getmail", "mpop")
	r := newPOP3Rig(t)
	cert := r.dc.CertFile
	for _, tlsMode := range []string{"plain", "stls", "implicit"} {
		addr := r.plain
		if tlsMode == "implicit" {
			addr = r.implicit
		}
		_, port := hostPort(addr)
		t.Run("curl/"+tlsMode, func(t *testing.T) {
			for i, want := range r.direct {
				args := []string{"-s", "--max-time", "30", fmt.Sprintf("pop3://alice:alicepass@%s/%d", addr, i+1)}
				switch tlsMode {
				case "stls":
					args = append([]string{"--ssl-reqd", "--cacert", cert}, args...)
				case "implicit":
					args = []string{"-s", "--max-time", "30", "--cacert", cert, fmt.Sprintf("pop3s://alice:alicepass@localhost:%s/%d", port, i+1)}
				}
				if got := runTool(t, "curl", args...); got != want {
					t.Fatalf("message %d through Postern differs from Dovecot's RETR:\n%q\n%q", i+1, got, want)
				}
			}
		})
		t.Run("poplib/"+tlsMode, func(t *testing.T) {
			script := fmt.Sprintf(`
import poplib, ssl, sys
ctx = ssl.create_default_context(cafile=%q)
mode = %q
if mode == "implicit":
    p = poplib.POP3_SSL("localhost", %s, context=ctx, timeout=30)
else:
    p = poplib.POP3("127.0.0.1", %s, timeout=30)
    if mode == "stls":
        ctx.check_hostname = False
        p.stls(context=ctx)
p.user("alice"); p.pass_("alicepass")
count, _ = p.stat()
sizes = [int(l.split()[1]) for l in p.list()[1]]
for i in range(count):
    resp, lines, octets = p.retr(i + 1)
    body = b"".join(l + b"\r\n" for l in lines)
    sys.stdout.buffer.write(b"%%d %%d %%d\n" %% (sizes[i], octets, len(body)))
p.quit()
`, cert, tlsMode, port, port)
			out := runTool(t, "python3", "-c", script)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != len(r.direct) {
				t.Fatalf("poplib: %q", out)
			}
			for i, l := range lines {
				var listed, octets, body int
				fmt.Sscanf(l, "%d %d %d", &listed, &octets, &body)
				// poplib's octets count the line ends and stuffing as sent; the unstuffed body must be the size
				// LIST announced, which is Dovecot's own message.
				if listed != len(r.direct[i]) || body != len(r.direct[i]) {
					t.Fatalf("message %d: LIST %d, body %d, direct %d (%s)", i+1, listed, body, len(r.direct[i]), l)
				}
			}
		})
		t.Run("fetchmail/"+tlsMode, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "mbox")
			ssl := "sslproto ''"
			switch tlsMode {
			case "stls":
				ssl = "sslproto 'tls1.2+' sslcertck sslcertfile '" + cert + "'"
			case "implicit":
				ssl = "ssl sslcertck sslcertfile '" + cert + "'"
			}
			rc := filepath.Join(dir, "fetchmailrc")
			os.WriteFile(rc, []byte(fmt.Sprintf("poll localhost service %s proto pop3 auth password\n  user alice password alicepass is alice keep %s\n  mda \"/bin/sh -c 'cat >> %s'\"\n", port, ssl, out)), 0o600)
			log := runTool(t, "fetchmail", "-f", rc, "-v", "--nosyslog", "-i", filepath.Join(dir, "ids"), "--pidfile", filepath.Join(dir, "pid"))
			if strings.Contains(log, "octets") && strings.Contains(strings.ToLower(log), "mismatch") {
				t.Fatalf("fetchmail reports a size mismatch:\n%s", log)
			}
			got, _ := os.ReadFile(out)
			for _, m := range pop3Messages {
				subject := m[strings.Index(m, "Subject: "):]
				subject = subject[:strings.Index(subject, "\r\n")]
				if !strings.Contains(string(got), subject) {
					t.Fatalf("fetchmail did not deliver %q:\n%s", subject, log)
				}
			}
			if !strings.Contains(log, "3 messages for alice") {
				t.Fatalf("fetchmail log:\n%s", log)
			}
		})
		t.Run("mpop/"+tlsMode, func(t *testing.T) {
			dir := t.TempDir()
			mbox := filepath.Join(dir, "mbox")
			args := []string{"--host=localhost", "--port=" + port, "--auth=user", "--user=alice",
				"--passwordeval=echo alicepass", "--delivery=mbox," + mbox, "--keep=on", "--received-header=off",
				"--uidls-file=" + filepath.Join(dir, "uidls")}
			switch tlsMode {
			case "plain":
				args = append(args, "--tls=off")
			case "stls":
				args = append(args, "--tls=on", "--tls-starttls=on", "--tls-trust-file="+cert)
			case "implicit":
				args = append(args, "--tls=on", "--tls-starttls=off", "--tls-trust-file="+cert)
			}
			log := runTool(t, "mpop", append(args, "-q")...)
			got, _ := os.ReadFile(mbox)
			if n := strings.Count(string(got), "\nFrom ") + boolInt(strings.HasPrefix(string(got), "From ")); n != 3 {
				t.Fatalf("mpop delivered %d messages:\n%s\n%s", n, log, got)
			}
		})
		t.Run("getmail/"+tlsMode, func(t *testing.T) {
			if tlsMode == "stls" {
				t.Skip("getmail6 speaks POP3 in plain text or with implicit TLS only")
			}
			dir := t.TempDir()
			out := filepath.Join(dir, "mbox")
			retriever := "SimplePOP3Retriever"
			extra := ""
			if tlsMode == "implicit" {
				retriever, extra = "SimplePOP3SSLRetriever", "ca_certs = "+cert+"\n"
			}
			rc := filepath.Join(dir, "getmailrc")
			// An external MDA: getmail refuses Maildir delivery as root, and the tests run as root.
			os.WriteFile(rc, []byte(fmt.Sprintf("[retriever]\ntype = %s\nserver = localhost\nport = %s\nusername = alice\npassword = alicepass\n%s\n[destination]\ntype = MDA_external\npath = /bin/sh\narguments = (\"-c\", \"cat >> %s; echo ===== >> %s\")\nallow_root_commands = true\n\n[options]\nread_all = true\ndelete = false\nverbose = 2\n", retriever, port, extra, out, out)), 0o600)
			log := runTool(t, "getmail", "--rcfile", rc, "--getmaildir", dir)
			got, _ := os.ReadFile(out)
			if n := strings.Count(string(got), "=====\n"); n != 3 || strings.Contains(strings.ToLower(log), "error") {
				t.Fatalf("getmail delivered %d messages:\n%s", n, log)
			}
		})
	}
	// Nothing was deleted: every client kept the mail.
	if got := directRetr(t, r.dc.POP3, len(pop3Messages)); len(got) != 3 {
		t.Fatal("messages lost")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestPOP3XClientWithDovecot: Dovecot takes Postern's XCLIENT from a trusted network, and Postern refuses the
// session when Dovecot does not trust it, rather than log the client in as coming from Postern.
func TestPOP3XClientWithDovecot(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprint("trusted=", trusted), func(t *testing.T) {
			extra := ""
			if trusted {
				extra = "login_trusted_networks = 127.0.0.0/8\n"
			}
			dc := testdovecot.Start(t, testdovecot.Options{Extra: extra})
			dc.Deliver(t, "alice", pop3Messages[0])
			srv, err := pop3proxy.New(pop3proxy.Options{Upstream: dc.POP3, Hostname: "postern.test", AllowInsecureAuth: true,
				ClientAddress: pop3proxy.ClientAddressXClient, SpoolDir: t.TempDir(),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			go srv.Serve(ln)
			defer srv.Close()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			c := pop3.NewClient(conn, 4096)
			g, err := c.ReadResponse()
			if err != nil || g.OK != trusted {
				t.Fatalf("greeting %+v %v", g, err)
			}
			if !trusted {
				return
			}
			c.Cmd("USER alice")
			if r, err := c.Cmd("PASS alicepass"); err != nil || !r.OK {
				t.Fatalf("login after XCLIENT: %+v %v\n%s", r, err, dc.Log())
			}
			local := conn.LocalAddr().(*net.TCPAddr)
			if r, _ := c.Cmd("QUIT"); !r.OK || !strings.Contains(dc.Log(), "rip=127.0.0.1") {
				t.Fatalf("QUIT %+v, client port %d\n%s", r, local.Port, dc.Log())
			}
		})
	}
}
