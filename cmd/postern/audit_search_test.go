package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/testpostgres"
)

// indexConfig is runConfig's configuration with an audit index block.
func indexConfig(t *testing.T, path, addr, index string) {
	t.Helper()
	cfg := fmt.Sprintf(`
state_dir = "state"
audit {
  path = "state/audit.log"
  index {
%s
  }
}
listener "smtp" "in" {
  address  = %q
  upstream = "embedded"
}
plugin "eicar" {
  source = "../build/plugins/eicar.wasm"
}
plugin "external-tag" {
  source = "../build/plugins/external-tag.wasm"
  config = { internal_domains = ["example.com"], subject_prefix = "[EXT] " }
}
policy "all" {
  plugins = ["eicar", "external-tag"]
}
`, index, addr)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitSearch runs `postern audit search` through the binary until it finds want records: the index is fed
// after the reply, so a record shows a moment after the message was answered.
func waitSearch(t *testing.T, dir string, want int, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		code, out, errs := postern(t, dir, append([]string{"audit", "search"}, args...)...)
		if code == 2 {
			t.Fatalf("audit search %q: exit 2: %s", args, errs)
		}
		if n := strings.Count(out, "\n"); code == 0 && n == want {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit search %q: exit %d after a minute, output:\n%s%s", args, code, out, errs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAuditSearchThroughTheBinary runs postern with a SQLite index, sends a clean message and an EICAR file, and
// finds both with `postern audit search` while it runs, in every output format; then stops it, rebuilds the
// index with `postern audit reindex`, verifies it with `postern audit verify -config`, and shows that a record
// changed in the database is found.
func TestAuditSearchThroughTheBinary(t *testing.T) {
	dir := exampleTree(t)
	cfgPath := filepath.Join(dir, "run.hcl")
	addr := freePort(t)
	indexConfig(t, cfgPath, addr, `    driver = "sqlite"
    node   = "mx1"`)
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")
	msg := "From: bob@other.test\r\nTo: alice@example.com\r\nMessage-ID: <clean.1@other.test>\r\nSubject: hello\r\n\r\nclean\r\n"
	if err := smtp.SendMail(addr, nil, "bob@other.test", []string{"alice@example.com"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	err := send(addr, "virus", `X5O!P%@AP[4\PZX54(P^)7CC)7}$`+"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
	if e, ok := err.(*textproto.Error); !ok || e.Code != 554 {
		t.Fatalf("EICAR: %v, want a 554", err)
	}

	// JSON lines: the records as the log has them, with their node; the rejected message is a decision, the
	// delivered one a pending record whose outcome is folded in.
	out := waitSearch(t, dir, 2, "-config", cfgPath, "-sender", "BOB@other.test", "-format", "json")
	var rows []jsonRow
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r jsonRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("not JSON: %s", sc.Bytes())
		}
		rows = append(rows, r)
	}
	var rejected, accepted map[string]any
	for _, r := range rows {
		var rec map[string]any
		json.Unmarshal(r.Record, &rec)
		if r.Node != "mx1" {
			t.Errorf("node %q", r.Node)
		}
		switch rec["action"] {
		case "reject":
			rejected = rec
		case "accept":
			accepted = rec
			if rec["event"] != "pending" || r.Outcome == nil || r.Outcome.Code != 250 {
				t.Errorf("the delivered message: event %v, outcome %+v", rec["event"], r.Outcome)
			}
		}
	}
	if rejected == nil || accepted == nil || accepted["message_id"] != "<clean.1@other.test>" {
		t.Fatalf("rows %s", out)
	}

	// Filters through the binary: action, policy, plugin, recipient domain, score, time.
	waitSearch(t, dir, 2, "-config", cfgPath, "-action", "reject", "-format", "csv") // header + 1
	for _, args := range [][]string{
		{"-plugin", "eicar", "-action", "reject"},
		{"-rcpt", "@EXAMPLE.com", "-action", "accept"},
		{"-message-id", "clean.1@other.test"},
		{"-digest", fmt.Sprint(rejected["sha256_in"])},
		{"-from", "1h", "-policy", "all", "-action", "reject"},
	} {
		if code, out, errs := postern(t, dir, append([]string{"audit", "search", "-config", cfgPath, "-format", "json"}, args...)...); code != 0 || strings.Count(out, "\n") != 1 {
			t.Errorf("search %q: exit %d, %d rows\n%s%s", args, code, strings.Count(out, "\n"), out, errs)
		}
	}
	if code, out, _ := postern(t, dir, "audit", "search", "-config", cfgPath, "-sender", "nobody@other.test"); code != 1 ||
		!strings.HasPrefix(out, "TIME") || strings.Count(out, "\n") != 1 {
		t.Errorf("a search that finds nothing: exit %d\n%s", code, out)
	}
	if code, out, _ := postern(t, dir, "audit", "search", "-config", cfgPath, "-count"); code != 0 || out != "2\n" {
		t.Errorf("-count: exit %d, %q", code, out)
	}
	code, out, _ := postern(t, dir, "audit", "search", "-config", cfgPath, "-format", "csv")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(recs) != 3 || recs[0][0] != "time" || recs[1][1] != "mx1" {
		t.Errorf("csv: exit %d, %v\n%s", code, err, out)
	}
	code, out, _ = postern(t, dir, "audit", "search", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "bob@other.test") || !strings.Contains(out, "reject") ||
		!strings.Contains(out, "250 ") {
		t.Errorf("table: exit %d\n%s", code, out)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}

	// Rebuilt from the log: the same records.
	code, out, errs := postern(t, dir, "audit", "reindex", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "reindexed: 3 records") || !strings.Contains(out, "node mx1") {
		t.Fatalf("reindex: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := postern(t, dir, "audit", "search", "-config", cfgPath, "-count"); code != 0 || out != "2\n" {
		t.Errorf("-count after reindex: exit %d, %q", code, out)
	}
	code, out, errs = postern(t, dir, "audit", "verify", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "ok: 3 records") || !strings.Contains(out, "ok: index node mx1: 3 records, chain intact (seq 1-3)") {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errs)
	}

	// A record changed in the database: verify names it.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "state", "audit-index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(),
		`UPDATE audit_records SET line = CAST(replace(CAST(line AS TEXT), '"reject"', '"accept"') AS BLOB) WHERE action = 'reject'`); err != nil {
		t.Fatal(err)
	}
	code, _, errs = postern(t, dir, "audit", "verify", "-config", cfgPath)
	if code != 1 || !strings.Contains(errs, "broken: index node mx1: seq") || !strings.Contains(errs, "hash mismatch") {
		t.Fatalf("verify of a changed index: exit %d\n%s", code, errs)
	}
}

// TestAuditSearchUsage: bad flags are usage errors (exit 2) with a clear message, and a configuration without an
// index says so.
func TestAuditSearchUsage(t *testing.T) {
	dir := t.TempDir()
	noIndex := filepath.Join(dir, "noindex.hcl")
	os.WriteFile(noIndex, []byte("audit {\n  path = \"audit.log\"\n}\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-format", "xml", "-config", noIndex}, "want table, json or csv"},
		{[]string{"-limit", "0", "-config", noIndex}, "-limit 0"},
		{[]string{"-from", "yesterday", "-config", noIndex}, "want RFC 3339"},
		{[]string{"-min-score", "x", "-config", noIndex}, "not a number"},
		{[]string{"-config", noIndex}, "has no audit index"},
		{[]string{"-sender", "a@b"}, "no -config given"},
		{[]string{"-config", noIndex, "stray"}, `unexpected argument "stray"`},
	} {
		code, _, errs := run(append([]string{"audit", "search"}, c.args...)...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d, stderr %q, want 2 and %q", c.args, code, errs, c.want)
		}
	}
	if code, _, errs := run("audit", "reindex", "-config", noIndex); code != 1 || !strings.Contains(errs, "has no audit index") {
		t.Errorf("reindex without an index: exit %d, %q", code, errs)
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                       now.Add(-24 * time.Hour),
		"-90m":                      now.Add(-90 * time.Minute),
		"2026-03-01":                time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		"2026-03-01T08:30":          time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC),
		"2026-03-01T08:30:00+01:00": time.Date(2026, 3, 1, 7, 30, 0, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestSearchOutputIsInert(t *testing.T) {
	if got := plain("a\x1b[31mb\u202ec"); got != `a\x1b[31mb\x202ec` {
		t.Errorf("plain = %q", got)
	}
	for in, want := range map[string]string{"=HYPERLINK(1)": "'=HYPERLINK(1)", "@SUM(1)": "'@SUM(1)", "bob@x": "bob@x", "-1": "'-1"} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAuditIndexFleet runs two postern nodes that write their decisions to one PostgreSQL database: each keeps its
// own chain, named by its node; either node's configuration finds the other's records and verifies both chains;
// a record changed in the database breaks that node's chain only.
func TestAuditIndexFleet(t *testing.T) {
	pg := testpostgres.Start(t)
	dsn := pg.NewDatabase()
	dir := exampleTree(t)
	type node struct {
		name, cfg, addr string
		p               *proc
	}
	var nodes []*node
	for _, name := range []string{"mx1", "mx2"} {
		n := &node{name: name, cfg: filepath.Join(dir, name+".hcl"), addr: freePort(t)}
		indexConfig(t, n.cfg, n.addr, fmt.Sprintf("    driver = \"postgres\"\n    dsn    = %q\n    node   = %q", dsn, name))
		// Each node its own state_dir, so its own audit log and chain.
		b, _ := os.ReadFile(n.cfg)
		os.WriteFile(n.cfg, []byte(strings.ReplaceAll(string(b), `"state`, `"`+name+`-state`)), 0o644)
		n.p = startPostern(t, "-config", n.cfg)
		nodes = append(nodes, n)
	}
	for i, n := range nodes {
		n.p.waitLog(t, "postern running")
		for j := 0; j <= i; j++ { // mx1 delivers one message, mx2 two
			msg := fmt.Sprintf("From: bob@other.test\r\nTo: alice@example.com\r\nMessage-ID: <%s.%d@other.test>\r\nSubject: m\r\n\r\nhi\r\n", n.name, j)
			if err := smtp.SendMail(n.addr, nil, "bob@other.test", []string{"alice@example.com"}, []byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// From mx1's configuration: mx2's records, and both nodes' together.
	waitSearch(t, dir, 2, "-config", nodes[0].cfg, "-node", "mx2", "-format", "json")
	waitSearch(t, dir, 1, "-config", nodes[0].cfg, "-node", "mx1", "-format", "json")
	out := waitSearch(t, dir, 1, "-config", nodes[1].cfg, "-message-id", "<mx2.1@other.test>", "-format", "json")
	if !strings.Contains(out, `"node":"mx2"`) {
		t.Errorf("search by Message-ID: %s", out)
	}
	for _, n := range nodes {
		n.p.cmd.Process.Signal(syscall.SIGTERM)
		if code := n.p.wait(t); code != 0 {
			t.Fatalf("%s: exit status %d", n.name, code)
		}
	}
	code, out, errs := postern(t, dir, "audit", "verify", "-config", nodes[0].cfg)
	if code != 0 || !strings.Contains(out, "ok: index node mx1: 2 records, chain intact (seq 1-2)") ||
		!strings.Contains(out, "ok: index node mx2: 4 records, chain intact (seq 1-4)") {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errs)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_records SET line = convert_to(replace(convert_from(line, 'UTF8'), 'mx2.0@', 'mx9.0@'), 'UTF8') WHERE node = 'mx2'`); err != nil {
		t.Fatal(err)
	}
	code, out, errs = postern(t, dir, "audit", "verify", "-config", nodes[1].cfg)
	if code != 1 || !strings.Contains(errs, "broken: index node mx2: seq 1: hash mismatch") ||
		!strings.Contains(out, "ok: index node mx1: 2 records") {
		t.Fatalf("verify after a change in the database: exit %d\n%s%s", code, out, errs)
	}
}

// TestAuditIndexDownMailFlows: with the index's database unreachable, postern starts, relays and records mail as
// always, and says in its log that the index is failing; no reply waits for it.
func TestAuditIndexDownMailFlows(t *testing.T) {
	dir := exampleTree(t)
	cfgPath := filepath.Join(dir, "run.hcl")
	addr := freePort(t)
	closed := freePort(t) // nothing listens there
	indexConfig(t, cfgPath, addr, fmt.Sprintf("    driver = \"postgres\"\n    dsn    = \"postgres://postern:secret@%s/postern?connect_timeout=2\"\n    node   = \"mx1\"", closed))
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")
	if err := send(addr, "hello", "clean"); err != nil {
		t.Fatalf("a message while the index is down: %v", err)
	}
	p.waitLog(t, "audit index: opening the index failed; mail is unaffected, retrying")
	if strings.Contains(p.log.String(), "secret") {
		t.Errorf("the log shows the database password:\n%s", p.log.String())
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if code, out, errs := postern(t, dir, "audit", "verify", filepath.Join(dir, "state", "audit.log")); code != 0 || !strings.Contains(out, "2 records") {
		t.Fatalf("the log: exit %d\n%s%s", code, out, errs)
	}
}
