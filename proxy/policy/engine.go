package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/guestprof"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

// Options configure Build and NewManager.
type Options struct {
	// CacheDir is wazero's on-disk compilation cache. "" means StateDir/cache when the configuration has a
	// state_dir, else no on-disk cache.
	CacheDir string
	// Logger receives the engine's records (when expressions that fail, reloads). nil discards them.
	Logger *slog.Logger
	// Profiler, when set, profiles the plugins' guest code (pluginhost.Options.Profiler).
	Profiler *guestprof.Profiler
}

// caller is what the engine needs of a loaded plugin. *pluginhost.Plugin is the only implementation outside
// tests; the interface lets the combination rules be tested and benchmarked without WebAssembly.
type caller interface {
	Name() string
	SHA256() string
	Hooks() pluginhost.HookSet
	Call(ctx context.Context, hook pluginhost.Hook, in *pluginhost.Input) *pluginhost.Result
}

// Snapshot is one loaded configuration with its plugins: everything needed to evaluate messages. It is
// immutable and safe for concurrent use. A session evaluates all its messages with the snapshot it started with,
// so a reload never changes the rules in the middle of a conversation.
type Snapshot struct {
	cfg      *config.Config
	close    func(context.Context) error // unloads the plugins; nil when built from callers in tests
	plugins  map[string]caller
	policies []*compiledPolicy
	log      *slog.Logger

	// Reference counting for Manager: the manager holds one reference while the snapshot is current, each
	// session one more. The last release closes the plugins.
	refs    refCount
	closeMu sync.Mutex
	closed  bool
}

type compiledPolicy struct {
	cfg     *config.Policy
	monitor bool
	chain   []caller
	hooks   pluginhost.HookSet // union of the chain's hooks: a policy is skipped at a hook none implements
	why     string
}

