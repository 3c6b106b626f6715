package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

// benchCall measures one message hook call of the plugin loaded with cfg on data: the plugin's own work plus
// the host's (decoding, matching), not parsing. Each iteration gets a fresh Input, as each message would, so
// decoded content is not reused across iterations.
func benchCall(b *testing.B, cfg string, data []byte, env pluginhost.Envelope) {
	p, err := loadErr(b, cfg)
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

func BenchmarkExternal(b *testing.B) {
	benchCall(b, `{"internal_domains":["example.com"]}`, eml(b, "external.eml"), inbound)
}

func BenchmarkInternal(b *testing.B) {
	benchCall(b, `{"internal_domains":["example.com"]}`, eml(b, "internal.eml"), env("bob@example.com", "alice@example.com"))
}
