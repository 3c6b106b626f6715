package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoadRefuses(t *testing.T) {
	h := newHost(t)
	cases := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"abi2", nil, []string{`plugin "abi2": ABI version 2 is not supported (this host supports version 1)`}},
		{"abiv2import", nil, []string{`ABI version 2 is not supported (it imports module "postern_v2"; this host supports version 1)`}},
		{"imports", nil, []string{
			"imports functions the host does not provide: postern.no_such_function",
			"postern.header_get is (i32, i32) -> (i32), the host's is (i32, i32, i32, i32, i32, i32, i32) -> (i32)",
			"imports from modules the host does not provide (only postern and wasi_snapshot_preview1): env.abort",
		}},
		{"nohooks", nil, []string{"exports no hook"}},
		{"nomemory", nil, []string{`does not export its memory as "memory"`}},
		{"badsig", nil, []string{"export postern_on_message is (i32) -> (i32), want () -> (i32)"}},
		{"initfail", nil, []string{"postern_init returned 1 (configuration refused); plugin log:\n[error] missing key \"words\""}},
		{"initexit", nil, []string{"module exited during _initialize"}},
		{"initloop", func(c *Config) { c.InitTimeout = 50 * time.Millisecond }, []string{"postern_init: timeout after 50ms"}},
		{"bigmem", nil, []string{`plugin "bigmem": compiling:`, "2000 pages"}},
		{"empty", func(c *Config) { c.Wasm = []byte("\x00asm garbage") }, []string{`plugin "empty": compiling:`}},
		{"empty", func(c *Config) { c.OnError = 7 }, []string{"invalid OnError 7"}},
		{"empty", func(c *Config) { c.Wasm = nil }, []string{"no module bytes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Name: tc.name, Wasm: wasm(t, tc.name)}
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			p, err := h.Load(context.Background(), cfg)
			if err == nil {
				_ = p.Close(context.Background())
				t.Fatal("Load succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
	if _, err := h.Load(context.Background(), Config{Wasm: wasm(t, "empty")}); err == nil || !strings.Contains(err.Error(), "no name") {
		t.Errorf("Load without a name: %v", err)
	}
}

func TestLoadBasics(t *testing.T) {
	h := newHost(t)
	b := wasm(t, "empty")
	p := load(t, h, "empty", nil)
	sum := sha256.Sum256(b)
	if p.Name() != "empty" || p.SHA256() != hex.EncodeToString(sum[:]) {
		t.Errorf("Name %q SHA256 %q", p.Name(), p.SHA256())
	}
	if p.Hooks() != allHooks || p.Hooks().String() != "connect,mail_from,rcpt_to,message" {
		t.Errorf("Hooks %v", p.Hooks())
	}
	s := p.Stats()
	if s.Live != 1 || s.Idle != 1 || s.Created != 1 || s.MemoryBytes != 64<<10 {
		t.Errorf("after Load: %+v; want one warm instance of 64 KiB", s)
	}
}

func TestHookMask(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "mask", nil)
	if p.Hooks() != 1<<HookMessage {
		t.Fatalf("Hooks %v, want message only", p.Hooks())
	}
	// The masked hooks return 5 if run: they must not run, and the call accepts.
	for _, hook := range []Hook{HookConnect, HookMailFrom, HookRcptTo} {
		res := call(t, p, hook, nil)
		wantOK(t, res)
		if res.Verdict.Kind != Accept {
			t.Errorf("%v: %+v", hook, res.Verdict)
		}
	}
	wantOK(t, call(t, p, HookMessage, messageInput(t)))
	if c := p.Stats().Calls; c != 1 {
		t.Errorf("Calls = %d, want 1 (masked hooks make no call)", c)
	}
}

func withConfig(s string) func(*Config) { return func(c *Config) { c.Config = []byte(s) } }

// stillWorks checks that after a failure the plugin's next call succeeds on a fresh instance and that another
// plugin of the host is unaffected.
func stillWorks(t *testing.T, p *Plugin, hook Hook, in *Input, other *Plugin) {
	t.Helper()
	wantOK(t, call(t, p, hook, in))
	wantOK(t, call(t, other, HookMessage, messageInput(t)))
}

func TestFaults(t *testing.T) {
	h := newHost(t)
	other := load(t, h, "header", nil)
	msg := messageInput(t)
	cases := []struct {
		name   string
		plugin string
		edit   func(*Config)
		hook   Hook
		reason error
		detail string
		then   Hook // a hook of the same plugin that must work afterwards
	}{
		{"unreachable", "trap", nil, HookMessage, ErrTrap, `plugin "trap": wasm trap: unreachable`, HookConnect},
		{"infinite loop", "loop", func(c *Config) { c.Timeout = 50 * time.Millisecond }, HookMessage, ErrTimeout,
			`plugin "loop": timeout after 50ms`, HookConnect},
		{"memory exhaustion", "memory", func(c *Config) { c.Memory = 1 << 20 }, HookMessage, ErrTrap,
			"wasm trap: unreachable", HookConnect},
		{"go panic", "gopanic", nil, HookMessage, ErrTrap, "wasm trap: unreachable", HookConnect},
		{"go out of memory", "gooom", func(c *Config) { c.Memory = 32 << 20; c.Timeout = time.Minute }, HookMessage, ErrTrap,
			"wasm trap: unreachable", HookConnect},
		{"out of range input", "badptr", withConfig("1"), HookMessage, ErrOutOfRange,
			"out of range pointer in log: [4294967040, 4294967552) is outside the guest's 65536 bytes of memory", HookConnect},
		{"out of range output", "badptr", withConfig("2"), HookMessage, ErrOutOfRange,
			"out of range pointer in header_get: [4294901760, 4294901860)", HookConnect},
		{"straddling range", "badptr", withConfig("3"), HookMessage, ErrOutOfRange,
			"out of range pointer in config_get: [65530, 65630)", HookConnect},
		{"wrapping range", "badptr", withConfig("4"), HookMessage, ErrOutOfRange,
			"out of range pointer in log: [16, 4294967311)", HookConnect},
		{"huge log line", "hugelog", nil, HookConnect, ErrBudget, "log budget exceeded (4096 bytes per line, got 5000)", HookMailFrom},
		{"huge log", "hugelog", nil, HookMessage, ErrBudget, `plugin "hugelog": log budget exceeded (65536 bytes)`, HookMailFrom},
		{"giant header value", "giant", nil, HookMessage, ErrBudget,
			"change budget exceeded (header value of 70000 bytes, at most 65536)", HookMessage},
		{"hook returns 7", "garbage", nil, HookConnect, ErrHookFailed, "connect hook returned 7", HookMailFrom},
		{"proc_exit", "garbage", nil, HookMessage, ErrExit, "module exited with code 3", HookMailFrom},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := load(t, h, tc.plugin, tc.edit)
			res := call(t, p, tc.hook, msg)
			wantFailure(t, res, tc.reason, tc.detail)
			s := p.Stats()
			if s.Failures != 1 || s.Discarded != 1 {
				t.Errorf("stats after the failure: %+v; want 1 failure, 1 discarded instance", s)
			}
			if tc.name == "giant header value" {
				// The same hook again on a fresh instance fails the same way, it does not crash the host; check
				// the plugin through its connect hook, where header_add is unavailable (-3, returned negated).
				res := call(t, p, HookConnect, msg)
				wantFailure(t, res, ErrHookFailed, "connect hook returned 3")
				wantOK(t, call(t, other, HookMessage, msg))
				return
			}
			stillWorks(t, p, tc.then, msg, other)
			// The failure replaced the instance: the failed one is never reused.
			eventually(t, "a replacement instance", func() bool { return p.Stats().Created >= 2 })
		})
	}
}

