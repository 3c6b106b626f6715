package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testplugins"
)

// fakeCheckout makes a folder laid out like a checkout after `make`: build/postern (the test binary, hard-linked
// or copied: os.Executable resolves symlinks) and sdk (a link to this checkout's). `plugin new` run from its
// build/postern finds the SDK beside itself, as it does for a user's build/postern.
func fakeCheckout(t *testing.T) (root, bin string) {
	t.Helper()
	src, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	root = t.TempDir()
	bin = filepath.Join(root, "build", "postern")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(src, bin); err != nil {
		copyFile(t, src, bin)
	}
	if err := os.Symlink(filepath.Join(testplugins.Root(), "sdk"), filepath.Join(root, "sdk")); err != nil {
		t.Fatal(err)
	}
	return root, bin
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// goEnv keeps the Go caches and settings when a test changes HOME, so the plugin builds stay warm.
func goEnv(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH", "GOENV").Output()
	if err != nil {
		t.Fatal(err)
	}
	v := strings.Split(strings.TrimSpace(string(out)), "\n")
	return []string{"GOCACHE=" + v[0], "GOMODCACHE=" + v[1], "GOPATH=" + v[2], "GOENV=" + v[3]}
}

func runIn(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// TestPluginNew writes a Go and a C plugin outside the repository and builds and tests each with the one command
// the folder documents for it; the C plugin is also run in a configuration, with `postern check`.
func TestPluginNew(t *testing.T) {
	_, bin := fakeCheckout(t)
	for _, lang := range []string{"go", "c"} {
		t.Run(lang, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "plugins", "subject-"+lang)
			// Run from elsewhere: the SDK is found beside the binary.
			code, out, errs := runBinary(t, bin, t.TempDir(), "plugin", "new", "-lang", lang, "-dir", dir, "subject-"+lang)
			if code != 0 || !strings.Contains(out, "sample.eml") {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
			runIn(t, dir, nil, "make")
			if _, err := os.Stat(filepath.Join(dir, "subject-"+lang+".wasm")); err != nil {
				t.Fatal(err)
			}
			out = runIn(t, dir, nil, "make", "test")
			if lang == "c" && !strings.Contains(out, "ok: sample.eml rejected") {
				t.Errorf("make test:\n%s", out)
			}
			out = runIn(t, dir, nil, "make", "try")
			if !strings.Contains(out, `"verdict": `) || !strings.Contains(out, "(no changes)") {
				t.Errorf("make try:\n%s", out)
			}
			// The README's configuration snippet loads.
			readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			block := regexp.MustCompile("(?s)```hcl\n(.*?)```").FindSubmatch(readme)
			if block == nil {
				t.Fatalf("README.md has no hcl block:\n%s", readme)
			}
			cfg := filepath.Join(dir, "postern.hcl")
			policy := "\npolicy \"p\" {\n  plugins = [\"subject-" + lang + "\"]\n}\n"
			if err := os.WriteFile(cfg, append(block[1], policy...), 0o644); err != nil {
				t.Fatal(err)
			}
			if code, out, errs := postern(t, "", "check", "-cache", testplugins.CacheDir(), cfg); code != 0 {
				t.Errorf("check of the README's configuration: exit %d\n%s%s", code, out, errs)
			}
			// The folder's Makefile uses this binary.
			if mk, _ := os.ReadFile(filepath.Join(dir, "Makefile")); !strings.Contains(string(mk), "POSTERN ?= "+bin+"\n") {
				t.Errorf("Makefile does not name %s:\n%s", bin, mk)
			}
		})
	}
}

func TestPluginNewRefuses(t *testing.T) {
	root, _ := fakeCheckout(t)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "main.go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-dir", full, "x"}, 1, "exists and is not empty"},
		{[]string{"Bad_Name"}, 2, "is not a plugin name"},
		{[]string{"-lang", "rust", "x"}, 2, `-lang "rust": want go or c`},
		{[]string{}, 2, "usage: postern plugin new"},
		{[]string{"-dir", t.TempDir(), "-sdk", t.TempDir(), "x"}, 1, "-sdk:"},
	} {
		code, _, errs := postern(t, root, append([]string{"plugin", "new"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", tc.args, code, tc.code, tc.want, errs)
		}
	}
	// Away from a checkout, with nothing to find, it asks for -sdk.
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "plugin", "new", "-dir", filepath.Join(t.TempDir(), "p"), "p")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot find the Postern SDK") || !strings.Contains(string(out), "-sdk DIR") {
		t.Errorf("no checkout: %v\n%s", err, out)
	}
}

// TestPluginNewSources checks that the sources `plugin new` writes are the examples the READMEs show.
func TestPluginNewSources(t *testing.T) {
	for _, tc := range []struct{ readme, lang, template string }{
		{"README.md", "go", "newplugin/go/main.go.tmpl"},
		{"sdk/c/README.md", "c", "newplugin/c/plugin.c.tmpl"},
	} {
		readme, err := os.ReadFile(filepath.Join(testplugins.Root(), tc.readme))
		if err != nil {
			t.Fatal(err)
		}
		block := regexp.MustCompile("(?s)```" + tc.lang + "\n(.*?)```").FindSubmatch(readme)
		tmpl, err := newPluginFiles.ReadFile(tc.template)
		if err != nil {
			t.Fatal(err)
		}
		if block == nil || string(block[1]) != string(tmpl) {
			t.Errorf("%s's %s example and %s differ", tc.readme, tc.lang, tc.template)
		}
	}
}

// TestReadmeWalkthrough runs the commands of README.md's "Writing a plugin" as written, from a checkout's root,
// with the plugin folder in a home folder outside the repository.
func TestReadmeWalkthrough(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(testplugins.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Writing a plugin\n")
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(section)
	if !ok || block == nil || !strings.Contains(block[1], "plugin new") {
		t.Fatalf("README.md's Writing a plugin has no sh block with plugin new")
	}
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is needed (apt-get install swaks; .ci/deps installs it)")
	}
	root, _ := fakeCheckout(t)
	home := t.TempDir()
	env := append(goEnv(t), "HOME="+home)
	out := runIn(t, root, env, "bash", "-euxo", "pipefail", "-c", block[1])
	for _, want := range []string{`"suspicious-subject": "yes"`, `"score": 5`, "(no changes)", "ok  \tmyplugin"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the walkthrough's output:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "myplugin", "myplugin.wasm")); err != nil {
		t.Error(err)
	}
}
