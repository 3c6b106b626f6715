// Package csdk_test tests the C SDK (postern.h and postern_json.h) by building a harness plugin,
// testdata/sdktest/sdktest.c, and running it under wazero against a fake "postern" host module that records
// every call. It does not need proxy/pluginhost: it checks what the helpers pass to the host and what they leave in
// the guest's buffers, byte by byte.
package csdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/postern/postern/internal/testplugins"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// fake is the host side: canned data in, a log of calls out.
type fake struct {
	config    string
	fields    map[string][]string // a nil slice means ERR_UNAVAILABLE
	headers   map[string][]string // lower-case name
	headerErr int32               // when non-zero, header_get returns it
	attrs     map[string]string
	calls     []string
	limits    []uint32 // the limit of every buffer-filling call, in order
}

type harness struct {
	t   *testing.T
	ctx context.Context
	f   *fake
	mod api.Module
	in  uint32
	out uint32
}

func (h *harness) mem() api.Memory { return h.mod.Memory() }

func str(m api.Module, ptr, n uint32) string {
	b, ok := m.Memory().Read(ptr, n)
	if !ok {
		panic(fmt.Sprintf("out of range: %d+%d", ptr, n))
	}
	return string(b)
}

// put follows the ABI's output-buffer rule: write min(len, limit) bytes, return the full length.
func (f *fake) put(m api.Module, buf, limit uint32, v string) int32 {
	f.limits = append(f.limits, limit)
	w := v
	if uint32(len(w)) > limit {
		w = w[:limit]
	}
	if len(w) > 0 && !m.Memory().Write(buf, []byte(w)) {
		panic("out of range buffer")
	}
	return int32(len(v))
}

func (f *fake) host(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder("postern")
	fn := func(name string, f any) { b.NewFunctionBuilder().WithFunc(f).Export(name) }
	fn("config_get", func(_ context.Context, m api.Module, buf, limit uint32) int32 {
		return f.put(m, buf, limit, f.config)
	})
	fn("field_get", func(_ context.Context, m api.Module, np, nl, index, buf, limit uint32) int32 {
		vals, ok := f.fields[str(m, np, nl)]
		switch {
		case !ok:
			return -1
		case vals == nil:
			return -3
		case int(index) >= len(vals):
			return -1
		}
		return f.put(m, buf, limit, vals[index])
	})
	fn("header_get", func(_ context.Context, m api.Module, part int32, np, nl, index, flags, buf, limit uint32) int32 {
		name := str(m, np, nl)
		f.calls = append(f.calls, fmt.Sprintf("header_get(%d,%q,%d,%d,%d)", part, name, index, flags, limit))
		if f.headerErr != 0 {
			return f.headerErr
		}
		vals := f.headers[strings.ToLower(name)]
		if int(index) >= len(vals) {
			return -1
		}
		return f.put(m, buf, limit, vals[index])
	})
	fn("part_field", func(_ context.Context, m api.Module, part int32, np, nl, buf, limit uint32) int32 {
		v, ok := f.attrs[str(m, np, nl)]
		if !ok {
			return -1
		}
		return f.put(m, buf, limit, v)
	})
	rec := func(name string, n int) {
		// Functions taking n (ptr, len) string pairs and returning 0.
		switch n {
		case 1:
			fn(name, func(_ context.Context, m api.Module, p, l uint32) int32 {
				f.calls = append(f.calls, fmt.Sprintf("%s(%q)", name, str(m, p, l)))
				return 0
			})
		case 2:
			fn(name, func(_ context.Context, m api.Module, p1, l1, p2, l2 uint32) int32 {
				f.calls = append(f.calls, fmt.Sprintf("%s(%q,%q)", name, str(m, p1, l1), str(m, p2, l2)))
				return 0
			})
		}
	}
	rec("tag_add", 2)
	rec("header_add", 2)
	rec("header_set", 2)
	rec("header_remove", 1)
	rec("subject_prefix", 1)
	rec("banner_add", 2)
	rec("rcpt_add", 1)
	fn("patterns_compile", func(_ context.Context, m api.Module, p, l uint32) int32 {
		f.calls = append(f.calls, fmt.Sprintf("patterns_compile(%q)", str(m, p, l)))
		return 5
	})
	fn("score_add", func(_ context.Context, d float64) int32 {
		f.calls = append(f.calls, fmt.Sprintf("score_add(%g)", d))
		return 0
	})
	fn("log", func(_ context.Context, m api.Module, level, p, l uint32) int32 {
		f.calls = append(f.calls, fmt.Sprintf("log(%d,%q)", level, str(m, p, l)))
		return 0
	})
	fn("set_verdict", func(_ context.Context, m api.Module, kind, code, ep, el, tp, tl uint32) int32 {
		f.calls = append(f.calls, fmt.Sprintf("set_verdict(%d,%d,%q,%q)", kind, code, str(m, ep, el), str(m, tp, tl)))
		return 0
	})
	fn("part_remove", func(_ context.Context, part int32) int32 {
		f.calls = append(f.calls, fmt.Sprintf("part_remove(%d)", part))
		return 0
	})
	fn("part_replace", func(_ context.Context, m api.Module, part int32, cp, cl, dp, dl uint32) int32 {
		f.calls = append(f.calls, fmt.Sprintf("part_replace(%d,%q,%q)", part, str(m, cp, cl), str(m, dp, dl)))
		return 0
	})
	_, err := b.Instantiate(ctx)
	return err
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := load(t, testplugins.Path(t, "sdk/c/testdata/sdktest"), &fake{})
	h.in = uint32(h.call("in_ptr"))
	h.out = uint32(h.call("out_ptr"))
	return h
}