// Build loads every plugin of cfg and returns a snapshot ready to evaluate messages. A plugin that fails to load
// (bad module, ABI version mismatch, a postern_init that refuses its configuration) is reported as a
// *config.Error diagnostic on the plugin block's source attribute; every plugin is tried, so all such problems
// are reported at once. On error nothing stays loaded.
func Build(ctx context.Context, cfg *config.Config, opts Options) (*Snapshot, error) {
	host, err := newHost(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	s, err := build(ctx, cfg, opts, func(pc pluginhost.Config) (caller, error) { return host.Load(ctx, pc) })
	if err != nil {
		_ = host.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	s.close = host.Close
	return s, nil
}

// newHost makes the plugin host for cfg's plugins, with the compilation cache in the state directory.
func newHost(ctx context.Context, cfg *config.Config, opts Options) (*pluginhost.Host, error) {
	cacheDir := opts.CacheDir
	if cacheDir == "" && cfg.StateDir != "" {
		cacheDir = filepath.Join(cfg.StateDir, "cache")
	}
	host, err := pluginhost.NewHost(ctx, pluginhost.Options{CacheDir: cacheDir, Logger: opts.Logger, Profiler: opts.Profiler})
	if err != nil {
		return nil, fmt.Errorf("policy: plugin host: %w", err)
	}
	return host, nil
}

// build loads every plugin of cfg with load and compiles the policies over them. On error the caller unloads
// what load loaded.
func build(ctx context.Context, cfg *config.Config, opts Options, load func(pluginhost.Config) (caller, error)) (*Snapshot, error) {
	callers := make(map[string]caller, len(cfg.Plugins))
	var diags hcl.Diagnostics
	for _, p := range cfg.Plugins {
		pc, err := hostConfig(p)
		if err == nil {
			var pl caller
			if pl, err = load(pc); err == nil {
				callers[p.Name] = pl
				continue
			}
		}
		diag := &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Plugin failed to load",
			Detail:   fmt.Sprintf("%s: %v", p.Source, err),
			Subject:  p.SourceRange.Ptr(),
		}
		if errors.Is(err, pluginhost.ErrConfigRefused) && p.ConfigRange.Filename != "" {
			// The module is fine; what it refused is its configuration, so that is where the admin looks.
			diag.Summary, diag.Subject = "Plugin configuration refused", p.ConfigRange.Ptr()
			if m := unknownKey.FindStringSubmatch(err.Error()); m != nil {
				diag.Subject = p.ConfigKeyRange(m[1]).Ptr()
			}
		}
		diags = append(diags, diag)
	}
	if diags.HasErrors() {
		return nil, cfg.NewError(diags)
	}
	return newSnapshot(cfg, callers, opts.Logger), nil
}

// unknownKey finds the key a plugin built with the Go SDK names when it refuses an unknown one (DecodeConfig's
// wording), so that the diagnostic points at the line that sets it.
var unknownKey = regexp.MustCompile(`unknown key "([^"\\]+)"`)

// PluginConfig is the plugin host configuration of a plugin block, as the policy engine loads it.
func PluginConfig(p *config.Plugin) (pluginhost.Config, error) { return hostConfig(p) }

func hostConfig(p *config.Plugin) (pluginhost.Config, error) {
	onErr, err := pluginhost.ParseOnError(p.OnError)
	if err != nil {
		return pluginhost.Config{}, err
	}
	// A wasm32 memory is at most 4 GiB, one more than a uint32 counts; the host rounds up to pages, so the
	// largest uint32 means all of it.
	pc := pluginhost.Config{
		Name: p.Name, Wasm: p.Wasm, Config: p.Config, Memory: uint32(min(p.Memory, math.MaxUint32)), Timeout: p.Timeout,
		PoolSize: p.PoolSize, MaxCalls: p.MaxCalls, OnError: onErr,
	}
	for _, g := range p.Grants {
		switch g {
		case "clock":
			pc.Grants.Clock = true
		case "random":
			pc.Grants.Random = true
		}
	}
	return pc, nil
}

// newSnapshot compiles the policies of cfg over already loaded plugins.
func newSnapshot(cfg *config.Config, plugins map[string]caller, log *slog.Logger) *Snapshot {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Snapshot{cfg: cfg, plugins: plugins, log: log}
	for _, p := range cfg.Policies {
		cp := &compiledPolicy{cfg: p, monitor: p.Mode == config.ModeMonitor, why: "no when (matches everything)"}
		if p.When != nil {
			cp.why = p.When.String()
		}
		for _, name := range p.Plugins {
			c := plugins[name]
			cp.chain = append(cp.chain, c)
			cp.hooks |= c.Hooks()
		}
		s.policies = append(s.policies, cp)
	}
	return s
}

// Config returns the configuration the snapshot was built from.
func (s *Snapshot) Config() *config.Config { return s.cfg }

// Version is the configuration version (config.Config.Version) recorded in every Decision.
func (s *Snapshot) Version() string { return s.cfg.Version }

// Plugin returns a loaded plugin by name, or nil. Use it for statistics, not to bypass the policies.
func (s *Snapshot) Plugin(name string) *pluginhost.Plugin {
	p, _ := s.plugins[name].(*pluginhost.Plugin)
	return p
}

// Hooks is the set of hooks at which some policy has a plugin to run. A protocol session may skip calling
// Evaluate at other hooks: the decision would be accept with nothing run.
func (s *Snapshot) Hooks() pluginhost.HookSet {
	var h pluginhost.HookSet
	for _, p := range s.policies {
		h |= p.hooks
	}
	return h
}

// Close closes the snapshot's plugins. Calls in flight are aborted and, like later Evaluate calls, get the
// plugins' on_error outcome. A snapshot obtained from a Manager is closed by the manager when its last user
// released it, not by its users.
func (s *Snapshot) Close(ctx context.Context) error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.close != nil {
		return s.close(ctx)
	}
	return nil
}

