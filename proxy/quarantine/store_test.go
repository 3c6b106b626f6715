package quarantine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

const sample = "From: a@example.org\r\nTo: b@example.com\r\nSubject: card\r\nMessage-ID: <m1@example.org>\r\n\r\n4111 1111 1111 1111\r\n"

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)} }

func openAudit(t *testing.T) (*audit.Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Options{Path: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

func openStore(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "q")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func decision() *policy.Decision {
	return &policy.Decision{Hook: pluginhost.HookMessage, Action: pluginhost.Quarantine, DecidedBy: "content",
		Policies: []policy.PolicyTrace{
			{Name: "other"},
			{Name: "content", Matched: true, Plugins: []policy.PluginTrace{
				{Name: "eicar", Verdict: pluginhost.Verdict{Kind: pluginhost.Accept}},
				{Name: "dlp", Verdict: pluginhost.Verdict{Kind: pluginhost.Quarantine, Text: "card number"}},
			}},
		}}
}

func smtpMeta(ref string) Meta {
	return Meta{ID: ref, Listener: "mx", Protocol: "smtp", Direction: "inbound", Session: "s1",
		MailFrom: "a@example.org", Rcpts: []string{"b@example.com", "c@example.com"}, MessageID: "<m1@example.org>",
		Subject: "card", Size: int64(len(sample)), SHA256: "abc", Decision: decision()}
}

func store(t *testing.T, s *Store, m Meta) string {
	t.Helper()
	id, err := s.Store(strings.NewReader(sample), m)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func readAudit(t *testing.T, path string) []audit.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := audit.Verify(bytes.NewReader(b), ""); err != nil {
		t.Fatalf("audit chain: %v", err)
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

func TestStoreWritesBothFilesAndDerivesTheDecision(t *testing.T) {
	c := newClock()
	s := openStore(t, Options{Now: c.now})
	id := store(t, s, smtpMeta("TXN1.1"))
	if id != "20261202T100000Z-TXN1.1" {
		t.Fatalf("id %q", id)
	}
	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Stage != StageSMTP || m.Policy != "content" || m.Plugin != "dlp" || m.Verdict != "card number" ||
		m.Action != "quarantine" || m.ID != id || !m.Time.Equal(c.now()) {
		t.Fatalf("meta %+v", m)
	}
	f, err := s.Message(id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != sample {
		t.Fatalf("message changed: %q", b)
	}
	for _, ext := range []string{extMessage, extMeta} {
		fi, err := os.Stat(s.path(id, ext))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", ext, fi.Mode(), err)
		}
	}
	if fi, _ := os.Stat(s.Dir()); fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", fi.Mode())
	}
	// The same reference in the same second is a second entry, not an overwrite.
	id2 := store(t, s, smtpMeta("TXN1.1"))
	if id2 == id {
		t.Fatal("second entry overwrote the first")
	}
	// A reference with path characters cannot leave the directory.
	id3 := store(t, s, smtpMeta("../../etc/x"))
	if !ValidID(id3) || strings.Contains(id3, "/") {
		t.Fatalf("id %q", id3)
	}
}

func TestStageDerivation(t *testing.T) {
	for _, tc := range []struct {
		m    Meta
		want string
	}{
		{Meta{MailFrom: "a"}, StageSMTP},
		{Meta{Direction: "retrieval", MailboxUser: "bob", UIDL: "1"}, StageRetrieval},
		{Meta{MailboxUser: "bob"}, StageRetrieval},
		{Meta{Direction: "retrieval", Command: "append", MailboxUser: "bob"}, StageAppend},
	} {
		fill(&tc.m)
		if tc.m.Stage != tc.want {
			t.Errorf("%+v: stage %q, want %q", tc.m, tc.m.Stage, tc.want)
		}
	}
}

func TestGetRefusesIDsOutsideTheStore(t *testing.T) {
	s := openStore(t, Options{})
	for _, id := range []string{"", "../x", ".tmp-1", "a/b", "x y"} {
		if _, err := s.Get(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Get(%q): %v", id, err)
		}
		if err := s.Delete(id, Actor{Name: "t"}, ""); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Delete(%q): %v", id, err)
		}
	}
	if _, err := s.Get("20261202T100000Z-none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing entry: %v", err)
	}
}

func TestListFilters(t *testing.T) {
	c := newClock()
	s := openStore(t, Options{Now: c.now})
	a := store(t, s, smtpMeta("a"))
	c.add(time.Hour)
	mb := smtpMeta("b")
	mb.Listener, mb.MailFrom, mb.Rcpts, mb.MessageID, mb.Subject = "sub", "Eve@Example.net", []string{"x@example.com"}, "<other@x>", "Invoice"
	mb.AuthUser = "eve"
	b := store(t, s, mb)
	c.add(time.Hour)
	mr := Meta{ID: "c", Listener: "pop", Protocol: "pop3", Direction: "retrieval", MailboxUser: "bob", UIDL: "u1",
		Decision: &policy.Decision{Action: pluginhost.Reject, DecidedBy: "virus"}}
	r := store(t, s, mr)

	ids := func(f Filter) string {
		list, err := s.List(f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range list {
			out = append(out, m.ID)
		}
		return strings.Join(out, ",")
	}
	yes := true
	for _, tc := range []struct {
		name string
		f    Filter
		want string
	}{
		{"all, newest first", Filter{}, r + "," + b + "," + a},
		{"limit", Filter{Limit: 1}, r},
		{"since", Filter{Since: c.now().Add(-90 * time.Minute)}, r + "," + b},
		{"until", Filter{Until: c.now().Add(-90 * time.Minute)}, a},
		{"listener", Filter{Listener: "sub"}, b},
		{"stage", Filter{Stage: StageRetrieval}, r},
		{"policy", Filter{Policy: "virus"}, r},
		{"sender, case-insensitive", Filter{Sender: "eve@example.NET"}, b},
		{"recipient", Filter{Recipient: "c@example.com"}, a},
		{"user: mailbox", Filter{User: "bob"}, r},
		{"user: authenticated", Filter{User: "eve"}, b},
		{"message-id without brackets", Filter{MessageID: "m1@example.org"}, a},
		{"message-id is exact", Filter{MessageID: "m1@example"}, ""},
		{"subject", Filter{Subject: "invoice"}, b},
		{"released", Filter{Released: &yes}, ""},
	} {
		if got := ids(tc.f); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestLinkAndOldFormat(t *testing.T) {
	s := openStore(t, Options{})
	id := store(t, s, smtpMeta("l"))
	if err := s.Link(id, 42, strings.Repeat("a", 64)); err != nil {
		t.Fatal(err)
	}
	m, _ := s.Get(id)
	if m.AuditSeq != 42 || m.AuditHash != strings.Repeat("a", 64) {
		t.Fatalf("link %d %q", m.AuditSeq, m.AuditHash)
	}
	// An entry written before the store had its own package: "id" was the transaction's, no stage.
	old := "20250101T000000Z-OLD"
	os.WriteFile(s.path(old, extMessage), []byte(sample), 0o600)
	os.WriteFile(s.path(old, extMeta), []byte(`{"id":"OLD","time":"2025-01-01T00:00:00Z","listener":"mx",
		"session":"s","mail_from":"a@x","rcpts":["b@y"],"size":10,"sha256":"x","decision":{"hook":"message",
		"action":"quarantine","decided_by":"content","score":0,"policies":[],"config_version":"","duration_ns":0}}`), 0o600)
	m, err := s.Get(old)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != old || m.Stage != StageSMTP || m.Policy != "content" {
		t.Fatalf("old entry %+v", m)
	}
	// A message without metadata (a crash between the renames) is listed, not lost.
	orphan := "20250101T000001Z-ORPHAN"
	os.WriteFile(s.path(orphan, extMessage), []byte(sample), 0o600)
	list, _ := s.List(Filter{})
	found := false
	for _, m := range list {
		found = found || (m.ID == orphan && m.Orphan && m.Size == int64(len(sample)))
	}
	if !found {
		t.Fatal("orphan not listed")
	}
}

func TestOpenRemovesOldTemporaries(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, tmpPrefix+"1")
	young := filepath.Join(dir, tmpPrefix+"2")
	os.WriteFile(old, nil, 0o600)
	os.WriteFile(young, nil, 0o600)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(old, past, past)
	openStore(t, Options{Dir: dir})
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Error("an old temporary file stayed")
	}
	if _, err := os.Stat(young); err != nil {
		t.Error("a temporary file in use was removed")
	}
}

func TestDeleteIsRecordedFirst(t *testing.T) {
	al, path := openAudit(t)
	s := openStore(t, Options{Audit: al})
	id := store(t, s, smtpMeta("d"))
	s.Link(id, 7, strings.Repeat("b", 64))
	if err := s.Delete(id, Actor{Name: "alice", Via: "cli"}, "false positive"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("still there: %v", err)
	}
	recs := readAudit(t, path)
	r := recs[len(recs)-1]
	if r.Event != audit.EventQuarantineDelete || r.Quarantine == nil || r.Quarantine.ID != id ||
		r.Quarantine.Actor != "alice" || r.Quarantine.Via != "cli" || r.Quarantine.Reason != "false positive" ||
		r.Quarantine.DecisionSeq != 7 || r.MessageID != "<m1@example.org>" || len(r.Rcpts) != 2 {
		t.Fatalf("record %+v %+v", r, r.Quarantine)
	}
	if err := s.Delete(id, Actor{Name: "alice"}, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}

	// Without its record, nothing is deleted.
	id = store(t, s, smtpMeta("d2"))
	al.Close()
	if err := s.Delete(id, Actor{Name: "alice"}, ""); !errors.Is(err, audit.ErrNotRecorded) {
		t.Fatalf("delete without audit: %v", err)
	}
	if _, err := s.Get(id); err != nil {
		t.Fatalf("deleted without a record: %v", err)
	}
}

func TestRetention(t *testing.T) {
	al, path := openAudit(t)
	c := newClock()
	s := openStore(t, Options{Audit: al, Now: c.now, Retention: Retention{MaxAge: 48 * time.Hour,
		MaxBytes: 3 * int64(len(sample))}})
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, store(t, s, smtpMeta("r"+string(rune('a'+i)))))
		c.add(time.Hour)
	}
	// Five entries, room for three: the two oldest go.
	got, err := s.Expire()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[1] || got[0].Why != "max_bytes" {
		t.Fatalf("expired %+v", got)
	}
	// Three days later, all are too old.
	c.add(72 * time.Hour)
	got, err = s.Expire()
	if err != nil || len(got) != 3 || got[0].Why != "max_age" {
		t.Fatalf("expired %+v %v", got, err)
	}
	if list, _ := s.List(Filter{}); len(list) != 0 {
		t.Fatalf("%d left", len(list))
	}
	var n int
	for _, r := range readAudit(t, path) {
		if r.Event == audit.EventQuarantineExpiry {
			n++
			if r.Quarantine.Actor != "retention" || r.Quarantine.Expired == "" {
				t.Fatalf("expiry record %+v", r.Quarantine)
			}
		}
	}
	if n != 5 {
		t.Fatalf("%d expiry records", n)
	}
}

