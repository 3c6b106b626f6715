package interop

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/proxy/smtpproxy"
)

// tools maps each external program the suite runs to the Debian package that provides it.
var tools = map[string]string{
	"smtp-sink": "postfix",
	"swaks":     "swaks",
	"curl":      "curl",
	"python3":   "python3",
}

// need fails the test when a tool is missing, naming the package to install.
func need(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: install the Debian package %q (.ci/run does)", n, tools[n])
		}
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// sink is a running smtp-sink whose received transactions are appended to a dump file.
type sink struct {
	addr string
	dump string
}

// startSink runs Postfix's smtp-sink on a free port until the test ends, with extra options (such as "-t", "1"
// for a short command timeout).
func startSink(t testing.TB, extra ...string) *sink {
	t.Helper()
	need(t, "smtp-sink")
	// smtp-sink drops privileges to -u, so the dump directory must be reachable and writable by that user: not
	// under t.TempDir(), whose parent is private to the test's user.
	dir, err := os.MkdirTemp("", "postern-interop-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	s := &sink{dump: filepath.Join(dir, "dump")}
	args := append([]string(nil), extra...)
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	for attempt := 0; ; attempt++ {
		s.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cmd := exec.Command("smtp-sink", append(args, "-D", s.dump, "-m", "200", s.addr, "200")...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("smtp-sink: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		if waitListening(s.addr, exited) {
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
			})
			return s
		}
		cmd.Process.Kill()
		<-exited
		if attempt == 3 {
			t.Fatalf("smtp-sink did not start on %s: %s", s.addr, stderr.String())
		}
	}
}

// waitListening waits until addr accepts connections, or the process exits. It waits as long as a cold start may
// take (postern compiling its plugins without a warm cache).
func waitListening(addr string, exited chan struct{}) bool {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// transactions returns the transactions smtp-sink dumped so far. Each starts with its X-Client-Addr: line.
func (s *sink) transactions() []string {
	b, err := os.ReadFile(s.dump)
	if err != nil {
		return nil
	}
	parts := strings.Split(string(b), "X-Client-Addr: ")
	return parts[1:]
}

// wait returns the transactions once there are n, or after a few seconds whatever there is.
func (s *sink) wait(n int) []string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		tr := s.transactions()
		if len(tr) >= n || time.Now().After(deadline) {
			return tr
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settled returns the transactions after giving smtp-sink a moment to write anything still on its way.
func (s *sink) settled() []string {
	time.Sleep(300 * time.Millisecond)
	return s.transactions()
}

// logWriter sends the relay's log to the test log.
type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// startRelay runs the relay in-process on a free port until the test ends.
func startRelay(t testing.TB, o smtpproxy.Options) string {
	t.Helper()
	w := &logWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	o.Logger = slog.New(slog.NewTextHandler(w, nil))
	if o.Hostname == "" {
		o.Hostname = "relay.test"
	}
	s, err := smtpproxy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := smtpproxy.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

// run runs a client program with a deadline and returns its combined output and error.
func run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	need(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// python runs a Python script given as source with arguments.
func python(t testing.TB, script string, args ...string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return run(t, "python3", append([]string{path}, args...)...)
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
