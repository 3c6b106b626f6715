package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/postern/postern/proxy/message"
)

// harness calls host functions directly, as a guest would, on a real guest memory: it controls every pointer and
// length, which a compiled guest makes awkward.
type harness struct {
	t   *testing.T
	mem api.Memory
	st  *callState
	top uint32
}

const (
	outBuf   = 192 << 10 // the output buffer the harness hands to functions
	outLimit = 64 << 10
)

func newHarness(t *testing.T, hook Hook, in *Input) *harness {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { _ = rt.Close(ctx) })
	mod, err := rt.InstantiateWithConfig(ctx, wasm(t, "empty"), wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	mod.Memory().Grow(3) // 256 KiB
	p := &Plugin{host: &Host{}, name: "harness", config: []byte(`{"greeting":"grüezi"}`)}
	st := &callState{}
	if in == nil {
		in = &Input{Env: testEnvelope()}
	}
	st.begin(p, &instance{}, hook, in)
	return &harness{t: t, mem: mod.Memory(), st: st, top: 16}
}

// str puts s into guest memory and returns its (ptr, len).
func (h *harness) str(s string) (uint64, uint64) {
	h.t.Helper()
	if !h.mem.WriteString(h.top, s) {
		h.t.Fatalf("harness memory full")
	}
	p := h.top
	h.top += uint32(len(s))
	return uint64(p), uint64(len(s))
}

func (h *harness) call(name string, args ...uint64) int32 {
	h.t.Helper()
	for i := range hostFuncs {
		if hf := &hostFuncs[i]; hf.name == name {
			if len(args) != len(hf.params) {
				h.t.Fatalf("%s takes %d arguments, got %d", name, len(hf.params), len(args))
			}
			stack := make([]uint64, max(1, len(args)))
			copy(stack, args)
			return hf.fn(frame{ctx: context.Background(), st: h.st, mem: h.mem, fn: name}, stack)
		}
	}
	h.t.Fatalf("no host function %s", name)
	return 0
}

// get calls a function whose last two arguments are (buf, limit), with the harness's buffer, and returns the
// result and what was written.
func (h *harness) get(name string, args ...uint64) (int32, string) {
	h.t.Helper()
	return h.getN(name, outLimit, args...)
}

func (h *harness) getN(name string, limit uint32, args ...uint64) (int32, string) {
	h.t.Helper()
	if limit > 0 {
		zero := make([]byte, limit)
		h.mem.Write(outBuf, zero) // so that a test can see what was not written
	}
	rc := h.call(name, append(args, outBuf, uint64(limit))...)
	if rc < 0 {
		return rc, ""
	}
	b, _ := h.mem.Read(outBuf, min(uint32(rc), limit))
	return rc, string(b)
}

// value is get for a function expected to succeed: it returns the value.
func (h *harness) value(name string, args ...uint64) string {
	h.t.Helper()
	rc, v := h.get(name, args...)
	if rc < 0 {
		h.t.Fatalf("%s: %d", name, rc)
	}
	if int(rc) != len(v) {
		h.t.Fatalf("%s: length %d, wrote %d", name, rc, len(v))
	}
	return v
}

// aborts checks that the function aborts the call for reason with a message containing detail.
func (h *harness) aborts(reason error, detail string, name string, args ...uint64) {
	h.t.Helper()
	defer func() {
		h.t.Helper()
		r := recover()
		ab, ok := r.(*abortError)
		if !ok {
			h.t.Fatalf("%s: want an abort, got %v", name, r)
		}
		if !errors.Is(ab, reason) || !strings.Contains(ab.Error(), detail) {
			h.t.Errorf("%s aborted with %q, want %v containing %q", name, ab, reason, detail)
		}
	}()
	h.call(name, args...)
}

func u(v int) uint64 { return uint64(uint32(int32(v))) }

func TestConfigGet(t *testing.T) {
	h := newHarness(t, HookConnect, nil)
	if v := h.value("config_get"); v != `{"greeting":"grüezi"}` {
		t.Errorf("config_get = %q", v)
	}
	// limit 0 asks for the length only; a short buffer gets a prefix and the full length.
	if rc, v := h.getN("config_get", 0); rc != 22 || v != "" {
		t.Errorf("length only: %d %q", rc, v)
	}
	if rc, v := h.getN("config_get", 5); rc != 22 || v != `{"gre` {
		t.Errorf("short buffer: %d %q", rc, v)
	}
	h.st.beginInit(h.st.p) // available in postern_init too
	if v := h.value("config_get"); !strings.HasPrefix(v, "{") {
		t.Errorf("config_get in init = %q", v)
	}
}

// fieldValue returns field_get's value, or its error code as text.
func fieldValue(h *harness, name string, index int) string {
	np, nl := h.str(name)
	rc, v := h.get("field_get", np, nl, u(index))
	if rc < 0 {
		return fmt.Sprint(rc)
	}
	return v
}

