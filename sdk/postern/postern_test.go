//go:build !wasip1

package postern

import (
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestGrowSize(t *testing.T) {
	for _, c := range []struct{ need, want int }{
		{0, minScratch}, {1, minScratch}, {minScratch, minScratch}, {minScratch + 1, 2 * minScratch},
		{10000, 16384}, {maxScratch, maxScratch},
	} {
		if got := growSize(c.need); got != c.want {
			t.Errorf("growSize(%d) = %d, want %d", c.need, got, c.want)
		}
	}
}

func TestFieldGrowAndRetry(t *testing.T) {
	saved := scratch
	t.Cleanup(func() { scratch = saved })
	scratch = make([]byte, minScratch)

	mid := strings.Repeat("m", 10000)         // grows the scratch buffer
	huge := strings.Repeat("h", maxScratch+1) // gets a buffer of its own
	f := (&fakeHost{fields: map[string][]string{"mid": {mid}, "huge": {huge}, "small": {"s"}}}).install(t)

	if v, err := Field("mid"); err != nil || v != mid {
		t.Fatalf("Field(mid) = %d bytes, %v; want %d bytes", len(v), err, len(mid))
	}
	if want := []uint32{minScratch, 16384}; !reflect.DeepEqual(f.limits, want) {
		t.Errorf("limits asked = %v, want %v (one retry with the grown buffer)", f.limits, want)
	}
	if len(scratch) != 16384 {
		t.Errorf("scratch is %d bytes, want 16384", len(scratch))
	}

	f.limits = nil
	if v, err := Field("huge"); err != nil || v != huge {
		t.Fatalf("Field(huge) = %d bytes, %v; want %d bytes", len(v), err, len(huge))
	}
	if want := []uint32{16384, maxScratch + 1}; !reflect.DeepEqual(f.limits, want) {
		t.Errorf("limits asked = %v, want %v", f.limits, want)
	}
	if len(scratch) > maxScratch {
		t.Errorf("scratch grew to %d bytes for a value past maxScratch", len(scratch))
	}

	// The value returned must not alias the scratch buffer that the next call overwrites.
	first, _ := Field("mid")
	if _, err := Field("small"); err != nil {
		t.Fatal(err)
	}
	if first != mid {
		t.Error("a returned value changed after the next host call")
	}
}

func TestFetchStopsOnUnstableHost(t *testing.T) {
	saved := scratch
	t.Cleanup(func() { scratch = saved })
	f := (&fakeHost{fields: map[string][]string{"x": {"v"}}, growing: true}).install(t)
	if _, err := Field("x"); !errors.Is(err, errUnstable) {
		t.Fatalf("err = %v, want errUnstable", err)
	}
	if len(f.limits) != 3 {
		t.Errorf("asked %d times, want 3", len(f.limits))
	}
}

func TestErrno(t *testing.T) {
	(&fakeHost{
		fields:  map[string][]string{"hook": {"connect"}},
		unavail: map[string]bool{"mail_from": true, "message": true},
	}).install(t)
	if _, err := Field("nope"); err != ErrNotFound {
		t.Errorf("unknown field: %v, want ErrNotFound", err)
	}
	if _, err := Field("mail_from"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("unavailable field: %v, want ErrUnavailable", err)
	}
	var m Message
	if _, err := m.Parts(); err != ErrUnavailable {
		t.Errorf("Parts at connect: %v, want ErrUnavailable", err)
	}
	if err := m.AddHeader("X-A", "b"); err != ErrUnavailable {
		t.Errorf("AddHeader at connect: %v, want ErrUnavailable", err)
	}
	if got := Errno(-9).Error(); got != "postern: host error -9" {
		t.Errorf("Errno(-9) = %q", got)
	}
	for _, e := range []Errno{ErrNotFound, ErrInvalid, ErrUnavailable, ErrDecode} {
		if !strings.HasPrefix(e.Error(), "postern: ") || strings.Contains(e.Error(), "host error") {
			t.Errorf("Errno(%d) has no description: %q", int32(e), e.Error())
		}
	}
}

func TestFieldsAndEnvelope(t *testing.T) {
	(&fakeHost{fields: map[string][]string{
		"rcpt": {"a@example.com", "b@example.com"}, "client.port": {"2525"}, "protocol": {"smtp"},
		"message.malformed": {}, "smtputf8": {"1"},
	}, unavail: map[string]bool{"rcpt.current": true}}).install(t)
	var e Envelope
	if got := e.Rcpts(); !reflect.DeepEqual(got, []string{"a@example.com", "b@example.com"}) {
		t.Errorf("Rcpts = %q", got)
	}
	if got, err := Fields("message.malformed"); got != nil || err != nil {
		t.Errorf("Fields with no values = %q, %v; want nil, nil", got, err)
	}
	if _, err := Fields("rcpt.current"); err != ErrUnavailable {
		t.Errorf("Fields(unavailable) err = %v", err)
	}
	if !e.SMTPUTF8() {
		t.Error("SMTPUTF8() is false for field value 1")
	}
	if e.ClientPort() != 2525 || e.Protocol() != "smtp" || e.RcptCurrent() != "" {
		t.Errorf("ClientPort %d, Protocol %q, RcptCurrent %q", e.ClientPort(), e.Protocol(), e.RcptCurrent())
	}
}

func TestHeaders(t *testing.T) {
	f := (&fakeHost{
		headers: map[string][]string{"x-multi": {"one", "two"}, "subject": {"=?utf-8?q?x?="}},
		block:   "Subject: x\r\n",
	}).install(t)
	var m Message
	if got := m.Headers("X-Multi"); !reflect.DeepEqual(got, []string{"one", "two"}) {
		t.Errorf("Headers = %q", got)
	}
	if m.Header("Subject") != "=?utf-8?q?x?=" || m.HeaderDecoded("Subject") != "decoded:=?utf-8?q?x?=" {
		t.Errorf("Header %q, HeaderDecoded %q", m.Header("Subject"), m.HeaderDecoded("Subject"))
	}
	if m.Header("Missing") != "" {
		t.Error("missing header is not empty")
	}
	if _, err := m.PartHeader(0, "X:Bad", 0, false); err != ErrInvalid {
		t.Errorf("bad name: %v", err)
	}
	if _, err := m.PartHeader(0, "X-Multi", -1, false); err != ErrNotFound {
		t.Errorf("negative index: %v", err)
	}
	b, err := m.HeaderBlock(0)
	if err != nil || string(b) != f.block {
		t.Fatalf("HeaderBlock = %q, %v", b, err)
	}
	b[0] = 'X' // the caller owns the result
	if string(scratch[:len(f.block)]) == string(b) {
		t.Error("HeaderBlock returned the scratch buffer")
	}
}

func partAttrs(parent, depth, ct, size, multipart, defects string) map[string]string {
	return map[string]string{"parent": parent, "depth": depth, "content_type": ct, "charset": "utf-8",
		"encoding": "7bit", "disposition": "", "filename": "a.txt", "size": size, "multipart": multipart,
		"defects": defects}
}

func TestParts(t *testing.T) {
	// Part 1 comes from a host that knows the attributes for evasion-resistant checks; part 0 from one that
	// does not (not found): Filenames is then just Filename.
	p1 := partAttrs("0", "1", "text/plain", "42", "0", "bad-encoding: x\nunknown-charset: y")
	p1["filenames"], p1["ambiguities"], p1["derived"], p1["incomplete"] = "a.txt\na.vbs", "duplicate-parameter: z", "uuencode", "part-limit"
	f := (&fakeHost{parts: []map[string]string{
		partAttrs("-1", "0", "multipart/mixed", "100", "1", ""),
		p1,
	}}).install(t)
	var m Message
	got, err := m.Parts()
	if err != nil {
		t.Fatal(err)
	}
	want := []Part{
		{ID: 0, Parent: -1, Depth: 0, ContentType: "multipart/mixed", Charset: "utf-8", Encoding: "7bit",
			Filename: "a.txt", Filenames: []string{"a.txt"}, Size: 100, Multipart: true},
		{ID: 1, Parent: 0, Depth: 1, ContentType: "text/plain", Charset: "utf-8", Encoding: "7bit",
			Filename: "a.txt", Filenames: []string{"a.txt", "a.vbs"}, Size: 42, Defects: []string{"bad-encoding: x", "unknown-charset: y"},
			Ambiguities: []string{"duplicate-parameter: z"}, Derived: "uuencode", Incomplete: "part-limit"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Parts =\n%+v\nwant\n%+v", got, want)
	}

	// Cached within a call, forgotten by the next one.
	f.parts[1]["size"] = "43"
	if again, _ := m.Parts(); again[1].Size != 42 {
		t.Error("Parts not cached within a call")
	}
	resetCall()
	if again, _ := m.Parts(); again[1].Size != 43 {
		t.Error("Parts kept a previous call's data")
	}

	resetCall()
	f.parts[1]["size"] = "lots"
	if _, err := m.Parts(); err == nil || !strings.Contains(err.Error(), `part 1: attribute size: host sent "lots"`) {
		t.Errorf("bad number: %v", err)
	}
	resetCall()
	delete(f.parts[0], "size")
	delete(f.parts[1], "size")
	if _, err := m.Parts(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "attribute size") {
		t.Errorf("missing attribute: %v", err)
	}
	if _, err := m.PartField(7, "size"); err != ErrInvalid {
		t.Errorf("PartField(bad part) = %v", err)
	}
}

func TestParseMatches(t *testing.T) {
	ms, err := parseMatches([]byte("2 12 17\n0 41 50\n"), 3, ModeText)
	if err != nil {
		t.Fatal(err)
	}
	want := []Match{{Pattern: 2, Start: 12, End: 17, part: 3, mode: ModeText}, {Pattern: 0, Start: 41, End: 50, part: 3, mode: ModeText}}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("got %+v", ms)
	}
	if ms, err := parseMatches(nil, 0, 0); ms != nil || err != nil {
		t.Errorf("empty: %v, %v", ms, err)
	}
	for _, bad := range []string{
		"1 2 3", "1 2\n", "1  2 3\n", "a 2 3\n", "-1 2 3\n", "1 5 3\n", "1 2 3\n\n", "1 2 3 4\n",
		"1 2 99999999999\n", " 1 2 3\n", "1\t2 3\n",
	} {
		if _, err := parseMatches([]byte(bad), 0, 0); err != errMatchSyntax {
			t.Errorf("parseMatches(%q) err = %v, want errMatchSyntax", bad, err)
		}
	}
}

func TestCompileAndMatch(t *testing.T) {
	f := (&fakeHost{
		matches: "1 4 9\n0 10 12\n",
		content: map[[2]int]string{{2, int(ModeText)}: "abc Köln xy and more"},
	}).install(t)
	for _, c := range [][]string{nil, {"a", ""}, {"a\nb"}} {
		if _, err := Compile(c...); !errors.Is(err, ErrInvalid) {
			t.Errorf("Compile(%q) = %v, want ErrInvalid", c, err)
		}
	}
	if len(f.compiled) != 0 {
		t.Fatalf("invalid sets reached the host: %q", f.compiled)
	}
	p, err := Compile("xy", "K[öo]ln")
	if err != nil {
		t.Fatal(err)
	}
	if f.compiled[0] != "xy\nK[öo]ln" || p.Len() != 2 {
		t.Errorf("sent %q, Len %d", f.compiled[0], p.Len())
	}
	var m Message
	ms, err := m.Match(2, ModeText, p, 0)
	if err != nil || len(ms) != 2 {
		t.Fatalf("Match = %+v, %v", ms, err)
	}
	if s, err := ms[0].Text(); err != nil || s != "Köln" {
		t.Errorf("Text = %q, %v", s, err)
	}
	if _, err := m.Match(2, ModeText, new(Patterns), 0); err != ErrInvalid {
		t.Errorf("uncompiled Patterns: %v", err)
	}
	if _, err := m.Match(2, ModeText, p, -1); err != ErrInvalid {
		t.Errorf("negative max: %v", err)
	}
	past := Match{Pattern: 0, Start: 15, End: 40, part: 2, mode: ModeText}
	if _, err := past.Text(); err == nil {
		t.Error("a match past the end of the content gave no error")
	}

	f.compileRC = int32(ErrInvalid)
	if _, err := Compile("a(b"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "host log") {
		t.Errorf("host refusal: %v", err)
	}
}

func TestReadPartAndReader(t *testing.T) {
	data := strings.Repeat("0123456789", 10) + "!"
	f := (&fakeHost{
		content:   map[[2]int]string{{1, int(ModeDecoded)}: data},
		decodeErr: map[[2]int]bool{{1, int(ModeText)}: true},
		message:   "From: a\r\n\r\nbody",
	}).install(t)
	var m Message

	buf := make([]byte, 5)
	total, err := m.ReadPart(1, ModeDecoded, 98, buf)
	if err != nil || total != len(data) || string(buf[:3]) != "89!" {
		t.Errorf("ReadPart = %d, %v, %q", total, err, buf)
	}
	if total, err := m.ReadPart(1, ModeDecoded, 0, nil); total != len(data) || err != nil {
		t.Errorf("length only: %d, %v", total, err)
	}
	if _, err := m.ReadPart(1, ModeDecoded, -1, buf); err != ErrInvalid {
		t.Errorf("negative offset: %v", err)
	}

	f.limits = nil
	var got []byte
	r := m.Reader(1, ModeDecoded)
	p := make([]byte, 7)
	for {
		n, err := r.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != data {
		t.Errorf("Reader gave %q", got)
	}
	for _, l := range f.limits {
		if l != 7 {
			t.Fatalf("Reader asked the host for %d bytes with a 7-byte buffer: %v", l, f.limits)
		}
	}
	if _, err := io.ReadAll(m.Reader(1, ModeText)); err != ErrDecode {
		t.Errorf("Reader of undecodable content: %v", err)
	}
	raw, err := io.ReadAll(m.Raw())
	if err != nil || string(raw) != f.message {
		t.Errorf("Raw = %q, %v", raw, err)
	}
	if total, err := m.ReadMessage(1000, buf); err != nil || total != len(f.message) {
		t.Errorf("ReadMessage past the end = %d, %v", total, err)
	}
}

func TestText(t *testing.T) {
	saved := scratch
	t.Cleanup(func() { scratch = saved })
	small, big := "Grüße", strings.Repeat("ü", maxScratch)
	(&fakeHost{
		content:   map[[2]int]string{{1, int(ModeText)}: small, {2, int(ModeText)}: big},
		decodeErr: map[[2]int]bool{{3, int(ModeText)}: true},
	}).install(t)
	var m Message
	if s, err := m.Text(1); s != small || err != nil {
		t.Errorf("Text(1) = %q, %v", s, err)
	}
	if s, err := m.Text(2); s != big || err != nil {
		t.Errorf("Text(2) = %d bytes, %v", len(s), err)
	}
	if _, err := m.Text(3); err != ErrDecode {
		t.Errorf("Text(3) err = %v", err)
	}
	if _, err := m.Text(9); err != ErrInvalid {
		t.Errorf("Text(9) err = %v", err)
	}
}

func TestSHA256(t *testing.T) {
	f := (&fakeHost{content: map[[2]int]string{{4, int(ModeDecoded)}: "abc"}}).install(t)
	var m Message
	sum, err := m.SHA256(4, ModeDecoded)
	if err != nil || sum[0] != 0xba || sum[31] != 0xad {
		t.Errorf("SHA256 = %x, %v", sum, err)
	}
	if _, err := m.SHA256(1, ModeDecoded); err != ErrInvalid {
		t.Errorf("bad part: %v", err)
	}
	f.sumRC = 31
	if _, err := m.SHA256(4, ModeDecoded); err == nil {
		t.Error("a result other than 32 gave no error")
	}
}

func TestVerdictsAndChanges(t *testing.T) {
	f := (&fakeHost{content: map[[2]int]string{}}).install(t)
	var m Message
	for _, c := range []struct {
		call func() error
		want [4]string
	}{
		{func() error { return m.Reject(554, "5.7.0", "no") }, [4]string{"1", "554", "5.7.0", "no"}},
		{func() error { return m.Tempfail(0, "", "later") }, [4]string{"2", "0", "", "later"}},
		{func() error { return m.Discard() }, [4]string{"3", "0", "", ""}},
		{func() error { return m.Quarantine("why") }, [4]string{"4", "0", "", "why"}},
		{func() error { return m.Accept() }, [4]string{"0", "0", "", ""}},
		{func() error { return m.Reject(math.MaxInt32+1, "", "x") }, [4]string{"1", "-1", "", "x"}},
	} {
		if err := c.call(); err != nil || f.verdict != c.want {
			t.Errorf("verdict %v, %v; want %v", f.verdict, err, c.want)
		}
	}
	if err := m.Reject(550, "", "a\r\nb"); err != ErrInvalid {
		t.Errorf("host refusal: %v", err)
	}
	if err := m.ReplacePart(3, "text/plain", []byte("new")); err != nil || f.content[[2]int{3, 0}] != "new" {
		t.Errorf("ReplacePart: %v, %q", err, f.content[[2]int{3, 0}])
	}
	if err := m.ReplacePart(0, "text/plain", nil); err != ErrInvalid {
		t.Errorf("ReplacePart(0): %v", err)
	}
	if err := m.Tag("a b", "c"); err != ErrInvalid {
		t.Errorf("bad tag: %v", err)
	}
}

// withHandlers runs the test with a clean handler registry.
func withHandlers(t *testing.T) {
	saved := handlers
	handlers.init, handlers.envelope, handlers.message = nil, nil, nil
	t.Cleanup(func() { handlers = saved })
}

func TestDispatch(t *testing.T) {
	withHandlers(t)
	f := (&fakeHost{}).install(t)
	if registered() != 0 {
		t.Fatalf("mask %#x with no handlers", registered())
	}
	if rc := runInit(); rc != rcOK {
		t.Errorf("init without a handler: %d", rc)
	}
	if rc := runMessage(); rc != rcMissing || !strings.Contains(f.logs[0], "on_message: no handler") {
		t.Errorf("message without a handler: %d, %q", rc, f.logs)
	}

	OnInit(func() error { return errors.New("words: must not be empty") })
	OnMailFrom(func(e *Envelope) error { return nil })
	OnMessage(func(m *Message) error { panic("boom") })
	if got := registered(); got != hookMailFrom|hookMessage {
		t.Errorf("mask = %#x, want %#x", got, hookMailFrom|hookMessage)
	}
	f.logs = nil
	if rc := runInit(); rc != rcError || f.logs[0] != "3 postern_init: words: must not be empty" {
		t.Errorf("init error: rc %d, logs %q", rc, f.logs)
	}
	if rc := runEnvelope(hookMailFrom); rc != rcOK {
		t.Errorf("mail_from: rc %d", rc)
	}
	if rc := runEnvelope(hookRcptTo); rc != rcMissing {
		t.Errorf("rcpt_to without a handler: rc %d", rc)
	}
	f.logs = nil
	if rc := runMessage(); rc != rcPanic || f.logs[0] != "3 on_message: panic: boom" ||
		!strings.HasPrefix(f.logs[1], "0 goroutine") {
		t.Errorf("panic: rc %d, logs %q", rc, f.logs)
	}

	for _, register := range []func(){
		func() { OnInit(func() error { return nil }) },
		func() { OnMailFrom(func(*Envelope) error { return nil }) },
		func() { OnMessage(func(*Message) error { return nil }) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "registered twice") {
					t.Errorf("second registration: recover() = %v", r)
				}
			}()
			register()
		}()
	}
}

