package interop

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testdovecot"
	"github.com/postern/postern/proxy/pop3"
	"github.com/postern/postern/proxy/pop3proxy"
)

// TestPOP3ClientAddressWithDovecot: the client's real address reaches Dovecot, by a PROXY protocol v2 header
// (Dovecot: haproxy = yes on the listener, haproxy_trusted_networks) and by XCLIENT (login_trusted_networks). The
// client connects from 127.0.0.2 and Postern from 127.0.0.1, so Dovecot's login line (rip=) tells them apart.
func TestPOP3ClientAddressWithDovecot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  pop3proxy.ClientAddress
		extra string
	}{
		{"proxy-v2", pop3proxy.ClientAddressProxyV2, `haproxy_trusted_networks = 127.0.0.1/32
service pop3-login {
  inet_listener pop3 {
    haproxy = yes
  }
}
`},
		{"xclient", pop3proxy.ClientAddressXClient, "login_trusted_networks = 127.0.0.1/32\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := testdovecot.Start(t, testdovecot.Options{Extra: tc.extra})
			dc.Deliver(t, "alice", pop3Messages[0])
			srv, err := pop3proxy.New(pop3proxy.Options{Upstream: dc.POP3, Hostname: "postern.test",
				AllowInsecureAuth: true, ClientAddress: tc.mode, SpoolDir: t.TempDir(),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			defer srv.Close()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}
			conn, err := d.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Skipf("cannot connect from 127.0.0.2: %v", err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			c := pop3.NewClient(conn, 4096)
			if g, err := c.ReadResponse(); err != nil || !g.OK {
				t.Fatalf("greeting %+v %v\n%s", g, err, dc.Log())
			}
			c.Cmd("USER alice")
			if r, err := c.Cmd("PASS alicepass"); err != nil || !r.OK {
				t.Fatalf("login: %+v %v\n%s", r, err, dc.Log())
			}
			if r, err := c.Cmd("STAT"); err != nil || !r.OK || !strings.HasPrefix(r.Text, "1 ") {
				t.Fatalf("STAT: %+v %v", r, err)
			}
			c.Cmd("QUIT")
			var log string
			for i := 0; i < 50 && !strings.Contains(log, "Disconnected"); i++ {
				time.Sleep(20 * time.Millisecond)
				log = dc.Log()
			}
			login := ""
			for _, l := range strings.Split(log, "\n") {
				if strings.Contains(l, "pop3-login: ") && strings.Contains(l, "Login: user=<alice>") {
					login = l
				}
			}
			if !strings.Contains(login, "rip=127.0.0.2") || !strings.Contains(login, "lip=") {
				t.Fatalf("Dovecot's login line %q, want rip=127.0.0.2\n%s", login, log)
			}
		})
	}
}
