//go:build !wasip1

package hosttest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

// These tests run a plugin built with the SDK (sdk/postern/testdata/sdkprobe, built in the SDK's module) in the
// real host.

func loadProbe(t testing.TB, config string) (*pluginhost.Plugin, error) {
	t.Helper()
	ctx := context.Background()
	host, err := pluginhost.NewHost(ctx, pluginhost.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close(ctx) })
	wasm, err := os.ReadFile(testplugins.Path(t, "sdk/postern/testdata/sdkprobe"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg []byte // nil: no configuration
	if config != "" {
		cfg = []byte(config)
	}
	return host.Load(ctx, pluginhost.Config{Name: "probe", Wasm: wasm, Config: cfg})
}

func messageInput(t testing.TB, subject string) *pluginhost.Input {
	t.Helper()
	raw := []byte("From: a@example.org\r\nSubject: " + subject + "\r\n\r\nbody\r\n")
	msg, err := message.Parse(bytes.NewReader(raw), int64(len(raw)), message.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	return &pluginhost.Input{Env: pluginhost.Envelope{Protocol: "smtp", ClientIP: "192.0.2.1"}, Msg: msg}
}

func logged(res *pluginhost.Result, text string) bool {
	for _, l := range res.Logs {
		if strings.Contains(l.Text, text) {
			return true
		}
	}
	return false
}

func TestHooksMaskHasOnlyRegisteredHandlers(t *testing.T) {
	p, err := loadProbe(t, "")
	if err != nil {
		t.Fatal(err)
	}
	// Every hook is exported; postern_hooks must limit them to the registered ones.
	want := pluginhost.HookSet(1<<pluginhost.HookConnect | 1<<pluginhost.HookMessage)
	if p.Hooks() != want {
		t.Errorf("Hooks() = %s, want %s", p.Hooks(), want)
	}
	res := p.Call(context.Background(), pluginhost.HookConnect, messageInput(t, "x"))
	if res.Err != nil || res.Tags["client.ip"] != "192.0.2.1" {
		t.Errorf("connect: %v, tags %v", res.Err, res.Tags)
	}
}

func TestHeaderLargerThanScratchBuffer(t *testing.T) {
	p, err := loadProbe(t, "{}")
	if err != nil {
		t.Fatal(err)
	}
	// 10,000 bytes grow the 4 KiB scratch buffer; 100,000 bytes take the one-off buffer past 64 KiB. The subject
	// is folded into lines of 1,000 bytes, under the message model's line limit; unfolded, the words are joined
	// by single spaces.
	for _, words := range []int{1, 10, 100} {
		word := strings.Repeat("s", 999)
		if words == 1 {
			word = "short"
		}
		folded := strings.TrimSuffix(strings.Repeat(word+"\r\n ", words), "\r\n ")
		subject := strings.Repeat(word+" ", words)
		subject = subject[:len(subject)-1]
		res := p.Call(context.Background(), pluginhost.HookMessage, messageInput(t, folded))
		want, key := subject, "subject"
		if len(subject) > 64 {
			want, key = strconv.Itoa(len(subject)), "subject.len"
		}
		if res.Err != nil || res.Tags[key] != want {
			t.Errorf("subject of %d bytes: err %v, %s = %.80q, want %.80q", len(subject), res.Err, key, res.Tags[key],
				want)
		}
	}
}

func TestHandlerErrorFailsTheCall(t *testing.T) {
	p, err := loadProbe(t, `{"fail": "error"}`)
	if err != nil {
		t.Fatal(err)
	}
	res := p.Call(context.Background(), pluginhost.HookMessage, messageInput(t, "x"))
	if !errors.Is(res.Err, pluginhost.ErrHookFailed) {
		t.Fatalf("Err = %v, want ErrHookFailed", res.Err)
	}
	if len(res.Tags) != 0 {
		t.Errorf("a failed call kept its tags: %v", res.Tags)
	}
	if !logged(res, "on_message: deliberate failure") {
		t.Errorf("the handler's error is not in the logs: %v", res.Logs)
	}
}

func TestPanicFailsTheCall(t *testing.T) {
	p, err := loadProbe(t, `{"fail": "panic"}`)
	if err != nil {
		t.Fatal(err)
	}
	res := p.Call(context.Background(), pluginhost.HookMessage, messageInput(t, "x"))
	if !errors.Is(res.Err, pluginhost.ErrHookFailed) {
		t.Fatalf("Err = %v, want ErrHookFailed (the SDK recovers the panic)", res.Err)
	}
	if !logged(res, "on_message: panic: assignment to entry in nil map") {
		t.Errorf("the panic is not in the logs: %v", res.Logs)
	}
	// The instance was discarded; the plugin still works.
	if res := p.Call(context.Background(), pluginhost.HookConnect, messageInput(t, "x")); res.Err != nil {
		t.Errorf("call after the panic: %v", res.Err)
	}
}

func TestInitErrorsFailTheLoad(t *testing.T) {
	for _, c := range []struct{ config, want string }{
		{`{"init_fail": true}`, "init_fail is set"},
		{`{"fial": "error"}`, `unknown key "fial" (known keys: fail, init_fail, parts)`},
		{`{"fail": 1}`, "fail: want a string, got number"},
		{`{} {}`, "data after the JSON document"},
	} {
		_, err := loadProbe(t, c.config)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %s: Load error %v, want it to contain %q", c.config, err, c.want)
		}
	}
}

// BenchmarkSDKHeaderTag is the SDK's cost on the host's hot path: one decoded header read and one tag.
func BenchmarkSDKHeaderTag(b *testing.B) {
	p, err := loadProbe(b, "")
	if err != nil {
		b.Fatal(err)
	}
	in := messageInput(b, "=?utf-8?q?Gr=C3=BC=C3=9Fe?=")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := p.Call(ctx, pluginhost.HookMessage, in); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// BenchmarkSDKParts lists the 6 parts of the conformance message: 1 + 6×10 host calls.
func BenchmarkSDKParts(b *testing.B) {
	p, err := loadProbe(b, `{"parts": true}`)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile("../conformance/testdata/conformance.eml")
	if err != nil {
		b.Fatal(err)
	}
	msg, err := message.Parse(bytes.NewReader(raw), int64(len(raw)), message.DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	in := &pluginhost.Input{Msg: msg}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := p.Call(ctx, pluginhost.HookMessage, in); res.Err != nil || res.Tags["parts"] != "6" {
			b.Fatal(res.Err, res.Tags)
		}
	}
}