func TestFieldGet(t *testing.T) {
	env := testEnvelope()
	msg := parse(t, testMessage)
	for _, tc := range []struct {
		hook  Hook
		in    *Input
		field string
		index int
		want  string
	}{
		{HookConnect, &Input{Env: env}, "hook", 0, "connect"},
		{HookConnect, &Input{Env: env}, "protocol", 0, "smtp"},
		{HookConnect, &Input{Env: env}, "direction", 0, "inbound"},
		{HookConnect, &Input{Env: env}, "listener", 0, "mx"},
		{HookConnect, &Input{Env: env}, "client.ip", 0, "192.0.2.7"},
		{HookConnect, &Input{Env: env}, "client.port", 0, "40001"},
		{HookConnect, &Input{Env: env}, "client.port", 1, "-1"},
		{HookConnect, &Input{Env: env}, "client.helo", 0, "-3"}, // not given yet
		{HookMailFrom, &Input{Env: env}, "client.helo", 0, "client.example"},
		{HookConnect, &Input{Env: env}, "tls.version", 0, "TLS1.3"},
		{HookConnect, &Input{Env: env}, "tls.cipher", 0, "TLS_AES_128_GCM_SHA256"},
		{HookConnect, &Input{Env: env}, "auth.user", 0, "-3"}, // not authenticated yet
		{HookMailFrom, &Input{Env: env}, "auth.user", 0, ""},  // known not to be authenticated
		{HookConnect, &Input{Env: env}, "mail_from", 0, "-3"},
		{HookConnect, &Input{Env: env}, "rcpt.current", 0, "-3"},
		{HookConnect, &Input{Env: env}, "message.size", 0, "-3"},
		{HookConnect, &Input{Env: env}, "message.malformed", 0, "-3"},
		{HookConnect, &Input{Env: env}, "protocol", 1, "-1"},
		{HookConnect, &Input{Env: env}, "no.such.field", 0, "-1"},
		{HookConnect, &Input{Env: env}, "Protocol", 0, "-1"},
		{HookConnect, &Input{Env: Envelope{}}, "rcpt", 0, "-3"},
		{HookMailFrom, &Input{Env: Envelope{}}, "rcpt", 0, "-1"},
		{HookMailFrom, &Input{Env: env}, "hook", 0, "mail_from"},
		{HookMailFrom, &Input{Env: env}, "mail_from", 0, "sender@example.org"},
		{HookMailFrom, &Input{Env: Envelope{HasMailFrom: true}}, "mail_from", 0, ""},
		{HookRcptTo, &Input{Env: env, RcptCurrent: "carol@example.com"}, "rcpt.current", 0, "carol@example.com"},
		{HookRcptTo, &Input{Env: env}, "rcpt", 1, "bob@example.com"},
		{HookRcptTo, &Input{Env: env}, "rcpt", 2, "-1"},
		{HookMessage, &Input{Env: env, Msg: msg}, "message.size", 0, fmt.Sprint(len(testMessage))},
		{HookMessage, &Input{Env: env, Msg: msg}, "message.malformed", 0, msg.Defects()[0].String()},
		{HookMessage, &Input{Env: env, Msg: msg}, "message.malformed", len(msg.Defects()), "-1"},
		{HookMessage, &Input{Env: Envelope{Protocol: "pop3"}, Msg: msg}, "mail_from", 0, "-3"},
		{HookConnect, &Input{Env: Envelope{Protocol: "smtp", SMTPUTF8: true}}, "smtputf8", 0, "-3"},
		{HookMailFrom, &Input{Env: Envelope{HasMailFrom: true, SMTPUTF8: true}}, "smtputf8", 0, "1"},
		{HookMailFrom, &Input{Env: Envelope{HasMailFrom: true, SMTPUTF8: true}}, "smtputf8", 1, "-1"},
		{HookMailFrom, &Input{Env: Envelope{}}, "smtputf8", 0, "-3"},
		{HookRcptTo, &Input{Env: env}, "smtputf8", 0, "0"},
		{HookMessage, &Input{Env: env, Msg: msg}, "smtputf8", 0, "0"},
		{HookMessage, &Input{Env: Envelope{Protocol: "pop3"}, Msg: msg}, "smtputf8", 0, "-3"},
		{HookMessage, &Input{Env: Envelope{Protocol: "IMAP", SMTPUTF8: true, HasMailFrom: true}, Msg: msg}, "smtputf8", 0, "-3"},
		// Retrieval: no envelope, even if a session filled one in; the mailbox instead.
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "mail_from", 0, "-3"},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "rcpt", 0, "-3"},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "client.helo", 0, "-3"},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "auth.user", 0, "alice"},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "mailbox.user", 0, "alice"},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "mailbox.name", 0, "Archive/2026"},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "message.uid", 0, "4242"},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "message.uidvalidity", 0, "1700000000"},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "message.uidl", 0, "-3"}, // IMAP has none
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "message.internal_date", 0, "2026-01-02T14:04:05Z"},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "message.flags", 0, `\Seen`},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "message.flags", 1, "$Junk"},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "message.flags", 2, "-1"},
		{HookMessage, &Input{Env: retrievalEnvelope(), Msg: msg}, "command", 0, "fetch"},
		{HookConnect, &Input{Env: retrievalEnvelope()}, "command", 0, "-3"},
		{HookConnect, &Input{Env: retrievalEnvelope()}, "auth.user", 0, "-3"}, // before LOGIN
		{HookConnect, &Input{Env: retrievalEnvelope()}, "mailbox.user", 0, "-3"},
		{HookMessage, &Input{Env: Envelope{Protocol: "imap", Command: "append", Mailbox: "Sent"}, Msg: msg}, "message.uid", 0, "-3"},
		{HookMessage, &Input{Env: Envelope{Protocol: "imap", Command: "append"}, Msg: msg}, "message.internal_date", 0, "-3"},
		{HookMessage, &Input{Env: Envelope{Protocol: "imap", Command: "append"}, Msg: msg}, "message.flags", 0, "-1"},
		{HookMessage, &Input{Env: Envelope{Protocol: "pop3", UIDL: "abc.1", Mailbox: "INBOX", UID: 3}, Msg: msg}, "message.uidl", 0, "abc.1"},
		{HookMessage, &Input{Env: Envelope{Protocol: "pop3", UIDL: "abc.1", Mailbox: "INBOX", UID: 3}, Msg: msg}, "mailbox.name", 0, "-3"},
		{HookMessage, &Input{Env: Envelope{Protocol: "pop3", UIDL: "abc.1", Mailbox: "INBOX", UID: 3}, Msg: msg}, "message.uid", 0, "-3"},
		{HookMessage, &Input{Env: Envelope{Protocol: "pop3"}, Msg: msg}, "message.uidl", 0, "-3"},
		{HookMessage, &Input{Env: env, Msg: msg}, "mailbox.user", 0, "-3"}, // SMTP has recipients, not a mailbox
		{HookMessage, &Input{Env: env, Msg: msg}, "command", 0, "-3"},
	} {
		h := newHarness(t, tc.hook, tc.in)
		if got := fieldValue(h, tc.field, tc.index); got != tc.want {
			t.Errorf("%v: field_get(%q, %d) = %q, want %q", tc.hook, tc.field, tc.index, got, tc.want)
		}
	}
	h := newHarness(t, HookConnect, nil)
	h.st.beginInit(h.st.p)
	if got := fieldValue(h, "protocol", 0); got != "-3" {
		t.Errorf("field_get in postern_init = %s, want -3", got)
	}
}

