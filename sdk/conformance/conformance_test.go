// Package conformance_test runs every SDK's kit plugin through the real plugin host on a fixed message,
// envelope and configuration, and compares what each kit observed with expected.json. See README.md.
package conformance_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

// kits are the SDKs under test: a new SDK adds its kit here.
var kits = []struct{ name, dir string }{
	{"kit-go", "sdk/conformance/kit-go"},
	{"kit-c", "sdk/conformance/kit-c"},
}

type expectation struct {
	ABIVersion int                     `json:"abi_version"`
	Message    string                  `json:"message"`
	Config     string                  `json:"config"`
	Patterns   []string                `json:"patterns"`
	Hooks      map[string]expectedHook `json:"hooks"`
}

type expectedHook struct {
	Tags    map[string]string `json:"tags"`
	Verdict struct {
		Kind     string `json:"kind"`
		Code     int    `json:"code"`
		Enhanced string `json:"enhanced"`
		Text     string `json:"text"`
	} `json:"verdict"`
	Score        float64           `json:"score"`
	Changes      []json.RawMessage `json:"changes"`
	Logs         [][2]string       `json:"logs"`
	OutputSHA256 string            `json:"output_sha256"`
}

// The envelope of README.md: every hook sees the same client, the SMTP envelope grows hook by hook.
func inputs(msg *message.Message) map[pluginhost.Hook]*pluginhost.Input {
	env := pluginhost.Envelope{
		Protocol: "submission", Direction: "outbound", Listener: "submission",
		ClientIP: "192.0.2.10", ClientPort: 49152, HELO: "client.example.net",
		TLSVersion: "TLS1.3", TLSCipher: "TLS_AES_128_GCM_SHA256",
		UpstreamTLSVersion: "TLS1.2", UpstreamTLSCipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", AuthUser: "alice",
	}
	connect := env
	mailFrom := env
	mailFrom.MailFrom, mailFrom.HasMailFrom, mailFrom.SMTPUTF8 = "sender@example.org", true, true
	rcptTo := mailFrom
	rcptTo.Rcpts = []string{"alice@example.com"}
	full := mailFrom
	full.Rcpts = []string{"alice@example.com", "bob@example.com"}
	return map[pluginhost.Hook]*pluginhost.Input{
		pluginhost.HookConnect:  {Env: connect},
		pluginhost.HookMailFrom: {Env: mailFrom},
		pluginhost.HookRcptTo:   {Env: rcptTo, RcptCurrent: "bob@example.com"},
		pluginhost.HookMessage:  {Env: full, Msg: msg},
	}
}

