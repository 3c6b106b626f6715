// Command gooom is a hostile test guest: its message hook allocates without bound until the Go runtime runs out
// of the memory the host allows. Its connect hook succeeds.
package main

var keep [][]byte

//go:wasmexport postern_abi_version
func abiVersion() int32 { return 1 }

//go:wasmexport postern_on_connect
func onConnect() int32 { return 0 }

//go:wasmexport postern_on_message
func onMessage() int32 {
	for {
		b := make([]byte, 1<<20)
		b[0] = 1
		keep = append(keep, b)
	}
}

func main() {}
