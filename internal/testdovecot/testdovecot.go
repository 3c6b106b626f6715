// Package testdovecot starts a real Dovecot for interop tests: POP3, IMAP and LMTP on free loopback ports, with
// and without TLS, users from a passwd-file, Maildirs owned by the `mail` user (Dovecot refuses to run mail as
// root), and messages delivered through its LMTP listener. It is protocol neutral: the POP3 and IMAP tests both
// use it.
//
// Dovecot is started as root without systemd (`dovecot -c FILE`, its own configuration, no conf.d) and stopped
// when the test ends. Tests skip when Dovecot is not installed or the process is not root; CI installs it
// (.ci/deps).
package testdovecot

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// User is a test user: its name and password.
type User struct{ Name, Password string }

// Dovecot is a running Dovecot.
type Dovecot struct {
	// Addresses, host:port on 127.0.0.1: plain text with STLS/STARTTLS, implicit TLS, and LMTP.
	POP3, POP3S, IMAP, IMAPS, LMTP string
	// CertFile is the PEM certificate of the TLS listeners (self-signed, for 127.0.0.1 and localhost): a client
	// trusts it as its CA. KeyFile is its key, for a test that serves TLS with the same pair.
	CertFile, KeyFile string
	// Dir holds the configuration, the logs and the mail.
	Dir   string
	Users []User
	conf  string
}

// Options change the defaults.
type Options struct {
	// Users to create; default alice/alicepass and bob/bobpass.
	Users []User
	// Extra is appended to the configuration (settings for one test: login_trusted_networks, limits).
	Extra string
	// MasterUsers may log in as any user with "user*master" and the master's password (Dovecot's master
	// users, auth_master_user_separator "*"): what an administrative tool such as a quarantine release uses.
	MasterUsers []User
}

