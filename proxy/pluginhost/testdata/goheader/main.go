// Command goheader is a test guest written against the raw ABI (not the SDK): its message hook reads the decoded
// Subject and tags it as "subject". It is the Go half of BenchmarkCallHeaderOnly.
package main

import "unsafe"

//go:wasmimport postern header_get
func headerGet(part uint32, name unsafe.Pointer, nameLen uint32, index, flags uint32, buf unsafe.Pointer, limit uint32) int32

//go:wasmimport postern tag_add
func tagAdd(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32) int32

var buf [1024]byte

//go:wasmexport postern_abi_version
func abiVersion() int32 { return 1 }

//go:wasmexport postern_on_message
func onMessage() int32 {
	name, key := "Subject", "subject"
	n := headerGet(0, unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)), 0, 1, unsafe.Pointer(&buf[0]), uint32(len(buf)))
	if n < 0 {
		return 0
	}
	n = min(n, int32(len(buf)))
	tagAdd(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)), unsafe.Pointer(&buf[0]), uint32(n))
	return 0
}

func main() {}