func TestRetentionKeepsWhatItCannotRecordAndWhatIsLocked(t *testing.T) {
	al, _ := openAudit(t)
	c := newClock()
	s := openStore(t, Options{Audit: al, Now: c.now, Retention: Retention{MaxAge: time.Hour}})
	locked := store(t, s, smtpMeta("locked"))
	other := store(t, s, smtpMeta("other"))
	c.add(2 * time.Hour)
	unlock, err := s.lock(locked)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Expire()
	unlock()
	if err != nil || len(got) != 1 || got[0].ID != other {
		t.Fatalf("expired %+v, %v", got, err)
	}
	al.Close()
	if _, err := s.Expire(); !errors.Is(err, audit.ErrNotRecorded) {
		t.Fatalf("expiry without audit: %v", err)
	}
	if _, err := s.Get(locked); err != nil {
		t.Fatal("expired without a record")
	}
	if got, _ := s.Expire(); len(got) != 0 {
		t.Fatal("expired without a record")
	}
}

func TestRunAppliesRetentionAtStart(t *testing.T) {
	c := newClock()
	dir := filepath.Join(t.TempDir(), "q")
	s := openStore(t, Options{Dir: dir, Now: c.now})
	store(t, s, smtpMeta("x"))
	c.add(time.Hour)
	s2 := openStore(t, Options{Dir: dir, Now: c.now, Retention: Retention{MaxAge: time.Minute, Interval: time.Hour}})
	s2.Run()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, _ := s2.List(Filter{})
		if len(list) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not expire the old entry")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s2.Close()
}