func TestHandlerErrorFailsHook(t *testing.T) {
	withHandlers(t)
	f := (&fakeHost{}).install(t)
	OnConnect(func(e *Envelope) error { return errors.New("dns lookup failed") })
	if rc := runEnvelope(hookConnect); rc != rcError || f.logs[0] != "3 on_connect: dns lookup failed" {
		t.Errorf("rc %d, logs %q", rc, f.logs)
	}
}

func TestConfig(t *testing.T) {
	type cfg struct {
		Words []string `json:"words"`
	}
	f := (&fakeHost{}).install(t)
	for _, c := range []struct{ json, err string }{
		{`{"words": ["a", "b"]}`, ""},
		{`{"wrods": ["a"]}`, `unknown key "wrods" (known keys: words)`},
		{`{"words": ["a"]} {}`, "data after the JSON document at offset 17"},
		{`{"words": "a"}`, "words: want a list, got a string"},
		{`{}`, ""},
		{"", ""},
		{" \n", ""},
	} {
		f.config = c.json
		var v cfg
		err := Config(&v)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Config(%s) = %v, want %q", c.json, err, c.err)
		}
	}
	f.config = `{"words": ["x"]}`
	b, err := ConfigJSON()
	if err != nil || string(b) != f.config {
		t.Fatalf("ConfigJSON = %q, %v", b, err)
	}
	if _, err := Field("x"); err == nil {
		t.Fatal("unexpected field")
	}
	if string(b) != f.config {
		t.Error("ConfigJSON result aliases the scratch buffer")
	}
}

