//go:build linux

package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifications reads the datagrams postern sends to a NOTIFY_SOCKET.
type notifications struct {
	conn *net.UnixConn
}

func (n notifications) next(t *testing.T) map[string]string {
	t.Helper()
	buf := make([]byte, 4096)
	n.conn.SetReadDeadline(time.Now().Add(time.Minute))
	k, err := n.conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(buf[:k]), "\n"), "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("notification line %q is not VAR=value", line)
		}
		vars[name] = value
	}
	return vars
}

// TestRunSystemdNotify runs postern as systemd's Type=notify would: READY=1 once it serves, RELOADING=1 with
// MONOTONIC_USEC and READY=1 again around a reload (a refused one too), STOPPING=1 at SIGTERM. It listens on a
// socket path and on an abstract name, the two forms $NOTIFY_SOCKET takes.
func TestRunSystemdNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		name := "path"
		if abstract {
			name = "abstract"
		}
		t.Run(name, func(t *testing.T) {
			sockDir, err := os.MkdirTemp("", "sdn") // short: a socket path has 107 bytes at most
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(sockDir)
			addr := filepath.Join(sockDir, "notify")
			if abstract {
				addr = "@postern-test-" + strconv.Itoa(os.Getpid())
			}
			conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			n := notifications{conn}

			dir := exampleTree(t)
			cfgPath := filepath.Join(dir, "run.hcl")
			smtpAddr := freePort(t)
			runConfig(t, cfgPath, smtpAddr, "[EXT] ")
			p := startPosternEnv(t, []string{"NOTIFY_SOCKET=" + addr}, "-config", cfgPath)

			ready := n.next(t)
			if ready["READY"] != "1" || ready["MAINPID"] != strconv.Itoa(p.cmd.Process.Pid) {
				t.Fatalf("first notification %v, want READY=1 with MAINPID", ready)
			}
			// READY means serving: a message goes through at once.
			if err := send(smtpAddr, "ready", "now"); err != nil {
				t.Fatalf("READY=1 sent before the listener serves: %v", err)
			}

			reload := func(wantStatus string) {
				t.Helper()
				p.cmd.Process.Signal(syscall.SIGHUP)
				r := n.next(t)
				usec, err := strconv.ParseInt(r["MONOTONIC_USEC"], 10, 64)
				if r["RELOADING"] != "1" || err != nil || usec <= 0 {
					t.Fatalf("reload notification %v, want RELOADING=1 with MONOTONIC_USEC", r)
				}
				back := n.next(t)
				if back["READY"] != "1" || !strings.Contains(back["STATUS"], wantStatus) {
					t.Fatalf("after the reload %v, want READY=1 with a status about %q", back, wantStatus)
				}
			}
			runConfig(t, cfgPath, smtpAddr, "[NEW] ")
			reload("serving")
			os.WriteFile(cfgPath, []byte("policy {\n"), 0o644)
			reload("refused")

			p.cmd.Process.Signal(syscall.SIGTERM)
			if s := n.next(t); s["STOPPING"] != "1" {
				t.Fatalf("at SIGTERM %v, want STOPPING=1", s)
			}
			if code := p.wait(t); code != 0 {
				t.Errorf("exit status %d", code)
			}
		})
	}
}