// Evaluate runs the policies for one hook of one message (or envelope stage) and combines their outcomes. It
// never returns nil. The rules, in full in docs/CONFIG.md:
//
//   - policies are considered in file order; a policy runs when its when matches and some plugin of its chain
//     implements the hook;
//   - a chain runs its plugins in order and stops at the first terminal verdict (reject, tempfail, discard,
//     quarantine); tags, scores and changes accumulate along it;
//   - without a terminal verdict the chain's summed score is compared with the policy's thresholds, and the
//     highest threshold reached gives the policy's action;
//   - the first enforce policy with a terminal action decides and no later policy runs; the changes and tags of
//     every enforce policy that ran (the deciding one included) accumulate;
//   - a monitor policy runs the same way, but its outcome only goes into the trace;
//   - a when expression that fails at run time (for example regex() without a match) is recorded in the trace; in
//     an enforce policy it tempfails the message (451 4.3.5), since skipping a policy could let through what it
//     was written to stop, and rejecting would lose mail over a configuration mistake.
func (s *Snapshot) Evaluate(ctx context.Context, hook pluginhost.Hook, in *pluginhost.Input) *Decision {
	start := time.Now()
	d := &Decision{
		Hook:          hook,
		Action:        pluginhost.Accept,
		Changes:       &message.Changes{},
		Policies:      make([]PolicyTrace, 0, len(s.policies)),
		ConfigVersion: s.cfg.Version,
	}
	var scope *config.Scope
	for _, p := range s.policies {
		tr := PolicyTrace{Name: p.cfg.Name, Mode: ModeEnforce, Why: p.why, Action: pluginhost.Accept}
		if p.monitor {
			tr.Mode = ModeMonitor
		}
		if !p.hooks.Has(hook) {
			tr.Why = "no plugin of this policy implements the " + hook.String() + " hook"
			d.Policies = append(d.Policies, tr)
			continue
		}
		if p.cfg.When != nil {
			if scope == nil {
				scope = config.NewScope(facts(hook, in))
			}
			ok, err := p.cfg.When.Eval(scope)
			if err != nil {
				tr.Error = err.Error()
				s.log.WarnContext(ctx, "policy: when failed", "policy", p.cfg.Name, "error", err)
				if p.monitor {
					d.Policies = append(d.Policies, tr)
					continue
				}
				tr.Action = pluginhost.Tempfail
				d.Policies = append(d.Policies, tr)
				d.Action, d.Code, d.Enhanced = pluginhost.Tempfail, 451, "4.3.5"
				d.Text = "Policy evaluation failed, please try again later"
				d.DecidedBy = p.cfg.Name
				break
			}
			if !ok {
				d.Policies = append(d.Policies, tr)
				continue
			}
		}
		tr.Matched = true
		changes, tags, verdict := s.runChain(ctx, p, hook, in, &tr)
		d.Policies = append(d.Policies, tr)
		if p.monitor {
			continue
		}
		d.Score += tr.Score
		if len(tags) > 0 {
			if d.Tags == nil {
				d.Tags = make(map[string]string, len(tags))
			}
			maps.Copy(d.Tags, tags)
		}
		d.Changes.Merge(changes)
		if verdict.Kind != pluginhost.Accept {
			d.Action, d.Code, d.Enhanced, d.Text = verdict.Kind, verdict.Code, verdict.Enhanced, verdict.Text
			d.DecidedBy = p.cfg.Name
			break
		}
	}
	d.Duration = time.Since(start)
	return d
}

// runChain runs one policy's plugins and applies its thresholds. It fills tr and returns the policy's changes,
// tags and verdict; the caller decides whether they are enforced.
func (s *Snapshot) runChain(ctx context.Context, p *compiledPolicy, hook pluginhost.Hook, in *pluginhost.Input,
	tr *PolicyTrace) (*message.Changes, map[string]string, pluginhost.Verdict) {
	changes := &message.Changes{}
	var tags map[string]string
	verdict := pluginhost.Verdict{Kind: pluginhost.Accept}
	terminal := false
	for _, c := range p.chain {
		if !c.Hooks().Has(hook) {
			continue
		}
		res := c.Call(ctx, hook, in)
		pt := PluginTrace{
			Name: c.Name(), SHA256: c.SHA256(), Verdict: res.Verdict, Tags: res.Tags, Score: res.Score,
			Duration: res.Duration, Skipped: res.Skipped,
		}
		if res.Changes != nil {
			pt.Changes = res.Changes.List()
			changes.Merge(res.Changes)
		}
		if res.Err != nil {
			pt.Error = res.Err.Error()
		}
		for _, l := range res.Logs {
			// A plugin's log lines go to the proxy's log, with what finds the message, and to explain's
			// trace; never to the audit log, because they may quote the message.
			s.log.Log(ctx, l.Level, "plugin: "+l.Text, "plugin", c.Name(), "policy", p.cfg.Name, "hook", hook.String(),
				"listener", in.Env.Listener, "client_ip", in.Env.ClientIP)
			pt.Logs = append(pt.Logs, PluginLog{Level: strings.ToLower(l.Level.String()), Text: l.Text})
		}
		tr.Plugins = append(tr.Plugins, pt)
		tr.Score += res.Score
		if len(res.Tags) > 0 {
			if tags == nil {
				tags = make(map[string]string, len(res.Tags))
			}
			maps.Copy(tags, res.Tags)
		}
		if res.Verdict.Kind != pluginhost.Accept {
			verdict, terminal = res.Verdict, true
			break
		}
	}
	if !terminal {
		if th, ok := reached(p.cfg.Thresholds, tr.Score); ok {
			tr.Threshold = th.Action + " at " + strconv.FormatFloat(th.Score, 'g', -1, 64)
			verdict = s.thresholdVerdict(p, th, hook, tr.Score, changes, &tags)
		}
	}
	tr.Action = verdict.Kind
	return changes, tags, verdict
}