func TestGoPanicTwice(t *testing.T) {
	// A Go guest's second panic on the same instance exits the module (its runtime stays "panicking"): the host
	// must never reuse a panicked instance, so every panic is a plain trap on a fresh one.
	h := newHost(t)
	p := load(t, h, "gopanic", nil)
	for range 3 {
		wantFailure(t, call(t, p, HookMessage, messageInput(t)), ErrTrap, "wasm trap: unreachable")
		wantOK(t, call(t, p, HookConnect, nil))
	}
}

func TestGarbageVerdicts(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "garbage", nil)
	// mail_from: a valid reject, then kind 9 (ERR_INVALID, -2, added as score): the reject stands.
	res := call(t, p, HookMailFrom, nil)
	wantOK(t, res)
	if res.Verdict != (Verdict{Kind: Reject, Code: 550, Enhanced: "5.7.1", Text: "no"}) || res.Score != -2 {
		t.Errorf("mail_from: verdict %+v score %v; want reject 550 5.7.1 kept and score -2", res.Verdict, res.Score)
	}
	// rcpt_to: reject with code 250 is ERR_INVALID; the verdict stays accept.
	res = call(t, p, HookRcptTo, nil)
	wantOK(t, res)
	if res.Verdict.Kind != Accept || res.Score != -2 {
		t.Errorf("rcpt_to: verdict %+v score %v; want accept and score -2", res.Verdict, res.Score)
	}
}

