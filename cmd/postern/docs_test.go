package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// auditExampleConfig is the configuration docs/AUDIT.md's example record comes from.
const auditExampleConfig = `
plugin "dlp" {
  source = %q
  config = { action = "reject", score_per_match = 5 }
}
policy "inbound" {
  when    = msg.direction == "inbound"
  plugins = ["dlp"]
}
policy "outbound-dlp" {
  when    = msg.direction == "outbound"
  plugins = ["dlp"]
}
`

// auditExampleMessage is the message of the example: a card number in the body.
const auditExampleMessage = "From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: the order\r\n" +
	"Message-ID: <20260102.1234@example.org>\r\nDate: Fri, 02 Jan 2026 03:04:05 +0000\r\n\r\n" +
	"Please charge my card 4111 1111 1111 1111, expiry 12/29.\r\n"

// TestAuditDocExample checks docs/AUDIT.md's example record against a record made by the real DLP plugin and the
// real policy engine for the same configuration and message: the same fields with the same values, except those
// that change from run to run (times, hashes, sequence numbers), which the example abbreviates.
func TestAuditDocExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testplugins.Root(), "docs", "AUDIT.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(doc), "## What a record holds")
	block := regexp.MustCompile("(?s)```json\n(.*?)```").FindStringSubmatch(after)
	if block == nil {
		t.Fatal("docs/AUDIT.md: no json example under \"What a record holds\"")
	}
	var documented map[string]any
	if err := json.Unmarshal([]byte(strings.ReplaceAll(block[1], "\n", "")), &documented); err != nil {
		t.Fatalf("docs/AUDIT.md's example is not one JSON record: %v", err)
	}

	cfgPath := writeTemp(t, "postern.hcl", strings.Replace(auditExampleConfig, "%q", `"`+testplugins.Path(t, "plugins/dlp")+`"`, 1))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	snap, err := policy.Build(ctx, cfg, policy.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	raw := []byte(auditExampleMessage)
	msg, err := message.Parse(bytes.NewReader(raw), int64(len(raw)), message.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	in := &pluginhost.Input{Env: pluginhost.Envelope{
		Protocol: "submission", Listener: "submission", Direction: "outbound", ClientIP: "198.51.100.4",
		TLSVersion: "TLS1.3", AuthUser: "alice", MailFrom: "alice@example.org", HasMailFrom: true,
		Rcpts: []string{"bob@example.com"},
	}, Msg: msg}
	d := snap.Evaluate(ctx, pluginhost.HookMessage, in)
	rec := audit.NewRecord(in, d, audit.Facts{
		Time: time.Now(), Session: "s-17", SHA256In: "x",
		Reply: audit.Reply{Code: d.Code, Enhanced: d.Enhanced, Text: d.Text},
	})
	rec.V, rec.Seq, rec.Prev, rec.Hash = audit.Version, 1042, "p", "h"
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var real map[string]any
	if err := json.Unmarshal(b, &real); err != nil {
		t.Fatal(err)
	}
	// What changes from run to run is compared by presence only.
	volatile := map[string]bool{"time": true, "seq": true, "session": true, "sha256_in": true, "sha256_out": true,
		"config_version": true, "duration_ns": true, "sha256": true, "prev": true, "hash": true}
	var normalise func(v any) any
	normalise = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if volatile[k] {
					v[k] = "…"
				} else {
					v[k] = normalise(x)
				}
			}
		case []any:
			for i, x := range v {
				v[i] = normalise(x)
			}
		}
		return v
	}
	want, _ := json.MarshalIndent(normalise(real), "", "  ")
	got, _ := json.MarshalIndent(normalise(documented), "", "  ")
	if string(got) != string(want) {
		t.Errorf("docs/AUDIT.md's example differs from a real record. Documented:\n%s\nreal:\n%s\nthe real record: %s", got, want, b)
	}
}

// TestDocWhenExamples compiles every `when = ...` code span of the user documentation in a configuration, so that
// an expression naming an attribute that does not exist (msg.x) fails here rather than for the reader.
func TestDocWhenExamples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testplugins.Root(), "plugins", "*", "README.md"))
	files = append(files, filepath.Join(testplugins.Root(), "README.md"), filepath.Join(testplugins.Root(), "docs", "CONFIG.md"))
	span := regexp.MustCompile("`when = ([^`]+)`")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range span.FindAllStringSubmatch(strings.Join(strings.Fields(string(b)), " "), -1) {
			n++
			cfg := writeTemp(t, "when.hcl", "plugin \"x\" {\n  source = \""+testplugins.Path(t, "plugins/eicar")+
				"\"\n}\npolicy \"p\" {\n  when    = "+m[1]+"\n  plugins = [\"x\"]\n}\n")
			if _, err := config.Load(cfg); err != nil {
				t.Errorf("%s: `when = %s`: %v", f, m[1], err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no `when = ...` examples found")
	}
}

// TestReadmeExplain runs README.md's explain example as written, from a checkout's root, on the message its swaks
// command makes.
func TestReadmeExplain(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(testplugins.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(readme)), " ")
	explain := regexp.MustCompile("`(build/postern explain -config policies/demo.hcl [^`]*message.eml)`").FindStringSubmatch(text)
	dump := regexp.MustCompile("`(swaks [^`]*--dump-mail > message.eml)`").FindStringSubmatch(text)
	if explain == nil || dump == nil {
		t.Fatal("README.md: no explain example with the swaks command that makes its message.eml")
	}
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is needed (apt-get install swaks; .ci/deps installs it)")
	}
	root := filepath.Dir(exampleTree(t))
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	// build/postern as make builds it; the state directory's compilation cache is the tests' shared one.
	if err := os.Symlink(bin, filepath.Join(root, "build", "postern")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "build", "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testplugins.CacheDir(), filepath.Join(root, "build", "state", "cache")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", dump[1]+"\n"+explain[1])
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"external-tag", "accept"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in explain's output:\n%s", want, out)
		}
	}
}