// load instantiates a built module against the fake host f and checks its ABI version.
func load(t *testing.T, path string, f *fake) *harness {
	t.Helper()
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	t.Cleanup(func() { r.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	h := &harness{t: t, ctx: ctx, f: f}
	if err := h.f.host(ctx, r); err != nil {
		t.Fatal(err)
	}
	h.mod, err = r.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		t.Fatal(err)
	}
	if v := h.call("postern_abi_version"); v != 1 {
		t.Fatalf("postern_abi_version() = %d, want 1", v)
	}
	return h
}

func (h *harness) call(name string, args ...uint64) int32 {
	h.t.Helper()
	fn := h.mod.ExportedFunction(name)
	if fn == nil {
		h.t.Fatalf("no export %s", name)
	}
	res, err := fn.Call(h.ctx, args...)
	if err != nil {
		h.t.Fatalf("%s: %v", name, err)
	}
	if len(res) == 0 {
		return 0
	}
	return int32(res[0])
}

// setIn writes s into the harness's input buffer at off (NUL-terminated) and returns off.
func (h *harness) setIn(off uint32, s string) uint32 {
	h.t.Helper()
	if !h.mem().Write(h.in+off, append([]byte(s), 0)) {
		h.t.Fatal("input too long")
	}
	return off
}

// outBytes returns the first n bytes of the output buffer.
func (h *harness) outBytes(n uint32) string {
	b, _ := h.mem().Read(h.out, n)
	return string(b)
}

// outString returns the NUL-terminated string in the output buffer.
func (h *harness) outString() string {
	b, _ := h.mem().Read(h.out, 4096)
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		h.t.Fatal("output is not NUL-terminated")
	}
	return string(b[:i])
}

func u(v int32) uint64 { return api.EncodeI32(v) }

// TestWantsExport: POSTERN_WANTS defines the postern_wants export (ABI §2.2).
func TestWantsExport(t *testing.T) {
	h := newHarness(t)
	if got := h.call("postern_wants"); got != 1 {
		t.Errorf("postern_wants() = %d, want POSTERN_WANT_FILES (1)", got)
	}
}

