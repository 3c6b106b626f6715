package embedpop3

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-sasl"

	"github.com/postern/postern/proxy/pop3"
)

func TestMaildrop(t *testing.T) {
	dir := t.TempDir()
	msgA := "Subject: a\r\n\r\n.dot\r\nbody\r\n"
	msgB := "Subject: b\r\n\r\nsecond\r\n"
	os.WriteFile(filepath.Join(dir, "20260101T000000.000000000Z-aaa.eml"), []byte(msgA), 0o600)
	os.WriteFile(filepath.Join(dir, "20260101T000001.000000000Z-bbb.eml"), []byte(msgB), 0o600)
	os.WriteFile(filepath.Join(dir, ".incoming-123"), []byte("partial"), 0o600)
	s, err := New(Options{Dirs: []string{dir, filepath.Join(dir, "missing")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := s.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := pop3.NewClient(conn, 4096)
	must := func(r pop3.Response, err error) pop3.Response {
		t.Helper()
		if err != nil || !r.OK {
			t.Fatalf("%+v %v", r, err)
		}
		return r
	}
	must(c.ReadResponse())
	if r, _ := c.Cmd("STAT"); r.OK {
		t.Fatal("STAT before login")
	}
	must(c.Cmd("USER anyone"))
	must(c.Cmd("PASS anything"))
	if r := must(c.Cmd("STAT")); r.Text != fmt.Sprintf("2 %d", len(msgA)+len(msgB)) {
		t.Fatalf("STAT %q", r.Text)
	}
	must(c.Cmd("UIDL"))
	if l, _ := c.Lines(10); len(l) != 2 || l[0] != "1 20260101T000000.000000000Z-aaa" {
		t.Fatalf("UIDL %q", l)
	}
	must(c.Cmd("RETR 1"))
	if b, err := io.ReadAll(c.Body()); err != nil || string(b) != msgA {
		t.Fatalf("RETR 1 %q %v", b, err)
	}
	must(c.Cmd("TOP 2 0"))
	if b, _ := io.ReadAll(c.Body()); string(b) != "Subject: b\r\n\r\n" {
		t.Fatalf("TOP 2 0 %q", b)
	}
	must(c.Cmd("DELE 1"))
	if r, _ := c.Cmd("RETR 1"); r.OK {
		t.Fatal("RETR of a deleted message")
	}
	must(c.Cmd("QUIT"))
	if _, err := os.Stat(filepath.Join(dir, "20260101T000000.000000000Z-aaa.eml")); !os.IsNotExist(err) {
		t.Fatal("DELE and QUIT left the file")
	}
	// A session that ends without QUIT deletes nothing.
	conn, _ = s.Dial(t.Context())
	c = pop3.NewClient(conn, 4096)
	must(c.ReadResponse())
	must(c.Auth(plain("x", "y")))
	must(c.Cmd("DELE 1"))
	conn.Close()
	if _, err := os.Stat(filepath.Join(dir, "20260101T000001.000000000Z-bbb.eml")); err != nil {
		t.Fatal("a dropped session deleted a message")
	}
}

func plain(user, pw string) sasl.Client { return sasl.NewPlainClient("", user, pw) }