func TestHeaderFunctions(t *testing.T) {
	h := newHarness(t, HookMessage, messageInput(t))
	hget := func(part int, name string, index, flags int) string {
		np, nl := h.str(name)
		rc, v := h.get("header_get", u(part), np, nl, u(index), u(flags))
		if rc < 0 {
			return fmt.Sprint(rc)
		}
		return v
	}
	for _, tc := range []struct {
		part         int
		name         string
		index, flags int
		want         string
	}{
		{0, "Subject", 0, 0, "=?iso-8859-1?q?Gr=FC=DFe?= aus Köln"},
		{0, "Subject", 0, 1, "Grüße aus Köln"},
		{0, "sUBJECT", 0, 1, "Grüße aus Köln"},
		{0, "From", 0, 1, "Jörg <joerg@example.org>"},
		{0, "X-Multi", 1, 0, "second"},
		{0, "X-Multi", 2, 0, "-1"},
		{0, "X-Folded", 0, 0, "one two"},
		{0, "X-Nope", 0, 0, "-1"},
		{0, "X:Bad", 0, 0, "-2"},
		{0, "Subject", 0, 2, "-2"}, // unknown flag
		{1, "Content-Transfer-Encoding", 0, 0, "quoted-printable"},
		{99, "Subject", 0, 0, "-2"},
		{-1, "Subject", 0, 0, "-2"},
	} {
		if got := hget(tc.part, tc.name, tc.index, tc.flags); got != tc.want {
			t.Errorf("header_get(%d, %q, %d, %d) = %q, want %q", tc.part, tc.name, tc.index, tc.flags, got, tc.want)
		}
	}
	if _, ok := h.st.in.headers[headerKey{0, "Subject", true}]; !ok {
		t.Error("header_get did not remember the decoded Subject for the next plugin of the chain")
	}
	for i := range maxCachedHeaders + 10 {
		hget(0, fmt.Sprint("X-Nope-", i), 0, 0)
	}
	if n := len(h.st.in.headers); n != maxCachedHeaders {
		t.Errorf("header cache holds %d lookups, want the bound %d", n, maxCachedHeaders)
	}
	all := h.value("header_all", 1)
	if all != "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n" {
		t.Errorf("header_all(1) = %q", all)
	}
	if rc, _ := h.get("header_all", 6); rc != errInvalid {
		t.Errorf("header_all(6) = %d", rc)
	}
	if rc := h.call("part_count"); rc != 6 {
		t.Errorf("part_count = %d", rc)
	}

	// Unavailable outside the message hook.
	c := newHarness(t, HookRcptTo, nil)
	np, nl := c.str("Subject")
	if rc, _ := c.get("header_get", 0, np, nl, 0, 0); rc != errUnavailable {
		t.Errorf("header_get at rcpt_to = %d", rc)
	}
	if rc, _ := c.get("header_all", 0); rc != errUnavailable {
		t.Errorf("header_all at rcpt_to = %d", rc)
	}
	if rc := c.call("part_count"); rc != errUnavailable {
		t.Errorf("part_count at rcpt_to = %d", rc)
	}
}

func TestPartField(t *testing.T) {
	h := newHarness(t, HookMessage, messageInput(t))
	pf := func(part int, name string) string {
		np, nl := h.str(name)
		rc, v := h.get("part_field", u(part), np, nl)
		if rc < 0 {
			return fmt.Sprint(rc)
		}
		return v
	}
	want := map[string]string{
		"0.parent": "-1", "0.depth": "0", "0.content_type": "multipart/mixed", "0.multipart": "1",
		"1.parent": "0", "1.depth": "1", "1.content_type": "text/plain", "1.charset": "iso-8859-1",
		"1.encoding": "quoted-printable", "1.disposition": "", "1.multipart": "0", "1.defects": "",
		"2.encoding": "7bit", "3.disposition": "attachment", "3.filename": "r.pdf", "3.size": "12",
		"5.charset": "x-no-such-charset", "0.no_such_attr": "-1", "6.size": "-2", "-1.size": "-2",
	}
	for k, w := range want {
		var part int
		var name string
		fmt.Sscanf(strings.Replace(k, ".", " ", 1), "%d %s", &part, &name)
		if got := pf(part, name); got != w {
			t.Errorf("part_field(%d, %q) = %q, want %q", part, name, got, w)
		}
	}
	p5, _ := h.st.in.Msg.Part(5)
	if got := pf(5, "defects"); len(p5.Defects) == 0 || got != p5.Defects[0].String() {
		t.Errorf("part_field(5, defects) = %q (defects %v)", got, p5.Defects)
	}
}

// TestPartsGet checks parts_get against part_field: the same value for every attribute of every part, in the
// documented encoding, and unavailable outside the message hook.
func TestPartsGet(t *testing.T) {
	h := newHarness(t, HookMessage, messageInput(t))
	rc, enc := h.get("parts_get")
	if rc < 0 || int(rc) != len(enc) {
		t.Fatalf("parts_get: %d (%d bytes read)", rc, len(enc))
	}
	b := []byte(enc)
	u32 := func() int {
		if len(b) < 4 {
			t.Fatalf("parts_get answer cut short")
		}
		v := int(binary.LittleEndian.Uint32(b))
		b = b[4:]
		return v
	}
	str := func() string {
		n := u32()
		if n > len(b) {
			t.Fatalf("parts_get value of %d bytes, %d left", n, len(b))
		}
		v := string(b[:n])
		b = b[n:]
		return v
	}
	n, k := u32(), u32()
	if n != int(h.call("part_count")) || n != 6 {
		t.Fatalf("parts_get lists %d parts, part_count says %d", n, h.call("part_count"))
	}
	var names []string
	for range k {
		names = append(names, str())
	}
	if strings.Join(names, " ") != "parent depth content_type charset encoding disposition filename filenames ambiguities derived incomplete size multipart defects" {
		t.Errorf("attributes %v", names)
	}
	for part := range n {
		for _, name := range names {
			got := str()
			np, nl := h.str(name)
			if _, want := h.get("part_field", u(part), np, nl); got != want {
				t.Errorf("part %d %s: parts_get %q, part_field %q", part, name, got, want)
			}
		}
	}
	if len(b) != 0 {
		t.Errorf("%d bytes after the last part", len(b))
	}
	if rc, _ := newHarness(t, HookRcptTo, nil).get("parts_get"); rc != errUnavailable {
		t.Errorf("parts_get at rcpt_to = %d", rc)
	}
}

