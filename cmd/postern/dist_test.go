package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testplugins"
)

// unitSettings reads the [Service] settings of a systemd unit: name → values, in order.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			out[k] = append(out[k], v)
		}
	}
	return out
}

// TestSystemdUnit checks the example unit: it runs postern as a notify service that reloads with SIGHUP, as an
// unprivileged user on a read-only system with CAP_NET_BIND_SERVICE only, and systemd-analyze finds nothing wrong
// with it (verify prints nothing; its offline security exposure is at most 2.0 of 10).
func TestSystemdUnit(t *testing.T) {
	unit := filepath.Join(testplugins.Root(), "dist", "systemd", "postern.service")
	s := unitSettings(t, unit)
	for k, want := range map[string]string{
		"Type": "notify", "ExecReload": "/bin/kill -HUP $MAINPID", "DynamicUser": "yes", "ProtectSystem": "strict",
		"PrivateTmp": "yes", "StateDirectory": "postern", "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "NoNewPrivileges": "yes",
	} {
		if got := s[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if start := strings.Join(s["ExecStart"], ""); !strings.Contains(start, "postern run -config ") {
		t.Errorf("ExecStart = %q", start)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd; .ci/deps installs it)")
	}
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that the commands exist: point them at the binary just built.
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "postern.service")
	if err := os.WriteFile(local, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/postern", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", local).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=20", local).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v):\n%s", err, out)
	}
}