func TestLogTruncation(t *testing.T) {
	f := (&fakeHost{}).install(t)
	msg := strings.Repeat("a", maxLogLine-1) + "ü and more"
	Log(LevelWarn, msg)
	got := strings.TrimPrefix(f.logs[0], "2 ")
	if len(got) != maxLogLine-1 || !utf8.ValidString(got) {
		t.Errorf("logged %d bytes (valid UTF-8: %v), want %d", len(got), utf8.ValidString(got), maxLogLine-1)
	}
	Logf(LevelInfo, "%d parts", 3)
	if f.logs[1] != "1 3 parts" {
		t.Errorf("Logf logged %q", f.logs[1])
	}
}

func TestOutsideHostPanics(t *testing.T) {
	defer func() {
		r := recover()
		if s, _ := r.(string); !strings.Contains(s, "field_get called outside the Postern host") ||
			!strings.Contains(s, "GOOS=wasip1") {
			t.Errorf("recover() = %v", r)
		}
	}()
	_, _ = Field("hook")
}

func TestBufPtr(t *testing.T) {
	if bufPtr(nil) != nil || bufPtr([]byte{}) != nil {
		t.Error("empty buffer has a pointer")
	}
	b := []byte("x")
	if bufPtr(b) != &b[0] || limit(b) != 1 {
		t.Error("bufPtr/limit")
	}
	if i32(math.MaxInt32+1) != -1 || i32(math.MinInt32-1) != -1 || i32(7) != 7 {
		t.Error("i32 does not refuse values out of range")
	}
}

