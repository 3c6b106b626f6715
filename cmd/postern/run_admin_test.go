package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func getURL(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRunAdminHealth checks the admin listener through the binary: /healthz and /readyz answer while the proxy
// serves, and /readyz turns 503 as soon as a shutdown begins, while a message in flight is still finishing, so a
// load balancer stops sending new sessions to a draining node.
func TestRunAdminHealth(t *testing.T) {
	dir := exampleTree(t)
	cfgPath := filepath.Join(dir, "run.hcl")
	addr, adminAddr := freePort(t), freePort(t)
	runConfig(t, cfgPath, addr, "[EXT] ")
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("admin {\n  address = \"" + adminAddr + "\"\n}\n")
	f.Close()
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")
	p.waitLog(t, "admin listener serving")
	base := "http://" + adminAddr

	if code, body := getURL(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	code, body := getURL(t, base+"/readyz")
	for _, want := range []string{"[+]audit ok", "[+]config ok", "[+]listeners ok", "ready"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/readyz = %d %q, want 200 with %q", code, body, want)
		}
	}

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
	io.WriteString(w, "Subject: draining\r\n\r\nfirst half\r\n")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "shutting down")
	code, body = getURL(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]listeners failed") {
		t.Errorf("/readyz while draining = %d %q, want 503 naming the listeners", code, body)
	}
	if code, _ := getURL(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz while draining = %d, want 200 (alive)", code)
	}
	io.WriteString(w, "second half\r\n")
	if err := w.Close(); err != nil {
		t.Fatalf("the message in flight was not accepted: %v", err)
	}
	c.Quit()
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d", code)
	}
}

// TestRunAdminReadyUpstream checks the optional readiness check of each listener's upstream: /readyz is 200 while
// the upstream accepts connections and 503, naming the listener, once it does not.
func TestRunAdminReadyUpstream(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "run.hcl")
	adminAddr := freePort(t)
	cfg := fmt.Sprintf("admin {\n  address = %q\n  ready_upstream = true\n}\nlistener \"smtp\" \"mx\" {\n"+
		"  address  = %q\n  upstream = %q\n}\n", adminAddr, freePort(t), up.Addr().String())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "admin listener serving")
	if code, body := getURL(t, "http://"+adminAddr+"/readyz"); code != 200 || !strings.Contains(body, "[+]upstream:mx ok") {
		t.Fatalf("/readyz with the upstream up = %d %q", code, body)
	}
	up.Close()
	if code, body := getURL(t, "http://"+adminAddr+"/readyz"); code != http.StatusServiceUnavailable ||
		!strings.Contains(body, "[-]upstream:mx failed") {
		t.Fatalf("/readyz with the upstream down = %d %q", code, body)
	}
}