// reached returns the highest threshold at or below score.
func reached(ths []config.Threshold, score float64) (config.Threshold, bool) {
	for i := len(ths) - 1; i >= 0; i-- {
		if score >= ths[i].Score {
			return ths[i], true
		}
	}
	return config.Threshold{}, false
}

// thresholdVerdict turns a reached threshold into the policy's verdict.
func (s *Snapshot) thresholdVerdict(p *compiledPolicy, th config.Threshold, hook pluginhost.Hook, score float64,
	changes *message.Changes, tags *map[string]string) pluginhost.Verdict {
	scoreText := strconv.FormatFloat(score, 'g', 4, 64)
	switch th.Action {
	case config.ActionReject:
		return pluginhost.Verdict{Kind: pluginhost.Reject, Code: p.cfg.RejectCode, Enhanced: "5.7.1", Text: p.cfg.RejectText}
	case config.ActionTempfail:
		return pluginhost.Verdict{Kind: pluginhost.Tempfail, Code: 451, Enhanced: "4.7.1", Text: p.cfg.RejectText}
	case config.ActionDiscard:
		return pluginhost.Verdict{Kind: pluginhost.Discard, Text: "score " + scoreText + " reached the discard threshold"}
	case config.ActionQuarantine:
		return pluginhost.Verdict{Kind: pluginhost.Quarantine,
			Text: "score " + scoreText + " reached the quarantine threshold of policy " + p.cfg.Name}
	}
	// Tag: the message goes on, marked. The mark is a tag for the audit log and result headers, and a header
	// field for the recipient's filters when the policy names one (headers exist only at the message hook).
	if *tags == nil {
		*tags = map[string]string{}
	}
	(*tags)["policy."+p.cfg.Name] = "tag"
	if hook == pluginhost.HookMessage && p.cfg.TagHeader != "" {
		if err := changes.AddHeader(p.cfg.TagHeader, p.cfg.Name+"; score="+scoreText); err != nil {
			s.log.Warn("policy: tag header refused", "policy", p.cfg.Name, "error", err)
		}
	}
	return pluginhost.Verdict{Kind: pluginhost.Accept}
}

// facts describes the input for when expressions.
func facts(hook pluginhost.Hook, in *pluginhost.Input) *config.Facts {
	f := &config.Facts{
		Hook:               hook.String(),
		Protocol:           in.Env.Protocol,
		Listener:           in.Env.Listener,
		Direction:          in.Env.Direction,
		ClientIP:           in.Env.ClientIP,
		HELO:               in.Env.HELO,
		TLSVersion:         in.Env.TLSVersion,
		TLSCipher:          in.Env.TLSCipher,
		UpstreamTLSVersion: in.Env.UpstreamTLSVersion,
		UpstreamTLSCipher:  in.Env.UpstreamTLSCipher,
		User:               in.Env.AuthUser,
		MailFrom:           in.Env.MailFrom,
		NoMailFrom:         !in.Env.HasMailFrom,
		Rcpt:               in.Env.Rcpts,
		RcptCurrent:        in.RcptCurrent,
		MailboxUser:        in.Env.MailboxUser,
		Mailbox:            in.Env.Mailbox,
		UID:                in.Env.UID,
		UIDValidity:        in.Env.UIDValidity,
		UIDL:               in.Env.UIDL,
		Flags:              in.Env.Flags,
		Command:            in.Env.Command,
	}
	if !in.Env.InternalDate.IsZero() {
		f.InternalDate = pluginhost.InternalDateText(in.Env.InternalDate)
	}
	if m := in.Msg; m != nil {
		f.Size = m.Size()
		f.Subject = first(m.HeaderValues(0, "Subject", true))
		f.From = config.FromAddress(first(m.HeaderValues(0, "From", false)))
		f.Header = func(name string) []string { return m.HeaderValues(0, name, true) }
		f.LimitExceeded = m.LimitExceeded()
		for _, d := range m.Defects() {
			if !slices.Contains(f.Malformed, d.Kind) {
				f.Malformed = append(f.Malformed, d.Kind)
			}
		}
		for _, d := range m.Ambiguities() {
			if !slices.Contains(f.Ambiguous, d.Kind) {
				f.Ambiguous = append(f.Ambiguous, d.Kind)
			}
		}
		f.Attachments = m.Attachments()
	}
	return f
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// refCount counts a snapshot's users.
type refCount struct {
	mu sync.Mutex
	n  int
}

func (r *refCount) add(d int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n += d
	return r.n
}

var errClosed = errors.New("policy: manager closed")