func TestOnError(t *testing.T) {
	h := newHost(t)
	for _, tc := range []struct {
		on   OnError
		want Verdict
	}{
		{OnErrorAccept, Verdict{Kind: Accept}},
		{OnErrorReject, Verdict{Kind: Reject, Code: 550, Enhanced: "5.7.1", Text: "message could not be checked"}},
		{OnErrorTempfail, Verdict{Kind: Tempfail, Code: 451, Enhanced: "4.7.1", Text: "message filter temporarily unavailable"}},
	} {
		p := load(t, h, "trap", func(c *Config) { c.OnError = tc.on; c.Name = "trap-" + tc.on.String() })
		res := call(t, p, HookMessage, messageInput(t))
		if res.Err == nil || res.Verdict != tc.want {
			t.Errorf("on_error %v: verdict %+v err %v", tc.on, res.Verdict, res.Err)
		}
	}
}

func TestSteadyStateNoInstantiation(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "goheader", nil)
	in := messageInput(t)
	for range 200 {
		wantOK(t, call(t, p, HookMessage, in))
	}
	s := p.Stats()
	if s.Created != 1 || s.Live != 1 || s.Calls != 200 || s.Failures != 0 {
		t.Errorf("after 200 sequential calls: %+v; want the single instance of Load reused", s)
	}
	if s.MemoryBytes < 1<<20 {
		t.Errorf("MemoryBytes %d: a Go guest has megabytes of linear memory", s.MemoryBytes)
	}
}

func TestPoolNeverConcurrent(t *testing.T) {
	h := newHost(t)
	const size = 3
	p := load(t, h, "busy", func(c *Config) { c.PoolSize = size })
	var wg sync.WaitGroup
	errs := make(chan error, 8*40)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				if res := p.Call(context.Background(), HookMessage, messageInput(t)); res.Err != nil {
					errs <- res.Err
				}
				if live := p.Stats().Live; live > size {
					errs <- errors.New("pool grew past PoolSize")
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err) // busy.wat traps when it is entered twice at once
	}
	s := p.Stats()
	if s.Created > size || s.Calls != 8*40 {
		t.Errorf("stats %+v: want at most %d instances for %d calls", s, size, 8*40)
	}
}

