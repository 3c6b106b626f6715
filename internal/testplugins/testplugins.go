// Package testplugins builds the project's WebAssembly plugins for tests.
//
// Tests ask for a plugin by its source folder (relative to the repository root) and get the path of a built
// .wasm file. `make test` builds every plugin first and sets POSTERN_PLUGIN_DIR, so tests reuse those files;
// a bare `go test` builds what it needs into a shared temporary folder (the Go build cache keeps that cheap).
// A plugin that cannot be built fails the test with the compiler's output: a missing toolchain is an error, not a
// reason to skip.
package testplugins

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	built = map[string]string{}
)

// Root returns the repository root (the folder holding go.mod).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CacheDir is a wazero compilation cache folder shared by all tests of one machine, so that compiling a Go
// guest (about a second) is paid once rather than per test.
func CacheDir() string {
	return filepath.Join(os.TempDir(), "postern-test-wazero-cache")
}

// Path returns a built .wasm for the plugin whose source is in srcDir (relative to the repository root, for
// example "plugins/eicar" or "sdk/conformance/kit-go"). The output name is the folder's base name.
func Path(t testing.TB, srcDir string) string {
	t.Helper()
	p, err := Build(srcDir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Build is Path without a testing.TB, for benchmarks' set-up and commands.
func Build(srcDir string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[srcDir]; ok {
		return p, nil
	}
	name := filepath.Base(srcDir)
	if dir := os.Getenv("POSTERN_PLUGIN_DIR"); dir != "" {
		p := filepath.Join(dir, name+".wasm")
		if _, err := os.Stat(p); err == nil {
			built[srcDir] = p
			return p, nil
		}
	}
	outDir := filepath.Join(os.TempDir(), "postern-test-plugins")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(outDir, name+".wasm")
	// Test binaries of several packages run at once: build to a private name and rename, so no test
	// ever loads a half-written file.
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	src := filepath.Join(Root(), srcDir)
	cs, _ := filepath.Glob(filepath.Join(src, "*.c"))
	var cmd *exec.Cmd
	if len(cs) > 0 {
		cmd = exec.Command("make", "-s", "-C", Root(), "c-plugin", "SRC="+srcDir, "OUT="+tmp)
	} else {
		cmd = exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", tmp, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	}
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building plugin %s: %v\n%s", srcDir, err, stderr.String())
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	built[srcDir] = out
	return out, nil
}