func TestHeaderCopiesTerminatesAndReportsFullLength(t *testing.T) {
	h := newHarness(t)
	h.f.headers = map[string][]string{"subject": {"first", "Hello, world"}}
	h.setIn(0, "Subject")
	for _, c := range []struct {
		cap   uint32
		limit uint32 // what the helper must ask the host for
		out   string // the bytes after the call, up to and including the byte after the NUL
	}{
		{0, 0, "XX"}, // nothing written at all
		{1, 0, "\x00X"},
		{5, 4, "Hell\x00X"},
		{12, 11, "Hello, worl\x00X"},
		{13, 12, "Hello, world\x00X"},
		{64, 63, "Hello, world\x00X"},
	} {
		h.f.calls, h.f.limits = nil, nil
		if got := h.call("t_header", u(0), u(1), u(1), uint64(c.cap)); got != 12 {
			t.Errorf("cap %d: result %d, want the full length 12", c.cap, got)
		}
		if got := h.outBytes(uint32(len(c.out))); got != c.out {
			t.Errorf("cap %d: buffer %q, want %q", c.cap, got, c.out)
		}
		want := fmt.Sprintf(`header_get(0,"Subject",1,1,%d)`, c.limit)
		if len(h.f.calls) != 1 || h.f.calls[0] != want {
			t.Errorf("cap %d: host saw %v, want [%s]", c.cap, h.f.calls, want)
		}
	}
	// An error leaves an empty string, not stale bytes.
	if got := h.call("t_header", u(0), u(2), u(0), 16); got != -1 {
		t.Errorf("missing index: result %d, want -1", got)
	}
	if got := h.outBytes(2); got != "\x00X" {
		t.Errorf("missing index: buffer %q, want an empty string", got)
	}
	h.f.headerErr = -3
	if got := h.call("t_header", u(0), u(0), u(0), 16); got != -3 {
		t.Errorf("unavailable: result %d, want -3", got)
	}
}

func TestConfigFieldAndPartAttr(t *testing.T) {
	h := newHarness(t)
	h.f.config = `{"a":1}`
	h.f.fields = map[string][]string{"rcpt": {"a@x.example", "b@x.example"}, "mail_from": nil}
	h.f.attrs = map[string]string{"content_type": "text/plain"}

	if got := h.call("t_config", 4); got != 7 || h.outString() != `{"a` {
		t.Errorf("config cap 4: %d %q", got, h.outString())
	}
	h.setIn(0, "rcpt")
	if got := h.call("t_field", 1, 64); got != 11 || h.outString() != "b@x.example" {
		t.Errorf("field rcpt[1]: %d %q", got, h.outString())
	}
	if got := h.call("t_field", 2, 64); got != -1 || h.outString() != "" {
		t.Errorf("field rcpt[2]: %d %q, want -1 and an empty string", got, h.outString())
	}
	h.setIn(0, "mail_from")
	if got := h.call("t_field", 0, 64); got != -3 {
		t.Errorf("unavailable field: %d, want -3", got)
	}
	h.setIn(0, "content_type")
	if got := h.call("t_part_attr", u(1), 5); got != 10 || h.outString() != "text" {
		t.Errorf("part attr cap 5: %d %q", got, h.outString())
	}
	h.setIn(0, "nope")
	if got := h.call("t_part_attr", u(1), 5); got != -1 {
		t.Errorf("unknown attr: %d, want -1", got)
	}
}

// postern_part_filename walks the host's list of candidate names; on a host without the list, "filename" is the
// only name.
func TestPartFilename(t *testing.T) {
	h := newHarness(t)
	h.f.attrs = map[string]string{"filenames": "a.txt\na.vbs\nlast.exe", "filename": "a.txt"}
	for i, want := range []string{"a.txt", "a.vbs", "last.exe"} {
		if got := h.call("t_part_filename", u(1), uint64(i), 64); got != int32(len(want)) || h.outString() != want {
			t.Errorf("name %d: %d %q, want %q", i, got, h.outString(), want)
		}
	}
	if got := h.call("t_part_filename", u(1), 3, 64); got != -1 {
		t.Errorf("past the last name: %d, want -1", got)
	}
	if got := h.call("t_part_filename", u(1), 0, 8); got != -2 {
		t.Errorf("a list longer than the buffer: %d, want -2", got)
	}
	h.f.attrs = map[string]string{"filename": "old.exe"}
	if got := h.call("t_part_filename", u(1), 0, 64); got != 7 || h.outString() != "old.exe" {
		t.Errorf("old host, name 0: %d %q", got, h.outString())
	}
	if got := h.call("t_part_filename", u(1), 1, 64); got != -1 {
		t.Errorf("old host, name 1: %d, want -1", got)
	}
	h.f.attrs = map[string]string{"filenames": "", "filename": ""}
	if got := h.call("t_part_filename", u(1), 0, 64); got != -1 {
		t.Errorf("no name: %d, want -1", got)
	}
}

