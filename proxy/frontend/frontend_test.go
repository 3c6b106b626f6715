package frontend

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
)

type nopHandler struct{}

func (nopHandler) ServeConn(c net.Conn)         { c.Close() }
func (nopHandler) Refuse(c net.Conn, why error) { c.Close() }

func TestRefusalText(t *testing.T) {
	for why, want := range map[error]string{
		listener.ErrBusy: "Too many sessions, try again later",
		fmt.Errorf("x: %w", listener.ErrClientBusy): "Too many sessions from your address, try again later",
		listener.ErrClientRate:                      "Too many connections from your address, try again later",
		errors.New("closing"):                       "Server shutting down, try again later",
	} {
		if got := RefusalText(why); got != want {
			t.Errorf("RefusalText(%v) = %q, want %q", why, got, want)
		}
	}
}

// TestNewErrors: what cannot be set up is an error naming the front end and its listener.
func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	for name, s := range map[string]Setup{
		"missing certificate": {ClientTLS: listener.TLS{Mode: listener.TLSImplicit,
			CertFile: filepath.Join(dir, "none.pem"), KeyFile: filepath.Join(dir, "none.key")}},
		"untrusted network": {ProxyTrusted: []string{"not a network"}},
	} {
		s.Package, s.Listener.Name = "testproxy", "in"
		s.Flow = mailflow.Options{}
		if _, err := New(s, nopHandler{}); err == nil || !strings.HasPrefix(err.Error(), `testproxy: listener "in": `) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
