package review

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/auditindex"
	"github.com/postern/postern/proxy/quarantine"
)

type oneRoute struct{ got string }

func (r *oneRoute) String() string { return "smtp 127.0.0.1:2525" }
func (r *oneRoute) Deliver(_ context.Context, _ *quarantine.Meta, msg io.Reader, _ int64) (string, error) {
	b, err := io.ReadAll(msg)
	r.got = string(b)
	return "250 2.0.0 Ok: queued as X", err
}

// TestStoreAdapter drives the real quarantine store and audit log through the pages' interface.
func TestStoreAdapter(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	al, err := audit.Open(audit.Options{Path: logPath})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	route := &oneRoute{}
	qs, err := quarantine.Open(quarantine.Options{Dir: filepath.Join(dir, "q"), Audit: al,
		Routes: quarantine.RouterFunc(func(*quarantine.Meta) (quarantine.Route, error) { return route, nil })})
	if err != nil {
		t.Fatal(err)
	}
	id, err := qs.Store(strings.NewReader(hostile), quarantine.Meta{ID: "s1.1", Listener: "mx", Protocol: "smtp",
		MailFrom: "evil@example.net", Rcpts: []string{"bob@example.com"}, MessageID: "<hostile-1@example.net>",
		Subject: "<script>x</script>", Policy: "content"})
	if err != nil {
		t.Fatal(err)
	}
	s := Store{S: qs}
	ctx := context.Background()
	es, err := s.List(ctx, QuarantineFilter{Sender: "evil@example.net"})
	if err != nil || len(es) != 1 || es[0].ID != id || es[0].Subject != "<script>x</script>" || es[0].Rcpts[0] != "bob@example.com" {
		t.Fatalf("list: %+v %v", es, err)
	}
	if es, _ := s.List(ctx, QuarantineFilter{Sender: "nobody@example.net"}); len(es) != 0 {
		t.Fatalf("filter: %+v", es)
	}
	for _, bad := range []string{"nope", "../../etc/passwd"} {
		if _, err := s.Get(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): %v", bad, err)
		}
	}
	src, size, c, err := s.Open(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(io.NewSectionReader(src, 0, size))
	c.Close()
	if string(b) != hostile {
		t.Fatal("Open is not the original")
	}
	route2, err := s.Release(ctx, id, Actor{Name: "rita", Role: RoleReviewer}, "fine")
	if err != nil || !strings.Contains(route2, "smtp 127.0.0.1:2525") || !strings.HasSuffix(route.got, hostile) {
		t.Fatalf("release: %q %v", route2, err)
	}
	if e, _ := s.Get(ctx, id); !strings.HasPrefix(e.State, "released ") || !strings.Contains(e.State, "by rita: fine") {
		t.Fatalf("state %q", e.State)
	}
	if _, err := s.Release(ctx, id, Actor{Name: "rita"}, "again"); err == nil {
		t.Fatal("released twice")
	}
	if err := s.Delete(ctx, id, Actor{Name: "adam"}, "done"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	al.Close()
	// The store recorded the web actor and the reasons.
	var got []string
	f, _ := os.Open(logPath)
	defer f.Close()
	sc := bufio.NewScanner(f)
	var lines []auditindex.Line
	for sc.Scan() {
		var r audit.Record
		json.Unmarshal(sc.Bytes(), &r)
		lines = append(lines, auditindex.Line{Seq: r.Seq, Data: append([]byte(nil), sc.Bytes()...)})
		if r.Quarantine != nil {
			got = append(got, string(r.Event)+" "+r.Quarantine.Actor+" "+r.Quarantine.Via+" "+r.Quarantine.Reason)
		}
	}
	if strings.Join(got, "|") != "quarantine_release rita web fine|quarantine_delete adam web done" {
		t.Fatalf("records %q", got)
	}

	// The same records through the index adapter.
	ix, err := auditindex.Open(ctx, auditindex.Options{Driver: auditindex.DriverSQLite, DSN: filepath.Join(dir, "index.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.Add(ctx, "mx1", lines); err != nil {
		t.Fatal(err)
	}
	x := Index{S: ix, Node: "mx1"}
	rows, err := x.Search(ctx, DecisionQuery{Event: "quarantine_delete"})
	if err != nil || len(rows) != 1 || rows[0].Node != "mx1" || rows[0].Record.Quarantine.Actor != "adam" {
		t.Fatalf("index search: %+v %v", rows, err)
	}
	row, err := x.Record(ctx, "", rows[0].Record.Seq)
	if err != nil || row.Record.Event != audit.EventQuarantineDelete {
		t.Fatalf("index record: %+v %v", row, err)
	}
	if _, err := x.Record(ctx, "", 999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("index record 999: %v", err)
	}
}