func TestPoolBusyDeadline(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "loop", func(c *Config) { c.PoolSize = 1; c.Timeout = 2 * time.Second })
	first := make(chan *Result)
	go func() { first <- p.Call(context.Background(), HookMessage, messageInput(t)) }()
	eventually(t, "the looping call holds the only instance", func() bool { return p.Stats().Idle == 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	res := p.Call(ctx, HookConnect, nil)
	wantFailure(t, res, ErrBusy, "no free instance before the deadline (all 1 busy)")

	canceled, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel2() }()
	wantFailure(t, p.Call(canceled, HookConnect, nil), ErrCanceled, "canceled while waiting for a free instance")
	wantFailure(t, p.Call(canceled, HookConnect, nil), ErrCanceled, "canceled before the call")
	wantFailure(t, p.Call(ctx, HookConnect, nil), ErrTimeout, "caller's deadline exceeded before the call")

	wantFailure(t, <-first, ErrTimeout, "timeout after 2s")
	// The timed-out instance was discarded and replaced; a caller waiting without a deadline gets it.
	wantOK(t, call(t, p, HookConnect, nil))
	if s := p.Stats(); s.Live != 1 || s.Discarded != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestCallerDeadlineStopsGuest(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "loop", func(c *Config) { c.Timeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	wantFailure(t, p.Call(ctx, HookMessage, messageInput(t)), ErrTimeout, "caller's deadline exceeded")
	wantOK(t, call(t, p, HookConnect, nil))
}

func TestRecycle(t *testing.T) {
	h := newHost(t)
	t.Run("MaxCalls", func(t *testing.T) {
		p := load(t, h, "empty", func(c *Config) { c.MaxCalls = 5; c.PoolSize = 1 })
		for range 12 {
			wantOK(t, call(t, p, HookMessage, messageInput(t)))
		}
		s := p.Stats()
		if s.Recycled != 2 || s.Discarded != 0 || s.Failures != 0 {
			t.Errorf("after 12 calls with MaxCalls 5: %+v; want 2 recycled", s)
		}
	})
	t.Run("memory growth", func(t *testing.T) {
		// 2 MiB limit; mail_from grows memory to 21 pages (1.3 MiB), past half the limit.
		p := load(t, h, "memory", func(c *Config) { c.Memory = 2 << 20 })
		wantOK(t, call(t, p, HookConnect, nil))
		if s := p.Stats(); s.Recycled != 0 {
			t.Fatalf("recycled a small instance: %+v", s)
		}
		wantOK(t, call(t, p, HookMailFrom, nil))
		if s := p.Stats(); s.Recycled != 1 || s.Discarded != 0 {
			t.Errorf("after growing past half the limit: %+v; want 1 recycled", s)
		}
		// An instance that starts past half the limit is not recycled for it (that would recycle on every call).
		q := load(t, h, "memory", func(c *Config) { c.Memory = 64 << 10; c.Name = "small" })
		for range 3 {
			wantOK(t, call(t, q, HookConnect, nil))
		}
		if s := q.Stats(); s.Recycled != 0 || s.Created != 1 {
			t.Errorf("an instance born at the limit: %+v", s)
		}
		eventually(t, "a replacement of normal size", func() bool {
			s := p.Stats()
			return s.Idle == 1 && s.MemoryBytes == 64<<10
		})
	})
}

func TestClose(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "empty", nil)
	wantOK(t, call(t, p, HookMessage, messageInput(t)))
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, call(t, p, HookMessage, messageInput(t)), ErrClosed, `plugin "empty": plugin closed`)
	if s := p.Stats(); s.Live != 0 || s.Idle != 0 {
		t.Errorf("after Close: %+v", s)
	}
	_ = p.Close(context.Background()) // twice is fine

	// A call in flight when the plugin closes finishes on its instance, which is then closed.
	q := load(t, h, "loop", func(c *Config) { c.Timeout = 200 * time.Millisecond })
	done := make(chan *Result)
	go func() { done <- q.Call(context.Background(), HookMessage, messageInput(t)) }()
	eventually(t, "the call holds its instance", func() bool { return q.Stats().Idle == 0 })
	_ = q.Close(context.Background())
	if res := <-done; res.Err == nil {
		t.Error("looping call succeeded")
	}
	eventually(t, "every instance closed", func() bool { return q.Stats().Live == 0 })

	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Load(context.Background(), Config{Name: "late", Wasm: wasm(t, "empty")}); err == nil {
		t.Error("Load after Host.Close succeeded")
	}
}

