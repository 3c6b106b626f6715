package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/quarantine"
)

// holdConfig writes a configuration whose only policy quarantines every message that arrives at an SMTP listener
// in front of the embedded upstream.
func holdConfig(t *testing.T, path, addr string) {
	t.Helper()
	cfg := fmt.Sprintf(`
state_dir = "state"
audit {
  path = "state/audit.log"
  sync_interval = "0s"
}
quarantine {
  max_age = "30d"
}
listener "smtp" "in" {
  address  = %q
  upstream = "embedded"
}
plugin "hold" {
  source = "../build/plugins/verdict.wasm"
  config = { action = "quarantine", text = "held for review" }
}
policy "review" {
  plugins = ["hold"]
}
`, addr)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

func rawMessage(subject string) string {
	return "From: bob@other.test\r\nTo: alice@example.com\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject +
		"@other.test>\r\n\r\nbody of " + subject + "\r\n"
}

// listIDs runs `quarantine list -json` with extra flags and returns the entries.
func listEntries(t *testing.T, cfg string, extra ...string) []quarantine.Meta {
	t.Helper()
	code, out, errs := postern(t, "", append([]string{"quarantine", "list", "-config", cfg, "-json"}, extra...)...)
	if code != 0 {
		t.Fatalf("quarantine list: exit %d: %s", code, errs)
	}
	var list []quarantine.Meta
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var m quarantine.Meta
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		list = append(list, m)
	}
	return list
}

func auditRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var r audit.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestQuarantineCommands quarantines messages through `postern run` and works on them with the command line as
// an admin would: list with filters, show, release (through the running proxy, then with the proxy stopped),
// delete; every action is in the audit log, whose chain `audit verify` finds intact while the proxy runs.
func TestQuarantineCommands(t *testing.T) {
	dir := exampleTree(t)
	cfg := filepath.Join(dir, "q.hcl")
	addr := freePort(t)
	holdConfig(t, cfg, addr)
	p := startPostern(t, "-config", cfg)
	p.waitLog(t, "postern running")
	for _, s := range []string{"first", "second", "third"} {
		if err := smtp.SendMail(addr, nil, "bob@other.test", []string{"alice@example.com", "carol@example.com"},
			[]byte(rawMessage(s))); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	mail := filepath.Join(dir, "state", "mail", "in")
	if got := delivered(t, mail); len(got) != 0 {
		t.Fatalf("delivered before any release: %q", got)
	}

	list := listEntries(t, cfg)
	if len(list) != 3 || list[0].Subject != "third" || list[2].Subject != "first" {
		t.Fatalf("list: %+v", list)
	}
	for _, m := range list {
		if m.Stage != "smtp" || m.Listener != "in" || m.Policy != "review" || m.Plugin != "hold" ||
			m.Verdict != "held for review" || m.AuditSeq == 0 || len(m.AuditHash) != 64 || len(m.Rcpts) != 2 {
			t.Fatalf("entry %+v", m)
		}
	}
	if got := listEntries(t, cfg, "-message-id", "second@other.test"); len(got) != 1 || got[0].Subject != "second" {
		t.Fatalf("-message-id: %+v", got)
	}
	if got := listEntries(t, cfg, "-rcpt", "carol@", "-sender", "bob@other", "-since", "1h", "-limit", "2"); len(got) != 2 {
		t.Fatalf("filters: %d entries", len(got))
	}
	if got := listEntries(t, cfg, "-until", "1h"); len(got) != 0 {
		t.Fatalf("-until an hour ago: %d entries", len(got))
	}
	code, out, errs := postern(t, "", "quarantine", "list", "-config", cfg)
	if code != 0 || !strings.Contains(out, "3 entries") || !strings.Contains(out, list[0].ID) ||
		!strings.Contains(out, "held") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errs)
	}
	first, second, third := list[2], list[1], list[0]

	code, out, _ = postern(t, "", "quarantine", "show", "-config", cfg, first.ID)
	if code != 0 || !strings.Contains(out, "Policy:") || !strings.Contains(out, "review") ||
		!strings.Contains(out, "Recipients:") || !strings.Contains(out, fmt.Sprintf("seq %d", first.AuditSeq)) {
		t.Fatalf("show: exit %d\n%s", code, out)
	}
	code, out, _ = postern(t, "", "quarantine", "show", "-config", cfg, "-message", first.ID)
	if code != 0 || out != rawMessage("first") {
		t.Fatalf("show -message: exit %d\n%q", code, out)
	}
	// The reference a notice quotes (the ID without the time of storing) names the entry too.
	_, firstRef, _ := strings.Cut(first.ID, "-")
	if code, out, errs := postern(t, "", "quarantine", "show", "-config", cfg, "-json", firstRef); code != 0 ||
		!strings.Contains(out, `"id": "`+first.ID+`"`) {
		t.Fatalf("show %s: exit %d\n%s%s", firstRef, code, out, errs)
	}
	if code, _, errs := postern(t, "", "quarantine", "show", "-config", cfg, "no-such-ref"); code != 1 ||
		!strings.Contains(errs, "no such quarantine entry") {
		t.Fatalf("show of an unknown reference: exit %d: %s", code, errs)
	}
	if code, _, errs := postern(t, "", "quarantine", "show", "-config", cfg, "../../etc/passwd"); code != 1 ||
		!strings.Contains(errs, "not a quarantine entry ID") {
		t.Fatalf("show of a path: exit %d: %s", code, errs)
	}

	// A release needs a reason; then it goes through the running proxy to the listener's upstream.
	if code, _, errs := postern(t, "", "quarantine", "release", "-config", cfg, first.ID); code != 2 ||
		!strings.Contains(errs, "-reason") {
		t.Fatalf("release without a reason: exit %d: %s", code, errs)
	}
	code, out, errs = postern(t, "", "quarantine", "release", "-config", cfg, "-by", "alice", "-reason", "a false positive", first.ID)
	if code != 0 || !strings.Contains(out, "released "+first.ID+" through smtp embedded: 250") {
		t.Fatalf("release: exit %d\n%s%s", code, out, errs)
	}
	files, _ := filepath.Glob(filepath.Join(mail, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("%d messages delivered", len(files))
	}
	b, _ := os.ReadFile(files[0])
	trace, original, _ := strings.Cut(string(b), "\r\nSubject")
	if !strings.HasPrefix(string(b), "Received: by ") || !strings.Contains(trace, "(released by alice via cli") ||
		!strings.HasSuffix(string(b), rawMessage("first")) {
		t.Fatalf("delivered:\n%s", b)
	}
	_ = original
	if code, _, errs := postern(t, "", "quarantine", "release", "-config", cfg, "-reason", "again", first.ID); code != 1 ||
		!strings.Contains(errs, "already released") {
		t.Fatalf("second release: exit %d: %s", code, errs)
	}
	if got := listEntries(t, cfg, "-state", "released"); len(got) != 1 || got[0].ID != first.ID ||
		got[0].Released.Actor != "alice" || got[0].Released.Reason != "a false positive" {
		t.Fatalf("released: %+v", got)
	}

	_, secondRef, _ := strings.Cut(second.ID, "-")
	code, out, errs = postern(t, "", "quarantine", "delete", "-config", cfg, "-by", "bob", "-reason", "spam", secondRef)
	if code != 0 || !strings.Contains(out, "deleted "+second.ID) {
		t.Fatalf("delete: exit %d\n%s%s", code, out, errs)
	}
	if got := listEntries(t, cfg); len(got) != 2 {
		t.Fatalf("after delete: %d entries", len(got))
	}

	// The chain, written by the proxy alone, is intact while it runs.
	auditLog := filepath.Join(dir, "state", "audit.log")
	if code, out, errs := postern(t, "", "audit", "verify", auditLog); code != 0 {
		t.Fatalf("audit verify while running: exit %d\n%s%s", code, out, errs)
	}

	// With the proxy stopped, the command line opens the audit log and the embedded upstream itself.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("postern exit %d", code)
	}
	code, out, errs = postern(t, "", "quarantine", "release", "-config", cfg, "-by", "carol", "-reason", "checked", third.ID)
	if code != 0 || !strings.Contains(out, "released "+third.ID) {
		t.Fatalf("release without the proxy: exit %d\n%s%s", code, out, errs)
	}
	if got := delivered(t, mail); len(got) != 2 || !contains(got, "third") {
		t.Fatalf("delivered %q", got)
	}
	if code, out, errs := postern(t, "", "audit", "verify", auditLog); code != 0 {
		t.Fatalf("audit verify: exit %d\n%s%s", code, out, errs)
	}

	// Every action is on record: who, why, which entry and the decision it was stored with.
	var releases, deletes, outcomes int
	recs := auditRecords(t, auditLog)
	for i, r := range recs {
		switch r.Event {
		case audit.EventQuarantineRelease:
			releases++
			q := r.Quarantine
			if q.Via != "cli" || q.DecisionSeq == 0 || q.Route != "smtp embedded" || len(r.Rcpts) != 2 ||
				(q.ID == first.ID) != (q.Actor == "alice") {
				t.Errorf("release record %+v %+v", r, q)
			}
			if o := recs[i+1]; o.Event != audit.EventOutcome || o.Pending != r.Seq || o.Reply.Code != 250 {
				t.Errorf("release outcome %+v", o)
			}
		case audit.EventQuarantineDelete:
			deletes++
			if q := r.Quarantine; q.ID != second.ID || q.Actor != "bob" || q.Reason != "spam" || q.DecisionSeq != second.AuditSeq {
				t.Errorf("delete record %+v", q)
			}
		case audit.EventOutcome:
			outcomes++
		case audit.EventDecision:
			if r.Withheld == "" {
				t.Errorf("a quarantine decision without its entry: %+v", r)
			}
		}
	}
	if releases != 2 || deletes != 1 {
		t.Fatalf("%d release and %d delete records", releases, deletes)
	}
	_ = time.Second
}

