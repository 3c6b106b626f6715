package pluginhost

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/postern/postern/proxy/guestprof"
)

// Defaults of Config (ABI §6).
const (
	DefaultMemory   = 64 << 20        // guest memory limit in bytes
	DefaultTimeout  = 2 * time.Second // per hook call
	DefaultMaxCalls = 10000           // calls before an instance is recycled
)

const (
	defaultInitTimeout = 5 * time.Second
	pageSize           = 64 << 10
	maxPages           = 65536
)

// Host loads plugins and owns what they share: the compilation cache and the compiled pattern sets.
type Host struct {
	cache    wazero.CompilationCache
	log      *slog.Logger
	patterns patternCache
	prof     *guestprof.Profiler // nil: plugins run without function listeners

	mu      sync.Mutex
	plugins map[*Plugin]struct{}
	closed  bool
	stop    chan struct{} // closed by Close: ends the pool trimmer
}

// DefaultIdleTimeout is Options.IdleTimeout's default.
const DefaultIdleTimeout = 10 * time.Second

// NewHost makes a host. With opts.CacheDir set, compiled plugins are kept on disk there and reused by later
// processes (wazero keys them by module bytes, wazero version and CPU).
func NewHost(ctx context.Context, opts Options) (*Host, error) {
	h := &Host{log: opts.Logger, plugins: make(map[*Plugin]struct{}), prof: opts.Profiler, stop: make(chan struct{})}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if opts.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("pluginhost: compilation cache in %s: %w", opts.CacheDir, err)
		}
		h.cache = c
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	idle := opts.IdleTimeout
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	if idle > 0 {
		go h.trimPools(idle)
	}
	return h, nil
}

// trimPools closes, every half idle timeout, the pool instances idle for longer than it (Plugin.trimIdle).
func (h *Host) trimPools(idle time.Duration) {
	t := time.NewTicker(idle / 2)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			h.mu.Lock()
			plugins := make([]*Plugin, 0, len(h.plugins))
			for p := range h.plugins {
				plugins = append(plugins, p)
			}
			h.mu.Unlock()
			trimmed := 0
			for _, p := range plugins {
				if n := p.trimIdle(now.Add(-idle)); n > 0 {
					trimmed += n
					h.log.Debug("closed idle plugin instances", "plugin", p.name, "instances", n)
				}
			}
			if trimmed > 0 {
				// A Go guest's instance is megabytes of Go heap; without this the runtime keeps the pages for
				// minutes (it returns memory to the system slowly), and a proxy that saw one burst of mail would
				// keep the memory of its largest pool. At most once per tick, and only after a burst.
				debug.FreeOSMemory()
			}
		}
	}
}

// Close closes every plugin still loaded, aborting calls in flight (they fail with ErrClosed or a trap), and the
// compilation cache. The on-disk cache stays for the next process.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if !h.closed {
		close(h.stop)
	}
	h.closed = true
	plugins := make([]*Plugin, 0, len(h.plugins))
	for p := range h.plugins {
		plugins = append(plugins, p)
	}
	h.mu.Unlock()
	for _, p := range plugins {
		_ = p.Close(ctx)
		p.closeRuntime() // unlike Plugin.Close, don't wait for calls in flight: the host is going away
	}
	return h.cache.Close(ctx)
}

func (h *Host) forget(p *Plugin) {
	h.mu.Lock()
	delete(h.plugins, p)
	h.mu.Unlock()
}

// guestFeatures are the WebAssembly features a guest may use (ABI §1.1): the 2.0 core specification (mutable
// globals, multi-value, sign extension, non-trapping float-to-int, bulk memory, reference types, 128-bit SIMD),
// set here rather than taken from wazero's default so that a new wazero cannot change the ABI.
const guestFeatures = api.CoreFeaturesV2

// refusedFeature reports whether a compilation error is a feature outside guestFeatures, to say so in the error.
func refusedFeature(err error) bool {
	msg := err.Error()
	// wazero names the feature for threads, tail calls and exception tags; for the rest it names the
	// construct it cannot read (an instruction, a memory's limits, a GC type).
	return strings.Contains(msg, "feature") || strings.Contains(msg, "at most one memory") ||
		strings.Contains(msg, "invalid byte for limits") || strings.Contains(msg, "invalid instruction") ||
		(strings.Contains(msg, "section type") && strings.Contains(msg, "invalid byte"))
}

