// Package pluginharness runs a first-party plugin in the real plugin host for its tests and benchmarks: the
// plugin is built (internal/testplugins), loaded with a JSON configuration, called on .eml files, and the test
// checks what the host records (verdict, tags, score, changes) and the message written with those changes.
package pluginharness

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

// Inbound is the envelope of a message from outside: sales@other.test to alice@example.com over SMTP.
var Inbound = pluginhost.Envelope{
	Protocol: "smtp", Direction: "inbound", ClientIP: "192.0.2.10", ClientPort: 40000, HELO: "mx.other.test",
	MailFrom: "sales@other.test", HasMailFrom: true, Rcpts: []string{"alice@example.com"},
}

// Harness loads one plugin, by its source folder relative to the repository root ("plugins/dlp"). Loaded
// plugins are kept by configuration, because each Load starts a Go runtime. Its methods are safe for concurrent
// use.
type Harness struct {
	dir string
	// Transform, if set, rewrites every message Eml reads (eicar puts the test string into its templates).
	Transform func([]byte) []byte

	hostOnce sync.Once
	host     *pluginhost.Host
	hostErr  error

	mu      sync.Mutex
	plugins map[string]*pluginhost.Plugin
}

// New returns a harness for the plugin in dir.
func New(dir string) *Harness {
	return &Harness{dir: dir, plugins: map[string]*pluginhost.Plugin{}}
}

// Main runs the package's tests and then closes the host: a plugin package's TestMain is
// `func TestMain(m *testing.M) { harness.Main(m) }`.
func (h *Harness) Main(m *testing.M) {
	code := m.Run()
	if h.host != nil {
		h.host.Close(context.Background())
	}
	os.Exit(code)
}

// Load returns the plugin loaded with the JSON configuration cfg, loading it on first use.
func (h *Harness) Load(t testing.TB, cfg string) *pluginhost.Plugin {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.plugins[cfg]; p != nil {
		return p
	}
	p, err := h.LoadErr(t, cfg)
	if err != nil {
		t.Fatalf("loading with %s: %v", cfg, err)
	}
	h.plugins[cfg] = p
	return p
}

// LoadErr loads a new instance of the plugin with cfg and returns the host's error, for tests of refused
// configurations. The caller closes the plugin.
func (h *Harness) LoadErr(t testing.TB, cfg string) (*pluginhost.Plugin, error) {
	t.Helper()
	h.hostOnce.Do(func() {
		h.host, h.hostErr = pluginhost.NewHost(context.Background(), pluginhost.Options{CacheDir: testplugins.CacheDir()})
	})
	if h.hostErr != nil {
		t.Fatal(h.hostErr)
	}
	wasm, err := os.ReadFile(testplugins.Path(t, h.dir))
	if err != nil {
		t.Fatal(err)
	}
	// A generous timeout: the tests check behaviour, not speed, on a shared machine.
	return h.host.Load(context.Background(), pluginhost.Config{
		Name: filepath.Base(h.dir), Wasm: wasm, Config: []byte(cfg), Timeout: 30 * time.Second,
	})
}

// Outcome is one call's result and the message written with its changes.
type Outcome struct {
	Res *pluginhost.Result
	Out []byte
}

// Run calls the message hook of p on data with the Inbound envelope; see RunEnv.
func (h *Harness) Run(t testing.TB, p *pluginhost.Plugin, data []byte) Outcome {
	t.Helper()
	return h.RunEnv(t, p, data, Inbound)
}

// RunEnv calls the message hook of p on data with env, fails the test if the call failed, and writes the message
// with the call's changes.
func (h *Harness) RunEnv(t testing.TB, p *pluginhost.Plugin, data []byte, env pluginhost.Envelope) Outcome {
	t.Helper()
	msg, err := message.Parse(bytes.NewReader(data), int64(len(data)), message.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	res := p.Call(context.Background(), pluginhost.HookMessage, &pluginhost.Input{Env: env, Msg: msg})
	if res.Err != nil {
		t.Fatalf("call failed: %v\nlogs: %v", res.Err, res.Logs)
	}
	var out bytes.Buffer
	if _, err := msg.WriteTo(&out, res.Changes); err != nil {
		t.Fatalf("writing the message with changes %v: %v", res.Changes.List(), err)
	}
	return Outcome{res, out.Bytes()}
}

// Bench measures one message hook call of the plugin loaded with cfg on data: the plugin's own work plus the
// host's (decoding, matching), not parsing. Each iteration gets a fresh Input, as each message would, so decoded
// content is not reused across iterations.
func (h *Harness) Bench(b *testing.B, cfg string, data []byte, env pluginhost.Envelope) {
	p, err := h.LoadErr(b, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	msg, err := message.Parse(bytes.NewReader(data), int64(len(data)), message.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		res := p.Call(context.Background(), pluginhost.HookMessage, &pluginhost.Input{Env: env, Msg: msg})
		if res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// Eml reads testdata/name in the test's package folder, or testdata/name.tmpl when there is no such file, and
// passes it through Transform.
func (h *Harness) Eml(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if os.IsNotExist(err) {
		b, err = os.ReadFile(filepath.Join("testdata", name+".tmpl"))
	}
	if err != nil {
		t.Fatal(err)
	}
	if h.Transform != nil {
		b = h.Transform(b)
	}
	return b
}

// Corpus lists the shared corpus of real and malformed mail (testdata/corpus at the repository root).
func Corpus(t testing.TB) []string {
	t.Helper()
	var files []string
	root := filepath.Join(testplugins.Root(), "testdata", "corpus")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() || strings.HasSuffix(name, ".md") || strings.HasPrefix(name, "LICENSE") || strings.HasPrefix(name, ".") {
			return nil
		}
		files = append(files, path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("only %d corpus messages found under %s", len(files), root)
	}
	return files
}