func TestPartRead(t *testing.T) {
	in := messageInput(t)
	h := newHarness(t, HookMessage, in)
	read := func(part, mode, offset int, limit uint32) (int32, string) {
		return h.getN("part_read", limit, u(part), u(mode), u(offset))
	}
	text := "Grüße! My password is swordfish, PASSWORD swordfish.\r\n"
	if rc, v := read(1, modeText, 0, outLimit); int(rc) != len(text)-2 || v != text[:len(text)-2] {
		// The CRLF before the boundary belongs to the boundary (RFC 2046).
		t.Errorf("text: %d %q", rc, v)
	}
	if rc, v := read(1, modeText, 6, 5); rc != int32(len(text)-2) || v != "e! My" { // ü and ß take two bytes
		t.Errorf("text window: %d %q", rc, v)
	}
	if rc, v := read(1, modeText, 1000, 16); rc != int32(len(text)-2) || v != strings.Repeat("\x00", 16) {
		t.Errorf("past the end: %d %q", rc, v)
	}
	if rc, v := read(1, modeDecoded, 0, outLimit); rc != int32(len(text)-4) || v != "Gr\xfc\xdfe! My password is swordfish, PASSWORD swordfish." {
		t.Errorf("decoded: %d %q", rc, v)
	}
	if rc, v := read(1, modeRaw, 0, 5); rc != int32(len("Gr=FC=DFe! My password is swordfish, PASSWORD swordfish.")) || v != "Gr=FC" {
		t.Errorf("raw: %d %q", rc, v)
	}
	if rc, v := read(3, modeDecoded, 0, outLimit); v != "%PDF-1.4\n" || rc != 9 {
		t.Errorf("base64: %d %q", rc, v)
	}
	if rc, v := read(0, modeRaw, 0, 4); v != "\r\n--" && v != "--b\r" {
		t.Errorf("part 0 raw (the whole body): %d %q", rc, v)
	}
	for _, tc := range []struct {
		part, mode int
		want       int32
	}{
		{0, modeDecoded, errInvalid}, // multipart
		{0, modeText, errInvalid},
		{1, 7, errInvalid}, // mode
		{6, modeRaw, errInvalid},
		{-1, modeText, errInvalid},
		{4, modeDecoded, errDecode}, // unknown transfer encoding
		{5, modeText, errDecode},    // unknown charset
	} {
		if rc, _ := read(tc.part, tc.mode, 0, 16); rc != tc.want {
			t.Errorf("part_read(%d, %d) = %d, want %d", tc.part, tc.mode, rc, tc.want)
		}
	}
	if rc, v := read(5, modeDecoded, 0, outLimit); rc != 9 || v != "remove me" {
		t.Errorf("unknown charset, decoded: %d %q", rc, v)
	}
	// A small decoded content is decoded once and kept in the Input for the next reads and plugins; identity
	// content (part 2: 7bit UTF-8) is read in place.
	if c := in.contents[contentKey{1, modeText}]; c == nil || c.data == nil || in.cached < int64(len(c.data)) {
		t.Errorf("decoded content not kept in memory (%d bytes cached)", in.cached)
	}
	if rc, v := read(2, modeText, 3, 5); rc != 12 || v != "Hello" {
		t.Errorf("identity text: %d %q", rc, v)
	}
	if c := in.contents[contentKey{2, modeText}]; c == nil || c.data != nil || c.src == nil {
		t.Error("identity content was copied into memory")
	}

	if rc, v := h.getN("message_read", 16, 0); rc != int32(len(testMessage)) || v != testMessage[:16] {
		t.Errorf("message_read: %d %q", rc, v)
	}
	if rc, v := h.getN("message_read", 16, 1<<20); rc != int32(len(testMessage)) || v != strings.Repeat("\x00", 16) {
		t.Errorf("message_read past the end: %d %q", rc, v)
	}
	c := newHarness(t, HookConnect, nil)
	if rc, _ := c.get("part_read", 0, 0, 0); rc != errUnavailable {
		t.Errorf("part_read at connect: %d", rc)
	}
	if rc, _ := c.get("message_read", 0); rc != errUnavailable {
		t.Errorf("message_read at connect: %d", rc)
	}
}

func TestDecodeCacheBounded(t *testing.T) {
	in := messageInput(t)
	in.cached = decodeBudget // as if full
	h := newHarness(t, HookMessage, in)
	if rc, v := h.getN("part_read", 64, 1, modeText, 0); rc != 54 || !strings.HasPrefix(v, "Grüße! My password") {
		t.Errorf("part_read with the budget spent: %d %q", rc, v)
	}
	if c := in.contents[contentKey{1, modeText}]; c == nil || c.data != nil || in.cached != decodeBudget {
		t.Error("content kept in memory past the budget")
	}
	// Served again, through a stream, with the same answer.
	if rc, v := h.getN("part_read", 5, 1, modeText, 6); rc != 54 || v != "e! My" {
		t.Errorf("part_read window with the budget spent: %d %q", rc, v)
	}
}

