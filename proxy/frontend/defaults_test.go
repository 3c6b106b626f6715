package frontend

import (
	"os"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/message"
)

func TestOptionChecks(t *testing.T) {
	if h, err := Hostname(""); err != nil || h == "" {
		t.Errorf("Hostname(\"\") = %q, %v; want the machine's", h, err)
	}
	if h, err := Hostname("mx.example.net"); err != nil || h != "mx.example.net" {
		t.Errorf("Hostname kept %q, %v", h, err)
	}
	if _, err := Hostname("mx example"); err == nil || !strings.Contains(err.Error(), "white space") {
		t.Errorf("a host name with a space: %v", err)
	}
	for _, tc := range []struct {
		addr   string
		dial   bool
		errHas string
	}{
		{"mail.example.net:143", false, ""},
		{"", true, ""},
		{"", false, "no upstream"},
		{"mail.example.net", false, "missing port"},
	} {
		err := CheckUpstream(tc.addr, tc.dial)
		if tc.errHas == "" && err != nil || tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
			t.Errorf("CheckUpstream(%q, %v) = %v, want %q", tc.addr, tc.dial, err, tc.errHas)
		}
	}
	if err := CheckTrusted([]string{"127.0.0.1", "10.0.0.0/8", "::1"}); err != nil {
		t.Errorf("valid networks: %v", err)
	}
	if err := CheckTrusted([]string{"10.0.0.0/8", "10.0.0.0/99"}); err == nil || !strings.Contains(err.Error(), "10.0.0.0/99") {
		t.Errorf("an invalid network: %v", err)
	}
}

func TestSpoolDefaults(t *testing.T) {
	var dir string
	var threshold int64
	var limits message.Limits
	SpoolDefaults(&dir, &threshold, &limits, 1<<40)
	if dir != os.TempDir() || threshold != config.DefaultMemoryThreshold || limits.MaxSize != 1<<40 ||
		limits.MaxDepth != message.DefaultLimits().MaxDepth {
		t.Errorf("defaults: %q %d %+v", dir, threshold, limits)
	}
	dir, threshold, limits = "/var/spool/postern", 5, message.Limits{MaxSize: 1 << 30, MaxDepth: 3}
	SpoolDefaults(&dir, &threshold, &limits, 1<<20)
	if dir != "/var/spool/postern" || threshold != 5 || limits.MaxSize != 1<<30 || limits.MaxDepth != 3 {
		t.Errorf("set values changed: %q %d %+v", dir, threshold, limits)
	}
}
