package postern

// The exports of ABI v1 §2. Go exports are static, so every hook is exported and postern_hooks tells the host
// which ones have a handler. staticcheck cannot see go:wasmexport, hence the lint:ignore lines.

//go:wasmexport postern_abi_version
//lint:ignore U1000 called by the host through the wasm export
func exportABIVersion() int32 { return ABIVersion }

//go:wasmexport postern_hooks
//lint:ignore U1000 called by the host through the wasm export
func exportHooks() int32 { return int32(registered()) }

//go:wasmexport postern_init
//lint:ignore U1000 called by the host through the wasm export
func exportInit() int32 { return runInit() }

//go:wasmexport postern_on_connect
//lint:ignore U1000 called by the host through the wasm export
func exportOnConnect() int32 { return runEnvelope(hookConnect) }

//go:wasmexport postern_on_mail_from
//lint:ignore U1000 called by the host through the wasm export
func exportOnMailFrom() int32 { return runEnvelope(hookMailFrom) }

//go:wasmexport postern_on_rcpt_to
//lint:ignore U1000 called by the host through the wasm export
func exportOnRcptTo() int32 { return runEnvelope(hookRcptTo) }

//go:wasmexport postern_on_message
//lint:ignore U1000 called by the host through the wasm export
func exportOnMessage() int32 { return runMessage() }

//go:wasmexport postern_wants
//lint:ignore U1000 called by the host through the wasm export
func exportWants() int32 { return int32(wants) }
