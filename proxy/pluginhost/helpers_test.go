package pluginhost

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/message"
)

// testMessage is a small multipart message: part 0 multipart/mixed, 1 text/plain (quoted-printable, latin-1),
// 2 text/html, 3 a base64 attachment, 4 a part in an unknown transfer encoding, 5 a part in an unknown charset.
var testMessage = strings.ReplaceAll(`From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>
To: alice@example.com
Subject: =?iso-8859-1?q?Gr=FC=DFe?= aus Köln
X-Multi: first
X-Multi:   second  
X-Folded: one
 two
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Gr=FC=DFe! My password is swordfish, PASSWORD swordfish.
--b
Content-Type: text/html; charset=utf-8

<p>Hello</p>
--b
Content-Type: application/pdf
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="r.pdf"

JVBERi0xLjQK
--b
Content-Type: application/octet-stream
Content-Transfer-Encoding: x-martian

!!!not base64!!!
--b
Content-Type: text/plain; charset=x-no-such-charset

remove me
--b--
`, "\n", "\r\n")

func parse(t testing.TB, raw string) *message.Message {
	t.Helper()
	m, err := message.Parse(strings.NewReader(raw), int64(len(raw)), message.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testEnvelope() Envelope {
	return Envelope{
		Protocol: "smtp", Direction: "inbound", Listener: "mx",
		ClientIP: "192.0.2.7", ClientPort: 40001, HELO: "client.example",
		TLSVersion: "TLS1.3", TLSCipher: "TLS_AES_128_GCM_SHA256", AuthUser: "",
		MailFrom: "sender@example.org", HasMailFrom: true,
		Rcpts: []string{"alice@example.com", "bob@example.com"},
	}
}

// retrievalEnvelope is an IMAP FETCH whose session (wrongly) also carries SMTP envelope values: availability comes
// from the protocol and hook, not from what is set.
func retrievalEnvelope() Envelope {
	return Envelope{
		Protocol: "imap", Direction: "retrieval", Listener: "imap",
		ClientIP: "192.0.2.8", ClientPort: 40002, HELO: "stale.example", AuthUser: "alice",
		MailFrom: "stale@example.org", HasMailFrom: true, Rcpts: []string{"stale@example.com"},
		MailboxUser: "alice", Mailbox: "Archive/2026", UID: 4242, UIDValidity: 1700000000,
		InternalDate: time.Date(2026, 1, 2, 15, 4, 5, 0, time.FixedZone("CET", 3600)),
		Flags:        []string{`\Seen`, "$Junk"}, Command: "fetch",
	}
}

func messageInput(t testing.TB) *Input {
	return &Input{Env: testEnvelope(), Msg: parse(t, testMessage)}
}

func newHost(t testing.TB) *Host {
	t.Helper()
	h, err := NewHost(context.Background(), Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

// wasm returns a committed test module from testdata (a .wat's .wasm) or, for a folder, a built Go guest.
func wasm(t testing.TB, name string) []byte {
	t.Helper()
	path := filepath.Join("testdata", name+".wasm")
	if fi, err := os.Stat(filepath.Join("testdata", name)); err == nil && fi.IsDir() {
		path = testplugins.Path(t, "proxy/pluginhost/testdata/"+name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func load(t testing.TB, h *Host, name string, edit func(*Config)) *Plugin {
	t.Helper()
	cfg := Config{Name: name, Wasm: wasm(t, name)}
	if edit != nil {
		edit(&cfg)
	}
	p, err := h.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func call(t testing.TB, p *Plugin, hook Hook, in *Input) *Result {
	t.Helper()
	if in == nil {
		in = &Input{Env: testEnvelope()}
	}
	res := p.Call(context.Background(), hook, in)
	if res == nil {
		t.Fatal("Call returned nil")
	}
	if res.Changes == nil {
		t.Fatal("Result.Changes is nil")
	}
	return res
}

// wantFailure checks that res failed for reason with a message containing detail, and that the failure dropped
// everything the call set.
func wantFailure(t testing.TB, res *Result, reason error, detail string) {
	t.Helper()
	if res.Err == nil {
		t.Fatalf("call succeeded with %+v; want failure %q", res.Verdict, detail)
	}
	if !errors.Is(res.Err, reason) {
		t.Errorf("error %q is not %v", res.Err, reason)
	}
	if !strings.Contains(res.Err.Error(), detail) {
		t.Errorf("error %q does not contain %q", res.Err, detail)
	}
	if !strings.HasPrefix(res.Err.Error(), `plugin "`+res.Plugin+`": `) {
		t.Errorf("error %q does not name the plugin %q", res.Err, res.Plugin)
	}
	if res.Verdict != (Verdict{Kind: Tempfail, Code: 451, Enhanced: "4.7.1", Text: "message filter temporarily unavailable"}) {
		t.Errorf("verdict %+v, want the default on_error tempfail", res.Verdict)
	}
	if res.Tags != nil || res.Score != 0 || res.Changes.Len() != 0 {
		t.Errorf("failed call kept tags %v, score %v, %d changes", res.Tags, res.Score, res.Changes.Len())
	}
}

func wantOK(t testing.TB, res *Result) {
	t.Helper()
	if res.Err != nil {
		t.Fatalf("call failed: %v", res.Err)
	}
}

// eventually polls cond until it holds or a generous bound passes (background work, not timing, is tested).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("never happened: %s", what)
}