func TestPartAttrInt(t *testing.T) {
	h := newHarness(t)
	h.setIn(0, "size")
	for _, c := range []struct {
		value string
		ret   int32
		out   string // the parsed value, or 7777 when the helper must not touch it
	}{
		{"12345", 0, "12345"},
		{"0", 0, "0"},
		{"-1", 0, "-1"},
		{"9223372036854775807", 0, "9223372036854775807"},
		{"", -2, "7777"},
		{"-", -2, "7777"},
		{"12a", -2, "7777"},
		{" 1", -2, "7777"},
		{"123456789012345678901234567890", -2, "7777"},
	} {
		h.f.attrs = map[string]string{"size": c.value}
		if got := h.call("t_part_attr_int", u(0)); got != c.ret || h.outString() != c.out {
			t.Errorf("%q: result %d value %s, want %d %s", c.value, got, h.outString(), c.ret, c.out)
		}
	}
	h.f.attrs = nil
	if got := h.call("t_part_attr_int", u(0)); got != -1 {
		t.Errorf("absent attribute: %d, want -1 passed through", got)
	}
}

func TestHeaderCountStopsAtMax(t *testing.T) {
	h := newHarness(t)
	h.setIn(0, "From")
	h.f.headers = map[string][]string{"from": {"a", "b", "c"}}
	for _, c := range []struct {
		max   uint32
		want  int32
		calls int
	}{{0, 0, 0}, {1, 1, 1}, {2, 2, 2}, {3, 3, 3}, {10, 3, 4}} {
		h.f.calls = nil
		if got := h.call("t_header_count", uint64(c.max)); got != c.want || len(h.f.calls) != c.calls {
			t.Errorf("max %d: %d after %d host calls, want %d after %d", c.max, got, len(h.f.calls), c.want, c.calls)
		}
		for _, call := range h.f.calls {
			if !strings.HasSuffix(call, ",0)") {
				t.Errorf("counting must ask for lengths only (limit 0): %s", call)
			}
		}
	}
	h.f.headerErr = -3
	if got := h.call("t_header_count", 5); got != -3 {
		t.Errorf("host error: %d, want -3 passed through", got)
	}
}

func TestTagInt(t *testing.T) {
	h := newHarness(t)
	for _, v := range []int64{0, 7, -7, 42, 1000000, math.MaxInt64, math.MinInt64} {
		h.f.calls = nil
		h.call("t_tag_int", api.EncodeI64(v))
		want := fmt.Sprintf("tag_add(%q,%q)", "n", strconv.FormatInt(v, 10))
		if len(h.f.calls) != 1 || h.f.calls[0] != want {
			t.Errorf("%d: %v, want %s", v, h.f.calls, want)
		}
	}
}

func TestLiteralAndStringHelpers(t *testing.T) {
	h := newHarness(t)
	h.call("t_lit")
	if want := `header_get(0,"Subject",0,1,0)`; len(h.f.calls) != 1 || h.f.calls[0] != want {
		t.Errorf("POSTERN_LIT: %v, want %s (no NUL in the length)", h.f.calls, want)
	}
	h.f.calls = nil
	if bad := h.call("t_calls"); bad != 0 {
		t.Errorf("t_calls reported a failed helper: %d", bad)
	}
	want := []string{
		`tag_add("k","v")`,
		`tag_add("empty","")`,
		`score_add(1.5)`,
		`log(1,"hello")`,
		`log(2,"")`,
		`log(0,"d")`,
		`log(2,"w")`,
		`log(3,"e")`,
		`set_verdict(0,0,"","")`,
		`set_verdict(1,0,"","")`,
		`set_verdict(1,554,"5.7.0","no")`,
		`set_verdict(2,0,"","later")`,
		`set_verdict(3,0,"","")`,
		`set_verdict(4,0,"","held")`,
		`header_add("X-A","1")`,
		`header_set("X-B","")`,
		`header_remove("X-C")`,
		`subject_prefix("[P] ")`,
		`banner_add("text","")`,
		`part_replace(2,"text/plain","abc")`,
		`rcpt_add("a@b.example")`,
		`part_remove(3)`,
		`patterns_compile("a\nb")`,
	}
	if strings.Join(h.f.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("host calls:\n%s\nwant:\n%s", strings.Join(h.f.calls, "\n"), strings.Join(want, "\n"))
	}
}

