package postern

// The raw ABI v1 imports (sdk/ABI.md §3). Strings are passed as (ptr, len) pairs by the compiler; output buffers
// as a *byte and a limit. A nil buffer with limit 0 asks for the length only.

//go:wasmimport postern config_get
func hostConfigGet(buf *byte, limit uint32) int32

//go:wasmimport postern field_get
func hostFieldGet(name string, index uint32, buf *byte, limit uint32) int32

//go:wasmimport postern header_get
func hostHeaderGet(part int32, name string, index uint32, flags uint32, buf *byte, limit uint32) int32

//go:wasmimport postern header_all
func hostHeaderAll(part int32, buf *byte, limit uint32) int32

//go:wasmimport postern part_field
func hostPartField(part int32, name string, buf *byte, limit uint32) int32

//go:wasmimport postern parts_get
func hostPartsGet(buf *byte, limit uint32) int32

//go:wasmimport postern part_read
func hostPartRead(part int32, mode uint32, offset uint32, buf *byte, limit uint32) int32

//go:wasmimport postern message_read
func hostMessageRead(offset uint32, buf *byte, limit uint32) int32

//go:wasmimport postern patterns_compile
func hostPatternsCompile(patterns string) int32

//go:wasmimport postern part_match
func hostPartMatch(part int32, mode uint32, handle int32, max uint32, buf *byte, limit uint32) int32

//go:wasmimport postern part_sha256
func hostPartSHA256(part int32, mode uint32, buf32 *byte) int32

//go:wasmimport postern set_verdict
func hostSetVerdict(kind uint32, code int32, enh string, text string) int32

//go:wasmimport postern tag_add
func hostTagAdd(key string, value string) int32

//go:wasmimport postern score_add
func hostScoreAdd(delta float64) int32

//go:wasmimport postern log
func hostLog(level int32, msg string) int32

//go:wasmimport postern header_add
func hostHeaderAdd(name string, value string) int32

//go:wasmimport postern header_set
func hostHeaderSet(name string, value string) int32

//go:wasmimport postern header_remove
func hostHeaderRemove(name string) int32

//go:wasmimport postern subject_prefix
func hostSubjectPrefix(prefix string) int32

//go:wasmimport postern banner_add
func hostBannerAdd(text string, html string) int32

//go:wasmimport postern part_remove
func hostPartRemove(part int32) int32

//go:wasmimport postern part_replace
func hostPartReplace(part int32, contentType string, data *byte, dataLen uint32) int32

//go:wasmimport postern rcpt_add
func hostRcptAdd(addr string) int32
