// Package guestprof profiles the WebAssembly code of plugins: where a guest spends its time, by its own function
// names, written as a pprof profile that `go tool pprof` reads.
//
// It times calls rather than sampling them. A plugin call on a clean message lasts tens of microseconds, so a
// sampling profiler at any rate the Go runtime offers would see nothing of one `postern plugin test` run, and would
// need thousands of messages to tell two functions of a plugin apart; call timing gives the whole picture of a
// single call. wazero's function listeners (package experimental) report the entry and exit of every guest
// function, and of every host function the guest calls, so the profile holds, per call path, how often it was
// called and the time spent in the function itself (its callees' time excluded): pprof's flat and cum columns.
//
// Timing every call has a price, and it is not spread evenly: each call through a listener costs the guest a
// round trip to Go (a few hundred nanoseconds), which the profile cannot see, and a guest that makes many small
// calls runs several times slower than without the profiler. The time of the listener itself is left out of the
// profile (the clock is read at the end of entry and the start of exit); the round trip is charged to the caller.
// Read the numbers as where the time goes, not as what the plugin costs unprofiled: that is what benchmarks
// measure. Function names come from the module's name section (Go and Rust keep it by default; C built with
// --strip-all has none, and its functions show as their export name or $index).
//
// A Profiler is passed to the plugin host (pluginhost.Options.Profiler), which compiles every plugin with the
// listeners and puts a per-call recorder in the context of each hook call. Calls made while the profiler is
// stopped, and the instance initialisation (_initialize, postern_init), are not recorded.
package guestprof

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/pprof/profile"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// Profiler collects the profiles of the plugins it is given, until it is stopped. It is safe for concurrent use.
type Profiler struct {
	start   time.Time
	running atomic.Bool

	mu      sync.Mutex
	plugins map[string]*Plugin
	order   []*Plugin
	end     time.Time
}

// New returns a Profiler that records from now on.
func New() *Profiler {
	p := &Profiler{start: time.Now(), plugins: map[string]*Plugin{}}
	p.running.Store(true)
	return p
}

// Stop ends the recording; calls that start afterwards are not recorded. WriteTo stops the profiler itself.
func (p *Profiler) Stop() {
	if p.running.Swap(false) {
		p.mu.Lock()
		p.end = time.Now()
		p.mu.Unlock()
	}
}

// Plugin returns the profile of the plugin called name whose module has the hex SHA-256 sha, making it on first
// use. A plugin loaded again with the same module (a reload) shares it; a different module of the same name (an
// upgrade while profiling) gets its own, shown with the start of its hash.
func (p *Profiler) Plugin(name, sha string) *Plugin {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := name + "\x00" + sha
	if pl := p.plugins[key]; pl != nil {
		return pl
	}
	pl := &Plugin{prof: p, name: name}
	for _, other := range p.order {
		if other.name == name || strings.HasPrefix(other.name, name+" (") {
			pl.name = name + " (" + sha[:min(12, len(sha))] + ")"
			break
		}
	}
	p.plugins[key] = pl
	p.order = append(p.order, pl)
	return pl
}

// Plugin is the profile of one plugin: the function listeners its module is compiled with, and the call trees
// of its calls.
type Plugin struct {
	prof *Profiler
	name string

	mu    sync.Mutex
	free  []*recorder
	all   []*recorder
	funcs map[funcKey]*funcInfo // guarded by mu; filled while the module is compiled
}

// funcKey names a function for the listeners: host functions live in their own modules, so the module name is
// part of it.
type funcKey struct {
	module string
	index  uint32
}

type funcInfo struct {
	key  funcKey
	name string
}

// Listen returns ctx carrying the plugin's function listener factory: a module compiled (or a host module
// instantiated) with it reports every call of its functions.
func (pl *Plugin) Listen(ctx context.Context) context.Context {
	return experimental.WithFunctionListenerFactory(ctx, pl)
}

