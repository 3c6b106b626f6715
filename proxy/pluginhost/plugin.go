package pluginhost

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/postern/postern/proxy/guestprof"
	"github.com/postern/postern/proxy/message"
)

// Plugin is a loaded plugin: its compiled module, its own wazero runtime and a pool of ready instances. It is safe
// for concurrent use; each call gets an instance of its own.
type Plugin struct {
	host        *Host
	name        string
	sha         string
	hooks       HookSet
	wants       Wants // postern_wants: message shapes the message hook is for; 0 every message
	config      []byte
	timeout     time.Duration
	initTimeout time.Duration
	maxCalls    int
	memLimit    uint64 // bytes
	onError     Verdict
	log         *slog.Logger
	prof        *guestprof.Plugin // nil unless the host profiles

	rt       wazero.Runtime
	compiled wazero.CompiledModule
	modCfg   wazero.ModuleConfig

	// The pool. tokens holds one token per instance that may still be created: an instance exists only while
	// its creator holds a token, so at most PoolSize instances ever exist. idle has room for all of them, so
	// putting an instance back never blocks.
	idle   chan *instance
	tokens chan struct{}
	done   chan struct{} // closed by Close: wakes waiters
	closed atomic.Bool
	live   atomic.Int64
	rtOnce sync.Once

	mu    sync.Mutex // guards insts
	insts map[*instance]struct{}

	created, discarded, recycled, calls, failures, skipped, trimmed atomic.Uint64
}

// instance is one instantiated module. It is used by one call at a time: the pool hands it out exclusively.
type instance struct {
	mod      api.Module
	hooks    [numHooks]api.Function
	stack    []uint64 // CallWithStack's stack: hooks take nothing and return one i32
	calls    int
	mem      atomic.Uint64 // linear memory size after the last call, for Stats
	initMem  uint64        // linear memory size when the instance was ready
	patterns []*patternSet // handles from patterns_compile, valid for the instance's life
	// idleSince is when the instance was last put back in the pool (set before the put, read by trimIdle after
	// taking it out: the channel orders the two).
	idleSince time.Time
}

// Name returns the plugin's name.
func (p *Plugin) Name() string { return p.name }

// SHA256 returns the hex SHA-256 of the plugin's module bytes.
func (p *Plugin) SHA256() string { return p.sha }

// Hooks returns the hooks the plugin implements. Calling another hook accepts without running the guest.
func (p *Plugin) Hooks() HookSet { return p.hooks }

// Stats returns the plugin's counters and the state of its pool.
func (p *Plugin) Stats() Stats {
	s := Stats{
		Live:      int(p.live.Load()),
		Idle:      len(p.idle),
		Created:   p.created.Load(),
		Discarded: p.discarded.Load(),
		Recycled:  p.recycled.Load(),
		Calls:     p.calls.Load(),
		Skipped:   p.skipped.Load(),
		Trimmed:   p.trimmed.Load(),
		Failures:  p.failures.Load(),
	}
	p.mu.Lock()
	for in := range p.insts {
		s.MemoryBytes += in.mem.Load()
	}
	p.mu.Unlock()
	return s
}

// Close stops the plugin: calls made afterwards fail with ErrClosed, idle instances are closed now and busy ones
// when their call returns; the plugin's runtime is released with the last instance. Close does not wait for calls
// in flight.
func (p *Plugin) Close(ctx context.Context) error {
	if p.closed.Swap(true) {
		return nil
	}
	close(p.done)
	p.host.forget(p)
	p.drainIdle()
	if p.live.Load() == 0 {
		p.closeRuntime()
	}
	return nil
}

func (p *Plugin) drainIdle() {
	for {
		select {
		case in := <-p.idle:
			p.destroy(in)
		default:
			return
		}
	}
}

func (p *Plugin) closeRuntime() {
	p.rtOnce.Do(func() {
		// Closing the runtime closes any module left and the compiled code (the code stays in the host's
		// compilation cache for other plugins with the same bytes).
		if err := p.rt.Close(context.Background()); err != nil {
			p.log.Warn("closing plugin runtime", "plugin", p.name, "err", err)
		}
	})
}