// fakeRoute records deliveries.
type fakeRoute struct {
	mu    sync.Mutex
	got   []string
	err   error
	block chan struct{}
	calls atomic.Int32
}

func (f *fakeRoute) String() string { return "fake" }
func (f *fakeRoute) Deliver(ctx context.Context, m *Meta, msg io.Reader, size int64) (string, error) {
	f.calls.Add(1)
	if f.block != nil {
		<-f.block
	}
	b, err := io.ReadAll(msg)
	if err != nil {
		return "", err
	}
	if int64(len(b)) != size {
		return "", errors.New("size mismatch")
	}
	if f.err != nil {
		return "", f.err
	}
	f.mu.Lock()
	f.got = append(f.got, string(b))
	f.mu.Unlock()
	return "250 2.0.0 Ok: queued as X", nil
}

func TestReleaseDeliversOnceWithTrace(t *testing.T) {
	al, path := openAudit(t)
	route := &fakeRoute{}
	c := newClock()
	s := openStore(t, Options{Audit: al, Now: c.now, Hostname: "mx.example.org",
		Routes: RouterFunc(func(*Meta) (Route, error) { return route, nil })})
	id := store(t, s, smtpMeta("rel"))
	c.add(time.Minute)
	m, err := s.Release(context.Background(), id, Actor{Name: "alice", Via: "cli"}, "looks fine")
	if err != nil {
		t.Fatal(err)
	}
	if len(route.got) != 1 {
		t.Fatalf("%d deliveries", len(route.got))
	}
	got := route.got[0]
	trace, rest, _ := strings.Cut(got, "\r\n\t")
	if rest == "" || !strings.HasSuffix(got, sample) || !strings.HasPrefix(trace, "Received: by mx.example.org (Postern quarantine) with ESMTP id "+id) {
		t.Fatalf("delivered %q", got)
	}
	if !strings.Contains(got, "(released by alice via cli, held since ") {
		t.Fatalf("trace %q", got)
	}
	if m.Released == nil || m.Released.Actor != "alice" || m.Released.Reply != "250 2.0.0 Ok: queued as X" {
		t.Fatalf("released %+v", m.Released)
	}
	if stored, _ := s.Get(id); stored.Released == nil || stored.Released.AuditSeq == 0 {
		t.Fatalf("not marked: %+v", stored.Released)
	}
	if _, err := s.Release(context.Background(), id, Actor{Name: "bob"}, ""); !errors.Is(err, ErrAlreadyReleased) {
		t.Fatalf("second release: %v", err)
	}
	if len(route.got) != 1 {
		t.Fatal("delivered twice")
	}
	recs := readAudit(t, path)
	rel, out := recs[len(recs)-2], recs[len(recs)-1]
	if rel.Event != audit.EventQuarantineRelease || rel.Quarantine.Route != "fake" || rel.Quarantine.Reason != "looks fine" ||
		out.Event != audit.EventOutcome || out.Pending != rel.Seq || out.Reply == nil || out.Reply.Code != 250 ||
		out.Reply.Enhanced != "2.0.0" {
		t.Fatalf("records %+v / %+v %+v", rel, out, out.Reply)
	}
}