func TestPatternFunctions(t *testing.T) {
	h := newHarness(t, HookMessage, messageInput(t))
	pp, pl := h.str("swordfish\n(?i)swordfish\n\nGr..e")
	handle := h.call("patterns_compile", pp, pl)
	if handle != 0 {
		t.Fatalf("patterns_compile = %d", handle)
	}
	if again := h.call("patterns_compile", pp, pl); again != handle {
		t.Errorf("the same set again got handle %d", again)
	}
	bp, bl := h.str("ok\na(b")
	if rc := h.call("patterns_compile", bp, bl); rc != errInvalid {
		t.Errorf("bad pattern: %d", rc)
	}
	if n := len(h.st.logs); n != 1 || !strings.Contains(h.st.logs[0].Text, `line 2: pattern "a(b": error parsing regexp`) ||
		h.st.logs[0].Level != slog.LevelWarn {
		t.Errorf("bad pattern log: %+v", h.st.logs)
	}

	// Text of part 1: "Grüße! My password is swordfish, PASSWORD swordfish." (ü and ß are two bytes each).
	want := "2 0 7\n0 24 33\n1 24 33\n0 44 53\n1 44 53\n"
	if v := h.value("part_match", 1, modeText, u(int(handle)), 0); v != want {
		t.Errorf("part_match = %q, want %q", v, want)
	}
	if v := h.value("part_match", 1, modeText, u(int(handle)), 2); v != "2 0 7\n0 24 33\n" {
		t.Errorf("part_match max 2 = %q", v)
	}
	// A short buffer gets the full length; the retry gets the same answer (from the call's cache).
	if rc, v := h.getN("part_match", 4, 1, modeText, u(int(handle)), 0); rc != int32(len(want)) || v != "2 0 " {
		t.Errorf("short buffer: %d %q", rc, v)
	}
	if rc, _ := h.get("part_match", 1, modeText, 5, 0); rc != errInvalid {
		t.Errorf("bad handle: %d", rc)
	}
	if rc, _ := h.get("part_match", 0, modeDecoded, u(int(handle)), 0); rc != errInvalid {
		t.Errorf("multipart decoded: %d", rc)
	}
	if rc, _ := h.get("part_match", 5, modeText, u(int(handle)), 0); rc != errDecode {
		t.Errorf("unknown charset: %d", rc)
	}
	if v := h.value("part_match", 0, modeRaw, u(int(handle)), 0); strings.Count(v, "\n") != 4 {
		t.Errorf("raw part 0 (whole body): %q", v)
	}

	sum := func(part, mode int) string {
		rc := h.call("part_sha256", u(part), u(mode), outBuf)
		if rc < 0 {
			return fmt.Sprint(rc)
		}
		b, _ := h.mem.Read(outBuf, 32)
		return hex.EncodeToString(b)
	}
	pdf := sha256.Sum256([]byte("%PDF-1.4\n"))
	if got := sum(3, modeDecoded); got != hex.EncodeToString(pdf[:]) {
		t.Errorf("part_sha256(3, decoded) = %s", got)
	}
	raw := sha256.Sum256([]byte("JVBERi0xLjQK"))
	if got := sum(3, modeRaw); got != hex.EncodeToString(raw[:]) {
		t.Errorf("part_sha256(3, raw) = %s", got)
	}
	for _, tc := range []struct{ part, mode, want int }{{0, modeText, -2}, {9, modeRaw, -2}, {5, modeText, -4}, {1, 3, -2}} {
		if got := sum(tc.part, tc.mode); got != fmt.Sprint(tc.want) {
			t.Errorf("part_sha256(%d, %d) = %s", tc.part, tc.mode, got)
		}
	}

	c := newHarness(t, HookConnect, nil)
	cp, cl := c.str("x")
	ch := c.call("patterns_compile", cp, cl) // compiling works in any hook (and in init)
	if ch < 0 {
		t.Fatalf("patterns_compile at connect: %d", ch)
	}
	if rc, _ := c.get("part_match", 0, 0, u(int(ch)), 0); rc != errUnavailable {
		t.Errorf("part_match at connect: %d", rc)
	}
	if rc := c.call("part_sha256", 0, 0, outBuf); rc != errUnavailable {
		t.Errorf("part_sha256 at connect: %d", rc)
	}
}

func TestPatternBudgets(t *testing.T) {
	h := newHarness(t, HookMessage, messageInput(t))
	for i := range maxSetsPerInstance {
		p, l := h.str(fmt.Sprintf("set%d", i))
		if rc := h.call("patterns_compile", p, l); rc != int32(i) {
			t.Fatalf("set %d: handle %d", i, rc)
		}
	}
	p, l := h.str("one too many")
	h.aborts(ErrBudget, "pattern budget exceeded (64 pattern sets per instance)", "patterns_compile", p, l)
	h.aborts(ErrBudget, "pattern budget exceeded", "patterns_compile", 0, maxPatternText+1)
	many := strings.Repeat("x\n", maxPatternsPerSet+1)
	mp, ml := h.str(many)
	h.top = 16
	if rc := h.call("patterns_compile", mp, ml); rc != errInvalid {
		t.Errorf("too many patterns in a set: %d", rc)
	}
}

func TestSetVerdict(t *testing.T) {
	long := strings.Repeat("x", 513)
	for _, tc := range []struct {
		kind, code int
		enh, text  string
		want       int32
		verdict    Verdict
	}{
		{0, 0, "", "", 0, Verdict{Kind: Accept}},
		{1, 0, "", "no", 0, Verdict{Kind: Reject, Code: 550, Enhanced: "5.7.1", Text: "no"}},
		{1, 554, "5.7.0", "rejected\tby kit", 0, Verdict{Kind: Reject, Code: 554, Enhanced: "5.7.0", Text: "rejected\tby kit"}},
		{2, 0, "", "greylisted", 0, Verdict{Kind: Tempfail, Code: 451, Enhanced: "4.7.1", Text: "greylisted"}},
		{2, 421, "4.3.2", "", 0, Verdict{Kind: Tempfail, Code: 421, Enhanced: "4.3.2"}},
		{3, 0, "", "", 0, Verdict{Kind: Discard}},
		{4, 0, "", "kit", 0, Verdict{Kind: Quarantine, Text: "kit"}},
		{1, 250, "", "x", errInvalid, Verdict{}},
		{1, 451, "", "x", errInvalid, Verdict{}},
		{2, 550, "", "x", errInvalid, Verdict{}},
		{1, 550, "4.7.1", "x", errInvalid, Verdict{}},
		{1, 550, "5.7", "x", errInvalid, Verdict{}},
		{1, 550, "5.7.1000", "x", errInvalid, Verdict{}},
		{1, 550, "5.x.1", "x", errInvalid, Verdict{}},
		{0, 250, "", "", errInvalid, Verdict{}},
		{3, 0, "5.7.1", "", errInvalid, Verdict{}},
		{2, 0, "", "bad\r\ntext", errInvalid, Verdict{}},
		{2, 0, "", "nul\x00", errInvalid, Verdict{}},
		{2, 0, "", "bad \xff utf-8", errInvalid, Verdict{}},
		{1, 0, "", long, errInvalid, Verdict{}},
		{5, 0, "", "", errInvalid, Verdict{}},
		{-1, 0, "", "", errInvalid, Verdict{}},
	} {
		h := newHarness(t, HookMessage, messageInput(t))
		ep, el := h.str(tc.enh)
		tp, tl := h.str(tc.text)
		rc := h.call("set_verdict", u(tc.kind), u(tc.code), ep, el, tp, tl)
		if rc != tc.want {
			t.Errorf("set_verdict(%d, %d, %q, %q) = %d, want %d", tc.kind, tc.code, tc.enh, tc.text, rc, tc.want)
			continue
		}
		want := tc.verdict
		if rc != 0 {
			want = Verdict{Kind: Accept} // unchanged
		}
		if h.st.verdict != want {
			t.Errorf("set_verdict(%d, %d, %q, %q): verdict %+v, want %+v", tc.kind, tc.code, tc.enh, tc.text, h.st.verdict, want)
		}
	}
	h := newHarness(t, HookConnect, nil)
	h.st.beginInit(h.st.p)
	if rc := h.call("set_verdict", 1, 0, 0, 0, 0, 0); rc != errUnavailable {
		t.Errorf("set_verdict in init: %d", rc)
	}
}

