// Package conformance is the ABI v1 conformance kit's runner: it runs a kit plugin (a module written with the
// SDK under test that reports what it observes as tags, see README.md) through the real plugin host on the
// fixed message, configuration and fixtures embedded here, and lists every way the results differ from
// expected.json. `postern plugin conformance KIT.wasm` runs it outside the repository; the repository's own kits
// (kit-go, kit-c) run it in this package's tests.
package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

//go:embed expected.json testdata/conformance.eml testdata/config.json testdata/expected-output.eml
var files embed.FS

type expectation struct {
	ABIVersion int                `json:"abi_version"`
	Message    string             `json:"message"`
	Config     string             `json:"config"`
	Patterns   []string           `json:"patterns"`
	Fixtures   map[string]fixture `json:"fixtures"`
}

type fixture struct {
	Hooks map[string]expectedHook `json:"hooks"`
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

// A Fixture is one session the kit is run through: the inputs of its hooks, in order.
type Fixture struct {
	Name  string
	Hooks []pluginhost.Hook
	input func(pluginhost.Hook, *message.Message) *pluginhost.Input
}

// Fixtures are the sessions of README.md: a submission (every SMTP hook, the envelope growing hook by hook, with
// only what is known at each: no HELO or authenticated user at connect), and a retrieval (an IMAP FETCH: connect,
// then the message with its mailbox, and no envelope).
var Fixtures = []Fixture{
	{Name: "submission", Hooks: []pluginhost.Hook{pluginhost.HookConnect, pluginhost.HookMailFrom,
		pluginhost.HookRcptTo, pluginhost.HookMessage}, input: submission},
	{Name: "retrieval", Hooks: []pluginhost.Hook{pluginhost.HookConnect, pluginhost.HookMessage}, input: retrieval},
}

func submission(h pluginhost.Hook, msg *message.Message) *pluginhost.Input {
	env := pluginhost.Envelope{
		Protocol: "submission", Direction: "outbound", Listener: "submission",
		ClientIP: "192.0.2.10", ClientPort: 49152,
		TLSVersion: "TLS1.3", TLSCipher: "TLS_AES_128_GCM_SHA256",
		UpstreamTLSVersion: "TLS1.2", UpstreamTLSCipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	}
	if h == pluginhost.HookConnect {
		return &pluginhost.Input{Env: env} // before EHLO and AUTH
	}
	env.HELO, env.AuthUser = "client.example.net", "alice"
	env.MailFrom, env.HasMailFrom, env.SMTPUTF8 = "sender@example.org", true, true
	switch h {
	case pluginhost.HookMailFrom:
		return &pluginhost.Input{Env: env}
	case pluginhost.HookRcptTo:
		env.Rcpts = []string{"alice@example.com"}
		return &pluginhost.Input{Env: env, RcptCurrent: "bob@example.com"}
	}
	env.Rcpts = []string{"alice@example.com", "bob@example.com"}
	return &pluginhost.Input{Env: env, Msg: msg}
}

func retrieval(h pluginhost.Hook, msg *message.Message) *pluginhost.Input {
	env := pluginhost.Envelope{
		Protocol: "imap", Direction: "retrieval", Listener: "imap",
		ClientIP: "192.0.2.20", ClientPort: 49153,
		TLSVersion: "TLS1.3", TLSCipher: "TLS_AES_128_GCM_SHA256",
		UpstreamTLSVersion: "TLS1.2", UpstreamTLSCipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	}
	if h == pluginhost.HookConnect {
		return &pluginhost.Input{Env: env} // before LOGIN
	}
	env.AuthUser, env.MailboxUser, env.Mailbox = "alice", "alice", "INBOX/Ärchiv"
	env.UID, env.UIDValidity, env.Command = 4242, 1700000000, "fetch"
	env.InternalDate = time.Date(2025, 11, 24, 10, 0, 5, 0, time.UTC)
	env.Flags = []string{`\Seen`, "$Label1"}
	return &pluginhost.Input{Env: env, Msg: msg}
}

// Result is what a kit run found.
type Result struct {
	// Failures lists every difference from expected.json, as "fixture/hook: what".
	Failures []string
	// Checks counts the checks compared.
	Checks int
}

func read(name string) ([]byte, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	return b, nil
}

func load() (*expectation, error) {
	b, err := read("expected.json")
	if err != nil {
		return nil, err
	}
	var exp expectation
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&exp); err != nil {
		return nil, fmt.Errorf("conformance: expected.json: %w", err)
	}
	if exp.ABIVersion != 1 {
		return nil, fmt.Errorf("conformance: expected.json is for ABI version %d", exp.ABIVersion)
	}
	for _, f := range Fixtures {
		for _, h := range f.Hooks {
			if _, ok := exp.Fixtures[f.Name].Hooks[h.String()]; !ok {
				return nil, fmt.Errorf("conformance: expected.json has no hook %s in fixture %s", h, f.Name)
			}
		}
	}
	return &exp, nil
}