// parse parses doc in the guest and returns the root type, or -1 and the error text.
func (h *harness) parse(doc string) (int32, string) {
	h.t.Helper()
	if !h.mem().Write(h.in, []byte(doc)) {
		h.t.Fatal("document too long")
	}
	r := h.call("t_json_parse", uint64(len(doc)))
	if r < 0 {
		return r, h.outString()
	}
	return r, ""
}

// query walks path in the last parsed document and returns the type and rendering.
func (h *harness) query(path string, cap uint32) (int32, string) {
	h.t.Helper()
	off := h.setIn(32768, path)
	r := h.call("t_json_query", uint64(off), uint64(cap))
	return r, h.outString()
}

const (
	jNone = iota
	jNull
	jFalse
	jTrue
	jNumber
	jString
	jArray
	jObject
)

func TestJSONErrors(t *testing.T) {
	h := newHarness(t)
	deep := strings.Repeat("[", 64) + strings.Repeat("]", 64)
	tooDeep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	for _, c := range []struct{ doc, err string }{
		{"", "unexpected end of document at byte 0"},
		{"   ", "unexpected end of document at byte 3"},
		{"{", "expected a string key at byte 1"},
		{`{"a"}`, "expected ':' at byte 4"},
		{`{"a":}`, "unexpected character at byte 5"},
		{`{"a":1,}`, "expected a string key at byte 7"},
		{`{"a":1 "b":2}`, "expected ',' or '}' at byte 7"},
		{`[1 2]`, "expected ',' or ']' at byte 3"},
		{`[1,]`, "unexpected character at byte 3"},
		{`{a:1}`, "expected a string key at byte 1"},
		{`{"a":tru}`, "unexpected word at byte 5"},
		{`{"a":nul}`, "unexpected word at byte 5"},
		{`01`, "unexpected data after the document at byte 1"},
		{`-`, "bad number at byte 1"},
		{`1.`, "bad number at byte 2"},
		{`1e`, "bad number at byte 2"},
		{`1e+`, "bad number at byte 3"},
		{`+1`, "unexpected character at byte 0"},
		{`.5`, "unexpected character at byte 0"},
		{`"abc`, "unterminated string at byte 4"},
		{"\"a\tb\"", "control character in string at byte 2"},
		{`"\x"`, "bad escape at byte 1"},
		{`"\u12G4"`, "bad \\u escape at byte 1"},
		{`"\u12"`, "bad \\u escape at byte 1"},
		{"\"\xff\"", "invalid UTF-8 at byte 1"},
		{"\"\xc0\xaf\"", "invalid UTF-8 at byte 1"},     // overlong '/'
		{"\"\xed\xa0\x80\"", "invalid UTF-8 at byte 1"}, // a surrogate
		{"\"\xf4\x90\x80\x80\"", "invalid UTF-8 at byte 1"},
		{"\"\xe2\x82\"", "invalid UTF-8 at byte 1"}, // cut short
		{`{} {}`, "unexpected data after the document at byte 3"},
		{`{}x`, "unexpected data after the document at byte 2"},
		{tooDeep, "nested too deeply at byte 64"},
	} {
		if r, msg := h.parse(c.doc); r != -1 || msg != c.err {
			t.Errorf("%q: %d %q, want error %q", c.doc, r, msg, c.err)
		}
	}
	if r, msg := h.parse(deep); r != jArray {
		t.Errorf("64 levels: %d %q, want an array", r, msg)
	}
	// The error text is cut to its buffer and stays terminated.
	h.parse("{")
	h.call("t_json_error_text", 9)
	if got := h.outBytes(10); got != "expected\x00X" {
		t.Errorf("error text cut to 9 bytes: %q", got)
	}
	h.call("t_json_error_text", 0)
	if got := h.outBytes(1); got != "X" {
		t.Errorf("error text with no room wrote %q", got)
	}
}