func TestTagsScoreLog(t *testing.T) {
	h := newHarness(t, HookRcptTo, nil)
	tag := func(k, v string) int32 {
		kp, kl := h.str(k)
		vp, vl := h.str(v)
		return h.call("tag_add", kp, kl, vp, vl)
	}
	for _, tc := range []struct {
		k, v string
		want int32
	}{
		{"dlp.card-1_x", "4111…1111", 0},
		{"k", "first", 0},
		{"k", "second", 0},
		{"bad key!", "v", errInvalid},
		{"", "v", errInvalid},
		{strings.Repeat("k", 65), "v", errInvalid},
		{strings.Repeat("k", 64), strings.Repeat("v", 1024), 0},
		{"long.value", strings.Repeat("x", 1025), errInvalid},
		{"utf8", "\xff", errInvalid},
	} {
		if rc := tag(tc.k, tc.v); rc != tc.want {
			t.Errorf("tag_add(%q, %d bytes) = %d, want %d", tc.k, len(tc.v), rc, tc.want)
		}
	}
	if h.st.tags["k"] != "second" || len(h.st.tags) != 3 {
		t.Errorf("tags %v", h.st.tags)
	}
	h.top = 16
	for i := len(h.st.tags); i < maxTags; i++ {
		if rc := tag(fmt.Sprint("t", i), "v"); rc != 0 {
			t.Fatalf("tag %d: %d", i, rc)
		}
		h.top = 16
	}
	if rc := tag("k", "replacing is free"); rc != 0 {
		t.Errorf("replacing a tag at the budget: %d", rc)
	}
	kp, kl := h.str("one.more")
	h.aborts(ErrBudget, "tag budget exceeded (256 tags)", "tag_add", kp, kl, 0, 0)

	score := func(f float64) int32 { return h.call("score_add", api.EncodeF64(f)) }
	if score(1.5) != 0 || score(-0.25) != 0 || h.st.score != 1.25 {
		t.Errorf("score %v", h.st.score)
	}
	if score(math.NaN()) != errInvalid || score(math.Inf(1)) != errInvalid || score(math.MaxFloat64) != 0 ||
		score(math.MaxFloat64) != errInvalid {
		t.Error("non-finite score accepted")
	}

	h.st.logs, h.st.logBytes = nil, 0
	for level, want := range map[int]slog.Level{-5: slog.LevelDebug, 0: slog.LevelDebug, 1: slog.LevelInfo, 2: slog.LevelWarn,
		3: slog.LevelError, 9: slog.LevelError} {
		p, l := h.str("line")
		h.st.logs = nil
		if rc := h.call("log", u(level), p, l); rc != 0 || len(h.st.logs) != 1 || h.st.logs[0].Level != want {
			t.Errorf("log level %d: %d %+v", level, rc, h.st.logs)
		}
	}
	p, l := h.str("forged\r\nlevel=ERROR \x1b[31m \xff\ttab")
	h.st.logs = nil
	h.call("log", 1, p, l)
	if got := h.st.logs[0].Text; got != "forged\uFFFD\uFFFDlevel=ERROR \uFFFD[31m \uFFFD\ttab" {
		t.Errorf("log text not cleaned: %q", got)
	}
}