// Call runs one hook of the plugin. It never panics and never returns nil: a failure of any kind (the guest's, a
// budget, the pool's, the caller's deadline) is a Result with Err set and the plugin's on_error verdict. A hook the
// plugin does not implement accepts without running anything.
func (p *Plugin) Call(ctx context.Context, hook Hook, in *Input) (res *Result) {
	start := time.Now()
	res = &Result{Plugin: p.name, Hook: hook}
	defer func() {
		// Only a bug of the host itself can get here (the guest's panics are wazero's errors).
		if r := recover(); r != nil {
			p.fail(res, ErrTrap, fmt.Sprintf("internal error: %v", r), nil)
		}
		res.Duration = time.Since(start)
	}()
	if !p.hooks.Has(hook) {
		res.Changes = new(message.Changes)
		return res
	}
	if in == nil {
		in = &Input{}
	}
	if hook == HookMessage {
		if why := p.skipReason(in); why != "" {
			p.skipped.Add(1)
			res.Skipped = why
			res.Changes = new(message.Changes)
			return res
		}
	}
	p.calls.Add(1)
	if err := ctx.Err(); err != nil {
		// Don't spend an instance on a call that cannot run: wazero would close it at once.
		reason, detail := ErrTimeout, "caller's deadline exceeded before the call"
		if err == context.Canceled {
			reason, detail = ErrCanceled, "canceled before the call"
		}
		p.fail(res, reason, detail, err)
		return res
	}
	inst, err := p.acquire(ctx)
	if err != nil {
		ce := err.(*CallError)
		p.fail(res, ce.Reason, ce.Detail, ce.Err)
		return res
	}
	p.run(ctx, inst, hook, in, res)
	return res
}

// run makes the call on inst and gives inst back to the pool (or discards it).
func (p *Plugin) run(ctx context.Context, inst *instance, hook Hook, in *Input, res *Result) {
	st := getState()
	st.begin(p, inst, hook, in)
	healthy := false
	defer func() {
		// Runs on the way out of a host bug's panic too: the instance is then discarded.
		p.release(inst, healthy)
		putState(st)
	}()

	tctx, cancel := context.WithTimeout(ctx, p.timeout)
	cctx := context.WithValue(tctx, stateKey{}, st)
	done := func() {}
	if p.prof != nil {
		cctx, done = p.prof.Begin(cctx)
	}
	inst.stack[0] = 0
	err := inst.hooks[hook].CallWithStack(cctx, inst.stack)
	done()
	cancel()
	inst.calls++
	res.Logs = st.logs
	switch {
	case err != nil:
		detail, reason := classify(err, ctx, p.timeout)
		if p.closed.Load() && reason == ErrExit {
			reason, detail = ErrClosed, "plugin closed during the call"
		}
		p.fail(res, reason, detail, err)
	case inst.stack[0] != 0:
		p.fail(res, ErrHookFailed, fmt.Sprintf("%s hook returned %d", hook, int32(inst.stack[0])), nil)
	default:
		healthy = true
		res.Verdict = st.verdict
		res.Tags = st.tags
		res.Score = st.score
		res.Changes = st.changes
		if res.Changes == nil {
			res.Changes = new(message.Changes)
		}
	}
}

// fail makes res a failure with the plugin's on_error outcome, dropping whatever the call had set.
func (p *Plugin) fail(res *Result, reason error, detail string, err error) {
	res.Err = &CallError{Plugin: p.name, Hook: res.Hook, Reason: reason, Detail: detail, Err: err}
	res.Verdict = p.onError
	res.Tags = nil
	res.Score = 0
	res.Changes = new(message.Changes)
	p.failures.Add(1)
	p.log.Warn("plugin call failed", "plugin", p.name, "hook", res.Hook.String(), "reason", detail)
}