func TestReleaseFailures(t *testing.T) {
	al, path := openAudit(t)
	route := &fakeRoute{err: &ReplyError{Reply: "550 5.1.1 No such user"}}
	var noRoute atomic.Bool
	s := openStore(t, Options{Audit: al, Routes: RouterFunc(func(*Meta) (Route, error) {
		if noRoute.Load() {
			return nil, ErrNoRoute
		}
		return route, nil
	})})
	id := store(t, s, smtpMeta("f"))
	if _, err := s.Release(context.Background(), id, Actor{Name: "a"}, ""); err == nil {
		t.Fatal("a refused delivery was a release")
	}
	if m, _ := s.Get(id); m.Released != nil {
		t.Fatal("marked released after a refusal")
	}
	recs := readAudit(t, path)
	out := recs[len(recs)-1]
	if out.Event != audit.EventOutcome || out.Reply.Code != 550 || out.Reply.Text != "No such user" {
		t.Fatalf("outcome %+v", out.Reply)
	}
	// A failure that is not a reply is a temporary one.
	route.err = errors.New("connection refused")
	s.Release(context.Background(), id, Actor{Name: "a"}, "")
	recs = readAudit(t, path)
	if r := recs[len(recs)-1].Reply; r.Code != 451 || !strings.Contains(r.Text, "connection refused") {
		t.Fatalf("outcome %+v", r)
	}
	noRoute.Store(true)
	n := len(readAudit(t, path))
	if _, err := s.Release(context.Background(), id, Actor{Name: "a"}, ""); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("no route: %v", err)
	}
	if len(readAudit(t, path)) != n {
		t.Fatal("a release that could not start was recorded")
	}
	// Without its record, nothing is delivered.
	noRoute.Store(false)
	route.err = nil
	al.Close()
	if _, err := s.Release(context.Background(), id, Actor{Name: "a"}, ""); !errors.Is(err, audit.ErrNotRecorded) {
		t.Fatalf("release without audit: %v", err)
	}
	if len(route.got) != 0 {
		t.Fatal("delivered without a record")
	}
	none := openStore(t, Options{})
	id = store(t, none, smtpMeta("n"))
	if _, err := none.Release(context.Background(), id, Actor{Name: "a"}, ""); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("store without routes: %v", err)
	}
}

