package main

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

// The plugin's tests load the built plugin into the real plugin host, run it on .eml files and check what the
// host records: verdict, tags, score, changes and the message written with those changes.

const pluginDir = "plugins/external-tag"

var (
	hostOnce sync.Once
	theHost  *pluginhost.Host
	hostErr  error

	pluginsMu sync.Mutex
	plugins   = map[string]*pluginhost.Plugin{} // by configuration: each Load starts a Go runtime
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theHost != nil {
		theHost.Close(context.Background())
	}
	os.Exit(code)
}

// load returns the plugin loaded with the JSON configuration cfg.
func load(t *testing.T, cfg string) *pluginhost.Plugin {
	t.Helper()
	pluginsMu.Lock()
	defer pluginsMu.Unlock()
	if p := plugins[cfg]; p != nil {
		return p
	}
	p, err := loadErr(t, cfg)
	if err != nil {
		t.Fatalf("loading with %s: %v", cfg, err)
	}
	plugins[cfg] = p
	return p
}

func loadErr(t testing.TB, cfg string) (*pluginhost.Plugin, error) {
	t.Helper()
	hostOnce.Do(func() {
		theHost, hostErr = pluginhost.NewHost(context.Background(), pluginhost.Options{CacheDir: testplugins.CacheDir()})
	})
	if hostErr != nil {
		t.Fatal(hostErr)
	}
	wasm, err := os.ReadFile(testplugins.Path(t, pluginDir))
	if err != nil {
		t.Fatal(err)
	}
	// A generous timeout: the tests check behaviour, not speed, on a shared machine.
	return theHost.Load(context.Background(), pluginhost.Config{
		Name: filepath.Base(pluginDir), Wasm: wasm, Config: []byte(cfg), Timeout: 30 * time.Second,
	})
}

// eml reads testdata/name.
func eml(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var inbound = pluginhost.Envelope{
	Protocol: "smtp", Direction: "inbound", ClientIP: "192.0.2.10", ClientPort: 40000, HELO: "mx.other.test",
	MailFrom: "sales@other.test", HasMailFrom: true, Rcpts: []string{"alice@example.com"},
}

type outcome struct {
	res *pluginhost.Result
	out []byte // the message written with the call's changes
}

// run calls the message hook on data with the inbound envelope and fails the test if the call failed.
func run(t *testing.T, p *pluginhost.Plugin, data []byte) outcome {
	t.Helper()
	return runEnv(t, p, data, inbound)
}

// runEnv is run with the envelope env.
func runEnv(t *testing.T, p *pluginhost.Plugin, data []byte, env pluginhost.Envelope) outcome {
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
	return outcome{res, out.Bytes()}
}

// corpus lists the shared corpus of real and malformed mail (testdata/corpus at the repository root).
func corpus(t *testing.T) []string {
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
