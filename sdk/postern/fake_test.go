//go:build !wasip1

package postern

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// fakeHost implements the raw ABI in memory, following sdk/ABI.md, so that the SDK's logic (buffer growth,
// error mapping, parsing, dispatch) is tested on the build machine. The real host is exercised by
// sdk/conformance.
type fakeHost struct {
	config     string
	fields     map[string][]string // absent name: ERR_NOT_FOUND
	unavail    map[string]bool     // fields (and "message") not available at this hook
	headers    map[string][]string // part 0, lower-case name
	block      string
	parts      []map[string]string
	content    map[[2]int]string // (part, mode) -> content; absent: ERR_INVALID
	decodeErr  map[[2]int]bool
	message    string
	matches    string // part_match result text
	growing    bool   // every length answer is larger than the last buffer (a broken host)
	sumRC      int32  // part_sha256 result override
	compileRC  int32
	compiled   []string
	limits     []uint32 // limit of every data-returning call, in order
	logs       []string
	tags       map[string]string
	verdict    [4]string // kind, code, enh, text
	recipients []string
}

// install makes f the host for the duration of the test.
func (f *fakeHost) install(t *testing.T) *fakeHost {
	t.Helper()
	if testHost != nil {
		t.Fatal("a fake host is already installed")
	}
	testHost = f
	t.Cleanup(func() { testHost = nil; resetCall() })
	if f.tags == nil {
		f.tags = map[string]string{}
	}
	return f
}

func (f *fakeHost) out(buf *byte, limit uint32, v string) int32 {
	f.limits = append(f.limits, limit)
	if f.growing {
		return int32(limit) + 1
	}
	if limit > 0 {
		copy(unsafe.Slice(buf, limit), v)
	}
	return int32(len(v))
}

func (f *fakeHost) ConfigGet(buf *byte, limit uint32) int32 { return f.out(buf, limit, f.config) }

func (f *fakeHost) FieldGet(name string, index uint32, buf *byte, limit uint32) int32 {
	if f.unavail[name] {
		return int32(ErrUnavailable)
	}
	vals, ok := f.fields[name]
	if !ok || int(index) >= len(vals) {
		return int32(ErrNotFound)
	}
	return f.out(buf, limit, vals[index])
}

func (f *fakeHost) HeaderGet(part int32, name string, index, flags uint32, buf *byte, limit uint32) int32 {
	if f.unavail["message"] {
		return int32(ErrUnavailable)
	}
	if part != 0 || strings.Contains(name, ":") {
		return int32(ErrInvalid)
	}
	vals := f.headers[strings.ToLower(name)]
	if int(index) >= len(vals) {
		return int32(ErrNotFound)
	}
	v := vals[index]
	if flags&headerDecoded != 0 {
		v = "decoded:" + v
	}
	return f.out(buf, limit, v)
}

func (f *fakeHost) HeaderAll(part int32, buf *byte, limit uint32) int32 {
	if part != 0 {
		return int32(ErrInvalid)
	}
	return f.out(buf, limit, f.block)
}

func (f *fakeHost) PartCount() int32 {
	if f.unavail["message"] {
		return int32(ErrUnavailable)
	}
	return int32(len(f.parts))
}

func (f *fakeHost) PartField(part int32, name string, buf *byte, limit uint32) int32 {
	if part < 0 || int(part) >= len(f.parts) {
		return int32(ErrInvalid)
	}
	v, ok := f.parts[part][name]
	if !ok {
		return int32(ErrNotFound)
	}
	return f.out(buf, limit, v)
}

// PartsGet encodes f.parts as the host does (ABI §3.3 parts_get): every attribute any part has, sorted, for
// every part; a part without one gets "".
func (f *fakeHost) PartsGet(buf *byte, limit uint32) int32 {
	if f.unavail["message"] {
		return int32(ErrUnavailable)
	}
	seen := map[string]bool{}
	var names []string
	for _, p := range f.parts {
		for name := range p {
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.parts)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(names)))
	str := func(v string) {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	for _, name := range names {
		str(name)
	}
	for _, p := range f.parts {
		for _, name := range names {
			str(p[name])
		}
	}
	return f.out(buf, limit, string(b))
}

