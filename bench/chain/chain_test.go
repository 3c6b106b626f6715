// Package chain benchmarks the four first-party plugins (eicar, attachment-guard, dlp, external-tag) as the demo
// configures them, one after the other on one Input as a policy chain runs them: the plugins' CPU per message.
//
//	POSTERN_PLUGIN_DIR=$PWD/build/plugins go test -run '^$' -bench . -benchmem -count 3 ./bench/chain/
package chain

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/evasion"
	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

// The demo's configurations (policies/demo.hcl).
var plugins = []struct{ name, config string }{
	{"eicar", `{}`},
	{"attachment-guard", `{"action":"reject"}`},
	{"dlp", `{"action":"tag","score_per_match":2}`},
	{"external-tag", `{"internal_domains":["example.com"]}`},
}

var inbound = pluginhost.Envelope{
	Protocol: "smtp", Direction: "inbound", ClientIP: "192.0.2.10", ClientPort: 40000, HELO: "mx.other.test",
	MailFrom: "sales@other.test", HasMailFrom: true, Rcpts: []string{"alice@example.com"},
}

// text10KiB is a clean plain-text message of 10 KiB without MIME structure, like smtp-source -l 10240 sends.
func text10KiB() []byte {
	var b strings.Builder
	b.WriteString("From: <sales@other.test>\r\nTo: <alice@example.com>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n" +
		"Message-Id: <bench.1@other.test>\r\nSubject: testing\r\n\r\n")
	for b.Len() < 10240 {
		b.WriteString("La de da de da 1. La de da de da 2. La de da de da 3. La de da de da 4. La de da\r\n")
	}
	return []byte(b.String())
}

// pdf10KiB is a clean multipart message of about 10 KiB: a text body and a 7 KiB PDF attachment in base64.
func pdf10KiB() []byte {
	pdf := []byte("%PDF-1.4\n" + strings.Repeat("1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n", 140) + "%%EOF\n")
	enc := base64.StdEncoding.EncodeToString(pdf)
	var body strings.Builder
	for len(enc) > 76 {
		body.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	body.WriteString(enc + "\r\n")
	return []byte("From: Partner Sales <sales@other.test>\r\nTo: alice@example.com\r\nSubject: Quarterly report\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat("Hello Alice, the report is attached.\r\n", 20) +
		"--b\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + body.String() + "--b--\r\n")
}

func load(b *testing.B) []*pluginhost.Plugin {
	host, err := pluginhost.NewHost(context.Background(), pluginhost.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { host.Close(context.Background()) })
	var ps []*pluginhost.Plugin
	for _, pl := range plugins {
		wasm, err := os.ReadFile(testplugins.Path(b, "plugins/"+pl.name))
		if err != nil {
			b.Fatal(err)
		}
		p, err := host.Load(context.Background(), pluginhost.Config{Name: pl.name, Wasm: wasm, Config: []byte(pl.config), Timeout: 30 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

func parse(b *testing.B, raw []byte) *message.Message {
	m, err := message.Parse(bytes.NewReader(raw), int64(len(raw)), message.DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// run calls every plugin of ps on one fresh Input per message, as a chain does.
func run(b *testing.B, ps []*pluginhost.Plugin, msgs []*message.Message) {
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		for _, m := range msgs {
			in := &pluginhost.Input{Env: inbound, Msg: m}
			for _, p := range ps {
				if res := p.Call(context.Background(), pluginhost.HookMessage, in); res.Err != nil {
					b.Fatal(res.Err)
				}
			}
		}
	}
	// CPU of the whole process, the Go runtime's background work (GC) included, per message.
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*len(msgs)), "cpu-ns/msg")
	}
}

// BenchmarkChain runs the four plugins on a clean 10 KiB message: plain text (text), and text with a PDF
// attachment (pdf); each plugin alone on the same messages (text/eicar, ...); and the whole evasion corpus
// (evasion, per message: every one of them hides the EICAR file or an executable's name).
func BenchmarkChain(b *testing.B) {
	ps := load(b)
	corpus := evasion.Cases()
	hostile := make([]*message.Message, len(corpus))
	for i, c := range corpus {
		hostile[i] = parse(b, c.Raw)
	}
	for _, m := range []struct {
		name string
		raw  []byte
	}{{"text", text10KiB()}, {"pdf", pdf10KiB()}} {
		msg := parse(b, m.raw)
		b.Run(m.name, func(b *testing.B) {
			b.SetBytes(int64(len(m.raw)))
			run(b, ps, []*message.Message{msg})
		})
		for i := range ps {
			b.Run(m.name+"/"+plugins[i].name, func(b *testing.B) { run(b, ps[i:i+1], []*message.Message{msg}) })
		}
	}
	b.Run("evasion", func(b *testing.B) { run(b, ps, hostile) })
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