func TestNotFoundDoesNotAllocate(t *testing.T) {
	(&fakeHost{headers: map[string][]string{}}).install(t)
	var m Message
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := m.PartHeader(0, "x-nope", 0, false); err != ErrNotFound {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("an absent header costs %v allocations", allocs)
	}
	if err := errno(-7); err != Errno(-7) || err.Error() != "postern: host error -7" {
		t.Errorf("errno(-7) = %v", err)
	}
}

type stringer struct{}

func (stringer) String() string { return "a stringer" }

func TestPanicText(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{"boom", "boom"}, {errors.New("bad"), "bad"}, {stringer{}, "a stringer"},
		{42, "(a panic value that is neither an error nor a string)"},
	} {
		if got := panicText(c.v); got != c.want {
			t.Errorf("panicText(%#v) = %q, want %q", c.v, got, c.want)
		}
	}
}

// TestUnavailableFields: an unavailable field is ok = false (or ErrUnavailable), never mistaken for an empty
// value; a known empty value is ("", true).
func TestUnavailableFields(t *testing.T) {
	// Retrieval over IMAP: no envelope, a mailbox.
	(&fakeHost{fields: map[string][]string{
		"mailbox.user": {"alice"}, "mailbox.name": {"INBOX"}, "message.uid": {"42"},
		"message.uidvalidity": {"1700000000"}, "message.internal_date": {"2026-01-02T14:04:05Z"},
		"message.flags": {`\Seen`, "$Junk"}, "command": {"fetch"}, "auth.user": {"alice"},
		"message.size": {"1243"}, "message.malformed": {"bad-header: x"},
	}, unavail: map[string]bool{"mail_from": true, "client.helo": true, "rcpt": true, "message.uidl": true}}).install(t)
	var e Envelope
	if v, ok := e.LookupMailFrom(); ok || v != "" {
		t.Errorf("LookupMailFrom at retrieval = %q, %v", v, ok)
	}
	if v, ok := e.LookupHELO(); ok || v != "" || e.HELO() != "" {
		t.Errorf("LookupHELO at retrieval = %q, %v", v, ok)
	}
	if _, err := Fields("rcpt"); err != ErrUnavailable {
		t.Errorf("Fields(rcpt) at retrieval: %v", err)
	}
	if v, ok := e.MailboxUser(); v != "alice" || !ok {
		t.Errorf("MailboxUser = %q, %v", v, ok)
	}
	if v, ok := e.Mailbox(); v != "INBOX" || !ok {
		t.Errorf("Mailbox = %q, %v", v, ok)
	}
	if v, ok := e.UID(); v != 42 || !ok {
		t.Errorf("UID = %d, %v", v, ok)
	}
	if v, ok := e.UIDValidity(); v != 1700000000 || !ok {
		t.Errorf("UIDValidity = %d, %v", v, ok)
	}
	if v, ok := e.UIDL(); ok {
		t.Errorf("UIDL over IMAP = %q, %v", v, ok)
	}
	if v, ok := e.InternalDate(); !ok || !v.Equal(time.Date(2026, 1, 2, 14, 4, 5, 0, time.UTC)) {
		t.Errorf("InternalDate = %v, %v", v, ok)
	}
	if v, ok := e.Flags(); !ok || !reflect.DeepEqual(v, []string{`\Seen`, "$Junk"}) {
		t.Errorf("Flags = %q, %v", v, ok)
	}
	if v, ok := e.Command(); v != "fetch" || !ok {
		t.Errorf("Command = %q, %v", v, ok)
	}
	var m Message
	if m.Size() != 1243 || !reflect.DeepEqual(m.Malformed(), []string{"bad-header: x"}) {
		t.Errorf("Size %d, Malformed %q", m.Size(), m.Malformed())
	}

	// SMTP at connect: no HELO or user yet; a bounce's null sender later is ("", true).
	testHost = nil
	resetCall()
	(&fakeHost{fields: map[string][]string{"mail_from": {""}},
		unavail: map[string]bool{"client.helo": true, "auth.user": true, "mailbox.user": true, "message.uid": true,
			"message.flags": true}}).install(t)
	if _, ok := e.LookupAuthUser(); ok {
		t.Error("LookupAuthUser ok where unavailable")
	}
	if v, ok := e.LookupMailFrom(); !ok || v != "" {
		t.Errorf("null reverse path: LookupMailFrom = %q, %v", v, ok)
	}
	if _, ok := e.MailboxUser(); ok {
		t.Error("MailboxUser ok in SMTP")
	}
	if _, ok := e.UID(); ok {
		t.Error("UID ok in SMTP")
	}
	if v, ok := e.Flags(); ok || v != nil {
		t.Errorf("Flags in SMTP = %q, %v", v, ok)
	}
}

// TestDecodePartsMalformed feeds parts_get answers that break the encoding: each is an error, never a panic or a
// part list read out of bounds.
func TestDecodePartsMalformed(t *testing.T) {
	le := func(v uint32) string { return string([]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}) }
	str := func(v string) string { return le(uint32(len(v))) + v }
	var names, values string
	for _, n := range requiredAttrs {
		names += str(n)
		values += str(map[string]string{"parent": "-1", "depth": "0", "size": "3", "multipart": "0"}[n])
	}
	good := le(1) + le(uint32(len(requiredAttrs))) + names + values
	if ps, err := decodeParts(good, nil); err != nil || len(ps) != 1 || ps[0].Size != 3 || ps[0].Parent != -1 {
		t.Fatalf("good list: %+v, %v", ps, err)
	}
	for name, s := range map[string]string{
		"empty":           "",
		"truncated":       good[:len(good)-1],
		"trailing bytes":  good + "x",
		"huge part count": le(1<<30) + good[4:],
		"no attributes":   le(1) + le(0),
		"value too long":  le(1) + le(uint32(len(requiredAttrs))) + names + le(1000) + "x",
	} {
		if _, err := decodeParts(s, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
