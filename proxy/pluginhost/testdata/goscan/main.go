// Command goscan is a benchmark guest written against the raw ABI: it counts the matches of five patterns in part
// 1's text, either with Go's regexp inside the guest (configuration "guest") or with the host's part_match
// (anything else), and tags the count as "matches".
package main

import (
	"bytes"
	"regexp"
	"strconv"
	"unsafe"
)

//go:wasmimport postern config_get
func configGet(buf unsafe.Pointer, limit uint32) int32

//go:wasmimport postern part_read
func partRead(part, mode, offset uint32, buf unsafe.Pointer, limit uint32) int32

//go:wasmimport postern patterns_compile
func patternsCompile(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport postern part_match
func partMatch(part, mode, handle, maxMatches uint32, buf unsafe.Pointer, limit uint32) int32

//go:wasmimport postern tag_add
func tagAdd(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32) int32

// Patterns is the benchmark's pattern set; pluginhost's Go benchmark uses the same text.
const patterns = `\b(?:\d[ -]?){12,18}\d\b` + "\n" +
	`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b` + "\n" +
	`(?i)password` + "\n" +
	`(?i)confidential` + "\n" +
	`X5O!P%@AP\[4\\PZX54\(P\^\)7CC\)7\}\$EICAR`

var (
	guest   bool
	handle  int32
	res     []*regexp.Regexp
	scratch = make([]byte, 64<<10)
	text    []byte
)

//go:wasmexport postern_abi_version
func abiVersion() int32 { return 1 }

//go:wasmexport postern_init
func initPlugin() int32 {
	n := configGet(unsafe.Pointer(&scratch[0]), uint32(len(scratch)))
	guest = bytes.Contains(scratch[:n], []byte("guest"))
	if guest {
		for _, p := range bytes.Split([]byte(patterns), []byte("\n")) {
			res = append(res, regexp.MustCompile(string(p)))
		}
		return 0
	}
	handle = patternsCompile(unsafe.Pointer(unsafe.StringData(patterns)), uint32(len(patterns)))
	if handle < 0 {
		return 1
	}
	return 0
}

//go:wasmexport postern_on_message
func onMessage() int32 {
	count := 0
	if guest {
		total := partRead(1, 2, 0, nil, 0)
		if total < 0 {
			return 1
		}
		text = text[:0]
		for off := int32(0); off < total; {
			n := min(partRead(1, 2, uint32(off), unsafe.Pointer(&scratch[0]), uint32(len(scratch)))-off, int32(len(scratch)))
			text = append(text, scratch[:n]...)
			off += n
		}
		for _, re := range res {
			count += len(re.FindAllIndex(text, 1000))
		}
	} else {
		n := partMatch(1, 2, uint32(handle), 0, unsafe.Pointer(&scratch[0]), uint32(len(scratch)))
		if n < 0 {
			return 1
		}
		count = bytes.Count(scratch[:min(n, int32(len(scratch)))], []byte("\n"))
	}
	key := "matches"
	v := strconv.Itoa(count)
	tagAdd(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)), unsafe.Pointer(unsafe.StringData(v)), uint32(len(v)))
	return 0
}

func main() {}
