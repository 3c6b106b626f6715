package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckRefusesWhatRunRefuses: every configuration `postern run` refuses before binding anything, `postern
// check` refuses too, with the same file:line diagnostic.
func TestCheckRefusesWhatRunRefuses(t *testing.T) {
	dir := exampleTree(t)
	tests := []struct{ name, cfg, want string }{
		{"embedded upstream over verified TLS", "listener \"smtp\" \"in\" {\n  address = \"127.0.0.1:1\"\n" +
			"  upstream = \"embedded\"\n  upstream_tls {\n    mode = \"tls\"\n  }\n}\n", "set server_name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad.hcl")
			if err := os.WriteFile(path, []byte(tc.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, checkOut := run("check", "-cache", "", path)
			if code != 1 {
				t.Fatalf("check: exit %d, want 1:\n%s", code, checkOut)
			}
			p := startPostern(t, "-config", path)
			if code := p.wait(t); code != 1 {
				t.Fatalf("run: exit %d, want 1", code)
			}
			want := diagnostic(t, checkOut, tc.want)
			if got := diagnostic(t, p.log.String(), tc.want); got != want {
				t.Fatalf("run says\n  %s\ncheck says\n  %s", got, want)
			}
			if !strings.Contains(want, "bad.hcl:1") {
				t.Fatalf("diagnostic without its place: %s", want)
			}
		})
	}
}

// diagnostic returns the line of out naming bad.hcl, and checks that out also says what.
func diagnostic(t *testing.T, out, what string) string {
	t.Helper()
	if !strings.Contains(out, what) {
		t.Fatalf("no %q in:\n%s", what, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "bad.hcl:") {
			return strings.TrimSpace(line)
		}
	}
	t.Fatalf("no diagnostic naming bad.hcl in:\n%s", out)
	return ""
}
