package audit

import (
	"path/filepath"
	"testing"

	"github.com/postern/postern/internal/metricstest"
	"github.com/postern/postern/proxy/metrics"
)

// TestMetrics checks that appends are timed and failed appends counted, as /metrics shows them.
func TestMetrics(t *testing.T) {
	l := openLog(t, Options{Path: filepath.Join(t.TempDir(), "audit.log")})
	before := metricstest.Serve(t, metrics.Handler())
	if err := l.Append(sampleRecord(1)); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendDurable(sampleRecord(2)); err != nil {
		t.Fatal(err)
	}
	mid := metricstest.Serve(t, metrics.Handler())
	metricstest.Rise(t, before, mid, "postern_audit_append_duration_seconds", nil, 2)
	if b, a := before.Must(t, "postern_audit_append_failures_total", nil), mid.Must(t, "postern_audit_append_failures_total", nil); a != b {
		t.Errorf("failures %v → %v after two good appends", b, a)
	}
	l.Close()
	if err := l.Append(sampleRecord(3)); err == nil {
		t.Fatal("append to a closed log succeeded")
	}
	if _, err := l.AppendPending(sampleRecord(4)); err == nil {
		t.Fatal("pending append to a closed log succeeded")
	}
	after := metricstest.Serve(t, metrics.Handler())
	metricstest.Rise(t, mid, after, "postern_audit_append_failures_total", nil, 2)
}
