package imapproxy

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/postern/postern/internal/metricstest"
	"github.com/postern/postern/proxy/metrics"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// TestMetricsCountIMAP checks that the IMAP front end is counted at the shared seams: its sessions, the
// messages it served with their action and reply class, its upstream dials, and a lost upstream.
func TestMetricsCountIMAP(t *testing.T) {
	up := newMemUpstream(t, nil)
	var mu sync.Mutex
	var conns []net.Conn
	r := newRig(t, up, func(o *Options) {
		o.Dial = func(ctx context.Context) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", up.addr)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			return c, err
		}
	})
	r.up.add("INBOX", plainMsg)
	r.filter.set(func(*pluginhost.Input) *policy.Decision {
		return &policy.Decision{Action: pluginhost.Reject, Text: "EICAR test signature", DecidedBy: "antivirus"}
	})
	l := func(kv ...string) map[string]string {
		return metricstest.L(append([]string{"listener", "imap-test"}, kv...)...)
	}
	before := metricstest.Serve(t, metrics.Handler())

	c := r.client(nil)
	r.selectBox(c, "INBOX", true)
	fetchOne(t, c, 1, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})

	rc := r.raw()
	rc.send("a LOGIN alice secret\r\n")
	rc.until("a OK")
	mu.Lock()
	conns[len(conns)-1].Close()
	mu.Unlock()
	if line := rc.line(); !strings.HasPrefix(line, "* BYE") {
		t.Fatalf("got %q, want an untagged BYE", line)
	}

	after := metricstest.Serve(t, metrics.Handler())
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"postern_sessions_total", l("protocol", "imap"), 2},
		{"postern_messages_total", l("protocol", "imap", "action", "reject"), 1},
		{"postern_upstream_dials_total", l("protocol", "imap"), 2},
		{"postern_upstream_errors_total", l("protocol", "imap"), 1},
	} {
		b, _ := before.Value(c.name, c.labels)
		a, _ := after.Value(c.name, c.labels)
		if a-b < c.min {
			t.Errorf("%s%v rose by %v, want at least %v", c.name, c.labels, a-b, c.min)
		}
	}
}
