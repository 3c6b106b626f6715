// Package pluginhost runs Postern's filter plugins: WebAssembly modules that speak the plugin ABI of sdk/ABI.md.
//
// A Host loads plugins; a Plugin runs one hook on one message (or envelope stage) with Call and returns a Result:
// a verdict, tags, a score, recorded changes and the plugin's log lines. Every protocol path of the proxy ends in
// Call, so it never panics, never returns nil, and always has a defined outcome.
//
//	host, _ := pluginhost.NewHost(ctx, pluginhost.Options{CacheDir: stateDir, Logger: log})
//	p, err := host.Load(ctx, pluginhost.Config{Name: "dlp", Wasm: wasm, Config: cfgJSON})
//	res := p.Call(ctx, pluginhost.HookMessage, &pluginhost.Input{Env: env, Msg: msg})
//
// # Runtime
//
// Each plugin gets its own wazero runtime (compiler engine), because the guest memory limit is a runtime-wide
// setting and because closing one runtime releases everything a plugin holds. All runtimes share one compilation
// cache, on disk when Options.CacheDir is set: a Go guest compiles in about a second, and loads from the cache in
// tens of milliseconds. The module is compiled once, at Load.
//
// Runtimes use WithCloseOnContextDone, the only way wazero has to stop a guest that loops: every call runs under
// context.WithTimeout and a guest past its deadline is closed. This is not free: wazero starts a watchdog goroutine
// per call (about a microsecond) and checks for closure at every loop header (guest loops run several times
// slower). That is why the ABI gives plugins host-side helpers (patterns_compile/part_match, part_sha256, decoded
// part windows) instead of asking them to loop over bytes.
//
// # Pool
//
// Instantiating a Go guest costs milliseconds and megabytes, so instances are pooled and reused: the steady state
// is zero instantiations per message. An instance is never used by two calls at once. Acquiring one waits, at
// most until the caller's deadline, when all PoolSize instances are busy; the pool grows on demand up to PoolSize,
// Load leaves one instance warm, and instances beyond the first are closed after Options.IdleTimeout unused. The call's state (message, envelope, verdict, changes) travels in the context
// of the wazero call, never in the instance, so an instance carries nothing of one message into the next, apart
// from what a guest keeps in its own globals, which the ABI forbids for message data.
//
// An instance is discarded after any failure: a trap (a Go guest's panic leaves its runtime in a state where the
// next panic exits the module), a timeout (wazero has closed it), proc_exit, a host function's abort, or a non-zero
// hook result. A replacement is created in the background. Instances are also recycled after MaxCalls calls and
// when their linear memory has grown past half the limit, because a Go heap never shrinks.
//
// # Skipped calls and profiling
//
// A plugin may declare with postern_wants which messages its message hook is for (Wants); for any other message
// Call returns an accept with Result.Skipped set and runs nothing. With Options.Profiler the host compiles every
// plugin with wazero's function listeners and records each hook call's guest and host function calls
// (package guestprof).
//
// # Sandbox
//
// Guests get WASI preview 1 without files, arguments, environment or sockets; their stdout and stderr are
// discarded; their clock is fixed and their random source deterministic unless Config.Grants say otherwise. They
// may import only the postern and wasi_snapshot_preview1 modules, and Load refuses a module that imports anything
// the host does not provide, naming it, rather than failing on the first message.
//
// # Failures
//
// A failed call gives the plugin's OnError outcome (tempfail by default, so a broken plugin delays mail rather
// than letting it through unchecked) and drops whatever verdict, tags, score and changes the call had set. Its
// Err is a *CallError naming the plugin and the reason, matching one of ErrTimeout, ErrTrap, ErrExit,
// ErrOutOfRange, ErrBudget, ErrHookFailed, ErrBusy, ErrCanceled, ErrClosed or ErrInstance. Out-of-range pointers
// and exceeded budgets (ABI §6) abort the call; arguments the ABI calls invalid are ERR_INVALID results the guest
// may handle.
//
// # Helpers
//
// Part content is served in bounded memory whatever the part's size (content.go). Small decoded content is kept in
// the Input, which a chain of plugins shares, so five plugins reading the same text part decode it once; content
// that needs no decoding is read in place; large decoded content is decoded as it is read, and part_match searches
// it in overlapping windows, which is exact except for matches longer than the overlap (ABI §3.4). Pattern sets are compiled once per distinct text for the whole
// host. part_match keeps Go regexp's leftmost-first semantics exactly, but for patterns of bounded length that
// start with a recognisable byte (most literal and DLP patterns) it runs the regexp only in small windows around
// candidate positions found by one pass over the content; other patterns are scanned whole.
package pluginhost
