package embedsmtp_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/embedsmtp"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const msg = "From: a@example.org\r\nSubject: hi\r\n\r\n.leading dot\r\nbody\r\n"

func send(t *testing.T, conn net.Conn) string {
	t.Helper()
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Mail("a@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(msg))
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusText
}

func TestStoresMessages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	logged := &lockedBuffer{}
	s, err := embedsmtp.New(embedsmtp.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := s.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	status := send(t, conn)
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	id := strings.TrimPrefix(status, "2.0.0 Ok: stored as ")
	if !strings.HasSuffix(files[0], "-"+id+".eml") {
		t.Fatalf("reply %q does not name %s", status, files[0])
	}
	b, _ := os.ReadFile(files[0])
	if string(b) != msg {
		t.Fatalf("stored %q", b)
	}
	if !strings.Contains(logged.String(), "message stored") || !strings.Contains(logged.String(), id) {
		t.Fatalf("log: %s", logged.String())
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v", fi.Mode())
	}

	// The same server also serves a real listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	send(t, c)
	if files, _ := filepath.Glob(filepath.Join(dir, "*.eml")); len(files) != 2 {
		t.Fatalf("files %v", files)
	}
	s.Close()
	if strings.Contains(logged.String(), "level=WARN") {
		t.Fatalf("warnings logged: %s", logged.String())
	}
}

func TestErrors(t *testing.T) {
	if _, err := embedsmtp.New(embedsmtp.Options{}); err == nil {
		t.Fatal("no error without a directory")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := embedsmtp.New(embedsmtp.Options{Dir: filepath.Join(file, "sub")}); err == nil {
		t.Fatal("no error for a directory that cannot be created")
	}
	s, err := embedsmtp.New(embedsmtp.Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.Dial(context.Background()); err == nil {
		t.Fatal("Dial after Close succeeded")
	}
}

func TestAuthAgainstUsers(t *testing.T) {
	s, err := embedsmtp.New(embedsmtp.Options{Dir: t.TempDir(), Users: embedsmtp.TestUsers})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for pass, ok := range map[string]bool{"alice-test-password": true, "wrong": false} {
		conn, err := s.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c := smtp.NewClient(conn)
		err = c.Auth(sasl.NewPlainClient("", "alice@example.com", pass))
		c.Close()
		if (err == nil) != ok {
			t.Errorf("password %q: %v", pass, err)
		}
	}
	// Without Users, no AUTH is offered.
	plain, err := embedsmtp.New(embedsmtp.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	conn, _ := plain.Dial(context.Background())
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered without users")
	}
}
