package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// emptyModule is the smallest valid WebAssembly module; config only reads and hashes modules.
var emptyModule = []byte("\x00asm\x01\x00\x00\x00")

// writeFiles writes name → content into a new directory and returns it.
func writeFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// loadErrors loads dir/main.hcl, which must fail, and returns its error diagnostics as
// "file:line:col: summary" with file relative to dir.
func loadErrors(t *testing.T, dir string) []string {
	t.Helper()
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err == nil {
		t.Fatalf("Load succeeded (%s), want an error", cfg.Summary())
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error is %T (%v), want *config.Error", err, err)
	}
	var out []string
	for _, d := range ce.Diagnostics {
		if d.Severity != hcl.DiagError {
			continue
		}
		line := DiagnosticLine(&hcl.Diagnostic{Summary: d.Summary, Subject: d.Subject})
		out = append(out, strings.TrimPrefix(line, dir+string(filepath.Separator)))
	}
	return out
}

const okPlugin = `
plugin "p" {
  source = "p.wasm"
}
`

func TestLoadErrors(t *testing.T) {
	sum := sha256.Sum256(emptyModule)
	goodPin := hex.EncodeToString(sum[:])
	cases := []struct {
		name  string
		files map[string]string
		want  []string // "file:line:col: summary", in order
	}{
		{"syntax error", map[string]string{"main.hcl": "policy \"x\" {\n  plugins = [\n"},
			[]string{"main.hcl:3:1: Missing expression"}},
		{"unknown block", map[string]string{"main.hcl": "frobnicate {\n}\n"},
			[]string{"main.hcl:1:1: Unsupported block type"}},
		{"unknown attribute", map[string]string{"main.hcl": okPlugin + "policy \"x\" {\n  plugins = [\"p\"]\n  bogus = 1\n}\n"},
			[]string{"main.hcl:7:3: Unsupported argument"}},
		{"unknown attribute in nested block", map[string]string{"main.hcl": `listener "smtp" "mx" {
  address = ":25"
  upstream = "embedded"
  limits {
    sessionz = 3
  }
}
`}, []string{"main.hcl:5:5: Unsupported argument"}},
		{"wrong type number", map[string]string{"main.hcl": `listener "smtp" "mx" {
  address = ":25"
  upstream = "embedded"
  limits {
    sessions = "many"
  }
}
`}, []string{"main.hcl:5:16: Wrong type"}},
		{"wrong type bool", map[string]string{"main.hcl": "listener \"smtp\" \"mx\" {\n  address = \":25\"\n  upstream = \"embedded\"\n  xclient = \"maybe\"\n}\n"},
			[]string{"main.hcl:4:13: Wrong type"}},
		{"wrong type list", map[string]string{"main.hcl": okPlugin + "policy \"x\" {\n  plugins = \"p\"\n}\n"},
			[]string{"main.hcl:6:13: Wrong type"}},
		{"wrong element type", map[string]string{"main.hcl": okPlugin + "policy \"x\" {\n  plugins = [\"p\", [1]]\n}\n"},
			[]string{"main.hcl:6:19: Wrong type"}},
		{"missing required attribute", map[string]string{"main.hcl": "plugin \"p\" {\n  timeout = \"1s\"\n}\n"},
			[]string{"main.hcl:1:12: Missing required argument"}},
		{"missing plugin file", map[string]string{"main.hcl": "plugin \"p\" {\n  source = \"nope.wasm\"\n}\n"},
			[]string{"main.hcl:2:12: Cannot read plugin module"}},
		{"sha256 mismatch", map[string]string{"main.hcl": "plugin \"p\" {\n  source = \"p.wasm\"\n  sha256 = \"" +
			strings.Repeat("ab", 32) + "\"\n}\n"},
			[]string{"main.hcl:3:12: Plugin sha256 mismatch"}},
		{"sha256 malformed", map[string]string{"main.hcl": "plugin \"p\" {\n  source = \"p.wasm\"\n  sha256 = \"abc\"\n}\n"},
			[]string{"main.hcl:3:12: Invalid sha256 pin"}},
		{"duplicate plugin", map[string]string{"main.hcl": okPlugin + okPlugin},
			[]string{"main.hcl:6:8: Duplicate plugin name"}},
		{"duplicate policy across files", map[string]string{
			"main.hcl": okPlugin + "include = [\"more.hcl\"]\npolicy \"x\" {\n  plugins = [\"p\"]\n}\n",
			"more.hcl": "policy \"x\" {\n  plugins = [\"p\"]\n}\n"},
			[]string{"main.hcl:6:8: Duplicate policy name"}},
		{"duplicate listener", map[string]string{"main.hcl": `listener "smtp" "mx" {
  address = ":25"
  upstream = "embedded"
}
listener "submission" "mx" {
  address = ":587"
  upstream = "embedded"
}
`}, []string{"main.hcl:5:23: Duplicate listener name"}},
		{"duplicate listener address", map[string]string{"main.hcl": `listener "smtp" "a" {
  address = ":25"
  upstream = "embedded"
}
listener "smtp" "b" {
  address = ":25"
  upstream = "embedded"
}
`}, []string{"main.hcl:6:13: Duplicate listener address"}},
		{"admin off the loopback without tls", map[string]string{"main.hcl": "admin {\n  address = \"0.0.0.0:8025\"\n}\n"},
			[]string{"main.hcl:2:13: Admin listener without TLS off the loopback"}},
		{"admin without address", map[string]string{"main.hcl": "admin {\n}\n"},
			[]string{"main.hcl:1:7: Missing required argument"}},
		{"admin twice", map[string]string{"main.hcl": "admin {\n  address = \"127.0.0.1:1\"\n}\nadmin {\n  address = \"127.0.0.1:2\"\n}\n"},
			[]string{"main.hcl:4:1: Duplicate admin"}},
		{"admin tls without a key", map[string]string{"main.hcl": "admin {\n  address = \":8025\"\n  tls {\n    cert = \"c.pem\"\n  }\n}\n"},
			[]string{"main.hcl:3:3: Missing certificate"}},
		{"unknown plugin in policy", map[string]string{"main.hcl": okPlugin + "policy \"x\" {\n  plugins = [\"p\", \"q\"]\n}\n"},
			[]string{"main.hcl:6:19: Unknown plugin"}},
		{"plugin listed twice", map[string]string{"main.hcl": okPlugin + "policy \"x\" {\n  plugins = [\"p\", \"p\"]\n}\n"},
			[]string{"main.hcl:6:19: Plugin listed twice"}},
		{"misspelt attribute behind &&", map[string]string{"main.hcl": okPlugin +
			"policy \"x\" {\n  plugins = [\"p\"]\n  when = msg.size > 10 && msg.sise > 1\n}\n"},
			[]string{"main.hcl:7:30: Unsupported attribute"}},
		{"misspelt attribute behind a constant false", map[string]string{"main.hcl": okPlugin +
			"policy \"x\" {\n  plugins = [\"p\"]\n  when = false && msg.protocl == \"smtp\"\n}\n"},
			[]string{"main.hcl:7:22: Unsupported attribute"}},
		{"misspelt attribute inside can", map[string]string{"main.hcl": okPlugin +
			"policy \"x\" {\n  plugins = [\"p\"]\n  when = can(msg.subjet)\n}\n"},
			[]string{"main.hcl:7:17: Unsupported attribute"}},
		{"unknown variable", map[string]string{"main.hcl": okPlugin +
			"policy \"x\" {\n  plugins = [\"p\"]\n  when = message.size > 1\n}\n"},
			[]string{"main.hcl:7:10: Unknown variable"}},
		{"non-bool when", map[string]string{"main.hcl": okPlugin +
			"policy \"x\" {\n  plugins = [\"p\"]\n  when = msg.subject\n}\n"},
			[]string{"main.hcl:7:10: when is not a boolean"}},
		{"operand type error", map[string]string{"main.hcl": okPlugin +
			"policy \"x\" {\n  plugins = [\"p\"]\n  when = msg.size > 1 && msg.rcpt > 2\n}\n"},
			[]string{"main.hcl:7:26: Invalid operand"}},
		{"unknown function", map[string]string{"main.hcl": okPlugin +
			"policy \"x\" {\n  plugins = [\"p\"]\n  when = msg.tls || lowr(msg.helo) == \"x\"\n}\n"},
			[]string{"main.hcl:7:21: Call to unknown function"}},
		{"bad constant regex", map[string]string{"main.hcl": okPlugin +
			"policy \"x\" {\n  plugins = [\"p\"]\n  when = msg.tls || regex_match(msg.subject, \"(\")\n}\n"},
			[]string{"main.hcl:7:46: Invalid function argument"}},
		{"bad constant cidr", map[string]string{"main.hcl": okPlugin +
			"policy \"x\" {\n  plugins = [\"p\"]\n  when = cidrmatch(msg.client_ip, \"10.0.0.0/8\", \"10.0.0.300/8\")\n}\n"},
			[]string{"main.hcl:7:49: Invalid function argument"}},
		{"bad domain pattern", map[string]string{"main.hcl": okPlugin +
			"policy \"x\" {\n  plugins = [\"p\"]\n  when = domain_match(msg.from_domain, [\"ok.com\", \"*.*.com\"])\n}\n"},
			[]string{"main.hcl:7:40: Invalid function argument"}},
		{"invalid mode", map[string]string{"main.hcl": okPlugin + "policy \"x\" {\n  plugins = [\"p\"]\n  mode = \"monitr\"\n}\n"},
			[]string{"main.hcl:7:10: Invalid mode"}},
		{"invalid on_error", map[string]string{"main.hcl": "plugin \"p\" {\n  source = \"p.wasm\"\n  on_error = \"ignore\"\n}\n"},
			[]string{"main.hcl:3:14: Invalid on_error"}},
		{"unknown grant", map[string]string{"main.hcl": "plugin \"p\" {\n  source = \"p.wasm\"\n  grants = [\"clock\", \"network\"]\n}\n"},
			[]string{"main.hcl:3:22: Unknown grant"}},
		{"bad size and duration", map[string]string{"main.hcl": "plugin \"p\" {\n  source = \"p.wasm\"\n  memory = \"64 apples\"\n  timeout = \"30\"\n}\n"},
			[]string{"main.hcl:3:12: Invalid memory", "main.hcl:4:13: Invalid timeout"}},
		{"size out of range", map[string]string{"main.hcl": "plugin \"p\" {\n  source = \"p.wasm\"\n  memory = \"8GiB\"\n}\n"},
			[]string{"main.hcl:3:12: Invalid memory"}},
		{"bad threshold", map[string]string{"main.hcl": okPlugin + `policy "x" {
  plugins = ["p"]
  thresholds {
    tag = 0
    reject = 5
    quarantine = 5
  }
}
`}, []string{"main.hcl:8:11: Invalid threshold", "main.hcl:10:18: Ambiguous threshold"}},
		{"unknown threshold action", map[string]string{"main.hcl": okPlugin + "policy \"x\" {\n  plugins = [\"p\"]\n  thresholds {\n    bounce = 3\n  }\n}\n"},
			[]string{"main.hcl:8:5: Unsupported argument"}},
		{"bad reject code", map[string]string{"main.hcl": okPlugin + "policy \"x\" {\n  plugins = [\"p\"]\n  reject_code = 250\n}\n"},
			[]string{"main.hcl:7:17: Invalid reject_code"}},
		{"unknown protocol", map[string]string{"main.hcl": "listener \"lmtp\" \"x\" {\n  address = \":24\"\n  upstream = \"embedded\"\n}\n"},
			[]string{"main.hcl:1:10: Unknown listener protocol"}},
		{"bad address", map[string]string{"main.hcl": "listener \"smtp\" \"x\" {\n  address = \"localhost\"\n  upstream = \"mx:99999\"\n}\n"},
			[]string{"main.hcl:2:13: Invalid address", "main.hcl:3:14: Invalid upstream"}},
		{"tls without key", map[string]string{"main.hcl": "listener \"smtp\" \"x\" {\n  address = \":25\"\n  upstream = \"embedded\"\n  tls {\n    cert = \"c.pem\"\n  }\n}\n"},
			[]string{"main.hcl:4:3: Missing certificate"}},
		{"unusable certificate", map[string]string{"main.hcl": "listener \"smtp\" \"x\" {\n  address = \":25\"\n  upstream = \"embedded\"\n  tls {\n    cert = \"c.pem\"\n    key = \"k.pem\"\n  }\n}\n",
			"c.pem": "not a certificate", "k.pem": "not a key"},
			[]string{"main.hcl:5:12: Unusable certificate"}},
		{"test certificate without state_dir", map[string]string{"main.hcl": "listener \"smtp\" \"x\" {\n  address = \":25\"\n  upstream = \"embedded\"\n  tls {\n    test_certificate = true\n  }\n}\n"},
			[]string{"main.hcl:4:3: No place for the test certificate"}},
		{"test certificate and cert", map[string]string{"main.hcl": "state_dir = \"s\"\nlistener \"smtp\" \"x\" {\n  address = \":25\"\n  upstream = \"embedded\"\n  tls {\n    test_certificate = true\n    cert = \"c.pem\"\n  }\n}\n"},
			[]string{"main.hcl:5:3: Certificate given twice"}},
		{"limits out of range", map[string]string{"main.hcl": "listener \"smtp\" \"x\" {\n  address = \":25\"\n  upstream = \"embedded\"\n  limits {\n    sessions_per_client = -1\n    stress_timeout = \"1ms\"\n  }\n}\n"},
			[]string{"main.hcl:5:27: Invalid sessions_per_client", "main.hcl:6:22: Invalid stress_timeout"}},
		{"duplicate tls block", map[string]string{"main.hcl": "listener \"smtp\" \"x\" {\n  address = \":25\"\n  upstream = \"embedded\"\n  tls {\n    mode = \"none\"\n  }\n  tls {\n    mode = \"none\"\n  }\n}\n"},
			[]string{"main.hcl:7:3: Duplicate tls block"}},
		{"bad trusted proxy", map[string]string{"main.hcl": "listener \"smtp\" \"x\" {\n  address = \":25\"\n  upstream = \"embedded\"\n  proxy_protocol {\n    trusted = [\"10.0.0.0/8\", \"nowhere\"]\n  }\n}\n"},
			[]string{"main.hcl:5:30: Invalid trusted source"}},
		{"invalid name", map[string]string{"main.hcl": "plugin \"my plugin\" {\n  source = \"p.wasm\"\n}\n"},
			[]string{"main.hcl:1:8: Invalid plugin name"}},
		{"include missing", map[string]string{"main.hcl": "include = [\"conf.d/*.hcl\", \"missing.hcl\"]\n"},
			[]string{"main.hcl:1:28: Cannot read configuration"}},
		{"include cycle", map[string]string{"main.hcl": "include = [\"a.hcl\"]\n", "a.hcl": "include = [\"main.hcl\"]\n"},
			[]string{"a.hcl:1:12: File included twice"}},
		{"duplicate audit across files", map[string]string{
			"main.hcl": "include = [\"a.hcl\"]\naudit {\n  path = \"audit.log\"\n}\n",
			"a.hcl":    "audit {\n  path = \"other.log\"\n}\n"},
			[]string{"main.hcl:2:1: Duplicate audit"}},
		{"control socket too long", map[string]string{"main.hcl": "control_socket = \"" + strings.Repeat("d/", 60) + "s\"\n"},
			[]string{"main.hcl:1:18: Control socket path too long"}},
		{"several problems at once", map[string]string{"main.hcl": `plugin "p" {
  source = "p.wasm"
  sha256 = "` + goodPin + `"
  pool_size = 0
}
policy "x" {
  plugins = ["p", "nope"]
  when = msg.sizee > 1
}
`}, []string{"main.hcl:4:15: Invalid pool_size", "main.hcl:7:19: Unknown plugin", "main.hcl:8:13: Unsupported attribute"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{"p.wasm": string(emptyModule)}
			for k, v := range c.files {
				files[k] = v
			}
			got := loadErrors(t, writeFiles(t, files))
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	dir := writeFiles(t, map[string]string{"p.wasm": string(emptyModule),
		"main.hcl": okPlugin + "policy \"x\" {\n  plugins = [\"p\"]\n  when = msg.size > 10 && msg.sise > 1\n}\n"})
	_, err := Load(filepath.Join(dir, "main.hcl"))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	var b strings.Builder
	if err := ce.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "main.hcl") + `:7:30: error: Unsupported attribute
    7 |   when = msg.size > 10 && msg.sise > 1
      |                              ^^^^^
  msg has no attribute "sise". Did you mean "size"?
`
	if b.String() != want {
		t.Errorf("WriteText:\n%s\nwant:\n%s", b.String(), want)
	}
	if got := ce.Error(); !strings.HasSuffix(got, `main.hcl:7:30: Unsupported attribute; msg has no attribute "sise". Did you mean "size"?`) {
		t.Errorf("Error() = %q", got)
	}
}

const fullConfig = `
state_dir = "state"

audit {
  path          = "audit/audit.log"
  max_bytes     = "10MiB"
  sync_interval = "0s"
}

listener "smtp" "mx" {
  address  = "127.0.0.1:2525"
  upstream = "10.0.0.5:25"
  tls {
    mode = "none"
  }
  upstream_tls {
    mode        = "starttls"
    server_name = "mx.internal"
  }
  limits {
    message_size    = "20MiB"
    sessions        = 50
    recipients      = 200
    command_timeout = "1m"
    idle_timeout    = "2m"
    errors          = 5
  }
  proxy_protocol {
    trusted = ["10.0.0.0/8", "192.0.2.1"]
  }
  xclient         = true
  bare_newline    = "normalize"
  received_header = true
  result_headers  = true
}

listener "imap" "store" {
  address  = "127.0.0.1:1143"
  upstream = "127.0.0.1:143"
}

plugin "p" {
  source    = "p.wasm"
  config    = { words = ["a", "b"], limit = 3, nested = { on = true } }
  memory    = "32MiB"
  timeout   = "250ms"
  pool_size = 4
  max_calls = 100
  on_error  = "accept"
  grants    = ["clock", "random", "clock"]
}

policy "first" {
  when    = msg.direction == "inbound"
  plugins = ["p"]
  mode    = "monitor"
  thresholds {
    reject     = 15
    tag        = 5
    quarantine = 8.5
  }
  reject_code = 554
  reject_text = "No thanks"
  tag_header  = "X-Spam-Flag"
}

include = ["conf.d/*.hcl"]

policy "last" {
  plugins = ["p"]
}
`

func TestLoadFull(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"main.hcl":           fullConfig,
		"p.wasm":             string(emptyModule),
		"conf.d/20-b.hcl":    "policy \"b\" {\n  plugins = [\"q\"]\n}\n",
		"conf.d/10-a.hcl":    "policy \"a\" {\n  plugins = [\"q\"]\n}\nplugin \"q\" {\n  source = \"../p.wasm\"\n}\n",
		"conf.d/notes.txt":   "not included",
		"unused/ignored.hcl": "garbage {",
	})
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Summary(); got != "2 listeners, 2 plugins, 4 policies" {
		t.Errorf("Summary = %q", got)
	}
	var order []string
	for _, p := range cfg.Policies {
		order = append(order, p.Name)
	}
	// The include sits between "first" and "last", and the glob's files come in name order.
	if got := strings.Join(order, ","); got != "first,a,b,last" {
		t.Errorf("policy order = %s, want first,a,b,last", got)
	}
	if len(cfg.Files) != 3 || !strings.HasSuffix(cfg.Files[1], "10-a.hcl") {
		t.Errorf("Files = %v", cfg.Files)
	}
	abs := func(p string) string { return filepath.Join(dir, p) }
	if cfg.StateDir != abs("state") || cfg.ControlSocket != abs("state/control.sock") {
		t.Errorf("StateDir %q ControlSocket %q", cfg.StateDir, cfg.ControlSocket)
	}
	if a := cfg.Audit; a == nil || a.Path != abs("audit/audit.log") || a.MaxBytes != 10<<20 || a.SyncInterval != 0 {
		t.Errorf("Audit = %+v", cfg.Audit)
	}

	mx := cfg.Listener("mx")
	if mx.Protocol != "smtp" || mx.Address != "127.0.0.1:2525" || mx.Upstream != "10.0.0.5:25" ||
		mx.Direction != "inbound" || mx.TLS.Mode != "none" || mx.UpstreamTLS != (UpstreamTLS{Mode: "starttls",
		ServerName: "mx.internal", Verify: true}) || !mx.XClient || mx.BareNewline != "normalize" ||
		!mx.ReceivedHeader || !mx.ResultHeaders || mx.QuarantineDir != abs("state/quarantine") {
		t.Errorf("mx = %+v", mx)
	}
	// Unset limits keep their defaults; the stress threshold follows the sessions.
	if mx.Limits != (Limits{MessageSize: 20 << 20, Sessions: 50, Recipients: 200, CommandTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, Errors: 5, SessionsPerClient: 50, StressSessions: 40,
		StressTimeout: 10 * time.Second, MinDataRate: 500, UpstreamKeepalive: 30 * time.Second}) {
		t.Errorf("mx limits = %+v", mx.Limits)
	}
	if len(mx.ProxyProtocolTrusted) != 2 || mx.ProxyProtocolTrusted[1].String() != "192.0.2.1/32" {
		t.Errorf("trusted = %v", mx.ProxyProtocolTrusted)
	}
	store := cfg.Listener("store")
	if store.Direction != "retrieval" || store.Limits.IdleTimeout != 30*time.Minute || store.BareNewline != "reject" ||
		store.Limits.MessageSize != 50<<20 || store.XClient || store.ReceivedHeader {
		t.Errorf("defaults for imap = %+v", store)
	}

	p := cfg.Plugin("p")
	if p.Source != abs("p.wasm") || p.Memory != 32<<20 || p.Timeout != 250*time.Millisecond || p.PoolSize != 4 ||
		p.MaxCalls != 100 || p.OnError != "accept" || strings.Join(p.Grants, ",") != "clock,random" {
		t.Errorf("plugin = %+v", p)
	}
	if got := string(p.Config); got != `{"limit":3,"nested":{"on":true},"words":["a","b"]}` {
		t.Errorf("plugin config JSON = %s", got)
	}
	if q := cfg.Plugin("q"); q.Source != abs("p.wasm") || string(q.Config) != "{}" || q.OnError != "tempfail" {
		t.Errorf("plugin q = %+v (source relative to the file that names it)", q)
	}
	sum := sha256.Sum256(emptyModule)
	if p.SHA256 != hex.EncodeToString(sum[:]) || string(p.Wasm) != string(emptyModule) {
		t.Errorf("module not read: %s", p.SHA256)
	}

	first := cfg.Policies[0]
	if first.Mode != ModeMonitor || first.When == nil || first.When.String() != `msg.direction == "inbound"` ||
		first.RejectCode != 554 || first.RejectText != "No thanks" || first.TagHeader != "X-Spam-Flag" {
		t.Errorf("first = %+v", first)
	}
	wantTh := []Threshold{{5, ActionTag}, {8.5, ActionQuarantine}, {15, ActionReject}}
	if len(first.Thresholds) != 3 || first.Thresholds[0] != wantTh[0] || first.Thresholds[1] != wantTh[1] ||
		first.Thresholds[2] != wantTh[2] {
		t.Errorf("thresholds = %v, want %v (sorted by score)", first.Thresholds, wantTh)
	}
	last := cfg.Policies[3]
	if last.Mode != ModeEnforce || last.When != nil || last.RejectCode != 550 || last.TagHeader != "X-Postern-Tag" {
		t.Errorf("defaults for last = %+v", last)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
}

func TestVersion(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": okPlugin + "policy \"x\" {\n  plugins = [\"p\"]\n}\n",
		"p.wasm": string(emptyModule)})
	load := func() string {
		cfg, err := Load(filepath.Join(dir, "main.hcl"))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Version
	}
	v1 := load()
	if v1 != load() {
		t.Fatal("version not deterministic")
	}
	// A different module with the same configuration text is a different configuration.
	if err := os.WriteFile(filepath.Join(dir, "p.wasm"), append(emptyModule, 0, 1, 'x'), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := load()
	if v2 == v1 {
		t.Error("version ignores the plugin module")
	}
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(okPlugin+"policy \"y\" {\n  plugins = [\"p\"]\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if load() == v2 {
		t.Error("version ignores the configuration text")
	}
}