func TestChanges(t *testing.T) {
	h := newHarness(t, HookMessage, messageInput(t))
	two := func(name, a, b string) int32 {
		ap, al := h.str(a)
		bp, bl := h.str(b)
		return h.call(name, ap, al, bp, bl)
	}
	one := func(name, a string) int32 {
		ap, al := h.str(a)
		return h.call(name, ap, al)
	}
	replace := func(part int, ctype, data string) int32 {
		cp, cl := h.str(ctype)
		dp, dl := h.str(data)
		return h.call("part_replace", u(part), cp, cl, dp, dl)
	}
	for _, tc := range []struct {
		what string
		rc   int32
		want int32
	}{
		{"header_add", two("header_add", "X-Postern", "yes"), 0},
		{"header_set", two("header_set", "X-Multi", "replaced"), 0},
		{"header_remove", one("header_remove", "X-Folded"), 0},
		{"subject_prefix", one("subject_prefix", "[EXT] "), 0},
		{"banner_add", two("banner_add", "Scanned.", "<p>Scanned.</p>"), 0},
		{"part_replace", replace(3, "text/plain", "replaced"), 0},
		{"part_remove", h.call("part_remove", 5), 0},
		{"rcpt_add", one("rcpt_add", "carol@example.net"), 0},
		{"header injection", two("header_add", "X-Evil", "a\r\nBcc: x@example.net"), errInvalid},
		{"bad name", two("header_add", "X:Bad", "v"), errInvalid},
		{"NUL", two("header_set", "X-Nul", "a\x00b"), errInvalid},
		{"protected field", two("header_set", "Content-Type", "text/plain"), errInvalid},
		{"remove root", h.call("part_remove", 0), errInvalid},
		{"remove missing part", h.call("part_remove", 99), errInvalid},
		{"replace multipart", replace(0, "text/plain", "x"), errInvalid},
		{"replace missing part", replace(99, "text/plain", "x"), errInvalid},
		{"bad recipient", one("rcpt_add", "<bad@example.net>"), errInvalid},
	} {
		if tc.rc != tc.want {
			t.Errorf("%s = %d, want %d", tc.what, tc.rc, tc.want)
		}
	}
	var ops []string
	for _, c := range h.st.changes.List() {
		ops = append(ops, string(c.Op))
	}
	if got := strings.Join(ops, ","); got != "add_header,set_header,remove_header,prefix_subject,append_banner,replace_part,remove_part,add_recipient" {
		t.Errorf("recorded changes: %s", got)
	}
	if r := h.st.changes.List()[5]; string(r.Content) != "replaced" {
		t.Errorf("replacement content %q", r.Content)
	}

	// Where changes are unavailable.
	for _, hook := range []Hook{HookConnect, HookMailFrom, HookRcptTo} {
		c := newHarness(t, hook, nil)
		np, nl := c.str("X-A")
		if rc := c.call("header_add", np, nl, np, nl); rc != errUnavailable {
			t.Errorf("header_add at %v: %d", hook, rc)
		}
		if rc := c.call("part_remove", 1); rc != errUnavailable {
			t.Errorf("part_remove at %v: %d", hook, rc)
		}
		want := int32(0)
		if hook == HookConnect {
			want = errUnavailable
		}
		rp, rl := c.str("dave@example.net")
		if rc := c.call("rcpt_add", rp, rl); rc != want {
			t.Errorf("rcpt_add at %v: %d, want %d", hook, rc, want)
		}
	}
	pop := newHarness(t, HookMessage, &Input{Env: Envelope{Protocol: "pop3"}, Msg: parse(t, testMessage)})
	rp, rl := pop.str("dave@example.net")
	if rc := pop.call("rcpt_add", rp, rl); rc != errUnavailable {
		t.Errorf("rcpt_add under pop3: %d", rc)
	}
}

func TestChangeBudgets(t *testing.T) {
	h := newHarness(t, HookMessage, messageInput(t))
	np, nl := h.str("X-A")
	vp, vl := h.str("v")
	for i := range maxChanges {
		if rc := h.call("header_add", np, nl, vp, vl); rc != 0 {
			t.Fatalf("change %d: %d", i, rc)
		}
	}
	h.aborts(ErrBudget, "change budget exceeded (1000 changes)", "header_add", np, nl, vp, vl)

	h = newHarness(t, HookMessage, messageInput(t))
	np, nl = h.str("X-A")
	big := strings.Repeat("v", maxHeaderValue)
	bp, bl := h.str(big)
	for range maxChangeBytes / (maxHeaderValue + 3) {
		if rc := h.call("header_add", np, nl, bp, bl); rc != 0 {
			t.Fatalf("big header: %d", rc)
		}
	}
	h.aborts(ErrBudget, "change budget exceeded (1048576 bytes)", "header_add", np, nl, bp, bl)
	h.aborts(ErrBudget, "change budget exceeded (header value of 65537 bytes, at most 65536)", "subject_prefix", bp, bl+1)
}

// TestOutOfRange checks every host function that takes a pointer: a range outside memory aborts the call and
// names the function, at every hook and whatever the result would have been.
func TestOutOfRange(t *testing.T) {
	const bad = 0xFFFF0000
	args := map[string][]uint64{
		"config_get":       {bad, 8},
		"field_get":        {bad, 4, 0, 0, 0},
		"header_get":       {0, 16, 4, 0, 0, bad, 8},
		"header_all":       {0, bad, 8},
		"part_field":       {0, bad, 4, 0, 0},
		"parts_get":        {bad, 8},
		"part_read":        {0, 0, 0, 256 << 10, 1},
		"message_read":     {0, 256<<10 - 1, 2},
		"patterns_compile": {bad, 4},
		"part_match":       {0, 0, 0, 0, bad, 8},
		"part_sha256":      {0, 0, 256<<10 - 31},
		"set_verdict":      {1, 0, bad, 5, 0, 0},
		"tag_add":          {16, 1, bad, 1},
		"log":              {1, 16, 1 << 31},
		"header_add":       {bad, 3, 0, 0},
		"header_set":       {16, 3, bad, 3},
		"header_remove":    {bad, 3},
		"subject_prefix":   {bad, 3},
		"banner_add":       {16, 3, bad, 3},
		"part_replace":     {1, bad, 3, 0, 0},
		"rcpt_add":         {bad, 3},
	}
	for _, hf := range hostFuncs {
		a, ok := args[hf.name]
		if !ok {
			if hf.name != "part_count" && hf.name != "score_add" && hf.name != "part_remove" {
				t.Errorf("no out-of-range case for %s", hf.name)
			}
			continue
		}
		for _, hook := range []Hook{HookConnect, HookMessage} {
			var in *Input
			if hook == HookMessage {
				in = messageInput(t)
			}
			h := newHarness(t, hook, in)
			h.aborts(ErrOutOfRange, "out of range pointer in "+hf.name+":", hf.name, a...)
		}
	}
}

func TestHostFuncsMatchABI(t *testing.T) {
	// Every function of ABI.md §3 and nothing else, so the doc and the host cannot drift apart.
	abi := []string{"config_get", "field_get", "header_get", "header_all", "part_count", "part_field", "parts_get", "part_read",
		"message_read", "patterns_compile", "part_match", "part_sha256", "set_verdict", "tag_add", "score_add", "log",
		"header_add", "header_set", "header_remove", "subject_prefix", "banner_add", "part_remove", "part_replace",
		"rcpt_add"}
	var have []string
	for _, hf := range hostFuncs {
		have = append(have, hf.name)
	}
	if strings.Join(have, " ") != strings.Join(abi, " ") {
		t.Errorf("host functions %v\nABI            %v", have, abi)
	}
}

var _ = message.ErrInvalid