var hooks = []pluginhost.Hook{pluginhost.HookConnect, pluginhost.HookMailFrom, pluginhost.HookRcptTo,
	pluginhost.HookMessage}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadExpectation(t *testing.T) *expectation {
	t.Helper()
	var exp expectation
	dec := json.NewDecoder(bytes.NewReader(readFile(t, "expected.json")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&exp); err != nil {
		t.Fatalf("expected.json: %v", err)
	}
	if exp.ABIVersion != 1 {
		t.Fatalf("expected.json is for ABI version %d", exp.ABIVersion)
	}
	for _, h := range hooks {
		if _, ok := exp.Hooks[h.String()]; !ok {
			t.Fatalf("expected.json has no hook %q", h)
		}
	}
	return &exp
}

func TestConformance(t *testing.T) {
	exp := loadExpectation(t)
	raw := readFile(t, exp.Message)
	cfg := readFile(t, exp.Config)
	wantOutput := readFile(t, "testdata/expected-output.eml")
	if sum := sha256.Sum256(wantOutput); hex.EncodeToString(sum[:]) != exp.Hooks["message"].OutputSHA256 {
		t.Fatalf("testdata/expected-output.eml does not have the output_sha256 of expected.json")
	}

	ctx := context.Background()
	host, err := pluginhost.NewHost(ctx, pluginhost.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(ctx)

	for _, kit := range kits {
		t.Run(kit.name, func(t *testing.T) {
			wasm := readFile(t, testplugins.Path(t, kit.dir))
			p, err := host.Load(ctx, pluginhost.Config{Name: kit.name, Wasm: wasm, Config: cfg})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			defer p.Close(ctx)
			for _, h := range hooks {
				if !p.Hooks().Has(h) {
					t.Errorf("the kit does not implement hook %s (hooks: %s)", h, p.Hooks())
				}
			}
			// A fresh parse per kit: nothing one kit's calls cached can help the next.
			msg, err := message.Parse(bytes.NewReader(raw), int64(len(raw)), message.DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			in := inputs(msg)
			for _, h := range hooks {
				res := p.Call(ctx, h, in[h])
				checkHook(t, h, exp.Hooks[h.String()], res)
				if h == pluginhost.HookMessage && res.Err == nil {
					checkOutput(t, msg, res, wantOutput)
				}
			}
		})
	}
}

// checkHook compares one hook's result with the expectation and reports every difference by check name.
func checkHook(t *testing.T, h pluginhost.Hook, want expectedHook, res *pluginhost.Result) {
	t.Helper()
	if res.Err != nil {
		t.Errorf("%s: the call failed: %v", h, res.Err)
		for _, l := range res.Logs {
			t.Logf("%s: guest log %s: %s", h, l.Level, l.Text)
		}
		return
	}
	names := make([]string, 0, len(want.Tags))
	for name := range want.Tags {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		got, ok := res.Tags[name]
		switch {
		case !ok:
			t.Errorf("%s: check %s: not reported, want %q", h, name, want.Tags[name])
		case got != want.Tags[name]:
			t.Errorf("%s: check %s: got %q, want %q", h, name, got, want.Tags[name])
		}
	}
	for name, got := range res.Tags {
		if _, ok := want.Tags[name]; !ok {
			t.Errorf("%s: check %s: reported %q but not in expected.json", h, name, got)
		}
	}

	v := res.Verdict
	if v.Kind.String() != want.Verdict.Kind || v.Code != want.Verdict.Code || v.Enhanced != want.Verdict.Enhanced ||
		v.Text != want.Verdict.Text {
		t.Errorf("%s: verdict: got %s %d %q %q, want %s %d %q %q", h, v.Kind, v.Code, v.Enhanced, v.Text,
			want.Verdict.Kind, want.Verdict.Code, want.Verdict.Enhanced, want.Verdict.Text)
	}
	if res.Score != want.Score {
		t.Errorf("%s: score: got %v, want %v", h, res.Score, want.Score)
	}

	list := res.Changes.List()
	if list == nil {
		list = []message.Change{} // no changes: [] in expected.json
	}
	gotChanges, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	wantChanges, err := json.Marshal(want.Changes)
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, gotChanges, wantChanges) {
		t.Errorf("%s: changes:\ngot  %s\nwant %s", h, gotChanges, wantChanges)
	}

	var gotLogs [][2]string
	for _, l := range res.Logs {
		gotLogs = append(gotLogs, [2]string{strings.ToLower(l.Level.String()), l.Text})
	}
	if len(gotLogs) != len(want.Logs) || (len(gotLogs) > 0 && !reflect.DeepEqual(gotLogs, want.Logs)) {
		t.Errorf("%s: logs:\ngot  %q\nwant %q", h, gotLogs, want.Logs)
	}
}

// sameJSON compares two JSON documents by value (key order and spacing do not matter).
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(va, vb)
}

// checkOutput writes the message with the call's changes and compares it with testdata/expected-output.eml.
func checkOutput(t *testing.T, msg *message.Message, res *pluginhost.Result, want []byte) {
	t.Helper()
	var out bytes.Buffer
	if _, err := msg.WriteTo(&out, res.Changes); err != nil {
		t.Errorf("message: writing the changes: %v", err)
		return
	}
	if !bytes.Equal(out.Bytes(), want) {
		// Kept after the test (unlike t.TempDir) so that it can be diffed.
		f, err := os.CreateTemp("", "postern-conformance-*.eml")
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Write(out.Bytes())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("message: the output differs from testdata/expected-output.eml (written to %s):\n%s", f.Name(),
			lineDiff(want, out.Bytes()))
	}
}

// lineDiff shows the first differing line of two outputs, with its number, enough to find the problem.
func lineDiff(want, got []byte) string {
	wl, gl := bytes.SplitAfter(want, []byte("\n")), bytes.SplitAfter(got, []byte("\n"))
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g []byte
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if !bytes.Equal(w, g) {
			return "line " + strconv.Itoa(i+1) + ":\n  want " + quote(w) + "\n  got  " + quote(g)
		}
	}
	return "(same lines)"
}

func quote(b []byte) string {
	if b == nil {
		return "(end of output)"
	}
	return strconv.Quote(string(b))
}