func (p *Plugin) callError(reason error, detail string, err error) *CallError {
	return &CallError{Plugin: p.name, Reason: reason, Detail: detail, Err: err}
}

// acquire takes an idle instance, or creates one if the pool may grow, or waits for one until ctx is done.
func (p *Plugin) acquire(ctx context.Context) (*instance, error) {
	select {
	case in := <-p.idle:
		return in, nil
	default:
	}
	if p.closed.Load() {
		return nil, p.callError(ErrClosed, "plugin closed", nil)
	}
	select {
	case in := <-p.idle:
		return in, nil
	case <-p.tokens:
		in, err := p.create(ctx)
		if err != nil {
			return nil, p.callError(ErrInstance, err.Error(), err)
		}
		return in, nil
	case <-p.done:
		return nil, p.callError(ErrClosed, "plugin closed", nil)
	case <-ctx.Done():
		if ctx.Err() == context.Canceled {
			return nil, p.callError(ErrCanceled, "canceled while waiting for a free instance", ctx.Err())
		}
		return nil, p.callError(ErrBusy, fmt.Sprintf("no free instance before the deadline (all %d busy)", cap(p.tokens)), ctx.Err())
	}
}

// create makes a new instance; the caller holds a token, which create gives back on failure.
func (p *Plugin) create(ctx context.Context) (*instance, error) {
	p.live.Add(1)
	in, _, err := p.newInstance(ctx, nil)
	if err != nil {
		p.dropToken()
		return nil, err
	}
	p.register(in)
	return in, nil
}

func (p *Plugin) register(in *instance) {
	p.created.Add(1)
	p.mu.Lock()
	p.insts[in] = struct{}{}
	p.mu.Unlock()
}

// release gives inst back to the pool, or closes it when it failed, is due for recycling or the plugin is closed,
// starting a replacement in the background.
func (p *Plugin) release(inst *instance, healthy bool) {
	if healthy && inst.mod.IsClosed() {
		healthy = false
	}
	recycle := false
	if healthy {
		size := uint64(inst.mod.Memory().Size())
		inst.mem.Store(size)
		// A Go heap never shrinks: an instance that once held a big message keeps its memory. Retire it when it
		// has grown past half the limit (an instance that starts that big is left alone: recycling would not
		// help it), and after MaxCalls anyway so that slow leaks in a guest stay bounded.
		recycle = inst.calls >= p.maxCalls || size > p.memLimit/2 && size > inst.initMem
	}
	if healthy && !recycle && !p.closed.Load() {
		inst.idleSince = time.Now()
		p.idle <- inst
		if p.closed.Load() {
			// Close ran between our check and the put: it may have missed this instance.
			p.drainIdle()
		}
		return
	}
	switch {
	case !healthy:
		p.discarded.Add(1)
	case recycle:
		p.recycled.Add(1)
	}
	p.destroy(inst)
	if !p.closed.Load() {
		go p.replace()
	}
}

// trimIdle closes the instances that have been idle since before cutoff, keeping at least one instance: a pool
// that grew for a burst of mail shrinks back to one warm instance, and gives back the instances' memory (a Go
// guest's is megabytes). It returns how many it closed.
func (p *Plugin) trimIdle(cutoff time.Time) int {
	closed := 0
	for range len(p.idle) {
		var in *instance
		select {
		case in = <-p.idle:
		default:
			return closed
		}
		if p.live.Load() > 1 && in.idleSince.Before(cutoff) && !p.closed.Load() {
			p.trimmed.Add(1)
			p.destroy(in)
			closed++
			continue
		}
		p.idle <- in
		if p.closed.Load() {
			p.drainIdle()
			return closed
		}
	}
	return closed
}

// replace creates an instance in the background after one was discarded, so that the next call finds one ready.
func (p *Plugin) replace() {
	select {
	case <-p.tokens:
	default:
		return // the pool is at its size: nothing to replace
	}
	if p.closed.Load() {
		p.tokens <- struct{}{}
		return
	}
	in, err := p.create(context.Background())
	if err != nil {
		if !p.closed.Load() {
			p.log.Error("replacing a plugin instance", "plugin", p.name, "err", err)
		}
		return
	}
	p.release(in, true)
}