// TestChangesCheckedAgainstMessage: a change the message cannot take is refused when it is made, and nothing is
// recorded, so the plugin can do without it and writing the message cannot fail later. A banner whose body part
// cannot be decoded is ERR_DECODE (the other half can still be added); a header change on a message whose header
// a limit cut short is ERR_INVALID.
func TestChangesCheckedAgainstMessage(t *testing.T) {
	const badBase64 = "From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=x-martian\r\nContent-Transfer-Encoding: base64\r\n\r\nSGk=\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n"
	h := newHarness(t, HookMessage, &Input{Env: testEnvelope(), Msg: parse(t, badBase64)})
	banner := func(text, html string) int32 {
		tp, tl := h.str(text)
		hp, hl := h.str(html)
		return h.call("banner_add", tp, tl, hp, hl)
	}
	if rc := banner("Scanned.", "<p>Scanned.</p>"); rc != errDecode {
		t.Errorf("banner on an undecodable text part = %d, want ERR_DECODE", rc)
	}
	if n := h.st.changes.Len(); n != 0 {
		t.Errorf("a refused banner was recorded: %v", h.st.changes.List())
	}
	if rc := banner("", "<p>Scanned.</p>"); rc != 0 {
		t.Errorf("HTML-only banner = %d", rc)
	}
	var out strings.Builder
	if _, err := h.st.in.Msg.WriteTo(&out, h.st.changes); err != nil || !strings.Contains(out.String(), "<p>hi</p>\r\n<p>Scanned.</p>") {
		t.Errorf("writing the accepted changes: %v\n%s", err, out.String())
	}

	// A header past the header limit: the message header is not known to its end, so no header change applies.
	long := "From: a@example.org\r\nX-Long: " + strings.Repeat("x", 200) + "\r\nSubject: s\r\n\r\nbody\r\n"
	m, err := message.Parse(strings.NewReader(long), int64(len(long)), message.Limits{MaxHeaderBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	h = newHarness(t, HookMessage, &Input{Env: testEnvelope(), Msg: m})
	np, nl := h.str("X-Postern")
	vp, vl := h.str("yes")
	if rc := h.call("header_add", np, nl, vp, vl); rc != errInvalid {
		t.Errorf("header_add on a cut header = %d, want ERR_INVALID", rc)
	}
	pp, pl := h.str("[EXT] ")
	if rc := h.call("subject_prefix", pp, pl); rc != errInvalid || h.st.changes.Len() != 0 {
		t.Errorf("subject_prefix on a cut header = %d, changes %v", rc, h.st.changes.List())
	}
}

// TestEvasionFields: every reading of an ambiguous message reaches the guest: every candidate file name, the
// ambiguities, derived parts (a message/rfc822 part in base64) with their raw header and content, and the bound
// that kept a reading from being indexed.
func TestEvasionFields(t *testing.T) {
	inner := "Subject: inner\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nMZ\r\n"
	raw := "From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Disposition: attachment; filename=\"a.txt\"; filename=\"a.vbs\"\r\n\r\nx\r\n" +
		"--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte(inner)) + "\r\n--b--\r\n"
	msg := parse(t, raw)
	h := newHarness(t, HookMessage, &Input{Env: testEnvelope(), Msg: msg})
	pf := func(part int, name string) string {
		np, nl := h.str(name)
		rc, v := h.get("part_field", u(part), np, nl)
		if rc < 0 {
			return fmt.Sprint(rc)
		}
		return v
	}
	if got := pf(1, "filenames"); got != "a.txt\na.vbs" {
		t.Errorf("filenames = %q", got)
	}
	if got := pf(1, "filename"); got != "a.txt" {
		t.Errorf("filename = %q", got)
	}
	if got := pf(1, "ambiguities"); !strings.HasPrefix(got, message.AmbiguousParameter+": ") {
		t.Errorf("ambiguities = %q", got)
	}
	if got := pf(0, "filenames"); got != "" {
		t.Errorf("part 0 filenames = %q", got)
	}
	if len(msg.Parts()) != 4 || pf(3, "derived") != message.DerivedDecoded || pf(3, "filename") != "evil.exe" || pf(3, "parent") != "2" {
		t.Fatalf("derived part: %d parts, %q %q %q", len(msg.Parts()), pf(3, "derived"), pf(3, "filename"), pf(3, "parent"))
	}
	if pf(2, "derived") != "" || pf(2, "incomplete") != "" {
		t.Errorf("part 2 derived %q incomplete %q", pf(2, "derived"), pf(2, "incomplete"))
	}
	if rc, v := h.get("header_all", 3); rc <= 0 || !strings.HasPrefix(v, "Subject: inner\r\n") {
		t.Errorf("header_all(3) = %d %q", rc, v)
	}
	if rc, v := h.getN("part_read", 16, 3, modeRaw, 0); rc != 4 || v != "MZ\r\n" {
		t.Errorf("part_read(3, raw) = %d %q", rc, v)
	}
	if got := fieldValue(h, "message.ambiguous", 0); !strings.HasPrefix(got, message.AmbiguousParameter+": ") {
		t.Errorf("message.ambiguous[0] = %q", got)
	}
	if got := fieldValue(h, "message.ambiguous", len(msg.Ambiguities())); got != "-1" {
		t.Errorf("message.ambiguous past the end = %q", got)
	}
	if got := fieldValue(h, "message.limit_exceeded", 0); got != "" {
		t.Errorf("message.limit_exceeded = %q", got)
	}
	h = newHarness(t, HookConnect, &Input{Env: testEnvelope()})
	if got := fieldValue(h, "message.ambiguous", 0); got != "-3" {
		t.Errorf("message.ambiguous at connect = %q", got)
	}
	// A reading past a bound: the part and the message say which.
	lim := message.DefaultLimits()
	lim.MaxDecodedBytes = 10
	msg, err := message.Parse(strings.NewReader(raw), int64(len(raw)), lim)
	if err != nil {
		t.Fatal(err)
	}
	h = newHarness(t, HookMessage, &Input{Env: testEnvelope(), Msg: msg})
	if got := pf(2, "incomplete"); got != message.KindDecodeLimit {
		t.Errorf("incomplete = %q", got)
	}
	if got := fieldValue(h, "message.limit_exceeded", 0); got != message.KindDecodeLimit {
		t.Errorf("message.limit_exceeded = %q", got)
	}
}
