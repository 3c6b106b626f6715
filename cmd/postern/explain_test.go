package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// TestExplainCorpus explains every message of the shared corpus with the demo configuration: the run must
// complete, give an outcome and render as text and JSON, whatever the message.
func TestExplainCorpus(t *testing.T) {
	dir := exampleTree(t)
	cfg, err := config.Load(filepath.Join(dir, "demo.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	snap, err := policy.Build(ctx, cfg, policy.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	env := pluginhost.Envelope{Protocol: "smtp", Listener: "demo", Direction: "inbound", ClientIP: "203.0.113.7"}
	sess, err := explainSession(ctx, snap, explainFlowOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var files []string
	err = filepath.WalkDir(filepath.Join(testplugins.Root(), "testdata", "corpus"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".eml") || strings.HasSuffix(p, ".raw")) {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) < 100 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	actions := map[pluginhost.Kind]int{}
	failures := 0
	for _, p := range files {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := sess.Receive(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		sim, err := simulate(sess, env, []string{"alice@example.com"}, "sender@other.test", sp)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		sim.outcome.Close()
		sp.Close()
		stages, final := sim.stages, sim.final
		if len(stages) == 0 || stages[len(stages)-1].Hook != pluginhost.HookMessage {
			t.Errorf("%s: stages %v", p, stages)
			continue
		}
		actions[final.Action]++
		for _, pt := range stages[0].Policies {
			for _, pl := range pt.Plugins {
				if pl.Error != "" {
					failures++
					t.Logf("%s: %s", filepath.Base(p), pl.Error)
				}
			}
		}
		res := explainOutput{Stages: stages, Final: final}
		var text bytes.Buffer
		printExplain(&text, cfg, &res)
		if !strings.Contains(text.String(), "\nresult: "+final.Action.String()) {
			t.Errorf("%s: text output:\n%s", p, text.String())
		}
		if _, err := json.Marshal(res); err != nil {
			t.Errorf("%s: JSON: %v", p, err)
		}
	}
	t.Logf("%d messages: %v; %d plugin failures", len(files), actions, failures)
	if actions[pluginhost.Reject] == 0 || actions[pluginhost.Accept] == 0 {
		t.Errorf("outcomes %v: the corpus has both clean messages and executables", actions)
	}
}

func corpusFile(name string) string {
	return filepath.Join(testplugins.Root(), "testdata", "corpus", "postern", name)
}

func TestExplainReject(t *testing.T) {
	dir := exampleTree(t)
	code, out, errs := run("explain", "-cache", testplugins.CacheDir(), "-config", filepath.Join(dir, "demo.hcl"),
		"-listener", "demo", "-from", "bob@other.test", "-rcpt", "alice@example.com", corpusFile("double-extension.eml"))
	if code != 0 || errs != "" {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"envelope: smtp listener demo (inbound) from <bob@other.test> to <alice@example.com>\n",
		"== message: reject 554 5.7.1",
		`  policy "malware" (enforce) matched: no when (matches everything)`,
		"    plugin eicar                accept  score 0",
		"    plugin attachment-guard     reject 554 5.7.1",
		`attachment-guard.files="invoice.pdf.exe"`,
		`  policy "content" (enforce) not reached: policy "malware" decided`,
		`result: reject 554 5.7.1 "refused: \"invoice.pdf.exe\"`,
		`(policy "malware" at message)`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestExplainSkipped: a plain text message is not for attachment-guard (it wants only messages that may carry a
// file), and the trace says it was skipped, in the text and the JSON.
func TestExplainSkipped(t *testing.T) {
	dir := exampleTree(t)
	msg := writeTemp(t, "plain.eml", cleanMessage)
	args := []string{"explain", "-cache", testplugins.CacheDir(), "-config", filepath.Join(dir, "demo.hcl"),
		"-listener", "demo", "-from", "bob@other.test", "-rcpt", "alice@example.com"}
	code, out, errs := run(append(args, msg)...)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "    plugin attachment-guard     skipped: the message carries no file") ||
		!strings.Contains(out, "    plugin eicar                accept") {
		t.Errorf("output lacks the skipped attachment-guard:\n%s", out)
	}
	code, out, errs = run(append(args, "-json", msg)...)
	if code != 0 || !strings.Contains(out, `"skipped": "the message carries no file`) {
		t.Errorf("exit %d, JSON lacks skipped: %s\n%s", code, errs, out)
	}
}

func TestExplainEICAR(t *testing.T) {
	dir := exampleTree(t)
	// The test string is assembled here so that no file of the repository holds it (anti-virus software).
	eicar := `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
	msg := "From: a@other.test\r\nTo: alice@example.com\r\nSubject: test\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n" +
		"--x\r\nContent-Type: application/octet-stream; name=eicar.txt\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte(eicar)) + "\r\n--x--\r\n"
	path := filepath.Join(t.TempDir(), "eicar.eml")
	if err := os.WriteFile(path, []byte(msg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run("explain", "-json", "-cache", testplugins.CacheDir(), "-config", filepath.Join(dir, "demo.hcl"),
		"-rcpt", "alice@example.com", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var res explainOutput
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	f := res.Final
	if f.Action != pluginhost.Reject || f.Code != 554 || f.DecidedBy != "malware" || f.Stage != "message" ||
		len(res.Stages) != 1 || res.Stages[0].Policies[0].Plugins[0].Name != "eicar" ||
		res.Stages[0].Policies[0].Plugins[0].Verdict.Kind != pluginhost.Reject {
		t.Errorf("final %+v\n%s", f, out)
	}
}

func TestExplainChangesAndOut(t *testing.T) {
	dir := exampleTree(t)
	tmp := t.TempDir()
	in := corpusFile("qp-and-base64-text.eml")
	outFile := filepath.Join(tmp, "out.eml")
	code, out, errs := run("explain", "-cache", testplugins.CacheDir(), "-config", filepath.Join(dir, "demo.hcl"),
		"-from", "bob@other.test", "-rcpt", "alice@example.com", "-out", outFile, in)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"change: set_header X-Postern-External: yes", `change: prefix_subject "[EXTERNAL] "`,
		`tags: external="yes" external.domain="other.test"`, "result: accept\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	written, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(written, []byte("X-Postern-External: yes\r\n")) || !bytes.Contains(written, []byte("Subject: [EXTERNAL] ")) {
		t.Errorf("written message:\n%s", written)
	}

	// Internal mail: nothing changes, and the message is written byte for byte.
	in = filepath.Join(tmp, "internal.eml")
	internal := "From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: lunch\r\n\r\nAt noon?\r\n"
	if err := os.WriteFile(in, []byte(internal), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = run("explain", "-cache", testplugins.CacheDir(), "-config", filepath.Join(dir, "demo.hcl"),
		"-from", "bob@example.com", "-rcpt", "alice@example.com", "-out", outFile, in)
	if code != 0 || strings.Contains(out, "change:") || !strings.Contains(out, "result: accept\n") {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	original, _ := os.ReadFile(in)
	written, _ = os.ReadFile(outFile)
	if !bytes.Equal(written, original) {
		t.Errorf("unchanged message not written byte-identically")
	}
}

// TestExplainEnvelopeStages runs a session through connect, MAIL FROM and each RCPT TO: a recipient refused at
// RCPT TO drops out, the message stage sees the others.
func TestExplainEnvelopeStages(t *testing.T) {
	scripted := testplugins.Path(t, "proxy/policy/testdata/policytest-scripted")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "postern.hcl")
	src := fmt.Sprintf(`plugin "refuse" {
  source = %[1]q
  config = "verdict=reject:550"
}
plugin "mark" {
  source = %[1]q
  config = "tag=seen:yes"
}
plugin "drop" {
  source = %[1]q
  config = "verdict=discard"
}
policy "trap" {
  when    = msg.hook == "rcpt_to" && msg.rcpt_current == "trap@corp.example"
  plugins = ["drop"]
}
policy "rcpt" {
  when    = msg.hook == "rcpt_to" && endswith(msg.rcpt_current, "@blocked.example")
  plugins = ["refuse"]
}
policy "content" {
  when    = msg.hook == "message" && length(msg.rcpt) == 1
  plugins = ["mark"]
}
`, scripted)
	if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	explain := func(rcpts ...string) explainOutput {
		args := []string{"explain", "-json", "-cache", testplugins.CacheDir(), "-config", cfgPath, "-from", "a@b.example"}
		for _, r := range rcpts {
			args = append(args, "-rcpt", r)
		}
		code, out, errs := run(append(args, corpusFile("double-extension.eml"))...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		var res explainOutput
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := explain("ok@corp.example", "x@blocked.example")
	var hooks []string
	for _, s := range res.Stages {
		hooks = append(hooks, s.Hook.String())
	}
	if got := strings.Join(hooks, ","); got != "connect,mail_from,rcpt_to,rcpt_to,message" {
		t.Errorf("stages %s", got)
	}
	if res.Final.Action != pluginhost.Accept || strings.Join(res.Final.Rejected, ",") != "x@blocked.example" ||
		res.Final.Tags["seen"] != "yes" {
		t.Errorf("final %+v", res.Final)
	}
	// A discard at RCPT TO is for that recipient only: the message stage runs for the others.
	res = explain("ok@corp.example", "trap@corp.example")
	if f := res.Final; f.Action != pluginhost.Accept || strings.Join(f.Discarded, ",") != "trap@corp.example" ||
		f.Tags["seen"] != "yes" {
		t.Errorf("recipient discarded: final %+v", f)
	}
	res = explain("x@blocked.example")
	if f := res.Final; f.Action != pluginhost.Reject || f.Stage != "rcpt_to" || f.DecidedBy != "rcpt" ||
		res.Stages[len(res.Stages)-1].Hook != pluginhost.HookRcptTo {
		t.Errorf("every recipient refused: final %+v", f)
	}
}

func TestExplainUsage(t *testing.T) {
	dir := exampleTree(t)
	if code, _, errs := run("explain", corpusFile("bare-lf.eml")); code != 2 || !strings.Contains(errs, "usage: postern explain") {
		t.Errorf("no -config: exit %d %s", code, errs)
	}
	if code, _, errs := run("explain", "-config", filepath.Join(dir, "demo.hcl"), "-listener", "nope", corpusFile("bare-lf.eml")); code != 2 ||
		!strings.Contains(errs, `no listener "nope"`) {
		t.Errorf("unknown listener: exit %d %s", code, errs)
	}
	if code, _, errs := run("explain", "-config", filepath.Join(dir, "demo.hcl"), filepath.Join(dir, "missing.eml")); code != 1 ||
		!strings.Contains(errs, "no such file") {
		t.Errorf("missing message: exit %d %s", code, errs)
	}
}

// TestExplainConnectKnowsNoHELO: explain gives each hook what the relay gives it. At connect the client has not
// said HELO nor authenticated yet, so a rule on either cannot match there; from MAIL FROM on both are known.
func TestExplainConnectKnowsNoHELO(t *testing.T) {
	scripted := testplugins.Path(t, "proxy/policy/testdata/policytest-scripted")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "postern.hcl")
	src := fmt.Sprintf(`plugin "refuse" {
  source = %[1]q
  config = "verdict=reject:550"
}
plugin "mark" {
  source = %[1]q
  config = "tag=seen:yes"
}
policy "connect-with-helo" {
  when    = msg.hook == "connect" && (msg.helo != null || msg.user != null)
  plugins = ["refuse"]
}
policy "helo-at-mail" {
  when    = msg.hook == "mail_from" && msg.helo == "client.test" && msg.user == "alice"
  plugins = ["mark"]
}
`, scripted)
	if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run("explain", "-json", "-cache", testplugins.CacheDir(), "-config", cfgPath, "-from", "a@b.example",
		"-rcpt", "c@d.example", "-helo", "client.test", "-user", "alice", corpusFile("double-extension.eml"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var res explainOutput
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Final.Action != pluginhost.Accept || len(res.Stages) < 2 || res.Stages[0].Hook != pluginhost.HookConnect ||
		res.Stages[1].Hook != pluginhost.HookMailFrom || res.Stages[1].Tags["seen"] != "yes" {
		t.Fatalf("connect saw HELO or the user, or MAIL FROM did not:\n%s", out)
	}
}
