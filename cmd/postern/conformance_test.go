package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testplugins"
)

// TestPluginConformance runs the repository's Go and C kits the way an SDK outside the repository runs its own:
// through the postern command, with nothing but the kit's module.
func TestPluginConformance(t *testing.T) {
	for _, dir := range []string{"sdk/conformance/kit-go", "sdk/conformance/kit-c"} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var out, errOut bytes.Buffer
			kit := testplugins.Path(t, dir)
			if rc := dispatch([]string{"plugin", "conformance", kit}, &out, &errOut); rc != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", rc, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), "conforms to plugin ABI v1") || !strings.Contains(out.String(), "in 2 fixtures") {
				t.Errorf("stdout: %s", out.String())
			}
		})
	}
}

// TestPluginConformanceFails: a module that is not a kit fails with the checks it missed, and exit status 1; a
// missing file and bad usage are errors.
func TestPluginConformanceFails(t *testing.T) {
	var out, errOut bytes.Buffer
	notKit := filepath.Join("..", "..", "proxy", "pluginhost", "testdata", "empty.wasm") // every hook, reports nothing
	if rc := dispatch([]string{"plugin", "conformance", notKit}, &out, &errOut); rc != 1 {
		t.Fatalf("exit %d for a plugin that is not a kit\n%s%s", rc, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "FAIL submission/connect: check field.client.helo: not reported, want \"-3\"") ||
		!strings.Contains(out.String(), "FAIL retrieval/message:") || !strings.Contains(out.String(), "checks failed") {
		t.Errorf("stdout does not list the failed checks:\n%.2000s", out.String())
	}
	out.Reset()
	errOut.Reset()
	if rc := dispatch([]string{"plugin", "conformance", filepath.Join(t.TempDir(), "none.wasm")}, &out, &errOut); rc != 1 ||
		!strings.Contains(errOut.String(), "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", rc, errOut.String())
	}
	garbage := filepath.Join(t.TempDir(), "garbage.wasm")
	if err := os.WriteFile(garbage, []byte("not wasm"), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if rc := dispatch([]string{"plugin", "conformance", garbage}, &out, &errOut); rc != 1 ||
		!strings.Contains(errOut.String(), "loading the kit") {
		t.Errorf("garbage: exit %d, stderr %q", rc, errOut.String())
	}
	if rc := dispatch([]string{"plugin", "conformance"}, &out, &errOut); rc != 2 {
		t.Errorf("no argument: exit %d, want 2", rc)
	}
}