// NewFunctionListener implements experimental.FunctionListenerFactory.
func (pl *Plugin) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	key := funcKey{def.ModuleName(), def.Index()}
	name := def.Name()
	if name == "" && len(def.ExportNames()) > 0 {
		name = def.ExportNames()[0] // a module without a name section still names its exports
	}
	if name == "" {
		name = fmt.Sprintf("$%d", def.Index())
	}
	if def.GoFunction() != nil {
		// A host function: say whose ("postern.part_match", "wasi_snapshot_preview1.fd_write").
		name = def.ModuleName() + "." + name
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.funcs == nil {
		pl.funcs = map[funcKey]*funcInfo{}
	}
	fi := pl.funcs[key]
	if fi == nil {
		fi = &funcInfo{key: key, name: name}
		pl.funcs[key] = fi
	}
	return &listener{fn: fi}
}

// recorderKey is the context key of a call's recorder.
type recorderKey struct{}

// Begin starts recording one hook call: the returned context is the one to call the guest with, and done must
// be called when the call returned. While the profiler is stopped it records nothing and returns ctx.
func (pl *Plugin) Begin(ctx context.Context) (context.Context, func()) {
	if !pl.prof.running.Load() {
		return ctx, func() {}
	}
	r := pl.get()
	r.mu.Lock()
	r.base = pl.prof.start
	r.stack = append(r.stack[:0], frame{n: &r.root})
	return context.WithValue(ctx, recorderKey{}, r), func() {
		// A trap unwinds without After for the frames it leaves: forget them.
		r.stack = r.stack[:0]
		r.mu.Unlock()
		pl.put(r)
	}
}

func (pl *Plugin) get() *recorder {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if n := len(pl.free); n > 0 {
		r := pl.free[n-1]
		pl.free = pl.free[:n-1]
		return r
	}
	r := &recorder{}
	pl.all = append(pl.all, r)
	return r
}

func (pl *Plugin) put(r *recorder) {
	pl.mu.Lock()
	pl.free = append(pl.free, r)
	pl.mu.Unlock()
}

// recorder holds the call tree of the calls it recorded. One call uses it at a time (its mu is held for the
// call); calls run in parallel on different recorders, merged when the profile is written.
type recorder struct {
	mu    sync.Mutex
	base  time.Time
	root  node
	stack []frame
}

// node is one call path: a function called from its parent's path.
type node struct {
	fn       *funcInfo
	children map[*funcInfo]*node
	calls    int64
	selfNS   int64
}

func (n *node) child(fn *funcInfo) *node {
	c := n.children[fn]
	if c == nil {
		if n.children == nil {
			n.children = map[*funcInfo]*node{}
		}
		c = &node{fn: fn}
		n.children[fn] = c
	}
	return c
}

// frame is one function being executed.
type frame struct {
	n       *node
	enterNS int64 // the entry: the time the function itself started running
	spanNS  int64 // when the listener started its work on entry: the call's span for its caller starts here
	childNS int64 // the time of the callees, as their callers see it (listener work included)
}

// listener is the function listener of one function.
type listener struct{ fn *funcInfo }

func (l *listener) Before(ctx context.Context, _ api.Module, _ api.FunctionDefinition, _ []uint64, _ experimental.StackIterator) {
	r, _ := ctx.Value(recorderKey{}).(*recorder)
	if r == nil || len(r.stack) == 0 {
		return
	}
	span := int64(time.Since(r.base))
	top := &r.stack[len(r.stack)-1]
	r.stack = append(r.stack, frame{n: top.n.child(l.fn), spanNS: span})
	r.stack[len(r.stack)-1].enterNS = int64(time.Since(r.base))
}

func (l *listener) After(ctx context.Context, _ api.Module, _ api.FunctionDefinition, _ []uint64) {
	r, _ := ctx.Value(recorderKey{}).(*recorder)
	if r == nil || len(r.stack) < 2 {
		return
	}
	exit := int64(time.Since(r.base))
	f := r.stack[len(r.stack)-1]
	r.stack = r.stack[:len(r.stack)-1]
	if f.n.fn != l.fn {
		// The stack lost its balance (a frame left without After): drop what was recorded above this call.
		return
	}
	f.n.calls++
	if self := exit - f.enterNS - f.childNS; self > 0 {
		f.n.selfNS += self
	}
	r.stack[len(r.stack)-1].childNS += int64(time.Since(r.base)) - f.spanNS
}