func TestConcurrentReleasesDeliverOnce(t *testing.T) {
	route := &fakeRoute{block: make(chan struct{})}
	dir := filepath.Join(t.TempDir(), "q")
	router := RouterFunc(func(*Meta) (Route, error) { return route, nil })
	// Two stores on one directory stand for `postern run` and the command line.
	a := openStore(t, Options{Dir: dir, Routes: router})
	b := openStore(t, Options{Dir: dir, Routes: router})
	id := store(t, a, smtpMeta("c"))
	errs := make(chan error, 2)
	go func() { _, err := a.Release(context.Background(), id, Actor{Name: "x"}, ""); errs <- err }()
	for route.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	go func() { _, err := b.Release(context.Background(), id, Actor{Name: "y"}, ""); errs <- err }()
	// The second waits for the first's lock; Delete and Link wait too.
	time.Sleep(50 * time.Millisecond)
	close(route.block)
	e1, e2 := <-errs, <-errs
	if e1 != nil {
		e1, e2 = e2, e1
	}
	if e1 != nil || !errors.Is(e2, ErrAlreadyReleased) {
		t.Fatalf("errors %v / %v", e1, e2)
	}
	if len(route.got) != 1 {
		t.Fatalf("%d deliveries", len(route.got))
	}
}

func TestTraceFieldIsOneSafeHeader(t *testing.T) {
	m := &Meta{ID: "20261202T100000Z-x", Stage: StageRetrieval, Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	tr := TraceField("mx\r\nBcc: evil", m, Actor{Name: "eve)\r\nX-Evil: 1 (", Via: "web"}, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	lines := strings.Split(strings.TrimSuffix(tr, "\r\n"), "\r\n")
	if !strings.HasPrefix(lines[0], "Received: by mxBccevil (Postern quarantine) with LOCAL id ") {
		t.Fatalf("trace %q", tr)
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "\t") {
			t.Fatalf("a line that is not a continuation: %q", l)
		}
	}
	if strings.Count(tr, "(") != strings.Count(tr, ")") {
		t.Fatalf("unbalanced comment: %q", tr)
	}
}

func TestEncodeMailbox(t *testing.T) {
	for in, want := range map[string]string{"INBOX": "INBOX", "Entwürfe": "Entw&APw-rfe", "A&B": "A&-B",
		"台北": "&U,BTFw-"} {
		if got := encodeMailbox(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestOversizedMetadataIsRefused(t *testing.T) {
	s := openStore(t, Options{})
	id := store(t, s, smtpMeta("big"))
	if err := os.WriteFile(s.path(id, extMeta), bytes.Repeat([]byte(" "), maxMetaBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(id); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Get: %v", err)
	}
	if list, err := s.List(Filter{}); err != nil || len(list) != 0 {
		t.Fatalf("List: %d %v", len(list), err)
	}
}

func TestListOrdersWithinOneSecond(t *testing.T) {
	c := newClock()
	s := openStore(t, Options{Now: c.now})
	older := store(t, s, smtpMeta("zzz"))
	c.add(time.Millisecond)
	newer := store(t, s, smtpMeta("aaa"))
	list, err := s.List(Filter{Limit: 1})
	if err != nil || len(list) != 1 || list[0].ID != newer {
		t.Fatalf("newest first: %v %v (older %s)", list, err, older)
	}
}

// TestStoreOnceKeepsAMessageReadAgainOnce: a message withheld each time it is read (IMAP: the same UID in every
// session) is kept once; the entry stays linked to the decision that kept it; another message under the same
// reference (other bytes) and a second-of-the-same-time entry are told apart.
func TestStoreOnceKeepsAMessageReadAgainOnce(t *testing.T) {
	c := newClock()
	s := openStore(t, Options{Now: c.now})
	m := Meta{ID: "imap-0123456789abcdef", Listener: "imap", Protocol: "imap", Direction: "retrieval",
		MailboxUser: "alice", Mailbox: "INBOX", UID: 7, Size: int64(len(sample)), SHA256: "d1", Decision: decision()}
	first, err := s.StoreOnce(strings.NewReader(sample), m)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Link(first, 10, strings.Repeat("a", 64)); err != nil {
		t.Fatal(err)
	}
	c.add(time.Hour)
	again, err := s.StoreOnce(strings.NewReader(sample), m)
	if err != nil || again != first {
		t.Fatalf("read again: %q, %v; want the kept entry %q", again, err, first)
	}
	if err := s.Link(again, 11, strings.Repeat("b", 64)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(first); got.AuditSeq != 10 {
		t.Errorf("entry linked to record %d, want the first decision's 10", got.AuditSeq)
	}
	if emls, _ := filepath.Glob(filepath.Join(s.Dir(), "*.eml")); len(emls) != 1 {
		t.Errorf("%d messages kept, want 1: %v", len(emls), emls)
	}
	other := m
	other.SHA256 = "d2"
	changed, err := s.StoreOnce(strings.NewReader(sample+"x"), other)
	if err != nil || changed == first {
		t.Fatalf("other bytes under the same reference: %q, %v", changed, err)
	}
	// Once the kept entry is released, a message withheld again is kept anew.
	if err := s.update(first, func(m *Meta) error { m.Released = &Released{Reason: "checked"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if anew, err := s.StoreOnce(strings.NewReader(sample), m); err != nil || anew == first || anew == changed {
		t.Errorf("withheld again after the release: %q, %v; want a new entry", anew, err)
	}
	// Store, unlike StoreOnce, keeps every copy.
	if id := store(t, s, m); id == first {
		t.Errorf("Store returned the kept entry %q", id)
	}
}

// TestResolve: an entry is named by its ID, or by the reference a notice quotes when that names one entry.
func TestResolve(t *testing.T) {
	c := newClock()
	s := openStore(t, Options{Now: c.now})
	one := store(t, s, smtpMeta("imap-aaaa"))
	store(t, s, smtpMeta("twice"))
	c.add(time.Second)
	store(t, s, smtpMeta("twice"))
	for name, want := range map[string]string{one: one, "imap-aaaa": one} {
		if got, err := s.Resolve(name); err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := s.Resolve("imap-aa"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a prefix of a reference: %v, want ErrNotFound", err)
	}
	if _, err := s.Resolve("twice"); err == nil || !strings.Contains(err.Error(), "names 2 entries") {
		t.Errorf("a reference of two entries: %v", err)
	}
	if _, err := s.Resolve("../x"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("a path: %v", err)
	}
}
