package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testplugins"
)

// postern runs the built binary with args (in dir when not "") and returns its exit status and output.
func postern(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	return runBinary(t, bin, dir, args...)
}

// runBinary runs bin with args (in dir when not "") and returns its exit status and output.
func runBinary(t *testing.T, bin, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// TestHelpConventions checks the conventions of go, git and kubectl: asking for help prints to standard output
// and succeeds; a wrong command or flag prints the usage to standard error and exits 2.
func TestHelpConventions(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string // a substring of standard output ("" means it must be empty)
		stderr string // a substring of standard error ("" means it must be empty)
	}{
		{[]string{"--help"}, 0, "usage: postern COMMAND", ""},
		{[]string{"-h"}, 0, "usage: postern COMMAND", ""},
		{[]string{"help"}, 0, "plugin test", ""},
		{[]string{"help", "check"}, 0, "usage: postern check", ""},
		{[]string{"help", "plugin", "test"}, 0, "usage: postern plugin test", ""},
		{[]string{"help", "plugin"}, 0, "plugin new", ""},
		{[]string{"check", "-h"}, 0, "-config FILE", ""},
		{[]string{"check", "-help"}, 0, "usage: postern check", ""},
		{[]string{"run", "-h"}, 0, "usage: postern run", ""},
		{[]string{"explain", "--help"}, 0, "usage: postern explain", ""},
		{[]string{"reload", "-h"}, 0, "-status", ""},
		{[]string{"audit", "verify", "-h"}, 0, "usage: postern audit verify", ""},
		{[]string{"plugin", "test", "-h"}, 0, "-diff", ""},
		{[]string{"plugin", "new", "-h"}, 0, "-lang", ""},
		{[]string{"version", "-h"}, 0, "usage: postern version", ""},
		{[]string{"plugin", "-h"}, 0, "plugin test", ""},
		{[]string{"plugin", "--help"}, 0, "plugin new", ""},
		{[]string{"audit", "-h"}, 0, "audit verify", ""},

		{nil, 2, "", "usage: postern COMMAND"},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"plugin"}, 2, "", "plugin test"},
		{[]string{"plugin", "frobnicate"}, 2, "", `unknown command "plugin frobnicate"`},
		{[]string{"check", "-frobnicate"}, 2, "", "usage: postern check"},
		{[]string{"run", "-frobnicate"}, 2, "", "usage: postern run"},
		{[]string{"plugin", "test", "-frobnicate"}, 2, "", "usage: postern plugin test"},
		{[]string{"check"}, 2, "", "usage: postern check"},
		{[]string{"version", "extra"}, 2, "", "usage: postern version"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := postern(t, "", tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errs)
			}
			for _, c := range []struct{ name, got, want string }{{"stdout", out, tc.stdout}, {"stderr", errs, tc.stderr}} {
				if c.want == "" && c.got != "" {
					t.Errorf("%s should be empty, is:\n%s", c.name, c.got)
				}
				if !strings.Contains(c.got, c.want) {
					t.Errorf("%s lacks %q:\n%s", c.name, c.want, c.got)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errs := postern(t, "", args...)
		if code != 0 || errs != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errs)
		}
		for _, want := range []string{"postern (devel)\n", "commit:", "go:         " + runtime.Version() + "\n", "plugin ABI: 1\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: no %q in:\n%s", args, want, out)
			}
		}
	}
}

// TestVersionLinked checks the link-time version and commit the Makefile sets.
func TestVersionLinked(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.3", "0123456789abcdef"
	bi := readBuildInfo()
	if bi.Version != "v1.2.3" || bi.Commit != "0123456789abcdef" || bi.ABI != 1 || bi.GoVersion != runtime.Version() {
		t.Errorf("build info %+v", bi)
	}
	var out bytes.Buffer
	if code := runVersion(nil, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "postern v1.2.3\ncommit:     0123456789abcdef\n") {
		t.Errorf("exit %d:\n%s", code, out.String())
	}
}

// TestCheckConfigFlag checks that check takes the configuration as -config FILE, like every other command, and
// as its argument.
func TestCheckConfigFlag(t *testing.T) {
	dir := exampleTree(t)
	demo := filepath.Join(dir, "demo.hcl")
	cache := testplugins.CacheDir()
	for _, args := range [][]string{{"check", "-cache", cache, "-config", demo}, {"check", "-cache", cache, demo}} {
		code, out, errs := postern(t, "", args...)
		if code != 0 || !strings.HasPrefix(out, "ok: 4 listeners, 5 plugins, 3 policies") {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errs)
		}
	}
	code, _, errs := postern(t, "", "check", "-config", demo, demo)
	if code != 2 || !strings.Contains(errs, "usage: postern check") {
		t.Errorf("both -config and an argument: exit %d\n%s", code, errs)
	}
}

// TestStartupLogVersion checks that the start-up line names the version and, under its own name, the
// configuration's hash.
func TestStartupLogVersion(t *testing.T) {
	dir := exampleTree(t)
	cfgPath := filepath.Join(dir, "run.hcl")
	runConfig(t, cfgPath, freePort(t), "")
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")
	line := regexp.MustCompile(`(?m)^.*postern running.*$`).FindString(p.log.String())
	if !regexp.MustCompile(` version=\S+ commit=\S* `).MatchString(line) ||
		!regexp.MustCompile(` config_sha256=[0-9a-f]{64} `).MatchString(line) {
		t.Errorf("start-up line: %s", line)
	}
}

