package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/postern/postern/internal/pluginharness"
	"github.com/postern/postern/proxy/pluginhost"
)

// The plugin's tests load the built plugin into the real plugin host (internal/pluginharness), run it on .eml
// files and check what the host records: verdict, tags, score, changes and the message written with them.

var harness = pluginharness.New("plugins/eicar")

func TestMain(m *testing.M) {
	code := m.Run()
	harness.Close()
	os.Exit(code)
}

// load returns the plugin loaded with the JSON configuration cfg.
func load(t *testing.T, cfg string) *pluginhost.Plugin { return harness.Load(t, cfg) }

// loadErr loads a new instance with cfg and returns the host's error; the caller closes the plugin.
func loadErr(t testing.TB, cfg string) (*pluginhost.Plugin, error) { return harness.LoadErr(t, cfg) }

// eml reads testdata/name. Messages holding the test string are stored as templates (name.tmpl) so that no
// anti-virus product on a developer's machine quarantines the repository; the string is put in here.
func eml(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if os.IsNotExist(err) {
		b, err = os.ReadFile(filepath.Join("testdata", name+".tmpl"))
	}
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte("@EICAR_BASE64@"), []byte(base64.StdEncoding.EncodeToString([]byte(eicarString))))
	return bytes.ReplaceAll(b, []byte("@EICAR@"), []byte(eicarString))
}

var inbound = pluginharness.Inbound

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
	o := pluginharness.Run(t, p, data, env)
	return outcome{o.Res, o.Out}
}

// corpus lists the shared corpus of real and malformed mail.
func corpus(t *testing.T) []string { return pluginharness.Corpus(t) }

// benchCall measures one message hook call of the plugin loaded with cfg on data (pluginharness.Harness.Bench).
func benchCall(b *testing.B, cfg string, data []byte, env pluginhost.Envelope) {
	harness.Bench(b, cfg, data, env)
}
