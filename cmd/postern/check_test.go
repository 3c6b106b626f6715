package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testplugins"
)

// firstParty are the plugins the example configurations use.
var firstParty = []string{"attachment-guard", "dlp", "eicar", "external-tag", "header-sanity", "verdict"}

// exampleTree copies policies/*.hcl into a temporary tree with the first-party plugins at ../build/plugins, where
// the examples expect `make plugins` to have put them, and returns the tree's policies folder.
func exampleTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	plugins := filepath.Join(root, "build", "plugins")
	policies := filepath.Join(root, "policies")
	for _, d := range []string{plugins, policies} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range firstParty {
		if err := os.Symlink(testplugins.Path(t, "plugins/"+name), filepath.Join(plugins, name+".wasm")); err != nil {
			t.Fatal(err)
		}
	}
	files, err := filepath.Glob(filepath.Join(testplugins.Root(), "policies", "*.hcl"))
	if err != nil || len(files) < 4 {
		t.Fatalf("policies/*.hcl: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(policies, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return policies
}

func run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = dispatch(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckExamples(t *testing.T) {
	dir := exampleTree(t)
	want := map[string]string{
		"demo.hcl":               "4 listeners, 5 plugins, 3 policies",
		"inbound-mx.hcl":         "1 listener, 4 plugins, 3 policies",
		"security-chain.hcl":     "2 listeners, 3 plugins, 2 policies",
		"compliance-monitor.hcl": "1 listener, 2 plugins, 2 policies",
	}
	for name, summary := range want {
		code, out, errs := run("check", "-cache", testplugins.CacheDir(), filepath.Join(dir, name))
		if code != 0 || !regexp.MustCompile(`^ok: `+summary+` \(config sha256 [0-9a-f]{64}\)\n$`).MatchString(out) || errs != "" {
			t.Errorf("check %s: exit %d\nstdout: %s\nstderr: %s", name, code, out, errs)
		}
	}
}

func TestCheckErrors(t *testing.T) {
	dir := t.TempDir()
	eicar := testplugins.Path(t, "plugins/eicar")
	abi2 := testplugins.Path(t, "proxy/policy/testdata/policytest-abi2")
	cfg := filepath.Join(dir, "bad.hcl")
	src := `listener "smtp" "mx" {
  address  = "127.0.0.1:2525"
  upstream = "embedded"
  limits {
    sessions = "lots"
  }
}
plugin "eicar" {
  source = "` + eicar + `"
  sha256 = "` + strings.Repeat("0", 64) + `"
}
plugin "old" {
  source = "` + abi2 + `"
}
plugin "gone" {
  source = "missing.wasm"
}
policy "p" {
  when    = msg.size > 10 && msg.sise < 5
  plugins = ["eicar", "nope"]
}
policy "p" {
  plugins = ["old"]
}
`
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run("check", "-cache", testplugins.CacheDir(), cfg)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	for _, want := range []string{
		cfg + ":5:16: error: Wrong type",
		cfg + ":10:12: error: Plugin sha256 mismatch",
		cfg + ":16:12: error: Cannot read plugin module",
		cfg + ":19:33: error: Unsupported attribute",
		cfg + ":20:23: error: Unknown plugin",
		cfg + ":22:8: error: Duplicate policy name",
		"postern: configuration refused: 6 error(s)",
	} {
		if !strings.Contains(errs, want+"\n") {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	// The module check comes after the configuration is valid: with the file fixed, the ABI mismatch is reported.
	fixed := regexp.MustCompile(`(?s)  sha256 = "0+"\n|plugin "gone" \{.*?\}\n|, "nope"|"lots"|msg\.sise|policy "p" \{\n  plugins = \["old"\]\n\}\n`).
		ReplaceAllStringFunc(src, func(s string) string {
			switch {
			case s == `"lots"`:
				return "10"
			case s == "msg.sise":
				return "msg.size"
			case strings.HasPrefix(s, "policy"):
				return "policy \"q\" {\n  plugins = [\"old\"]\n}\n"
			}
			return ""
		})
	if err := os.WriteFile(cfg, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = run("check", "-cache", testplugins.CacheDir(), cfg)
	if code != 1 || !strings.Contains(errs, cfg+":12:12: error: Plugin failed to load\n") ||
		!strings.Contains(errs, "ABI version 2 is not supported") {
		t.Errorf("ABI mismatch: exit %d\n%s", code, errs)
	}
}

func TestCheckUsage(t *testing.T) {
	if code, _, errs := run("check"); code != 2 || !strings.Contains(errs, "usage: postern check") {
		t.Errorf("no argument: exit %d, %s", code, errs)
	}
	if code, _, errs := run("check", filepath.Join(t.TempDir(), "none.hcl")); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: exit %d, %s", code, errs)
	}
}