// Start starts Dovecot and stops it when t ends. It skips t without dovecot or without root.
func Start(t testing.TB, opts Options) *Dovecot {
	t.Helper()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/dovecot"); serr != nil {
			t.Skip("dovecot is not installed (apt-get install dovecot-pop3d dovecot-imapd dovecot-lmtpd)")
		}
		bin = "/usr/sbin/dovecot"
	}
	if os.Geteuid() != 0 {
		t.Skip("starting dovecot needs root")
	}
	mail, err := user.Lookup("mail")
	if err != nil {
		t.Skipf("no mail user: %v", err)
	}
	uid, _ := strconv.Atoi(mail.Uid)
	gid, _ := strconv.Atoi(mail.Gid)
	if len(opts.Users) == 0 {
		opts.Users = []User{{"alice", "alicepass"}, {"bob", "bobpass"}}
	}
	// Not t.TempDir: Dovecot's unprivileged processes must reach it.
	dir, err := os.MkdirTemp("", "testdovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &Dovecot{Dir: dir, Users: opts.Users}
	ports := freePorts(t, 5)
	d.POP3, d.POP3S, d.IMAP, d.IMAPS, d.LMTP = ports[0], ports[1], ports[2], ports[3], ports[4]
	d.CertFile = filepath.Join(dir, "cert.pem")
	d.KeyFile = filepath.Join(dir, "key.pem")
	keyFile := d.KeyFile
	writeCert(t, d.CertFile, keyFile)

	mailDir := filepath.Join(dir, "mail")
	must(t, os.Mkdir(mailDir, 0o755))
	must(t, os.Chown(mailDir, uid, gid))
	var passwd strings.Builder
	for _, u := range opts.Users {
		fmt.Fprintf(&passwd, "%s:{PLAIN}%s:%d:%d::%s::\n", u.Name, u.Password, uid, gid, filepath.Join(mailDir, u.Name))
	}
	must(t, os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd.String()), 0o644))
	var master string
	if len(opts.MasterUsers) > 0 {
		var mp strings.Builder
		for _, u := range opts.MasterUsers {
			fmt.Fprintf(&mp, "%s:{PLAIN}%s\n", u.Name, u.Password)
		}
		must(t, os.WriteFile(filepath.Join(dir, "master-passwd"), []byte(mp.String()), 0o644))
		master = fmt.Sprintf("auth_master_user_separator = *\npassdb {\n  driver = passwd-file\n  args = scheme=PLAIN %s\n"+
			"  master = yes\n  pass = yes\n}\n", filepath.Join(dir, "master-passwd"))
	}

	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	d.conf = filepath.Join(dir, "dovecot.conf")
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
info_log_path = %[1]s/dovecot.log
protocols = pop3 imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <%[2]s
ssl_key = <%[3]s
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_uid = mail
mail_gid = mail
first_valid_uid = %[4]d
mail_location = maildir:%[5]s/%%n/Maildir
pop3_uidl_format = %%08Xu%%08Xv
mail_max_userip_connections = 1000
default_process_limit = 200
default_client_limit = 2000
%[12]spassdb {
  driver = passwd-file
  args = scheme=PLAIN %[1]s/passwd
}
userdb {
  driver = passwd-file
  args = %[1]s/passwd
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[6]s
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = %[7]s
    ssl = yes
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[8]s
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %[9]s
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[10]s
  }
  unix_listener lmtp {
    mode = 0600
  }
}
protocol lmtp {
  postmaster_address = postmaster@example.test
}
%[11]s
`, dir, d.CertFile, keyFile, uid, mailDir, port(d.POP3), port(d.POP3S), port(d.IMAP), port(d.IMAPS),
		port(d.LMTP), opts.Extra, master)
	must(t, os.WriteFile(d.conf, []byte(conf), 0o644))
	// Output to a file, not a pipe: the daemon's children inherit it, and a pipe would stay open while they run.
	out, err := os.Create(filepath.Join(dir, "start.out"))
	must(t, err)
	start := exec.Command(bin, "-c", d.conf)
	start.Stdout, start.Stderr = out, out
	err = start.Run()
	out.Close()
	if err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("starting dovecot: %v\n%s\n%s", err, b, d.Log())
	}
	t.Cleanup(func() {
		exec.Command(bin, "-c", d.conf, "stop").Run()
		// The master removes its pid file when it has stopped its children.
		for i := 0; i < 100; i++ {
			if _, err := os.Stat(filepath.Join(dir, "run", "master.pid")); os.IsNotExist(err) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if t.Failed() {
			t.Logf("dovecot log:\n%s", d.Log())
		}
	})
	for _, addr := range []string{d.POP3, d.POP3S, d.IMAP, d.IMAPS, d.LMTP} {
		if !waitListening(addr) {
			t.Fatalf("dovecot does not listen on %s:\n%s", addr, d.Log())
		}
	}
	return d
}

// Log returns Dovecot's log so far.
func (d *Dovecot) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	return string(b)
}

// Deliver delivers a message (CRLF line endings) to a user through LMTP.
func (d *Dovecot) Deliver(t testing.TB, to, msg string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", d.LMTP, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	expect := func(code string) {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("LMTP: %v", err)
			}
			if !strings.HasPrefix(line, code) {
				t.Fatalf("LMTP: want %s, got %q", code, line)
			}
			if len(line) < 4 || line[3] != '-' {
				return
			}
		}
	}
	send := func(s string) { c.Write([]byte(s)) }
	expect("220")
	send("LHLO testdovecot\r\n")
	expect("250")
	send("MAIL FROM:<sender@example.test>\r\n")
	expect("250")
	send("RCPT TO:<" + to + ">\r\n")
	expect("250")
	send("DATA\r\n")
	expect("354")
	var b strings.Builder
	for _, line := range strings.SplitAfter(msg, "\n") {
		if strings.HasPrefix(line, ".") {
			b.WriteByte('.')
		}
		b.WriteString(line)
	}
	if !strings.HasSuffix(msg, "\n") {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	send(b.String())
	expect("250")
	send("QUIT\r\n")
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func waitListening(addr string) bool {
	for i := 0; i < 200; i++ {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(25 * time.Millisecond)
	}
	return false
}

func writeCert(t testing.TB, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
}
