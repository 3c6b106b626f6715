//go:build !wasip1

package postern

// Outside WebAssembly there is no host: the package compiles so that `go vet ./...` and plugin authors'
// pure-logic unit tests work on any platform, and every host call panics with a message saying why. The
// package's own tests install a fake host (testHost) to exercise the SDK's logic on the build machine.

// host is the raw ABI as a Go interface, implemented by the package's tests.
type host interface {
	ConfigGet(buf *byte, limit uint32) int32
	FieldGet(name string, index uint32, buf *byte, limit uint32) int32
	HeaderGet(part int32, name string, index, flags uint32, buf *byte, limit uint32) int32
	HeaderAll(part int32, buf *byte, limit uint32) int32
	PartField(part int32, name string, buf *byte, limit uint32) int32
	PartsGet(buf *byte, limit uint32) int32
	PartRead(part int32, mode, offset uint32, buf *byte, limit uint32) int32
	MessageRead(offset uint32, buf *byte, limit uint32) int32
	PatternsCompile(patterns string) int32
	PartMatch(part int32, mode uint32, handle int32, max uint32, buf *byte, limit uint32) int32
	PartSHA256(part int32, mode uint32, buf32 *byte) int32
	SetVerdict(kind uint32, code int32, enh, text string) int32
	TagAdd(key, value string) int32
	ScoreAdd(delta float64) int32
	Log(level int32, msg string) int32
	HeaderAdd(name, value string) int32
	HeaderSet(name, value string) int32
	HeaderRemove(name string) int32
	SubjectPrefix(prefix string) int32
	BannerAdd(text, html string) int32
	PartRemove(part int32) int32
	PartReplace(part int32, contentType string, data *byte, dataLen uint32) int32
	RcptAdd(addr string) int32
}

// testHost is nil except in the package's own tests.
var testHost host

func h(fn string) host {
	if testHost == nil {
		panic("postern: " + fn + " called outside the Postern host; a plugin runs only when built with " +
			"GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared and loaded by Postern")
	}
	return testHost
}

func hostConfigGet(buf *byte, limit uint32) int32 { return h("config_get").ConfigGet(buf, limit) }
func hostFieldGet(name string, index uint32, buf *byte, limit uint32) int32 {
	return h("field_get").FieldGet(name, index, buf, limit)
}
func hostHeaderGet(part int32, name string, index, flags uint32, buf *byte, limit uint32) int32 {
	return h("header_get").HeaderGet(part, name, index, flags, buf, limit)
}
func hostHeaderAll(part int32, buf *byte, limit uint32) int32 {
	return h("header_all").HeaderAll(part, buf, limit)
}
func hostPartField(part int32, name string, buf *byte, limit uint32) int32 {
	return h("part_field").PartField(part, name, buf, limit)
}
func hostPartsGet(buf *byte, limit uint32) int32 { return h("parts_get").PartsGet(buf, limit) }
func hostPartRead(part int32, mode, offset uint32, buf *byte, limit uint32) int32 {
	return h("part_read").PartRead(part, mode, offset, buf, limit)
}
func hostMessageRead(offset uint32, buf *byte, limit uint32) int32 {
	return h("message_read").MessageRead(offset, buf, limit)
}
func hostPatternsCompile(patterns string) int32 {
	return h("patterns_compile").PatternsCompile(patterns)
}
func hostPartMatch(part int32, mode uint32, handle int32, max uint32, buf *byte, limit uint32) int32 {
	return h("part_match").PartMatch(part, mode, handle, max, buf, limit)
}
func hostPartSHA256(part int32, mode uint32, buf32 *byte) int32 {
	return h("part_sha256").PartSHA256(part, mode, buf32)
}
func hostSetVerdict(kind uint32, code int32, enh, text string) int32 {
	return h("set_verdict").SetVerdict(kind, code, enh, text)
}
func hostTagAdd(key, value string) int32     { return h("tag_add").TagAdd(key, value) }
func hostScoreAdd(delta float64) int32       { return h("score_add").ScoreAdd(delta) }
func hostLog(level int32, msg string) int32  { return h("log").Log(level, msg) }
func hostHeaderAdd(name, value string) int32 { return h("header_add").HeaderAdd(name, value) }
func hostHeaderSet(name, value string) int32 { return h("header_set").HeaderSet(name, value) }
func hostHeaderRemove(name string) int32     { return h("header_remove").HeaderRemove(name) }
func hostSubjectPrefix(prefix string) int32  { return h("subject_prefix").SubjectPrefix(prefix) }
func hostBannerAdd(text, html string) int32  { return h("banner_add").BannerAdd(text, html) }
func hostPartRemove(part int32) int32        { return h("part_remove").PartRemove(part) }
func hostRcptAdd(addr string) int32          { return h("rcpt_add").RcptAdd(addr) }
func hostPartReplace(part int32, contentType string, data *byte, dataLen uint32) int32 {
	return h("part_replace").PartReplace(part, contentType, data, dataLen)
}
