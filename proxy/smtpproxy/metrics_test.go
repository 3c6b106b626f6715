package smtpproxy_test

import (
	"bufio"
	"net"
	"testing"

	"github.com/postern/postern/internal/metricstest"
	"github.com/postern/postern/proxy/metrics"
	"github.com/postern/postern/proxy/smtpproxy"
)

// TestUpstreamErrorMetric checks that an upstream connection that breaks in the middle of a session counts once
// as a lost session, and not as a dial error.
func TestUpstreamErrorMetric(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		c.Write([]byte("220 upstream ESMTP\r\n"))
		r.ReadString('\n') // EHLO
		c.Write([]byte("250 upstream\r\n"))
		r.ReadString('\n') // MAIL FROM: the connection breaks
	}()
	addr, _ := startRelay(t, smtpproxy.Options{Name: "metrics-smtp", Upstream: up.Addr().String()})
	lbl := metricstest.L("listener", "metrics-smtp", "protocol", "smtp")
	before := metricstest.Serve(t, metrics.Handler())
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 421)
	after := metricstest.Serve(t, metrics.Handler())
	metricstest.Rise(t, before, after, "postern_upstream_dials_total", lbl, 1)
	metricstest.Rise(t, before, after, "postern_upstream_errors_total", lbl, 1)
	if a, _ := after.Value("postern_upstream_dial_errors_total", lbl); a != 0 {
		t.Errorf("a broken session counted as a dial error: %v", a)
	}
}