// Run loads the kit module wasm into host under name and runs it through every fixture. An error means the kit
// could not be run at all (it does not load, or the kit's own data is broken); differences are in Result.
func Run(ctx context.Context, host *pluginhost.Host, name string, wasm []byte) (*Result, error) {
	exp, err := load()
	if err != nil {
		return nil, err
	}
	raw, err := read(exp.Message)
	if err != nil {
		return nil, err
	}
	cfg, err := read(exp.Config)
	if err != nil {
		return nil, err
	}
	wantOutput, err := read("testdata/expected-output.eml")
	if err != nil {
		return nil, err
	}
	p, err := host.Load(ctx, pluginhost.Config{Name: name, Wasm: wasm, Config: cfg})
	if err != nil {
		return nil, fmt.Errorf("conformance: loading the kit: %w", err)
	}
	defer p.Close(ctx)
	r := &Result{}
	for _, fx := range Fixtures {
		for _, h := range fx.Hooks {
			if !p.Hooks().Has(h) {
				r.fail(fx.Name, h, "the kit does not implement this hook (hooks: %s)", p.Hooks())
			}
		}
		// A fresh parse per fixture: nothing one session's calls cached can help the next.
		msg, err := message.Parse(bytes.NewReader(raw), int64(len(raw)), message.DefaultLimits())
		if err != nil {
			return nil, fmt.Errorf("conformance: the fixed message: %w", err)
		}
		for _, h := range fx.Hooks {
			want := exp.Fixtures[fx.Name].Hooks[h.String()]
			if sum := sha256.Sum256(wantOutput); h == pluginhost.HookMessage && hex.EncodeToString(sum[:]) != want.OutputSHA256 {
				return nil, fmt.Errorf("conformance: testdata/expected-output.eml does not have the output_sha256 of expected.json")
			}
			res := p.Call(ctx, h, fx.input(h, msg))
			r.checkHook(fx.Name, h, want, res)
			if h == pluginhost.HookMessage && res.Err == nil {
				r.checkOutput(fx.Name, msg, res, wantOutput)
			}
		}
	}
	return r, nil
}

func (r *Result) fail(fixture string, h pluginhost.Hook, format string, args ...any) {
	r.Failures = append(r.Failures, fixture+"/"+h.String()+": "+fmt.Sprintf(format, args...))
}

// checkHook compares one hook's result with the expectation, every difference by check name.
func (r *Result) checkHook(fx string, h pluginhost.Hook, want expectedHook, res *pluginhost.Result) {
	if res.Err != nil {
		var logs []string
		for _, l := range res.Logs {
			logs = append(logs, l.Level.String()+": "+l.Text)
		}
		r.fail(fx, h, "the call failed: %v (guest log: %s)", res.Err, strings.Join(logs, "; "))
		return
	}
	names := make([]string, 0, len(want.Tags))
	for name := range want.Tags {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		r.Checks++
		got, ok := res.Tags[name]
		switch {
		case !ok:
			r.fail(fx, h, "check %s: not reported, want %q", name, want.Tags[name])
		case got != want.Tags[name]:
			r.fail(fx, h, "check %s: got %q, want %q", name, got, want.Tags[name])
		}
	}
	extra := []string{}
	for name := range res.Tags {
		if _, ok := want.Tags[name]; !ok {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		r.fail(fx, h, "check %s: reported %q but not in expected.json", name, res.Tags[name])
	}

	v := res.Verdict
	r.Checks++
	if v.Kind.String() != want.Verdict.Kind || v.Code != want.Verdict.Code || v.Enhanced != want.Verdict.Enhanced ||
		v.Text != want.Verdict.Text {
		r.fail(fx, h, "verdict: got %s %d %q %q, want %s %d %q %q", v.Kind, v.Code, v.Enhanced, v.Text,
			want.Verdict.Kind, want.Verdict.Code, want.Verdict.Enhanced, want.Verdict.Text)
	}
	r.Checks++
	if res.Score != want.Score {
		r.fail(fx, h, "score: got %v, want %v", res.Score, want.Score)
	}
	list := res.Changes.List()
	if list == nil {
		list = []message.Change{} // no changes: [] in expected.json
	}
	gotChanges, err1 := json.Marshal(list)
	wantChanges, err2 := json.Marshal(want.Changes)
	r.Checks++
	if err1 != nil || err2 != nil || !sameJSON(gotChanges, wantChanges) {
		r.fail(fx, h, "changes:\n got  %s\n want %s", gotChanges, wantChanges)
	}
	var gotLogs [][2]string
	for _, l := range res.Logs {
		gotLogs = append(gotLogs, [2]string{strings.ToLower(l.Level.String()), l.Text})
	}
	r.Checks++
	if len(gotLogs) != len(want.Logs) || (len(gotLogs) > 0 && !reflect.DeepEqual(gotLogs, want.Logs)) {
		r.fail(fx, h, "logs:\n got  %q\n want %q", gotLogs, want.Logs)
	}
}

// sameJSON compares two JSON documents by value (key order and spacing do not matter).
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// checkOutput writes the message with the call's changes and compares it with testdata/expected-output.eml.
func (r *Result) checkOutput(fx string, msg *message.Message, res *pluginhost.Result, want []byte) {
	var out bytes.Buffer
	r.Checks++
	if _, err := msg.WriteTo(&out, res.Changes); err != nil {
		r.fail(fx, pluginhost.HookMessage, "writing the changes: %v", err)
		return
	}
	if !bytes.Equal(out.Bytes(), want) {
		r.fail(fx, pluginhost.HookMessage, "the output differs from testdata/expected-output.eml at %s",
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