func TestGrants(t *testing.T) {
	h := newHost(t)
	now := float64(time.Now().UnixNano())
	score := func(g Grants, name string, hook Hook) float64 {
		p := load(t, h, "clock", func(c *Config) { c.Grants = g; c.Name = name })
		res := call(t, p, hook, messageInput(t))
		wantOK(t, res)
		return res.Score
	}
	if s := score(Grants{}, "c1", HookConnect); math.Abs(s-now) < float64(24*time.Hour) {
		t.Errorf("without the clock grant the guest saw the real time (%v)", s)
	}
	if s := score(Grants{Clock: true}, "c2", HookConnect); math.Abs(s-now) > float64(time.Hour) {
		t.Errorf("with the clock grant the guest saw %v, not about %v", s, now)
	}
	r1, r2 := score(Grants{}, "r1", HookMessage), score(Grants{}, "r2", HookMessage)
	if r1 != r2 {
		t.Errorf("without the random grant two instances drew %v and %v; want the same deterministic bytes", r1, r2)
	}
	g1, g2 := score(Grants{Random: true}, "g1", HookMessage), score(Grants{Random: true}, "g2", HookMessage)
	if g1 == g2 || g1 == r1 {
		t.Errorf("with the random grant: %v, %v (deterministic %v)", g1, g2, r1)
	}
}

func TestNoHookAccepts(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "header", nil) // message only
	res := call(t, p, HookConnect, nil)
	if res.Err != nil || res.Verdict.Kind != Accept || p.Stats().Calls != 0 {
		t.Errorf("unimplemented hook: %+v, stats %+v", res, p.Stats())
	}
}

