package interop

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/internal/testdovecot"
	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/pop3"
	"github.com/postern/postern/proxy/pop3proxy"
)

const benchMessages = 50

// benchMaildrop starts Dovecot with benchMessages messages of 10 KiB for alice.
func benchMaildrop(b *testing.B) *testdovecot.Dovecot {
	// Room for the idle benchmark's sessions, and for those of its previous round that are still ending.
	dc := testdovecot.Start(b, testdovecot.Options{Extra: "service pop3 {\n  process_limit = 2000\n}\n"})
	line := strings.Repeat("x", 78) + "\r\n"
	for i := 0; i < benchMessages; i++ {
		dc.Deliver(b, "alice", fmt.Sprintf("From: bob@other.test\r\nTo: alice@example.com\r\nSubject: bench %d\r\n"+
			"Message-ID: <bench%d@other.test>\r\n\r\n%s", i, i, strings.Repeat(line, 128)))
	}
	return dc
}

// firstPartyPOP3Policy loads the four first-party plugins the demo uses into one enforcing policy.
func firstPartyPOP3Policy(b *testing.B) mailflow.FilterSource {
	dir := b.TempDir()
	var sb strings.Builder
	for _, name := range []string{"eicar", "attachment-guard", "dlp", "external-tag"} {
		fmt.Fprintf(&sb, "plugin %q {\n  source = %q\n", name, testplugins.Path(b, "plugins/"+name))
		if name == "external-tag" {
			sb.WriteString("  config = { internal_domains = [\"example.com\"] }\n")
		}
		sb.WriteString("}\n")
	}
	sb.WriteString("policy \"security\" {\n  plugins = [\"eicar\", \"attachment-guard\", \"dlp\", \"external-tag\"]\n}\n")
	cfg := sb.String()
	path := filepath.Join(dir, "postern.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	m, err := policy.NewManager(context.Background(), path, policy.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close(context.Background()) })
	return mailflow.Policies(m)
}

func startBenchProxy(b *testing.B, dc *testdovecot.Dovecot, filters mailflow.FilterSource, cache pop3proxy.Cache) string {
	srv, err := pop3proxy.New(pop3proxy.Options{Name: "bench", Hostname: "postern.bench", Upstream: dc.POP3,
		AllowInsecureAuth: true, Filters: filters, Cache: cache, QuarantineDir: b.TempDir(), SpoolDir: b.TempDir(),
		SizeMode: pop3proxy.SizeUpstream, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// retrLoop runs 10 clients in parallel, each reading the maildrop with RETR 1..N in one session and starting
// a new session at the end; an op is one RETR.
func retrLoop(b *testing.B, addr string) {
	b.SetParallelism(max(1, 10/runtime.GOMAXPROCS(0)))
	b.SetBytes(10 << 10)
	var failed atomic.Value
	b.RunParallel(func(pb *testing.PB) {
		var c *pop3.Client
		var conn net.Conn
		n := benchMessages
		for pb.Next() {
			if n == benchMessages {
				if conn != nil {
					c.Cmd("QUIT")
					conn.Close()
				}
				var err error
				if conn, err = net.Dial("tcp", addr); err != nil {
					failed.Store(err)
					return
				}
				conn.SetDeadline(time.Now().Add(10 * time.Minute))
				c = pop3.NewClient(conn, 1<<16)
				c.ReadResponse()
				c.Cmd("USER alice")
				if r, err := c.Cmd("PASS alicepass"); err != nil || !r.OK {
					failed.Store(fmt.Errorf("login: %+v %v", r, err))
					return
				}
				n = 0
			}
			n++
			r, err := c.Cmd(fmt.Sprintf("RETR %d", n))
			if err == nil && r.OK {
				_, err = io.Copy(io.Discard, c.Body())
			}
			if err != nil || !r.OK {
				failed.Store(fmt.Errorf("RETR %d: %+v %v", n, r, err))
				return
			}
		}
		if conn != nil {
			c.Cmd("QUIT")
			conn.Close()
		}
	})
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPOP3Retr measures RETR of 10 KiB messages by 10 parallel clients: straight to Dovecot, through
// Postern with the four first-party plugins and no cache (every RETR runs the plugins: the first pass), and
// through Postern with the cache warm (the second download of the same maildrop).
func BenchmarkPOP3Retr(b *testing.B) {
	dc := benchMaildrop(b)
	filters := firstPartyPOP3Policy(b)
	b.Run("direct", func(b *testing.B) { retrLoop(b, dc.POP3) })
	b.Run("postern-first-pass", func(b *testing.B) {
		// A cache too small for any entry: every RETR is filtered.
		retrLoop(b, startBenchProxy(b, dc, filters, pop3proxy.Cache{MemoryBytes: 1, EntryBytes: 1, UserBytes: 1}))
	})
	b.Run("postern-cached", func(b *testing.B) {
		addr := startBenchProxy(b, dc, filters, pop3proxy.Cache{})
		warm(b, addr)
		b.ResetTimer()
		retrLoop(b, addr)
	})
}

// noPluginsPolicy is a configuration with no policy: the pipeline runs (fetch, line guard, index, evaluation,
// rendering, audit facts) and no plugin, to measure what is Postern's own.
func noPluginsPolicy(b *testing.B) mailflow.FilterSource {
	path := filepath.Join(b.TempDir(), "postern.hcl")
	if err := os.WriteFile(path, []byte("# no policies\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	m, err := policy.NewManager(context.Background(), path, policy.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close(context.Background()) })
	return mailflow.Policies(m)
}

// BenchmarkPOP3RetrNoPlugins is BenchmarkPOP3Retr's first pass without plugins: Postern's own cost of a RETR
// that is fetched from the upstream and run through the pipeline, next to a direct RETR in the same run.
func BenchmarkPOP3RetrNoPlugins(b *testing.B) {
	dc := benchMaildrop(b)
	filters := noPluginsPolicy(b)
	b.Run("direct", func(b *testing.B) { retrLoop(b, dc.POP3) })
	b.Run("postern-first-pass", func(b *testing.B) {
		retrLoop(b, startBenchProxy(b, dc, filters, pop3proxy.Cache{MemoryBytes: 1, EntryBytes: 1, UserBytes: 1}))
	})
}

// warm reads every message once, so that the cache holds them.
func warm(b *testing.B, addr string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := pop3.NewClient(conn, 1<<16)
	c.ReadResponse()
	c.Cmd("USER alice")
	c.Cmd("PASS alicepass")
	for i := 1; i <= benchMessages; i++ {
		if r, err := c.Cmd(fmt.Sprintf("RETR %d", i)); err != nil || !r.OK {
			b.Fatalf("warming: %+v %v", r, err)
		}
		io.Copy(io.Discard, c.Body())
	}
	c.Cmd("QUIT")
}

// BenchmarkPOP3IdleSession reports the heap of one logged-in, idle session (proxy side and the test's client
// connection together), from 200 sessions.
func BenchmarkPOP3IdleSession(b *testing.B) {
	dc := benchMaildrop(b)
	addr := startBenchProxy(b, dc, firstPartyPOP3Policy(b), pop3proxy.Cache{})
	const sessions = 200
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var conns []net.Conn
		for i := 0; i < sessions; i++ {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			c := pop3.NewClient(conn, 1<<16)
			c.ReadResponse()
			c.Cmd("USER alice")
			if r, err := c.Cmd("PASS alicepass"); err != nil || !r.OK {
				b.Fatalf("login %d: %+v %v", i, r, err)
			}
			conns = append(conns, conn)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/sessions, "heap-B/session")
		b.ReportMetric(float64(after.NumGC-before.NumGC), "gc")
		for _, c := range conns {
			c.Close()
		}
	}
}
