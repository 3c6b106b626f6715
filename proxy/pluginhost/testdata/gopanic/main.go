// Command gopanic is a hostile test guest: its message hook panics (a nil map write), the Go runtime's fatal
// path, which wazero reports as an unreachable trap. Its connect hook succeeds.
package main

var counts map[string]int

//go:wasmexport postern_abi_version
func abiVersion() int32 { return 1 }

//go:wasmexport postern_on_connect
func onConnect() int32 { return 0 }

//go:wasmexport postern_on_message
func onMessage() int32 {
	counts["boom"]++ // nil map: panics
	return 0
}

func main() {}
