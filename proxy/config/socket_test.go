package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestControlSocketLenient checks that the control socket is found in files that do not load: a syntax error
// after the setting, an unknown plugin, a setting in an included file, and an explicit control_socket.
func TestControlSocketLenient(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	state := filepath.Join(dir, "state")
	for _, tc := range []struct {
		name, src, want string
	}{
		{"syntax.hcl", "state_dir = \"state\"\npolicy \"p\" {\n  plugins = [\n", filepath.Join(state, "control.sock")},
		{"unknown.hcl", "state_dir = \"state\"\npolicy \"p\" {\n  plugins = [\"nosuch\"]\n}\n", filepath.Join(state, "control.sock")},
		{"explicit.hcl", "control_socket = \"ctl.sock\"\nbogus = 1\n", filepath.Join(dir, "ctl.sock")},
		{"include.hcl", "include = [\"conf.d/*.hcl\"]\npolicy \"p\" {}\n", filepath.Join(state, "control.sock")},
	} {
		if tc.name == "include.hcl" {
			write("conf.d/10-state.hcl", "state_dir = \"../state\"\n")
		}
		path := write(tc.name, tc.src)
		if _, err := Load(path); err == nil {
			t.Fatalf("%s loads; the test needs a file that does not", tc.name)
		}
		got, err := ControlSocket(path)
		if err != nil || got != tc.want {
			t.Errorf("%s: ControlSocket = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	// Neither setting in a valid file: no socket, no error. Not found in a file with errors (the broken part may be
	// where it was): the diagnostics.
	if got, err := ControlSocket(write("none.hcl", "audit {\n  path = \"a.log\"\n}\n")); got != "" || err != nil {
		t.Errorf("none: %q, %v", got, err)
	}
	for _, src := range []string{"state_dir = [\n", "bogus = 1\n"} {
		_, err := ControlSocket(write("bad.hcl", src))
		if ce, ok := errors.AsType[*Error](err); !ok || len(ce.Diagnostics) == 0 {
			t.Errorf("%q: %v", src, err)
		}
	}
}
