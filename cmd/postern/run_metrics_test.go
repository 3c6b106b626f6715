package main

import (
	"bufio"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/metricstest"
	"github.com/postern/postern/internal/testplugins"
)

// metricsConfig writes a configuration with three SMTP listeners (in: the embedded upstream; tiny: one session
// at most; down: an upstream nobody listens on), an admin listener, plugins that accept, reject, quarantine and
// fail in each way the metrics tell apart, and prefix as external-tag's subject prefix (a reload changes it).
func metricsConfig(t *testing.T, path, in, tiny, down, downUpstream, adminAddr, prefix string) {
	t.Helper()
	testdata := filepath.Join(testplugins.Root(), "proxy", "pluginhost", "testdata")
	cfg := fmt.Sprintf(`
state_dir = "state"
audit {
  path = "state/audit.log"
}
admin {
  address = %q
}
listener "smtp" "in" {
  address  = %q
  upstream = "embedded"
}
listener "smtp" "tiny" {
  address  = %q
  upstream = "embedded"
  limits {
    sessions = 1
  }
}
listener "smtp" "down" {
  address  = %q
  upstream = %q
}
plugin "eicar" {
  source = "../build/plugins/eicar.wasm"
}
plugin "external-tag" {
  source = "../build/plugins/external-tag.wasm"
  config = { internal_domains = ["example.com"], subject_prefix = %q }
}
plugin "quarantine" {
  source = "../build/plugins/verdict.wasm"
  config = { action = "quarantine", text = "held for review" }
}
plugin "memory" {
  source   = %q
  memory   = "1MiB"
  on_error = "accept"
}
plugin "loop" {
  source    = %q
  timeout   = "1s"
  pool_size = 1
  on_error  = "accept"
}
plugin "trap" {
  source = %q
}
policy "faults" {
  when    = msg.subject == "faults"
  plugins = ["memory", "loop", "trap"]
}
policy "hold" {
  when    = msg.subject == "hold"
  plugins = ["quarantine"]
}
policy "all" {
  plugins = ["eicar", "external-tag"]
}
`, adminAddr, in, tiny, down, downUpstream, prefix,
		filepath.Join(testdata, "memory.wasm"), filepath.Join(testdata, "loop.wasm"), filepath.Join(testdata, "trap.wasm"))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunMetrics makes every metric of docs/METRICS.md move through the binary, and reads them back from
// /metrics on the admin listener with the Prometheus text parser.
func TestRunMetrics(t *testing.T) {
	dir := exampleTree(t)
	for _, name := range []string{"verdict"} {
		os.Symlink(testplugins.Path(t, "plugins/"+name), filepath.Join(dir, "build", "plugins", name+".wasm"))
	}
	cfgPath := filepath.Join(dir, "run.hcl")
	in, tiny, down, adminAddr := freePort(t), freePort(t), freePort(t), freePort(t)
	nobody := freePort(t) // down's upstream: nothing listens there
	metricsConfig(t, cfgPath, in, tiny, down, nobody, adminAddr, "[EXT] ")
	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "postern running")
	url := "http://" + adminAddr + "/metrics"
	before := metricstest.Get(t, url)

	// Build information and the serving configuration.
	if v := before.Must(t, "postern_build_info", nil); v != 1 {
		t.Errorf("postern_build_info = %v", v)
	}
	sha := before.Label("postern_config_info", "sha256")
	if len(sha) != 64 || !strings.Contains(p.log.String(), sha) {
		t.Errorf("postern_config_info sha256 = %q, not the one logged at start", sha)
	}
	if v := before.Must(t, "postern_config_last_reload_success_timestamp_seconds", nil); v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("postern_config_last_reload_success_timestamp_seconds = %v", v)
	}

	// Messages: accepted, rejected, quarantined, and three plugin faults, two at once through a pool of one.
	if err := send(in, "hello", "clean"); err != nil {
		t.Fatal(err)
	}
	if err := send(in, "virus", `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`); err == nil {
		t.Fatal("EICAR accepted")
	}
	if err := send(in, "hold", "for review"); err != nil {
		t.Fatalf("a quarantined message must be acknowledged: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = send(in, "faults", "boom")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "451") {
			t.Errorf("a trapping plugin with on_error tempfail: %v, want 451", err)
		}
	}

	// Sessions: one held open on tiny, the next refused by its limit.
	held, err := net.Dial("tcp", tiny)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if line, _ := bufio.NewReader(held).ReadString('\n'); !strings.HasPrefix(line, "220") {
		t.Fatalf("tiny greeting %q", line)
	}
	refused, err := net.Dial("tcp", tiny)
	if err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(refused).ReadString('\n'); !strings.HasPrefix(line, "421") {
		t.Errorf("second session on tiny: %q, want 421", line)
	}
	refused.Close()

	// Upstream: down's upstream cannot be reached.
	if c, err := smtp.Dial(down); err == nil {
		if err := c.Hello("client.test"); err == nil {
			t.Error("down: EHLO accepted without an upstream")
		}
		c.Close()
	}

	// A refused reload (a syntax error), then a good one with a new configuration.
	good, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, append(good, []byte("policy {\n")...), 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "reload refused")
	metricsConfig(t, cfgPath, in, tiny, down, nobody, adminAddr, "[NEW] ")
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "reload: reloaded")

	// The quarantine's count is refreshed every few seconds, and a session's gauge falls just after its client
	// has gone: wait for them to settle.
	var after metricstest.Scrape
	deadline := time.Now().Add(30 * time.Second)
	for {
		after = metricstest.Get(t, url)
		q, _ := after.Value("postern_quarantine_messages", nil)
		in, _ := after.Value("postern_sessions_open", metricstest.L("listener", "in"))
		tinyOpen, _ := after.Value("postern_sessions_open", metricstest.L("listener", "tiny"))
		if q == 1 && in == 0 && tinyOpen == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	moved := func(name string, labels map[string]string, atLeast float64) {
		t.Helper()
		metricstest.Rise(t, before, after, name, labels, atLeast)
	}
	smtpIn := func(kv ...string) map[string]string {
		return metricstest.L(append([]string{"listener", "in", "protocol", "smtp"}, kv...)...)
	}

	moved("postern_sessions_total", smtpIn(), 5)
	moved("postern_sessions_total", metricstest.L("listener", "tiny"), 2)
	moved("postern_sessions_refused_total", metricstest.L("listener", "tiny", "protocol", "smtp", "reason", "sessions"), 1)
	if v := after.Must(t, "postern_sessions_open", metricstest.L("listener", "tiny")); v != 1 {
		t.Errorf("postern_sessions_open{tiny} = %v with one session held, want 1", v)
	}
	if v := after.Must(t, "postern_sessions_open", metricstest.L("listener", "in")); v != 0 {
		t.Errorf("postern_sessions_open{in} = %v after every session ended, want 0", v)
	}
	moved("postern_client_bytes_total", smtpIn("direction", "in"), 500)
	moved("postern_client_bytes_total", smtpIn("direction", "out"), 500)

	moved("postern_messages_total", smtpIn("hook", "message", "action", "accept"), 1)
	moved("postern_messages_total", smtpIn("hook", "message", "action", "reject"), 1)
	moved("postern_messages_total", smtpIn("hook", "message", "action", "quarantine"), 1)
	moved("postern_messages_total", smtpIn("hook", "message", "action", "tempfail"), 2)
	moved("postern_replies_total", smtpIn("class", "2xx"), 2)
	moved("postern_replies_total", smtpIn("class", "4xx"), 2)
	moved("postern_replies_total", smtpIn("class", "5xx"), 1)

	// The faults and hold policies decide before "all" runs: eicar sees two messages.
	moved("postern_plugin_calls_total", metricstest.L("plugin", "eicar", "hook", "message"), 2)
	moved("postern_plugin_call_duration_seconds", metricstest.L("plugin", "eicar"), 2)
	moved("postern_plugin_errors_total", metricstest.L("plugin", "memory", "kind", "memory"), 2)
	moved("postern_plugin_errors_total", metricstest.L("plugin", "loop", "kind", "timeout"), 2)
	moved("postern_plugin_errors_total", metricstest.L("plugin", "trap", "kind", "trap"), 2)
	moved("postern_plugin_pool_waits_total", metricstest.L("plugin", "loop"), 1)
	if v := after.Must(t, "postern_plugin_pool_instances", metricstest.L("plugin", "loop")); v != 1 {
		t.Errorf("postern_plugin_pool_instances{loop} = %v, want its pool_size 1", v)
	}
	if _, ok := after.Value("postern_plugin_pool_idle_instances", metricstest.L("plugin", "eicar")); !ok {
		t.Error("no postern_plugin_pool_idle_instances{eicar}")
	}
	moved("postern_policy_evaluation_duration_seconds", metricstest.L("hook", "message"), 5)

	moved("postern_upstream_dials_total", smtpIn(), 5)
	moved("postern_upstream_dial_errors_total", metricstest.L("listener", "down", "protocol", "smtp"), 1)
	moved("postern_upstream_errors_total", metricstest.L("listener", "down", "protocol", "smtp"), 1)
	if v, _ := after.Value("postern_upstream_dial_errors_total", smtpIn()); v != 0 {
		t.Errorf("dial errors on in: %v", v)
	}

	moved("postern_audit_append_duration_seconds", nil, 4)
	moved("postern_config_reloads_total", metricstest.L("result", "refused"), 1)
	moved("postern_config_reloads_total", metricstest.L("result", "success"), 1)
	newSHA := after.Label("postern_config_info", "sha256")
	if len(after["postern_config_info"].GetMetric()) != 1 || newSHA == sha || !strings.Contains(p.log.String(), newSHA) {
		t.Errorf("postern_config_info after the reload: %v (was %s)", after["postern_config_info"].GetMetric(), sha)
	}
	if n := after.Must(t, "postern_quarantine_messages", nil); n != 1 {
		t.Errorf("postern_quarantine_messages = %v, want 1", n)
	}
	if b := after.Must(t, "postern_quarantine_bytes", nil); b < 50 {
		t.Errorf("postern_quarantine_bytes = %v", b)
	}
	if _, ok := after.Value("go_goroutines", nil); !ok {
		t.Error("no Go runtime metrics")
	}
	if _, ok := after.Value("process_open_fds", nil); !ok {
		t.Error("no process metrics")
	}
	held.Close()
}
