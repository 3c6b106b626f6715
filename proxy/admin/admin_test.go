package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func start(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthAndReadiness(t *testing.T) {
	s := New(Options{CheckTimeout: 200 * time.Millisecond})
	var auditErr atomic.Value // error
	auditErr.Store(errors.New(""))
	s.Ready("audit", func(context.Context) error {
		if err := auditErr.Load().(error); err.Error() != "" {
			return err
		}
		return nil
	})
	s.Ready("listeners", func(context.Context) error { return nil })
	s.Ready("slow", func(ctx context.Context) error { <-ctx.Done(); return nil })
	s.Handle("GET /extra", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "mounted") }))
	base := start(t, s)

	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/extra"); code != 200 || body != "mounted" {
		t.Errorf("/extra = %d %q", code, body)
	}
	// "slow" never answers: its timeout makes the server not ready, and names it.
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]slow failed: no answer within") ||
		!strings.Contains(body, "[+]audit ok") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	s.Ready("slow", func(context.Context) error { return nil })
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.HasSuffix(body, "ready\n") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	auditErr.Store(errors.New("disk full"))
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "[-]audit failed: disk full") {
		t.Errorf("/readyz = %d %q", code, body)
	}
}