func (f *fakeHost) PartRead(part int32, mode, offset uint32, buf *byte, limit uint32) int32 {
	key := [2]int{int(part), int(mode)}
	if f.decodeErr[key] {
		return int32(ErrDecode)
	}
	c, ok := f.content[key]
	if !ok {
		return int32(ErrInvalid)
	}
	if int(offset) >= len(c) {
		f.limits = append(f.limits, limit)
		return int32(len(c))
	}
	n := f.out(buf, limit, c[offset:])
	return n + int32(offset)
}

func (f *fakeHost) MessageRead(offset uint32, buf *byte, limit uint32) int32 {
	if int(offset) >= len(f.message) {
		return int32(len(f.message))
	}
	return f.out(buf, limit, f.message[offset:]) + int32(offset)
}

func (f *fakeHost) PatternsCompile(patterns string) int32 {
	f.compiled = append(f.compiled, patterns)
	if f.compileRC != 0 {
		return f.compileRC
	}
	return int32(len(f.compiled) - 1)
}

func (f *fakeHost) PartMatch(part int32, mode uint32, handle int32, max uint32, buf *byte, limit uint32) int32 {
	if handle < 0 || int(handle) >= len(f.compiled) {
		return int32(ErrInvalid)
	}
	return f.out(buf, limit, f.matches)
}

func (f *fakeHost) PartSHA256(part int32, mode uint32, buf32 *byte) int32 {
	if f.sumRC != 0 {
		return f.sumRC
	}
	c, ok := f.content[[2]int{int(part), int(mode)}]
	if !ok {
		return int32(ErrInvalid)
	}
	sum := sha256.Sum256([]byte(c))
	copy(unsafe.Slice(buf32, 32), sum[:])
	return 32
}

func (f *fakeHost) SetVerdict(kind uint32, code int32, enh, text string) int32 {
	if strings.ContainsAny(text, "\r\n") {
		return int32(ErrInvalid)
	}
	f.verdict = [4]string{strconv.Itoa(int(kind)), strconv.Itoa(int(code)), enh, text}
	return 0
}

func (f *fakeHost) TagAdd(key, value string) int32 {
	if key == "" || strings.Contains(key, " ") {
		return int32(ErrInvalid)
	}
	f.tags[key] = value
	return 0
}

func (f *fakeHost) ScoreAdd(delta float64) int32 { return 0 }

func (f *fakeHost) Log(level int32, msg string) int32 {
	f.logs = append(f.logs, strconv.Itoa(int(level))+" "+msg)
	return 0
}

func (f *fakeHost) change() int32 {
	if f.unavail["message"] {
		return int32(ErrUnavailable)
	}
	return 0
}

func (f *fakeHost) HeaderAdd(name, value string) int32 { return f.change() }
func (f *fakeHost) HeaderSet(name, value string) int32 { return f.change() }
func (f *fakeHost) HeaderRemove(name string) int32     { return f.change() }
func (f *fakeHost) SubjectPrefix(prefix string) int32  { return f.change() }
func (f *fakeHost) BannerAdd(text, html string) int32  { return f.change() }
func (f *fakeHost) PartRemove(part int32) int32        { return f.change() }

func (f *fakeHost) PartReplace(part int32, contentType string, data *byte, dataLen uint32) int32 {
	if part == 0 {
		return int32(ErrInvalid)
	}
	f.content[[2]int{int(part), int(ModeRaw)}] = string(unsafe.Slice(data, dataLen))
	return f.change()
}

func (f *fakeHost) RcptAdd(addr string) int32 {
	f.recipients = append(f.recipients, addr)
	return 0
}
