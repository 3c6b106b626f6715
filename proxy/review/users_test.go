package review

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/audit"
)

func TestParseUsersErrors(t *testing.T) {
	good, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	file := strings.Join([]string{
		"# comment",
		"",
		"ada:auditor:" + good,
		"bob:boss:" + good,
		"bad name:auditor:" + good,
		"carl:reviewer:plaintext",
		"ada:admin:" + good,
		"dan:admin",
		"eve:admin:$argon2id$v=19$m=4194304,t=3,p=4$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"fay:admin:$2b$04$notabcrypthash",
	}, "\n")
	users, err := ParseUsers("users.txt", []byte(file))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`users.txt:4: unknown role "boss"`,
		"users.txt:5: user name",
		"users.txt:6: user carl: the hash is neither argon2id",
		"users.txt:7: user ada is already on line 3",
		"users.txt:8: want name:role:hash",
		"users.txt:9: user eve: argon2id parameters m=4194304",
		"users.txt:10: user fay: bcrypt hash",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q:\n%v", want, err)
		}
	}
	if len(users) != 1 || users["ada"].Role != RoleAuditor {
		t.Errorf("users: %v", users)
	}
}

func TestArgon2idHash(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Fatalf("hash %s", h)
	}
	if !verifyPassword(h, "correct horse") || verifyPassword(h, "correct horsf") || verifyPassword(h, "") {
		t.Fatal("argon2id verification")
	}
	h2, _ := HashPassword("correct horse")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
}

func TestAddUserKeepsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	h1, _ := HashPassword("one")
	h2, _ := HashPassword("two")
	if err := AddUser(path, "ada", RoleAuditor, h1); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(path, "rita", RoleReviewer, h1); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(path, "ada", RoleAdmin, h2); err != nil { // changes ada's line in place
		t.Fatal(err)
	}
	if err := AddUser(path, "no good", RoleAdmin, h2); err == nil {
		t.Fatal("a bad name was added")
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	users, err := ReadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users["ada"].Role != RoleAdmin || users["ada"].Hash != h2 || users["ada"].Line != 2 {
		t.Fatalf("users %+v", users)
	}
	if err := RemoveUser(path, "ada"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveUser(path, "ada"); err == nil {
		t.Fatal("removed twice")
	}
	users, _ = ReadUsers(path)
	if _, ok := users["ada"]; ok || len(users) != 1 {
		t.Fatalf("users %+v", users)
	}
}

func TestLogScan(t *testing.T) {
	dir := t.TempDir()
	log, err := audit.Open(audit.Options{Path: filepath.Join(dir, "audit.log")})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	for i := range 10 {
		from := "a@example.org"
		action := "accept"
		if i%3 == 0 {
			from, action = "b@example.org", "quarantine"
		}
		r := &audit.Record{Event: audit.EventDecision, Time: t0.Add(time.Duration(i) * time.Minute), Listener: "mx",
			MailFrom: &from, Rcpts: []string{"bob@example.com"}, MessageID: "<m" + string(rune('0'+i)) + "@x>", Action: action,
			Policies: []audit.Policy{{Name: "content", Matched: i%3 == 0, Plugins: []audit.Plugin{{Name: "dlp"}}}}}
		if err := log.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	log.Append(&audit.Record{Event: audit.EventReview, Time: t0, Review: &audit.ReviewAction{Action: "login"}})
	log.Close()
	s := LogScan{Path: filepath.Join(dir, "audit.log")}
	ctx := context.Background()
	seqs := func(q DecisionQuery) []uint64 {
		rs, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, r := range rs {
			out = append(out, r.Record.Seq)
		}
		return out
	}
	for name, c := range map[string]struct {
		q    DecisionQuery
		want []uint64
	}{
		"all":        {DecisionQuery{}, []uint64{11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		"decisions":  {DecisionQuery{Event: "decision"}, []uint64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		"review":     {DecisionQuery{Event: "review"}, []uint64{11}},
		"sender":     {DecisionQuery{Sender: "B@example.org"}, []uint64{10, 7, 4, 1}},
		"limit":      {DecisionQuery{Sender: "b@example.org", Limit: 2}, []uint64{10, 7}},
		"page":       {DecisionQuery{Sender: "b@example.org", Limit: 2, Offset: 2}, []uint64{4, 1}},
		"past end":   {DecisionQuery{Sender: "b@example.org", Limit: 2, Offset: 4}, nil},
		"message-id": {DecisionQuery{MessageID: "m5@x"}, []uint64{6}},
		"action":     {DecisionQuery{Action: "quarantine"}, []uint64{10, 7, 4, 1}},
		"policy":     {DecisionQuery{Policy: "content", Plugin: "dlp"}, []uint64{10, 7, 4, 1}},
		"time":       {DecisionQuery{From: t0.Add(2 * time.Minute), To: t0.Add(4 * time.Minute)}, []uint64{4, 3}},
		"recipient":  {DecisionQuery{Recipient: "nobody@example.com"}, nil},
	} {
		if got := seqs(c.q); !slicesEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
	r, err := s.Record(ctx, "", 6)
	if err != nil || r.Record.MessageID != "<m5@x>" {
		t.Fatalf("record 6: %v %v", r, err)
	}
	if _, err := s.Record(ctx, "", 99); err != ErrNotFound {
		t.Fatalf("record 99: %v", err)
	}
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestUsersFileAppears(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	u, err := OpenUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Empty() {
		t.Fatal("a missing file has users")
	}
	h, _ := HashPassword("password1")
	if err := AddUser(path, "rita", RoleReviewer, h); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // looked at again at most every second
	if usr, ok := u.Lookup("rita"); !ok || usr.Role != RoleReviewer || u.Empty() {
		t.Fatalf("the new file is not read: %+v %v", usr, ok)
	}
	// A file that stops parsing keeps the users last read, and says why.
	os.WriteFile(path, []byte("rita:boss:x\n"), 0o600)
	os.Chtimes(path, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	time.Sleep(1100 * time.Millisecond)
	if _, ok := u.Lookup("rita"); !ok || u.Err() == nil || !strings.Contains(u.Err().Error(), "users:1:") {
		t.Fatalf("a broken file: %v", u.Err())
	}
}