// destroy closes an instance and gives its token back.
func (p *Plugin) destroy(in *instance) {
	_ = in.mod.Close(context.Background())
	p.mu.Lock()
	delete(p.insts, in)
	p.mu.Unlock()
	p.dropToken()
}

func (p *Plugin) dropToken() {
	p.live.Add(-1)
	p.tokens <- struct{}{}
	if p.closed.Load() && p.live.Load() == 0 {
		p.closeRuntime()
	}
}

// newInstance instantiates the module and runs _initialize and postern_init. With check set (only for the first
// instance, at Load), it also checks postern_abi_version and reads postern_hooks into check.hooks. The log lines
// of initialisation are returned so that Load can show them.
func (p *Plugin) newInstance(ctx context.Context, check *loadCheck) (*instance, []LogLine, error) {
	st := getState()
	st.beginInit(p)
	defer putState(st)

	ictx, cancel := context.WithTimeout(ctx, p.initTimeout)
	defer cancel()
	cctx := context.WithValue(ictx, stateKey{}, st)
	fail := func(what string, err error) (*instance, []LogLine, error) {
		if err != nil {
			detail, _ := classify(err, ctx, p.initTimeout)
			return nil, st.logs, fmt.Errorf("%s: %s", what, detail)
		}
		return nil, st.logs, fmt.Errorf("%s", what)
	}

	// The instance exists before the module so that patterns_compile in _initialize has a home for its handles.
	in := &instance{stack: make([]uint64, 1)}
	st.inst = in
	mod, err := p.rt.InstantiateModule(cctx, p.compiled, p.modCfg)
	if err != nil {
		return fail("instantiating", err)
	}
	if mod.IsClosed() {
		// proc_exit(0) in _initialize: wazero reports no error but the module is gone.
		return fail("instantiating: module exited during _initialize", nil)
	}
	in.mod = mod
	closeWith := func(what string, err error) (*instance, []LogLine, error) {
		_ = mod.Close(context.Background())
		return fail(what, err)
	}
	call := func(name string) (uint64, error) {
		in.stack[0] = 0
		err := mod.ExportedFunction(name).CallWithStack(cctx, in.stack)
		return in.stack[0], err
	}
	if check != nil {
		v, err := call("postern_abi_version")
		if err != nil {
			return closeWith("postern_abi_version", err)
		}
		if int32(v) != abiVersion {
			return closeWith(fmt.Sprintf("ABI version %d is not supported (this host supports version %d)", int32(v), abiVersion), nil)
		}
		if mod.ExportedFunction("postern_hooks") != nil {
			mask, err := call("postern_hooks")
			if err != nil {
				return closeWith("postern_hooks", err)
			}
			check.mask, check.hasMask = HookSet(uint32(mask)), true
		}
	}
	if mod.ExportedFunction("postern_init") != nil {
		rc, err := call("postern_init")
		if err != nil {
			return closeWith("postern_init", err)
		}
		if rc != 0 {
			_ = mod.Close(context.Background())
			return nil, st.logs, fmt.Errorf("postern_init returned %d (%w)", int32(rc), ErrConfigRefused)
		}
	}
	if check != nil && mod.ExportedFunction("postern_wants") != nil {
		// After postern_init: what a plugin wants may depend on its configuration.
		w, err := call("postern_wants")
		if err != nil {
			return closeWith("postern_wants", err)
		}
		check.wants = Wants(uint32(w))
	}
	for h := range numHooks {
		in.hooks[h] = mod.ExportedFunction(hookExports[h])
	}
	in.initMem = uint64(mod.Memory().Size())
	in.mem.Store(in.initMem)
	return in, st.logs, nil
}

// loadCheck carries what Load learns from the first instance.
type loadCheck struct {
	mask    HookSet
	hasMask bool
	wants   Wants
}