func TestJSONValues(t *testing.T) {
	h := newHarness(t)
	doc := ` { "greeting" : "Gr\u00fcezi, kit \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t",
		"limits": {"max_matches": 2, "ratio": -1.25e2, "big": 9223372036854775808, "neg": -9223372036854775808},
		"words": ["swordfish", "köln", [], {}],
		"flags": [true, false, null],
		"dup": 1, "dup": 2,
		"lone": "\ud800x",
		"nul": "a\u0000b",
		"empty": ""
	} `
	if r, msg := h.parse(doc); r != jObject {
		t.Fatalf("parse: %d %s", r, msg)
	}
	for _, c := range []struct {
		path string
		typ  int32
		out  string
	}{
		{"greeting", jString, "s:Grüezi, kit 😀 \"q\" \\ / \b\f\n\r\t"},
		{"limits/max_matches", jNumber, "i:2"},
		{"limits/ratio", jNumber, "d:-125"},
		{"limits/big", jNumber, "d:9.2233720368547758e+18"}, // past int64: only a double
		{"limits/neg", jNumber, "i:-9223372036854775808"},
		{"limits/missing", jNone, ""},
		{"limits/#len", jObject, "len:4"},
		{"words/#len", jArray, "len:4"},
		{"words/0", jString, "s:swordfish"},
		{"words/1", jString, "s:köln"},
		{"words/2", jArray, "[]"},
		{"words/2/#len", jArray, "len:0"},
		{"words/3", jObject, "{}"},
		{"words/4", jNone, ""},
		{"flags/0", jTrue, "b:1"},
		{"flags/1", jFalse, "b:0"},
		{"flags/2", jNull, "null"},
		{"dup", jNumber, "i:1"}, // the first member wins
		{"lone", jString, "s:\uFFFDx"},
		{"nul", jString, "s:a"}, // the NUL is inside; the length says 3 (below)
		{"empty", jString, "s:"},
		{"greeting/x", jNone, ""}, // a member of a string
		{"words/x", jNone, ""},    // a name in an array
		{"#len", jObject, "len:9"},
	} {
		typ, out := h.query(c.path, 4000)
		if typ != c.typ || out != c.out {
			t.Errorf("%s: %d %q, want %d %q", c.path, typ, out, c.typ, c.out)
		}
	}
	// postern_json_string reports the full decoded length and cuts at the buffer, NUL included.
	off := h.setIn(32768, "greeting")
	if n := h.call("t_json_query", uint64(off), 6); n != jString || h.outString() != "s:Grüe" {
		t.Errorf("cut string: %d %q", n, h.outString())
	}
	// Member lookup decodes escapes in keys; postern_json_eq compares decoded text.
	h.parse(`{"k\u00e9y": "caf\u00e9", "a": "abc"}`)
	if typ, out := h.query("kéy", 100); typ != jString || out != "s:café" {
		t.Errorf("escaped key: %d %q", typ, out)
	}
	for _, c := range []struct {
		key, s string
		eq     int32
	}{{"kéy", "café", 1}, {"kéy", "caf", 0}, {"kéy", "cafés", 0}, {"a", "abc", 1}, {"a", "", 0}, {"missing", "", 0}} {
		q := h.setIn(32768, c.key)
		s := h.setIn(40000, c.s)
		if got := h.call("t_json_eq", uint64(q), uint64(s)); got != c.eq {
			t.Errorf("eq(%s, %q) = %d, want %d", c.key, c.s, got, c.eq)
		}
	}
	if got := h.call("t_json_misuse"); got != 9 {
		t.Errorf("accessors on a NONE value: %d of 9 refused", got)
	}
}

