// Command relay runs one SMTP relay listener for the benchmark scripts in this folder: it relays to -upstream,
// with no policy or with the four first-party plugins in one enforcing policy, and stops on SIGTERM or SIGINT.
//
//	go run ./bench/relay -listen 127.0.0.1:2600 -upstream 127.0.0.1:2526 [-plugins] [-sessions 2000]
//	    [-audit FILE [-audit-sync 1s] [-audit-plain]]
//
// It prints "ready" on stdout once it listens, so a script can wait for it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:2600", "address to listen on")
	upstream := flag.String("upstream", "127.0.0.1:2526", "upstream SMTP server")
	plugins := flag.Bool("plugins", false, "run the four first-party plugins (eicar, attachment-guard, dlp, external-tag)")
	sessions := flag.Int("sessions", 2000, "session limit")
	size := flag.Int64("size", 200<<20, "message size limit in bytes")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	verbose := flag.Bool("v", false, "log every message")
	auditPath := flag.String("audit", "", "write an audit log to this file (removed at exit)")
	auditSync := flag.Duration("audit-sync", time.Second, "the audit log's sync_interval")
	auditPlain := flag.Bool("audit-plain", false, "hide the audit log's durable appends from the relay: records are written after the reply, as a plain Auditor's are")
	flag.Parse()
	a := auditOptions{path: *auditPath, sync: *auditSync, plain: *auditPlain}
	if err := run(*listen, *upstream, *plugins, *sessions, *size, *cpuprofile, *verbose, a); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

type auditOptions struct {
	path  string
	sync  time.Duration
	plain bool
}

// plainAudit offers only Append, so the relay treats the log as a non-durable Auditor.
type plainAudit struct{ l *audit.Log }

func (p plainAudit) Append(r *audit.Record) error { return p.l.Append(r) }

func run(listen, upstream string, plugins bool, sessions int, size int64, cpuprofile string, verbose bool, a auditOptions) error {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	o := smtpproxy.Options{
		Name:     "bench",
		Address:  listen,
		Hostname: "relay.bench",
		Upstream: upstream,
		// Every benchmark client comes from one address and holds its session idle: no per-client cap, no stress.
		Limits: smtpproxy.Limits{Sessions: sessions, MessageSize: size, SessionsPerClient: -1, StressSessions: -1},
		Logger: log,
	}
	if a.path != "" {
		l, err := audit.Open(audit.Options{Path: a.path, SyncInterval: a.sync, MaxBytes: -1, Logger: log})
		if err != nil {
			return err
		}
		defer os.Remove(a.path)
		defer l.Close()
		o.Audit = l
		if a.plain {
			o.Audit = plainAudit{l}
		}
	}
	if plugins {
		m, err := firstPartyPolicy()
		if err != nil {
			return err
		}
		defer m.Close(context.Background())
		o.Filters = smtpproxy.Policies(m)
	}
	srv, err := smtpproxy.New(o)
	if err != nil {
		return err
	}
	ln, err := smtpproxy.Listen(listen)
	if err != nil {
		return err
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	fmt.Println("ready")
	if err := srv.Serve(ln); err != smtpproxy.ErrServerClosed {
		return err
	}
	return nil
}

// firstPartyPolicy builds the four first-party plugins (reusing build/plugins when `make plugins` made them) and
// loads them into one enforcing policy.
func firstPartyPolicy() (*policy.Manager, error) {
	dir, err := os.MkdirTemp("", "postern-bench-")
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	names := []string{"eicar", "attachment-guard", "dlp", "external-tag"}
	for _, name := range names {
		path, err := testplugins.Build("plugins/" + name)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "plugin %q {\n  source = %q\n}\n", name, path)
	}
	fmt.Fprintf(&b, "policy \"security\" {\n  plugins = [%q, %q, %q, %q]\n}\n", names[0], names[1], names[2], names[3])
	path := filepath.Join(dir, "bench.hcl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return policy.NewManager(context.Background(), path, policy.Options{CacheDir: testplugins.CacheDir()})
}