// Load compiles a plugin (through the host's compilation cache), checks it against the ABI, and creates its first
// instance, running postern_init, so that a bad module or a refused configuration fails here, with the plugin's
// log lines in the error, rather than on the first message.
func (h *Host) Load(ctx context.Context, cfg Config) (*Plugin, error) {
	if cfg.Name == "" {
		return nil, errors.New("pluginhost: plugin has no name")
	}
	fail := func(format string, args ...any) (*Plugin, error) {
		return nil, fmt.Errorf("plugin %q: %s", cfg.Name, fmt.Sprintf(format, args...))
	}
	if len(cfg.Wasm) == 0 {
		return fail("no module bytes")
	}
	if len(bytes.TrimSpace(cfg.Config)) == 0 {
		// No configuration, however it came (absent, or an empty or blank file): the ABI promises a JSON
		// document, and "" is not one.
		cfg.Config = []byte("{}")
	}
	if cfg.Memory == 0 {
		cfg.Memory = DefaultMemory
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.InitTimeout <= 0 {
		cfg.InitTimeout = max(defaultInitTimeout, cfg.Timeout)
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = max(2, 2*runtime.GOMAXPROCS(0))
	}
	if cfg.MaxCalls <= 0 {
		cfg.MaxCalls = DefaultMaxCalls
	}
	var onError Verdict
	switch cfg.OnError {
	case OnErrorTempfail, OnErrorAccept, OnErrorReject:
		onError = cfg.OnError.verdict()
	default:
		return fail("invalid OnError %d", cfg.OnError)
	}
	pages := min((uint64(cfg.Memory)+pageSize-1)/pageSize, maxPages)
	sum := sha256.Sum256(cfg.Wasm)

	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return fail("host closed")
	}

	// One runtime per plugin: the memory limit is a runtime setting, and closing a runtime releases everything
	// of the plugin at once. The compilation cache is shared, so identical modules compile once.
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().
		WithCoreFeatures(guestFeatures).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(uint32(pages)).
		WithCompilationCache(h.cache))
	ok := false
	defer func() {
		if !ok {
			_ = rt.Close(context.Background())
		}
	}()
	// With a profiler, the guest's functions, the host functions and WASI's are compiled with its listeners.
	var prof *guestprof.Plugin
	lctx := ctx
	if h.prof != nil {
		prof = h.prof.Plugin(cfg.Name, hex.EncodeToString(sum[:]))
		lctx = prof.Listen(ctx)
	}
	if _, err := wasi_snapshot_preview1.Instantiate(lctx, rt); err != nil {
		return fail("instantiating WASI: %v", err)
	}
	hb := rt.NewHostModuleBuilder(hostModule)
	for i := range hostFuncs {
		hf := &hostFuncs[i]
		hb.NewFunctionBuilder().WithGoModuleFunction(hf.goFunc(), hf.params, i32Result).Export(hf.name)
	}
	if _, err := hb.Instantiate(lctx); err != nil {
		return fail("instantiating host functions: %v", err)
	}
	compiled, err := rt.CompileModule(lctx, cfg.Wasm)
	if err != nil {
		if refusedFeature(err) {
			return fail("compiling: %v (a guest may use WebAssembly 2.0 only: no threads or atomics, tail calls, "+
				"exception handling, 64-bit or multiple memories, GC types; ABI §1.1)", err)
		}
		return fail("compiling: %v", err)
	}
	if err := checkImports(rt, compiled); err != nil {
		return fail("%v", err)
	}
	exported, err := checkExports(compiled)
	if err != nil {
		return fail("%v", err)
	}

	modCfg := wazero.NewModuleConfig().WithName("").WithStartFunctions() // anonymous: many instances coexist
	if _, ok := compiled.ExportedFunctions()["_initialize"]; ok {
		modCfg = modCfg.WithStartFunctions("_initialize")
	}
	if cfg.Grants.Clock {
		modCfg = modCfg.WithSysWalltime().WithSysNanotime().WithSysNanosleep()
	}
	if cfg.Grants.Random {
		modCfg = modCfg.WithRandSource(rand.Reader)
	}
	// No WithFS, WithArgs, WithEnv, WithStdout/Stderr: wazero's defaults are no files, no arguments, no
	// environment and discarded output, a fixed clock and a deterministic random source (ABI §8).

	p := &Plugin{
		host:        h,
		name:        cfg.Name,
		sha:         hex.EncodeToString(sum[:]),
		config:      cfg.Config,
		timeout:     cfg.Timeout,
		initTimeout: cfg.InitTimeout,
		maxCalls:    cfg.MaxCalls,
		memLimit:    pages * pageSize,
		onError:     onError,
		log:         h.log,
		prof:        prof,
		rt:          rt,
		compiled:    compiled,
		modCfg:      modCfg,
		idle:        make(chan *instance, cfg.PoolSize),
		tokens:      make(chan struct{}, cfg.PoolSize),
		done:        make(chan struct{}),
		insts:       make(map[*instance]struct{}),
	}
	for range cfg.PoolSize - 1 {
		p.tokens <- struct{}{}
	}
	var check loadCheck
	in, logs, err := p.newInstance(ctx, &check)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w%s", cfg.Name, err, formatLogs(logs))
	}
	p.hooks = exported
	switch {
	case check.wants&^knownWants != 0:
		h.log.Warn("plugin declares message shapes this host does not know; it is called on every message",
			"plugin", cfg.Name, "postern_wants", fmt.Sprintf("%#x", uint32(check.wants)))
	case check.wants != 0 && exported.Has(HookMessage):
		p.wants = check.wants
	}
	if check.hasMask {
		p.hooks &= check.mask
		if p.hooks == 0 {
			_ = in.mod.Close(ctx)
			return fail("postern_hooks returned %#x, which enables none of the exported hooks (%s)", uint32(check.mask), exported)
		}
	}
	p.live.Store(1)
	p.register(in)
	p.idle <- in

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		_ = in.mod.Close(ctx)
		return fail("host closed")
	}
	h.plugins[p] = struct{}{}
	h.mu.Unlock()
	ok = true
	return p, nil
}