// TestJSONAgreesWithEncodingJSON checks the validator against Go's on random documents and random corruptions of
// them, and that every string of a random object decodes to what Go decodes.
func TestJSONAgreesWithEncodingJSON(t *testing.T) {
	h := newHarness(t)
	rng := rand.New(rand.NewSource(1))
	alphabet := []string{"a", "é", "😀", "\"", "\\", "/", "\n", "\t", "\u0001", "\u2028", " ", "\uFFFD", "z"}
	randString := func() string {
		var b strings.Builder
		for i := rng.Intn(8); i > 0; i-- {
			b.WriteString(alphabet[rng.Intn(len(alphabet))])
		}
		return b.String()
	}
	var randValue func(depth int) any
	randValue = func(depth int) any {
		switch k := rng.Intn(7); {
		case depth > 4 || k == 0:
			return randString()
		case k == 1:
			return rng.NormFloat64() * math.Pow(10, float64(rng.Intn(40)-20))
		case k == 2:
			return rng.Int63n(1<<40) - 1<<39
		case k == 3:
			return rng.Intn(2) == 0
		case k == 4:
			return nil
		case k == 5:
			a := make([]any, rng.Intn(4))
			for i := range a {
				a[i] = randValue(depth + 1)
			}
			return a
		default:
			m := map[string]any{}
			for i := rng.Intn(4); i > 0; i-- {
				m[randString()] = randValue(depth + 1)
			}
			return m
		}
	}
	agree, corrupt := 0, 0
	for i := 0; i < 400; i++ {
		v := randValue(0)
		doc, _ := json.Marshal(v)
		if rng.Intn(2) == 0 {
			doc, _ = json.MarshalIndent(v, " ", "\t")
		}
		if r, msg := h.parse(string(doc)); r < 0 {
			t.Fatalf("valid document refused: %s\n%s", msg, doc)
		}
		agree++
		// Strings: every member of an object decodes as Go decodes it.
		if m, ok := v.(map[string]any); ok {
			for k, val := range m {
				s, ok := val.(string)
				if !ok || k == "" || strings.Contains(k, "/") || strings.HasPrefix(k, "#") || strings.ContainsRune(k, 0) ||
					strings.ContainsRune(s, 0) || len(k) > 200 {
					continue
				}
				if typ, out := h.query(k, 4000); typ != jString || out != "s:"+s {
					t.Errorf("member %q: %d %q, want %q\n%s", k, typ, out, s, doc)
				}
			}
		}
		// Corruptions: delete, duplicate or replace one byte; the verdicts must match Go's.
		for j := 0; j < 4 && len(doc) > 0; j++ {
			bad := append([]byte(nil), doc...)
			p := rng.Intn(len(bad))
			switch rng.Intn(3) {
			case 0:
				bad = append(bad[:p], bad[p+1:]...)
			case 1:
				bad = append(bad[:p+1], bad[p:]...)
			default:
				bad[p] = "{}[],:\"\\0-e.tfn \x01"[rng.Intn(17)]
			}
			if !utf8.Valid(bad) {
				continue // encoding/json does not check UTF-8; postern_json does (tested above)
			}
			r, msg := h.parse(string(bad))
			if (r >= 0) != json.Valid(bad) {
				t.Errorf("%q: postern_json says %d %q, encoding/json valid=%v", bad, r, msg, json.Valid(bad))
			}
			corrupt++
		}
	}
	t.Logf("%d random documents, %d corruptions compared", agree, corrupt)
}

// TestReadmeExample builds the plugin shown in README.md with the build command it documents and runs it.
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, code, ok := strings.Cut(string(readme), "```c\n")
	if !ok {
		t.Fatal("README.md has no ```c block")
	}
	code, _, _ = strings.Cut(code, "```")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "subject-words.c"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "subject-words.wasm")
	cmd := exec.Command("make", "-s", "-C", testplugins.Root(), "c-plugin", "SRC="+dir, "OUT="+out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the README example: %v\n%s", err, msg)
	}
	if lines := strings.Count(strings.TrimSpace(code), "\n") + 1; lines > 40 {
		t.Errorf("the README example has %d lines; keep it short", lines)
	}

	f := &fake{
		config:  `{"words": ["lottery", "viagra"]}`,
		headers: map[string][]string{"subject": {"You won the lottery"}},
	}
	h := load(t, out, f)
	if r := h.call("postern_init"); r != 0 {
		t.Fatalf("postern_init() = %d, logs %v", r, f.calls)
	}
	h.call("postern_on_message")
	want := []string{
		`header_get(0,"Subject",0,1,1023)`,
		`tag_add("subject-word","lottery")`,
		`set_verdict(1,550,"5.7.1","subject not allowed")`,
	}
	if strings.Join(f.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("lottery subject: host calls\n%s\nwant\n%s", strings.Join(f.calls, "\n"), strings.Join(want, "\n"))
	}
	f.calls = nil
	f.headers["subject"] = []string{"Minutes of the meeting"}
	h.call("postern_on_message")
	if len(f.calls) != 1 {
		t.Errorf("clean subject: host calls %v, want only the header read", f.calls)
	}

	bad := &fake{config: `{"words": [}`}
	h = load(t, out, bad)
	if r := h.call("postern_init"); r != 1 {
		t.Errorf("postern_init with bad JSON = %d, want 1", r)
	}
	if want := `log(3,"configuration is not valid JSON")`; len(bad.calls) != 1 || bad.calls[0] != want {
		t.Errorf("bad configuration: host calls %v, want [%s]", bad.calls, want)
	}
}