func TestFailureIsLogged(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	h, err := NewHost(context.Background(), Options{Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	p := load(t, h, "trap", nil)
	call(t, p, HookMessage, messageInput(t))
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), `plugin=trap hook=message reason="wasm trap: unreachable"`) {
		t.Errorf("log: %s", buf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestTypes(t *testing.T) {
	for k := Accept; k < numKinds; k++ {
		b, err := k.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Kind
		if err := back.UnmarshalText([]byte(strings.ToUpper(string(b)))); err != nil || back != k {
			t.Errorf("%v round-trips to %v, %v", k, back, err)
		}
	}
	if _, err := Kind(9).MarshalText(); err == nil {
		t.Error("kind 9 marshals")
	}
	var k Kind
	if err := k.UnmarshalText([]byte("bounce")); err == nil {
		t.Error(`"bounce" unmarshals`)
	}
	for s, want := range map[string]OnError{"": OnErrorTempfail, "tempfail": OnErrorTempfail, "Accept": OnErrorAccept, "reject": OnErrorReject} {
		if got, err := ParseOnError(s); err != nil || got != want {
			t.Errorf("ParseOnError(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseOnError("ignore"); err == nil {
		t.Error(`ParseOnError("ignore") succeeded`)
	}
	if HookRcptTo.String() != "rcpt_to" || Hook(7).String() != "hook(7)" || HookSet(0).Has(HookConnect) || HookSet(1<<HookConnect).Has(Hook(-1)) {
		t.Error("Hook names or HookSet")
	}
}

func TestInstanceFailure(t *testing.T) {
	// When a new instance cannot be made (here: the runtime is gone under the plugin), the call fails with
	// ErrInstance and the on_error verdict, and the background replacement logs why.
	var buf strings.Builder
	var mu sync.Mutex
	h, err := NewHost(context.Background(), Options{Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	p := load(t, h, "empty", func(c *Config) { c.PoolSize = 2 })
	held, err := p.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = p.rt.Close(context.Background())
	wantFailure(t, call(t, p, HookMessage, messageInput(t)), ErrInstance, "instantiating")
	p.release(held, true) // closed with the runtime: discarded, and the replacement fails
	eventually(t, "the failed replacement is logged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(buf.String(), `msg="replacing a plugin instance" plugin=empty`)
	})
	if s := p.Stats(); s.Live != 0 || s.Discarded != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestSandbox(t *testing.T) {
	t.Setenv("POSTERN_SECRET", "must not leak")
	h := newHost(t)
	p := load(t, h, "sandbox", nil)
	res := call(t, p, HookMessage, messageInput(t))
	wantOK(t, res)
	if res.Score != 0 {
		t.Errorf("sandbox probe scored %v: the guest sees environment, arguments or a directory, or stdout failed", res.Score)
	}
}

// TestEmptyConfig: no configuration, whether nil, empty or blank, reaches the guest as "{}" (ABI §3.2); any
// other configuration reaches it byte for byte.
func TestEmptyConfig(t *testing.T) {
	h := newHost(t)
	for _, tc := range []struct {
		config []byte
		want   string
	}{
		{nil, "{}"},
		{[]byte{}, "{}"},
		{[]byte(" \r\n\t "), "{}"},
		{[]byte(" \npattern x\n"), " \npattern x\n"}, // gocontent's configuration is a script, not JSON
	} {
		p := load(t, h, "gocontent", func(c *Config) { c.Config = tc.config })
		res := call(t, p, HookMessage, messageInput(t))
		wantOK(t, res)
		if got := res.Tags["config"]; got != tc.want {
			t.Errorf("config %q: the guest got %q, want %q", tc.config, got, tc.want)
		}
	}
}

// TestRefusedFeatures: a module using a WebAssembly feature outside ABI §1.1 is refused at load, with an error
// that names the feature and the rule.
func TestRefusedFeatures(t *testing.T) {
	h := newHost(t)
	hdr := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	module := func(sections ...byte) []byte { return append(append([]byte{}, hdr...), sections...) }
	for _, tc := range []struct {
		name, want string
		wasm       []byte
	}{
		// (memory 1 1 shared)
		{"threads", "threads feature not enabled", module(5, 4, 1, 3, 1, 1)},
		// (func return_call 0)
		{"tail calls", `"tail-call" is disabled`, module(1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 0x0a, 6, 1, 4, 0, 0x12, 0, 0x0b)},
		// (memory i64 1)
		{"memory64", "invalid byte for limits", module(5, 3, 1, 4, 1)},
		// (memory 0) (memory 0)
		{"multiple memories", "at most one memory", module(5, 5, 2, 0, 1, 0, 1)},
		// (func try end)
		{"exception handling", "invalid instruction 0x6", module(1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 0x0a, 7, 1, 5, 0, 0x06, 0x40, 0x0b, 0x0b)},
		// (tag)
		{"exception tags", `"exception-handling" is disabled`, module(1, 4, 1, 0x60, 0, 0, 13, 3, 1, 0, 0)},
		// (type (struct))
		{"GC types", "invalid byte: 0x5f", module(1, 3, 1, 0x5f, 0)},
	} {
		_, err := h.Load(context.Background(), Config{Name: "feature", Wasm: tc.wasm})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "WebAssembly 2.0") ||
			!strings.Contains(err.Error(), "ABI §1.1") {
			t.Errorf("%s: Load error = %v; want it to name %q and the ABI's rule", tc.name, err, tc.want)
		}
	}
	// 2.0 features are allowed: a hook using a SIMD instruction (v128.const, drop) loads and runs.
	exp := func(name string, kind, index byte) []byte {
		return append(append([]byte{byte(len(name))}, name...), kind, index)
	}
	exports := []byte{3}
	exports = append(exports, exp("memory", 2, 0)...)
	exports = append(exports, exp("postern_abi_version", 0, 0)...)
	exports = append(exports, exp("postern_on_message", 0, 1)...)
	simdBody := append(append([]byte{0, 0xfd, 0x0c}, make([]byte, 16)...), 0x1a, 0x41, 0, 0x0b)
	code := append([]byte{2, 4, 0, 0x41, 1, 0x0b, byte(len(simdBody))}, simdBody...)
	simd := module(1, 5, 1, 0x60, 0, 1, 0x7f, 3, 3, 2, 0, 0, 5, 3, 1, 0, 1)
	simd = append(append(simd, 7, byte(len(exports))), exports...)
	simd = append(append(simd, 0x0a, byte(len(code))), code...)
	p, err := h.Load(context.Background(), Config{Name: "simd", Wasm: simd})
	if err != nil {
		t.Fatalf("a module with a SIMD instruction: %v", err)
	}
	defer p.Close(context.Background())
	wantOK(t, call(t, p, HookMessage, messageInput(t)))
	// Something that is simply not WebAssembly gets no such hint.
	if _, err := h.Load(context.Background(), Config{Name: "garbage", Wasm: []byte("garbage")}); err == nil ||
		strings.Contains(err.Error(), "ABI §1.1") {
		t.Errorf("garbage: %v", err)
	}
}
