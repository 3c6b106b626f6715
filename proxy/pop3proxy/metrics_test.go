package pop3proxy

import (
	"net"
	"testing"
	"time"

	"github.com/postern/postern/internal/metricstest"
	"github.com/postern/postern/proxy/metrics"
	"github.com/postern/postern/proxy/pop3"
)

// TestUpstreamMetrics checks the upstream metrics of a POP3 listener: a dial that fails counts as a dial error and
// a lost session, an upstream that drops the connection in the middle of a RETR as a lost session only, and the
// sessions are counted with their protocol.
func TestUpstreamMetrics(t *testing.T) {
	lbl := metricstest.L("listener", "metrics-pop3", "protocol", "pop3")
	name := func(o *Options) { o.Name = "metrics-pop3" }
	before := metricstest.Serve(t, metrics.Handler())

	down := newTestUpstream(t)
	r := newRig(t, down, name)
	down.ln.Close()
	n, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := pop3.NewClient(n, 1024).ReadResponse(); err != nil || resp.OK {
		t.Fatalf("greeting without an upstream: %+v %v", resp, err)
	}
	n.Close()
	mid := metricstest.Serve(t, metrics.Handler())
	metricstest.Rise(t, before, mid, "postern_upstream_dials_total", lbl, 1)
	metricstest.Rise(t, before, mid, "postern_upstream_dial_errors_total", lbl, 1)
	metricstest.Rise(t, before, mid, "postern_upstream_errors_total", lbl, 1)
	metricstest.Rise(t, before, mid, "postern_sessions_total", lbl, 1)

	up := newTestUpstream(t)
	up.setMessages("alice", msg1, msg2)
	up.fault = func(c net.Conn, cmd pop3.Command) bool {
		if cmd.Name != "RETR" {
			return false
		}
		c.Write([]byte("+OK\r\nSubject: half\r\n\r\nthe first half"))
		c.Close()
		return true
	}
	c := newRig(t, up, name).dial()
	c.login()
	if resp := c.cmd("RETR 1"); resp.OK {
		t.Fatalf("RETR from an upstream that dropped: %s", resp.Line())
	}
	time.Sleep(50 * time.Millisecond)
	after := metricstest.Serve(t, metrics.Handler())
	metricstest.Rise(t, mid, after, "postern_upstream_errors_total", lbl, 1)
	metricstest.Rise(t, mid, after, "postern_upstream_dials_total", lbl, 1)
	if a, b := after.Must(t, "postern_upstream_dial_errors_total", lbl), mid.Must(t, "postern_upstream_dial_errors_total", lbl); a != b {
		t.Errorf("a dropped session counted as a dial error: %v → %v", b, a)
	}
	metricstest.Rise(t, mid, after, "postern_client_bytes_total", metricstest.L("listener", "metrics-pop3", "direction", "out"), 20)
}