func TestSafeEscapesTerminalControls(t *testing.T) {
	for in, want := range map[string]string{
		"plain subject":       "plain subject",
		"Grüße":               "Grüße",
		"\x1b[2Jclear":        `\u001b[2Jclear`,
		"a\u202eevil":         `a\u202eevil`,
		"bad \xff byte":       `bad \xff byte`,
		"tab\tand\r\nnewline": `tab\u0009and\u000d\u000anewline`,
	} {
		if got := safe(in, 0); got != want {
			t.Errorf("safe(%q) = %q, want %q", in, got, want)
		}
	}
	if got := safe("abcdef", 3); got != "abc…" {
		t.Errorf("cut: %q", got)
	}
}

// TestRunExpiresOldEntriesAtStart: an entry older than max_age is removed when `postern run` starts, with an
// expiry record naming it.
func TestRunExpiresOldEntriesAtStart(t *testing.T) {
	dir := exampleTree(t)
	cfg := filepath.Join(dir, "q.hcl")
	addr := freePort(t)
	holdConfig(t, cfg, addr)
	qdir := filepath.Join(dir, "state", "quarantine")
	q, err := quarantine.Open(quarantine.Options{Dir: qdir, Now: func() time.Time { return time.Now().AddDate(0, -2, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	old, err := q.Store(strings.NewReader(rawMessage("old")), quarantine.Meta{ID: "OLD", Listener: "in",
		MailFrom: "bob@other.test", Rcpts: []string{"alice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	q2, _ := quarantine.Open(quarantine.Options{Dir: qdir})
	recent, _ := q2.Store(strings.NewReader(rawMessage("recent")), quarantine.Meta{ID: "NEW", Listener: "in"})
	p := startPostern(t, "-config", cfg)
	p.waitLog(t, "quarantine entry expired")
	if got := listEntries(t, cfg); len(got) != 1 || got[0].ID != recent {
		t.Fatalf("after start: %+v", got)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t)
	var found bool
	for _, r := range auditRecords(t, filepath.Join(dir, "state", "audit.log")) {
		if r.Event == audit.EventQuarantineExpiry && r.Quarantine.ID == old && r.Quarantine.Expired == "max_age" {
			found = true
		}
	}
	if !found {
		t.Fatal("no expiry record")
	}
}

// TestRunNamesListenersWithoutReleaseRoute: a retrieval listener in front of a real server has no way to put a
// message back until a release route is configured, and the start-up log says so.
func TestRunNamesListenersWithoutReleaseRoute(t *testing.T) {
	dir := exampleTree(t)
	cfg := filepath.Join(dir, "q.hcl")
	addr := freePort(t)
	conf := fmt.Sprintf(`state_dir = "state"
listener "pop3" "mailbox" {
  address  = %q
  upstream = "127.0.0.1:1"
}
`, addr)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPostern(t, "-config", cfg)
	p.waitLog(t, "postern running")
	if !strings.Contains(p.log.String(), `cannot be released without a route: add quarantine { release \"mailbox\"`) {
		t.Fatalf("no warning:\n%s", p.log.String())
	}
}