func (l *listener) Abort(ctx context.Context, mod api.Module, def api.FunctionDefinition, _ error) {
	l.After(ctx, mod, def, nil)
}

// WriteTo stops the profiler and writes every plugin's profile as one gzipped pprof protocol buffer. Each call
// path is a sample with two values: calls (count) and cpu (nanoseconds spent in the function itself); the
// bottom frame of each path is the plugin's name, so several plugins share one profile and pprof's -focus can
// pick one. Sample label "plugin" names it too.
func (p *Profiler) WriteTo(w io.Writer) (int64, error) {
	p.Stop()
	prof := p.Profile()
	cw := &countWriter{w: w}
	err := prof.Write(cw)
	return cw.n, err
}

// Profile stops the profiler and returns the profile (see WriteTo).
func (p *Profiler) Profile() *profile.Profile {
	p.Stop()
	p.mu.Lock()
	plugins := append([]*Plugin(nil), p.order...)
	start, end := p.start, p.end
	p.mu.Unlock()

	prof := &profile.Profile{
		SampleType:        []*profile.ValueType{{Type: "calls", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		DefaultSampleType: "cpu",
		PeriodType:        &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:            1,
		TimeNanos:         start.UnixNano(),
		DurationNanos:     int64(end.Sub(start)),
		Comments:          []string{"guest function call timing (postern guestprof): flat is time in the function itself"},
	}
	var nextID uint64 = 1
	for _, pl := range plugins {
		pl.addTo(prof, &nextID)
	}
	return prof
}

// addTo merges the plugin's recorders into one call tree and adds its samples to prof.
func (pl *Plugin) addTo(prof *profile.Profile, nextID *uint64) {
	pl.mu.Lock()
	recs := append([]*recorder(nil), pl.all...)
	funcs := make([]*funcInfo, 0, len(pl.funcs))
	for _, fi := range pl.funcs {
		funcs = append(funcs, fi)
	}
	pl.mu.Unlock()

	var merged node
	for _, r := range recs {
		r.mu.Lock()
		merge(&merged, &r.root)
		r.mu.Unlock()
	}

	locs := map[*funcInfo]*profile.Location{}
	newLoc := func(name string) *profile.Location {
		id := *nextID
		*nextID++
		f := &profile.Function{ID: id, Name: name, SystemName: name, Filename: pl.name + ".wasm"}
		l := &profile.Location{ID: id, Line: []profile.Line{{Function: f}}}
		prof.Function = append(prof.Function, f)
		prof.Location = append(prof.Location, l)
		return l
	}
	root := newLoc(pl.name)
	// Ids in a stable order, so that two profiles of the same plugin list functions alike.
	sort.Slice(funcs, func(i, j int) bool {
		if funcs[i].key.module != funcs[j].key.module {
			return funcs[i].key.module < funcs[j].key.module
		}
		return funcs[i].key.index < funcs[j].key.index
	})
	loc := func(fi *funcInfo) *profile.Location {
		if l := locs[fi]; l != nil {
			return l
		}
		l := newLoc(fi.name)
		locs[fi] = l
		return l
	}
	var walk func(n *node, stack []*profile.Location)
	walk = func(n *node, stack []*profile.Location) {
		if n.calls > 0 || n.selfNS > 0 {
			s := make([]*profile.Location, len(stack))
			for i := range stack { // pprof wants the leaf first
				s[i] = stack[len(stack)-1-i]
			}
			prof.Sample = append(prof.Sample, &profile.Sample{
				Location: s,
				Value:    []int64{n.calls, n.selfNS},
				Label:    map[string][]string{"plugin": {pl.name}},
			})
		}
		kids := make([]*node, 0, len(n.children))
		for _, c := range n.children {
			kids = append(kids, c)
		}
		sort.Slice(kids, func(i, j int) bool { return kids[i].fn.name < kids[j].fn.name })
		for _, c := range kids {
			walk(c, append(stack, loc(c.fn)))
		}
	}
	walk(&merged, []*profile.Location{root})
}

// merge adds the counts of src's tree to dst's.
func merge(dst, src *node) {
	dst.calls += src.calls
	dst.selfNS += src.selfNS
	for fn, c := range src.children {
		merge(dst.child(fn), c)
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
