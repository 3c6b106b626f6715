package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/postern/postern/internal/testplugins"
)

// eicarMessage returns a message carrying the EICAR test file as a base64 attachment. The test string is assembled
// here so that no file of the repository holds it (anti-virus software).
func eicarMessage() string {
	eicar := `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
	return "From: a@other.test\r\nTo: alice@example.com\r\nSubject: test\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n" +
		"--x\r\nContent-Type: application/octet-stream; name=eicar.txt\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte(eicar)) + "\r\n--x--\r\n"
}

const cleanMessage = "From: Bob <bob@other.test>\r\nTo: alice@example.com\r\nSubject: lunch\r\n" +
	"Message-ID: <lunch@other.test>\r\n\r\nShall we meet at noon?\r\n"

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func pluginTest(t *testing.T, args ...string) (code int, res pluginTestOutput, stdout, stderr string) {
	t.Helper()
	code, stdout, stderr = run(append([]string{"plugin", "test", "-cache", testplugins.CacheDir()}, args...)...)
	if code == 0 || strings.HasPrefix(stdout, "{") {
		dec := json.NewDecoder(strings.NewReader(stdout))
		if err := dec.Decode(&res); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, stdout)
		}
	}
	return code, res, stdout, stderr
}

// TestPluginTestReject runs eicar on the test file: a reject verdict is a successful run (exit 0), and the JSON
// carries every field the documentation promises.
func TestPluginTestReject(t *testing.T) {
	code, res, out, errs := pluginTest(t, "-plugin", testplugins.Path(t, "plugins/eicar"), writeTemp(t, "e.eml", eicarMessage()))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if res.Verdict != "reject" || res.Code != 554 || res.Text == "" || res.Plugin != "eicar" || len(res.SHA256) != 64 {
		t.Errorf("result %+v", res)
	}
	for _, field := range []string{`"verdict"`, `"code"`, `"text"`, `"tags"`, `"score"`, `"changes"`, `"duration_us"`, `"logs"`} {
		if !strings.Contains(out, field) {
			t.Errorf("output lacks %s:\n%s", field, out)
		}
	}
}

// TestPluginTestChangesAndDiff runs external-tag with a configuration file on a message from outside: the changes
// are listed and -diff shows them as a unified diff of the message.
func TestPluginTestChangesAndDiff(t *testing.T) {
	cfg := writeTemp(t, "cfg.json", `{"internal_domains":["example.com"]}`)
	code, res, out, errs := pluginTest(t, "-plugin", testplugins.Path(t, "plugins/external-tag"), "-config", cfg,
		"-from", "bob@other.test", "-rcpt", "alice@example.com", "-diff", writeTemp(t, "m.eml", cleanMessage))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if res.Verdict != "accept" || res.Tags["external"] != "yes" || len(res.Changes) == 0 {
		t.Errorf("result %+v", res)
	}
	for _, want := range []string{"--- before\n+++ after\n", "-Subject: lunch\r\n", "+Subject: [EXTERNAL] lunch\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
	// The same sender counted as internal: nothing changes, and the diff is empty.
	cfg = writeTemp(t, "cfg.json", `{"internal_domains":["example.com","other.test"]}`)
	code, res, out, _ = pluginTest(t, "-plugin", testplugins.Path(t, "plugins/external-tag"), "-config", cfg,
		"-from", "bob@other.test", "-rcpt", "alice@example.com", "-diff", writeTemp(t, "m.eml", cleanMessage))
	if code != 0 || len(res.Changes) != 0 || strings.Contains(out, "+++ after") {
		t.Errorf("internal mail: exit %d, changes %v\n%s", code, res.Changes, out)
	}
}

// TestPluginTestStdin reads the message from standard input when it is named "-".
func TestPluginTestStdin(t *testing.T) {
	old := stdin
	defer func() { stdin = old }()
	stdin = strings.NewReader(eicarMessage())
	code, res, _, errs := pluginTest(t, "-plugin", testplugins.Path(t, "plugins/eicar"), "-")
	if code != 0 || res.Verdict != "reject" {
		t.Errorf("exit %d, verdict %q: %s", code, res.Verdict, errs)
	}
	stdin = strings.NewReader(cleanMessage)
	if code, res, _, errs = pluginTest(t, "-plugin", testplugins.Path(t, "plugins/eicar"), "-"); code != 0 || res.Verdict != "accept" {
		t.Errorf("clean message: exit %d, verdict %q: %s", code, res.Verdict, errs)
	}
}

// TestPluginTestErrors covers every way the command refuses: each exits non-zero with a message naming the
// problem, and a plugin that fails on the message still prints its on_error outcome as JSON.
func TestPluginTestErrors(t *testing.T) {
	eicar := testplugins.Path(t, "plugins/eicar")
	msg := writeTemp(t, "m.eml", cleanMessage)
	fixture := func(name string) string {
		return filepath.Join(testplugins.Root(), "proxy", "pluginhost", "testdata", name+".wasm")
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no args", nil, 2, "usage"},
		{"no message", []string{"-plugin", eicar}, 2, "usage"},
		{"missing message", []string{"-plugin", eicar, filepath.Join(t.TempDir(), "nope.eml")}, 1, "reading message"},
		{"missing plugin", []string{"-plugin", filepath.Join(t.TempDir(), "nope.wasm"), msg}, 1, "reading plugin"},
		{"not wasm", []string{"-plugin", msg, msg}, 1, "invalid magic number"},
		{"garbage exports", []string{"-plugin", fixture("garbage"), msg}, 1, "garbage"},
		{"wrong ABI", []string{"-plugin", fixture("abi2"), msg}, 1, "ABI"},
		{"bad config", []string{"-plugin", eicar, "-config", writeTemp(t, "c.json", "{nope"), msg}, 1, "not valid JSON"},
		{"unknown grant", []string{"-plugin", eicar, "-grant", "network", msg}, 1, "unknown grant"},
		{"trap", []string{"-plugin", fixture("trap"), msg}, 1, "trap"},
		{"runaway", []string{"-plugin", fixture("loop"), "-timeout", "100ms", msg}, 1, "loop"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(append([]string{"plugin", "test", "-cache", testplugins.CacheDir()}, tc.args...)...)
			if code != tc.code || !strings.Contains(strings.ToLower(errs), strings.ToLower(tc.want)) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)\nstdout %s", code, tc.code, errs, tc.want, out)
			}
		})
	}
	// A plugin that fails on the message: the JSON shows the on_error outcome and the error.
	_, res, _, _ := pluginTest(t, "-plugin", fixture("trap"), msg)
	if res.Error == "" || res.Verdict != "tempfail" {
		t.Errorf("trap: %+v", res)
	}
}

// TestPluginTestDiffNoChanges checks that -diff says so when the plugin changed nothing, rather than printing
// nothing at all.
func TestPluginTestDiffNoChanges(t *testing.T) {
	code, _, out, errs := pluginTest(t, "-plugin", testplugins.Path(t, "plugins/eicar"), "-diff",
		writeTemp(t, "m.eml", cleanMessage))
	if code != 0 || !strings.HasSuffix(out, "}\n(no changes)\n") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
}

// TestPluginTestFromConfig runs a plugin block of a Postern configuration: its module and configuration come
// from the block (dlp with score_per_match 2 in the demo), and an unknown name lists the blocks there are.
func TestPluginTestFromConfig(t *testing.T) {
	demo := filepath.Join(exampleTree(t), "demo.hcl")
	msg := writeTemp(t, "card.eml", "From: a@other.test\r\nTo: alice@example.com\r\nSubject: order\r\n\r\n"+
		"My card is 4111 1111 1111 1111, thanks.\r\n")
	code, res, out, errs := pluginTest(t, "-config", demo, "-plugin", "dlp", msg)
	if code != 0 || res.Plugin != "dlp" || res.Score != 2 || res.Tags["dlp.cards"] == "" {
		t.Errorf("exit %d %+v\n%s%s", code, res, out, errs)
	}
	code, _, _, errs = pluginTest(t, "-config", demo, "-plugin", "nosuch", msg)
	if code != 1 || !strings.Contains(errs, `has no plugin "nosuch" (it has: eicar, attachment-guard, hold, external-tag, dlp)`) {
		t.Errorf("unknown plugin: exit %d\n%s", code, errs)
	}
}

// TestStateDirCache checks that check, explain and plugin test compile into the configuration's state_dir/cache
// (the cache `postern run` fills) when no -cache is given. The cache path is made a file, so a command that uses
// it fails naming it, and one that uses another cache succeeds.
func TestStateDirCache(t *testing.T) {
	dir := exampleTree(t)
	demo := filepath.Join(dir, "demo.hcl")
	state := filepath.Join(filepath.Dir(dir), "build", "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(state, "cache")
	if err := os.WriteFile(cache, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	msg := writeTemp(t, "m.eml", cleanMessage)
	for _, args := range [][]string{
		{"check", demo},
		{"explain", "-config", demo, msg},
		{"plugin", "test", "-config", demo, "-plugin", "dlp", msg},
	} {
		code, out, errs := run(args...)
		if code != 1 || !strings.Contains(errs, "compilation cache in "+cache) {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errs)
		}
	}
}

// TestPluginTestCPUProfile profiles eicar on a message with an attachment: the profile is a pprof file whose
// call paths name the plugin's own functions, with the host's part_match under its scan.
func TestPluginTestCPUProfile(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "eicar.pprof")
	code, res, _, errs := pluginTest(t, "-plugin", testplugins.Path(t, "plugins/eicar"), "-cpuprofile", prof, "-repeat", "3",
		writeTemp(t, "e.eml", eicarMessage()))
	if code != 0 || res.Verdict != "reject" {
		t.Fatalf("exit %d, verdict %q: %s", code, res.Verdict, errs)
	}
	f, err := os.Open(prof)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	var scanCalls, scanTime, matchUnderScan int64
	for _, s := range p.Sample {
		var names []string
		for _, l := range s.Location {
			names = append(names, l.Line[0].Function.Name)
		}
		path := strings.Join(names, " < ")
		if names[0] == "main.scan" {
			scanCalls += s.Value[0]
		}
		if strings.Contains(path, "main.scan") {
			scanTime += s.Value[1]
			if names[0] == "postern.part_match" {
				matchUnderScan += s.Value[0]
			}
		}
		if names[len(names)-1] != "eicar" {
			t.Errorf("path %q does not start at the plugin", path)
		}
	}
	if scanCalls != 3 || scanTime <= 0 {
		t.Errorf("main.scan: %d calls, %d ns; want 3 calls (-repeat 3) and some time", scanCalls, scanTime)
	}
	if matchUnderScan < 3 {
		t.Errorf("postern.part_match called %d times under main.scan, want at least once per call", matchUnderScan)
	}
}
