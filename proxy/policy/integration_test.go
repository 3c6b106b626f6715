package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/pluginhost"
)

// scriptedConfig writes a configuration whose plugins are the scripted test plugin (see
// testdata/policytest-scripted) configured by specs, followed by the given policies, and returns its path.
// Plugin sources are absolute paths to the built modules.
func scriptedConfig(t testing.TB, dir string, plugins map[string]string, policies string) string {
	t.Helper()
	scripted := testplugins.Path(t, "proxy/policy/testdata/policytest-scripted")
	msgOnly := testplugins.Path(t, "proxy/policy/testdata/policytest-msgonly")
	var b strings.Builder
	for _, name := range sortedKeys(plugins) {
		spec := plugins[name]
		src := scripted
		if rest, ok := strings.CutPrefix(spec, "msgonly "); ok {
			src, spec = msgOnly, rest
		}
		fmt.Fprintf(&b, "plugin %q {\n  source = %q\n  config = %q\n  timeout = \"5s\"\n}\n", name, src, spec)
	}
	b.WriteString(policies)
	path := filepath.Join(dir, "postern.hcl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

func buildSnapshot(t testing.TB, path string) *Snapshot {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Build(context.Background(), cfg, Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// TestWasmChain runs the combination rules through real plugins: the chain, thresholds, monitor mode, hooks,
// on_error, and a header change applied to the message.
func TestWasmChain(t *testing.T) {
	path := scriptedConfig(t, t.TempDir(), map[string]string{
		"tagger":  "msgonly tag=external:yes header=X-External:yes score=1",
		"scorer":  "score=6.5 tag=spam:likely",
		"blocker": "verdict=reject:554",
		"never":   "verdict=discard",
		"watcher": "score=100 verdict=quarantine tag=dlp:card",
		"broken":  "fail",
	}, `
policy "watch" {
  mode    = "monitor"
  plugins = ["watcher"]
}
policy "tag" {
  plugins = ["tagger", "scorer"]
  thresholds {
    tag        = 5
    quarantine = 10
  }
}
policy "block-outbound" {
  when    = msg.direction == "outbound"
  plugins = ["blocker", "never"]
}
policy "fragile" {
  when    = msg.subject == "break me"
  plugins = ["broken", "never"]
}
`)
	s := buildSnapshot(t, path)
	ctx := context.Background()

	in := testInput(t, testMessage)
	d := s.Evaluate(ctx, pluginhost.HookMessage, in)
	want := "accept score=7.5 tags=external=yes,policy.tag=tag,spam=likely | watch(watcher)->quarantine | " +
		"tag(tagger,scorer)->accept[tag at 5]"
	if got := summary(d); got != want {
		t.Errorf("inbound:\n  %s\nwant:\n  %s", got, want)
	}
	var out bytes.Buffer
	if _, err := in.Msg.WriteTo(&out, d.Changes); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "X-External: yes\r\n") || !strings.Contains(out.String(), "X-Postern-Tag: tag; score=7.5\r\n") ||
		!strings.HasSuffix(out.String(), testMessage) || strings.Contains(out.String(), "dlp") {
		t.Errorf("message as sent on:\n%s", out.String())
	}
	tr := d.Policies[1].Plugins[0]
	if tr.Name != "tagger" || len(tr.SHA256) != 64 || tr.Tags["external"] != "yes" || len(tr.Changes) != 1 || tr.Duration <= 0 {
		t.Errorf("plugin trace %+v", tr)
	}

	in = testInput(t, testMessage)
	in.Env.Direction = "outbound"
	d = s.Evaluate(ctx, pluginhost.HookMessage, in)
	if d.Action != pluginhost.Reject || d.Code != 554 || d.DecidedBy != "block-outbound" || d.Text != "scripted" {
		t.Errorf("outbound: %s %d %q", summary(d), d.Code, d.Text)
	}

	// At an envelope hook the message-only tagger does not run; the scorer does.
	d = s.Evaluate(ctx, pluginhost.HookMailFrom, testInput(t, ""))
	if got := summary(d); got != "accept score=6.5 tags=policy.tag=tag,spam=likely | watch(watcher)->quarantine | tag(scorer)->accept[tag at 5]" {
		t.Errorf("mail_from: %s", got)
	}

	raw := strings.Replace(testMessage, "Hello there", "break me", 1)
	d = s.Evaluate(ctx, pluginhost.HookMessage, testInput(t, raw))
	last := d.Policies[len(d.Policies)-1]
	if d.Action != pluginhost.Tempfail || d.DecidedBy != "fragile" || len(last.Plugins) != 1 ||
		!strings.Contains(last.Plugins[0].Error, `plugin "broken"`) {
		t.Errorf("failing plugin: %s, trace %+v", summary(d), last)
	}
}

// buildErrors builds the configuration and returns the diagnostics of the failure as "file:line:col: summary".
func buildErrors(t *testing.T, path string) []string {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Build(context.Background(), cfg, Options{CacheDir: testplugins.CacheDir()})
	if err == nil {
		s.Close(context.Background())
		t.Fatal("Build succeeded")
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T: %v", err, err)
	}
	var out []string
	for _, d := range ce.Diagnostics {
		out = append(out, fmt.Sprintf("%s:%d:%d: %s: %s", filepath.Base(d.Subject.Filename), d.Subject.Start.Line,
			d.Subject.Start.Column, d.Summary, d.Detail))
	}
	return out
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	abi2 := testplugins.Path(t, "proxy/policy/testdata/policytest-abi2")
	scripted := testplugins.Path(t, "proxy/policy/testdata/policytest-scripted")
	if err := os.WriteFile(filepath.Join(dir, "garbage.wasm"), []byte("this is not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "postern.hcl")
	src := fmt.Sprintf(`plugin "good" {
  source = %q
}
plugin "old" {
  source = %q
}
plugin "garbage" {
  source = "garbage.wasm"
}
plugin "refuses" {
  source = %q
  config = "initfail"
}
policy "p" {
  plugins = ["good", "old", "garbage", "refuses"]
}
`, scripted, abi2, scripted)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got := buildErrors(t, path)
	want := []string{
		"postern.hcl:5:12: Plugin failed to load: .*version 2.*",
		"postern.hcl:8:12: Plugin failed to load: .*garbage.wasm.*",
		"postern.hcl:12:3: Plugin configuration refused: .*postern_init.*",
	}
	if len(got) != len(want) {
		t.Fatalf("diagnostics:\n  %s", strings.Join(got, "\n  "))
	}
	for i, w := range want {
		prefix, pattern, _ := strings.Cut(w, ".*")
		if !strings.HasPrefix(got[i], prefix) || !strings.Contains(got[i], strings.Trim(pattern, ".*")) {
			t.Errorf("diagnostic %d:\n  %s\nwant:\n  %s", i, got[i], w)
		}
	}
}

func TestBuildErrorRendering(t *testing.T) {
	dir := t.TempDir()
	abi2 := testplugins.Path(t, "proxy/policy/testdata/policytest-abi2")
	path := filepath.Join(dir, "postern.hcl")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("plugin \"old\" {\n  source = %q\n}\n", abi2)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), cfg, Options{CacheDir: testplugins.CacheDir()})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Diagnostics[0].Severity != hcl.DiagError {
		t.Fatalf("err = %v", err)
	}
	var b strings.Builder
	if err := ce.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), path+":2:12: error: Plugin failed to load\n    2 |   source = ") {
		t.Errorf("rendered:\n%s", b.String())
	}
}
