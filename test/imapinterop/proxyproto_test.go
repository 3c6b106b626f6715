package imapinterop

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/internal/testdovecot"
)

// TestProxyProtocolToDovecot: with upstream_proxy_protocol, Postern opens each upstream connection with a PROXY v2
// header, and Dovecot (haproxy = yes on its listener, the proxy's address in haproxy_trusted_networks) logs the
// real client's address: the client connects from 127.0.0.2, Postern from 127.0.0.1.
func TestProxyProtocolToDovecot(t *testing.T) {
	dc := testdovecot.Start(t, testdovecot.Options{Extra: "haproxy_trusted_networks = 127.0.0.1\n" +
		"service imap-login {\n  inet_listener imap {\n    haproxy = yes\n  }\n}\n"})
	dc.Deliver(t, "alice", messages[0])

	// Without the header Dovecot refuses the connection: the listener really requires it.
	if c, err := imapclient.DialInsecure(dc.IMAP, nil); err == nil {
		err = c.Login("alice", "alicepass").Wait()
		c.Close()
		if err == nil {
			t.Fatal("Dovecot's haproxy listener accepted a login without a PROXY header")
		}
	}

	state := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := posternConfig(t, state, addr, dc.IMAP, false)
	cfg = strings.Replace(cfg, "  allow_insecure_auth = true\n", "  allow_insecure_auth = true\n  imap {\n    upstream_proxy_protocol = true\n  }\n", 1)
	path := filepath.Join(state, "postern.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startPosternConfig(t, path, addr)

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := imapclient.New(conn, nil)
	defer c.Close()
	if err := c.Login("alice", "alicepass").Wait(); err != nil {
		t.Fatalf("login through Postern with the PROXY header: %v\n%s", err, dc.Log())
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(dc.Log(), "user=<alice>, method=PLAIN, rip=127.0.0.2") {
		if time.Now().After(deadline) {
			t.Fatalf("Dovecot did not log the client's address 127.0.0.2:\n%s", dc.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
