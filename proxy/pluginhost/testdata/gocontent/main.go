// Command gocontent is a test guest written against the raw ABI: it runs the script in its configuration, one
// operation per line, and tags each result "r<line>" (0-based, counting operations only):
//
//	pattern RE               compiled (all of them, in order, as one set) in postern_init
//	read PART MODE OFF LIMIT part_read: "TOTAL" or "TOTAL:HEX" of the bytes written
//	sha PART MODE            part_sha256: the hash in hex
//	match PART MODE MAX      part_match: its text with LF as ';', or when longer than 1024 bytes
//	                         "sha256:HEX:LEN" of the text
//
// A negative ABI result is tagged as the number. The configuration itself (its first 1024 bytes) is tagged
// "config".
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"unsafe"
)

//go:wasmimport postern config_get
func configGet(buf unsafe.Pointer, limit uint32) int32

//go:wasmimport postern part_read
func partRead(part, mode, offset uint32, buf unsafe.Pointer, limit uint32) int32

//go:wasmimport postern part_sha256
func partSHA256(part, mode uint32, buf unsafe.Pointer) int32

//go:wasmimport postern patterns_compile
func patternsCompile(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport postern part_match
func partMatch(part, mode, handle, maxMatches uint32, buf unsafe.Pointer, limit uint32) int32

//go:wasmimport postern tag_add
func tagAdd(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32) int32

var (
	config string
	ops    [][]string
	handle int32 = -1
)

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func num(s string) uint32 {
	n, _ := strconv.ParseUint(s, 10, 32)
	return uint32(n)
}

//go:wasmexport postern_abi_version
func abiVersion() int32 { return 1 }

//go:wasmexport postern_init
func initPlugin() int32 {
	n := configGet(nil, 0)
	cfg := make([]byte, n)
	configGet(ptr(cfg), uint32(n))
	config = string(cfg)
	var patterns []string
	for _, line := range strings.Split(string(cfg), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0, len(f) == 1 && f[0] == "{}": // "{}": no configuration, no script
		case f[0] == "pattern":
			patterns = append(patterns, strings.TrimPrefix(line, "pattern "))
		case f[0] == "read" && len(f) == 5, f[0] == "sha" && len(f) == 3, f[0] == "match" && len(f) == 4:
			ops = append(ops, f)
		default:
			return 1 // a mistake in the test's script
		}
	}
	if len(patterns) > 0 {
		text := strings.Join(patterns, "\n")
		if handle = patternsCompile(unsafe.Pointer(unsafe.StringData(text)), uint32(len(text))); handle < 0 {
			return 1
		}
	}
	return 0
}

//go:wasmexport postern_on_message
func onMessage() int32 {
	key, v := "config", config[:min(len(config), 1024)]
	tagAdd(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)), unsafe.Pointer(unsafe.StringData(v)), uint32(len(v)))
	for i, op := range ops {
		var v string
		switch op[0] {
		case "read":
			buf := make([]byte, num(op[4]))
			rc := partRead(num(op[1]), num(op[2]), num(op[3]), ptr(buf), uint32(len(buf)))
			v = strconv.Itoa(int(rc))
			if rc >= 0 && int64(rc) > int64(num(op[3])) && len(buf) > 0 {
				v += ":" + hex.EncodeToString(buf[:min(int64(len(buf)), int64(rc)-int64(num(op[3])))])
			}
		case "sha":
			var sum [32]byte
			if rc := partSHA256(num(op[1]), num(op[2]), unsafe.Pointer(&sum[0])); rc < 0 {
				v = strconv.Itoa(int(rc))
			} else {
				v = hex.EncodeToString(sum[:])
			}
		case "match":
			n := partMatch(num(op[1]), num(op[2]), uint32(handle), num(op[3]), nil, 0)
			if n < 0 {
				v = strconv.Itoa(int(n))
				break
			}
			buf := make([]byte, n)
			partMatch(num(op[1]), num(op[2]), uint32(handle), num(op[3]), ptr(buf), uint32(n))
			v = strings.ReplaceAll(string(buf), "\n", ";")
			if len(v) > 1024 {
				sum := sha256.Sum256([]byte(v))
				v = "sha256:" + hex.EncodeToString(sum[:]) + ":" + strconv.Itoa(len(v))
			}
		}
		key := "r" + strconv.Itoa(i)
		tagAdd(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)), unsafe.Pointer(unsafe.StringData(v)), uint32(len(v)))
	}
	return 0
}

func main() {}
