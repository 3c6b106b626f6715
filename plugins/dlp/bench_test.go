package main

import (
	"bytes"
	"context"
	"strings"
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

// bigText returns a message with a text body of about n bytes: prose with order numbers, dates and phone
// numbers, a card-like number failing Luhn every 50 lines (about 200 per MiB, under the host's match limit),
// and one card number at the end.
func bigText(n int) []byte {
	prose := "Order 2024-03-11-00042 shipped to +49 30 1234 5678; the parcel left the depot at 10:42 today.\r\n"
	var b strings.Builder
	b.WriteString("From: a@other.test\r\nTo: b@example.com\r\nSubject: report\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for i := 0; b.Len() < n; i++ {
		if i%50 == 0 {
			b.WriteString("Invoice 1234567812345670 ref 4111 1111 1111 1112.\r\n")
		}
		b.WriteString(prose)
	}
	b.WriteString("Card 4111 1111 1111 1111.\r\n")
	return []byte(b.String())
}

func BenchmarkCardText(b *testing.B) { benchCall(b, "{}", eml(b, "card-text.eml"), inbound) }

func BenchmarkText1MiB(b *testing.B) { benchCall(b, "{}", bigText(1<<20), inbound) }
