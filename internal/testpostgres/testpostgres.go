// Package testpostgres gives tests a real PostgreSQL: an empty database on a throwaway cluster that the test
// starts on a free loopback port (initdb and postgres run as the postgres user, as PostgreSQL requires, with the
// data in a temporary directory), stopped and removed when the test ends.
//
// With POSTERN_TEST_POSTGRES_DSN set to a server's connection string, a database is created there instead.
// Tests skip when PostgreSQL is not installed or the process is not root (it must switch to the postgres user);
// CI installs it (.ci/deps) and runs as root, and there (CI set) a missing PostgreSQL fails the test instead: the
// fleet tests must not pass by being skipped.
package testpostgres

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// EnvDSN names the variable that points the tests at a running server instead.
const EnvDSN = "POSTERN_TEST_POSTGRES_DSN"

var dbSeq atomic.Int64

// Cluster is a running PostgreSQL.
type Cluster struct {
	// DSN is the connection string of its postgres database, as the superuser, without a password.
	DSN string
	t   testing.TB
}

// Start starts a cluster (or uses EnvDSN's server) for t, stopped when t ends; it skips t where it cannot.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return &Cluster{DSN: dsn, t: t}
	}
	skip := t.Skip
	if os.Getenv("CI") != "" {
		skip = t.Fatal
	}
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		skip("PostgreSQL is not installed (apt-get install postgresql), and " + EnvDSN + " is not set")
	}
	slices.Sort(bins) // the newest version last (single digits have been past for years)
	bin := filepath.Dir(bins[len(bins)-1])
	if os.Geteuid() != 0 {
		skip("starting PostgreSQL needs root (to run it as the postgres user), or set " + EnvDSN)
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		skip("no postgres user: " + err.Error())
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	// Not t.TempDir: the postgres user must own it.
	dir, err := os.MkdirTemp("", "testpostgres-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	as := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=" + dir}
		return cmd
	}
	data := filepath.Join(dir, "data")
	if out, err := as("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off "+
		"-c full_page_writes=off -c max_connections=50", port, dir)
	logFile := filepath.Join(dir, "postgres.log")
	if out, err := as("pg_ctl", "start", "-w", "-t", "60", "-D", data, "-l", logFile, "-o", opts).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logFile)
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		if out, err := as("pg_ctl", "stop", "-m", "immediate", "-w", "-D", data).CombinedOutput(); err != nil {
			t.Logf("pg_ctl stop: %v\n%s", err, out)
		}
	})
	return &Cluster{DSN: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), t: t}
}

// NewDatabase creates an empty database and returns its connection string; it is dropped when the test ends.
func (c *Cluster) NewDatabase() string {
	c.t.Helper()
	name := fmt.Sprintf("postern_test_%d_%d", os.Getpid(), dbSeq.Add(1))
	db, err := sql.Open("pgx", c.DSN)
	if err != nil {
		c.t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		c.t.Fatalf("creating the test database: %v", err)
	}
	c.t.Cleanup(func() {
		db, err := sql.Open("pgx", c.DSN)
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(c.DSN)
	if err != nil {
		c.t.Fatalf("%s is not a postgres:// URL: %v", EnvDSN, err)
	}
	u.Path = "/" + name
	return u.String()
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
