package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func handlers() map[string]Handler {
	return map[string]Handler{
		"reload": func(_ context.Context, args []string) (string, error) {
			if len(args) > 0 && args[0] == "bad" {
				return "", errors.New("main.hcl:3:5: Unknown plugin\nmain.hcl:9:1: Unsupported block type")
			}
			return "reloaded: 1 listener", nil
		},
	}
}

func TestServe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "control.sock")
	s, err := Listen(path, handlers(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v mode %v", err, fi.Mode())
	}
	ctx := context.Background()
	if got, err := Send(ctx, path, "reload"); err != nil || got != "reloaded: 1 listener" {
		t.Errorf("reload: %q, %v", got, err)
	}
	_, err = Send(ctx, path, "reload bad")
	var re *ReplyError
	if !errors.As(err, &re) || re.Text != "main.hcl:3:5: Unknown plugin\nmain.hcl:9:1: Unsupported block type" {
		t.Errorf("refused reload: %v", err)
	}
	if _, err := Send(ctx, path, "shutdown"); err == nil || !strings.Contains(err.Error(), `unknown command "shutdown" (known: reload)`) {
		t.Errorf("unknown command: %v", err)
	}
	if _, err := Send(ctx, path, "reload\nshutdown"); err == nil {
		t.Error("a command with a newline was sent")
	}
}

func TestBadRequests(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	s, err := Listen(path, handlers(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, req := range []string{"\n", strings.Repeat("x", 2*maxCommand) + "\n", "no newline"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		c.Write([]byte(req))
		if req == "no newline" {
			c.(*net.UnixConn).CloseWrite()
		}
		buf := make([]byte, 512)
		n, _ := c.Read(buf)
		c.Close()
		if !strings.HasPrefix(string(buf[:n]), "error ") {
			t.Errorf("request %.20q: reply %q", req, buf[:n])
		}
	}
}

func TestStaleAndBusySocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "control.sock")
	// A stale socket file, as a crashed process leaves it: nobody answers, so it is replaced.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal("stale socket not left behind")
	}
	s, err := Listen(path, handlers(), nil)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	// A socket that answers belongs to a running proxy: a second one must not steal it.
	if _, err := Listen(path, handlers(), nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Listen: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
	if _, err := Send(context.Background(), path, "reload"); err == nil || !strings.Contains(err.Error(), "is postern running?") {
		t.Errorf("Send without a server: %v", err)
	}
}