func TestWarnings(t *testing.T) {
	dir := writeFiles(t, map[string]string{"p.wasm": string(emptyModule), "main.hcl": okPlugin + `
plugin "unused" {
  source = "p.wasm"
}
policy "x" {
  plugins = ["p"]
  when    = 1 > 0
}
policy "empty" {
  plugins = []
}
listener "smtp" "mx" {
  address  = ":25"
  upstream = "mx:25"
  upstream_tls {
    mode   = "tls"
    verify = false
  }
}
`})
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range cfg.Warnings {
		got = append(got, strings.TrimPrefix(DiagnosticLine(&hcl.Diagnostic{Summary: w.Summary, Subject: w.Subject}), dir+"/"))
	}
	want := []string{"main.hcl:6:1: Unused plugin", "main.hcl:11:13: when is constant",
		"main.hcl:14:13: Empty policy", "main.hcl:19:3: Upstream certificate not verified"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "512KiB": 512 << 10, "64MiB": 64 << 20, "1GB": 1e9,
		"1.5KiB": 1536, "10M": 10 << 20, "2 kb": 2000, "0": 0} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5", "12 apples", "1e30GiB", "NaN"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
	if FormatSize(64<<20) != "64MiB" || FormatSize(1000) != "1000" || FormatSize(3<<30) != "3GiB" {
		t.Error("FormatSize")
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"2s": 2 * time.Second, "500ms": 500 * time.Millisecond, "0": 0, "1h30m": 90 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"30", "1.5", "soon", "-1s", ""} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestAdmin(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8025", "[::1]:8025", "localhost:8025"} {
		dir := writeFiles(t, map[string]string{"main.hcl": "admin {\n  address = \"" + addr + "\"\n}\n"})
		cfg, err := Load(filepath.Join(dir, "main.hcl"))
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if cfg.Admin == nil || cfg.Admin.Address != addr || cfg.Admin.TLS.Mode != "none" {
			t.Fatalf("%s: admin %+v", addr, cfg.Admin)
		}
	}
	// Off the loopback with TLS: HTTPS (the default mode of an admin tls block), test certificate in state_dir.
	dir := writeFiles(t, map[string]string{"main.hcl": "state_dir = \"s\"\nadmin {\n  address = \":8025\"\n" +
		"  tls {\n    test_certificate = true\n  }\n}\n"})
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Admin; a.TLS.Mode != "implicit" || a.TLS.Cert != filepath.Join(dir, "s", "tls", "test-cert.pem") ||
		a.ReadyUpstream {
		t.Fatalf("admin %+v", a)
	}
	dir = writeFiles(t, map[string]string{"main.hcl": "admin {\n  address = \"127.0.0.1:8025\"\n  ready_upstream = true\n}\n"})
	if cfg, err = Load(filepath.Join(dir, "main.hcl")); err != nil || !cfg.Admin.ReadyUpstream {
		t.Fatalf("ready_upstream = true: %v %+v", err, cfg)
	}
	dir = writeFiles(t, map[string]string{"main.hcl": "admin {\n  address = \"127.0.0.1:8025\"\n  ready_upstream = \"yes\"\n}\n"})
	if _, err = Load(filepath.Join(dir, "main.hcl")); err == nil || !strings.Contains(err.Error(), "main.hcl:3") {
		t.Fatalf("ready_upstream = \"yes\": %v, want an error at main.hcl:3", err)
	}
}