// TestReloadStatusInvalidConfig checks that `reload -status` reports what the proxy serves while the file on
// disk does not load (a syntax error, an unknown plugin), and that a reload of that file is refused without
// being sent.
func TestReloadStatusInvalidConfig(t *testing.T) {
	dir := exampleTree(t)
	cfgPath := filepath.Join(dir, "run.hcl")
	runConfig(t, cfgPath, freePort(t), "")
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")
	good, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"unknown plugin": strings.Replace(string(good), `["eicar", "external-tag"]`, `["eicar", "nosuch"]`, 1),
		"syntax error":   string(good) + "\npolicy \"broken\" {\n  plugins = [\n",
		"bad value":      strings.Replace(string(good), `state_dir = "state"`, "state_dir = \"state\"\nbogus = 1", 1),
	} {
		if err := os.WriteFile(cfgPath, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errs := postern(t, "", "reload", "-status", "-config", cfgPath)
		if code != 0 || !strings.HasPrefix(out, "serving 1 listener, 2 plugins, 1 policy") {
			t.Errorf("%s: reload -status: exit %d\n%s%s", name, code, out, errs)
		}
		code, out, errs = postern(t, "", "reload", "-config", cfgPath)
		if code != 1 || !strings.Contains(errs, "not sent") {
			t.Errorf("%s: reload: exit %d\n%s%s", name, code, out, errs)
		}
	}
	// Without a control socket to find, -status says so.
	if err := os.WriteFile(cfgPath, []byte("state_dir = [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := postern(t, "", "reload", "-status", "-config", cfgPath)
	if code != 1 || !strings.Contains(errs, "cannot find the control socket") {
		t.Errorf("unreadable state_dir: exit %d\n%s", code, errs)
	}
}

// TestCheckPluginConfigErrors checks that a configuration a plugin refuses is reported at the config attribute
// (at the key's own line when the plugin names an unknown key), with the plugin's reason on its own line and in
// the configuration's words, not the JSON decoder's.
func TestCheckPluginConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "postern.hcl")
	src := `plugin "dlp" {
  source = "` + testplugins.Path(t, "plugins/dlp") + `"
  config = {
    action = "tag"
    bogus  = 1
  }
}
plugin "eicar" {
  source = "` + testplugins.Path(t, "plugins/eicar") + `"
  config = { "acton" = "tag" }
}
plugin "external-tag" {
  source = "` + testplugins.Path(t, "plugins/external-tag") + `"
  config = {
    internal_domains = "example.com"
  }
}
policy "p" {
  plugins = ["dlp", "eicar", "external-tag"]
}
`
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := postern(t, "", "check", "-cache", testplugins.CacheDir(), "-config", cfg)
	if code != 1 || out != "" {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		cfg + ":5:5: error: Plugin configuration refused\n    5 |     bogus  = 1\n      |     ^^^^^^^^^^\n",
		"plugin log:\n  [error] postern_init: dlp configuration: unknown key \"bogus\" (known keys: act_on_truncated, action,",
		cfg + ":10:14: error: Plugin configuration refused\n   10 |   config = { \"acton\" = \"tag\" }\n",
		"eicar configuration: unknown key \"acton\" (known keys: action, code, score, text)\n",
		cfg + ":14:3: error: Plugin configuration refused\n   14 |   config = {\n",
		"external-tag configuration: internal_domains: want a list, got a string\n",
		"configuration refused: 3 error(s)",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("no %q in:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, "json:") || strings.Contains(errs, "Plugin failed to load") {
		t.Errorf("a decoder's error, or the source attribute blamed:\n%s", errs)
	}
}

// TestCheckAcceptsEveryProtocol checks that check accepts a listener of every protocol this build serves.
func TestCheckAcceptsEveryProtocol(t *testing.T) {
	cfg := writeTemp(t, "p.hcl", `listener "pop3" "pop" {
  address  = "127.0.0.1:1110"
  upstream = "127.0.0.1:110"
}
listener "imap" "imap" {
  address  = "127.0.0.1:1143"
  upstream = "127.0.0.1:143"
}
listener "smtp" "mx" {
  address  = "127.0.0.1:2525"
  upstream = "127.0.0.1:25"
}
`)
	code, out, errs := postern(t, "", "check", "-config", cfg)
	if code != 0 || !strings.Contains(out, "3 listeners") {
		t.Errorf("exit %d:\n%s%s", code, out, errs)
	}
}

// TestCheckNamesTheMakeTarget checks that a first-party module missing from a checkout's build/plugins (the C
// plugins after `make run`) is reported with the make target that builds it.
func TestCheckNamesTheMakeTarget(t *testing.T) {
	dir := exampleTree(t)
	root := filepath.Dir(dir)
	if err := os.Remove(filepath.Join(root, "build", "plugins", "header-sanity.wasm")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Makefile", "plugins/header-sanity/header_sanity.c"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := postern(t, "", "check", "-cache", testplugins.CacheDir(), filepath.Join(dir, "inbound-mx.hcl"))
	want := "It is built from plugins/header-sanity by `make plugins` (run in " + root + ")."
	if code != 1 || !strings.Contains(errs, want) {
		t.Errorf("exit %d, no %q in:\n%s%s", code, want, out, errs)
	}
}