// formatLogs renders init log lines for an error message, one line each, as the plugin logged them.
func formatLogs(logs []LogLine) string {
	if len(logs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; plugin log:")
	for _, l := range logs {
		fmt.Fprintf(&b, "\n[%s] %s", strings.ToLower(l.Level.String()), l.Text)
	}
	return b.String()
}

// checkImports checks that every import is a function the host provides with the right signature (ABI §3, §5).
func checkImports(rt wazero.Runtime, compiled wazero.CompiledModule) error {
	provided := map[string]map[string]api.FunctionDefinition{}
	for _, name := range []string{hostModule, wasi_snapshot_preview1.ModuleName} {
		provided[name] = rt.Module(name).ExportedFunctionDefinitions()
	}
	var missing, wrong, foreign []string
	for _, def := range compiled.ImportedFunctions() {
		mod, name, _ := def.Import()
		defs, ok := provided[mod]
		if !ok {
			if v, isVersion := strings.CutPrefix(mod, hostModule+"_v"); isVersion {
				return fmt.Errorf("ABI version %s is not supported (it imports module %q; this host supports version %d)", v, mod, abiVersion)
			}
			foreign = append(foreign, mod+"."+name)
			continue
		}
		have, ok := defs[name]
		if !ok {
			missing = append(missing, mod+"."+name)
			continue
		}
		if !slices.Equal(have.ParamTypes(), def.ParamTypes()) || !slices.Equal(have.ResultTypes(), def.ResultTypes()) {
			wrong = append(wrong, fmt.Sprintf("%s.%s is %s, the host's is %s", mod, name, signature(def), signature(have)))
		}
	}
	var problems []string
	if len(foreign) > 0 {
		problems = append(problems, fmt.Sprintf("imports from modules the host does not provide (only %s and %s): %s",
			hostModule, wasi_snapshot_preview1.ModuleName, strings.Join(foreign, ", ")))
	}
	if len(missing) > 0 {
		problems = append(problems, "imports functions the host does not provide: "+strings.Join(missing, ", "))
	}
	if len(wrong) > 0 {
		problems = append(problems, "imports with the wrong signature: "+strings.Join(wrong, "; "))
	}
	if mems := compiled.ImportedMemories(); len(mems) > 0 {
		problems = append(problems, "imports a memory; a plugin must define and export its own")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func signature(def api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return names(def.ParamTypes()) + " -> " + names(def.ResultTypes())
}

// checkExports checks the exports of ABI §2 and returns the hooks exported.
func checkExports(compiled wazero.CompiledModule) (HookSet, error) {
	if _, ok := compiled.ExportedMemories()["memory"]; !ok {
		return 0, errors.New(`does not export its memory as "memory"`)
	}
	fns := compiled.ExportedFunctions()
	i32 := []api.ValueType{api.ValueTypeI32}
	want := func(name string, results []api.ValueType, required bool) error {
		def, ok := fns[name]
		if !ok {
			if required {
				return fmt.Errorf("does not export %s (not a Postern plugin, or built without an SDK)", name)
			}
			return nil
		}
		if len(def.ParamTypes()) != 0 || !slices.Equal(def.ResultTypes(), results) {
			return fmt.Errorf("export %s is %s, want %s", name, signature(def), map[bool]string{true: "() -> (i32)", false: "() -> ()"}[len(results) == 1])
		}
		return nil
	}
	if err := want("postern_abi_version", i32, true); err != nil {
		return 0, err
	}
	for _, name := range []string{"postern_init", "postern_hooks", "postern_wants"} {
		if err := want(name, i32, false); err != nil {
			return 0, err
		}
	}
	if err := want("_initialize", nil, false); err != nil {
		return 0, err
	}
	var hooks HookSet
	for h := range numHooks {
		if err := want(hookExports[h], i32, false); err != nil {
			return 0, err
		}
		if _, ok := fns[hookExports[h]]; ok {
			hooks |= 1 << h
		}
	}
	if hooks == 0 {
		return 0, fmt.Errorf("exports no hook (%s)", strings.Join(hookExports[:], ", "))
	}
	return hooks, nil
}
