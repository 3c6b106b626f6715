package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
)

func init() {
	register(command{
		name:    "explain",
		summary: "show what the policies do with one message, without any network",
		run:     runExplain,
	})
}

// explainOutput is what `postern explain -json` prints. Field names are a stable interface for scripts.
type explainOutput struct {
	Config        string          `json:"config"`
	ConfigVersion string          `json:"config_version"`
	Message       explainMessage  `json:"message"`
	Envelope      explainEnvelope `json:"envelope"`
	// Stages holds one decision per hook that was evaluated, in session order.
	Stages []*policy.Decision `json:"stages"`
	Final  explainFinal       `json:"final"`
}

type explainEnvelope struct {
	Protocol   string   `json:"protocol"`
	Listener   string   `json:"listener,omitempty"`
	Direction  string   `json:"direction"`
	ClientIP   string   `json:"client_ip,omitempty"`
	HELO       string   `json:"helo,omitempty"`
	TLSVersion string   `json:"tls_version,omitempty"`
	User       string   `json:"user,omitempty"`
	MailFrom   string   `json:"mail_from"`
	Rcpts      []string `json:"rcpt"`
}

type explainMessage struct {
	Path      string   `json:"path"`
	Size      int64    `json:"size"`
	MessageID string   `json:"message_id,omitempty"`
	Defects   []string `json:"defects,omitempty"`
}

type explainFinal struct {
	Action    pluginhost.Kind `json:"action"`
	Code      int             `json:"code,omitempty"`
	Enhanced  string          `json:"enhanced,omitempty"`
	Text      string          `json:"text,omitempty"`
	Stage     string          `json:"stage,omitempty"` // the hook that decided, when not accepted
	DecidedBy string          `json:"decided_by,omitempty"`
	// Rejected lists recipients refused at the rcpt_to stage (the message goes on to the others).
	Rejected []string `json:"rejected_recipients,omitempty"`
	// Discarded and Quarantined list recipients withheld at the rcpt_to stage: acknowledged, not delivered (a
	// quarantined one's copy kept); the message goes on to the others.
	Discarded   []string          `json:"discarded_recipients,omitempty"`
	Quarantined []string          `json:"quarantined_recipients,omitempty"`
	Changes     []message.Change  `json:"changes,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Score       float64           `json:"score"`
}

func runExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postern explain -config FILE [flags] MESSAGE.eml")
		fmt.Fprintln(stderr, "\nEvaluates the policies against one message as a session would (SMTP: connect, MAIL FROM, each")
		fmt.Fprintln(stderr, "RCPT TO, then the message; POP3/IMAP: the message), with no network, and prints which")
		fmt.Fprintln(stderr, "policies matched and why, each plugin's verdict, changes, tags, score and time, and the outcome.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	var (
		cfgPath  = fs.String("config", "", "configuration `FILE` (required)")
		protocol = fs.String("protocol", "", "protocol: smtp, submission, pop3 or imap (default: the listener's, else smtp)")
		listener = fs.String("listener", "", "take protocol and direction from this listener `NAME`")
		from     = fs.String("from", "", "envelope sender (MAIL FROM); empty is the null sender")
		clientIP = fs.String("client-ip", "", "client IP address")
		helo     = fs.String("helo", "", "client HELO/EHLO name")
		user     = fs.String("user", "", "authenticated user")
		useTLS   = fs.Bool("tls", false, "the client connection is TLS 1.3")
		asJSON   = fs.Bool("json", false, "print the result as JSON")
		out      = fs.String("out", "", "write the message as it would be sent on (changes applied) to `FILE`")
		cacheDir = fs.String("cache", defaultCacheDir(), "compilation cache `DIR` for the plugins (\"\" disables it)")
	)
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "envelope recipient (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return reportConfigError(stderr, err)
	}
	env := pluginhost.Envelope{Protocol: *protocol, ClientIP: *clientIP, HELO: *helo, AuthUser: *user}
	if *useTLS {
		env.TLSVersion, env.TLSCipher = "TLS1.3", "TLS_AES_128_GCM_SHA256"
	}
	fo := explainFlowOptions()
	if *listener != "" {
		ln := cfg.Listener(*listener)
		if ln == nil {
			fmt.Fprintf(stderr, "postern explain: the configuration has no listener %q\n", *listener)
			return 2
		}
		env.Listener, env.Direction = ln.Name, ln.Direction
		if env.Protocol == "" {
			env.Protocol = ln.Protocol
		}
		fo.MessageSize, fo.MessageLimits.MaxSize = ln.Limits.MessageSize, ln.Limits.MessageSize
		fo.ResultHeaders = ln.ResultHeaders
	}
	if env.Protocol == "" {
		env.Protocol = config.ProtocolSMTP
	}
	if env.Direction == "" {
		env.Direction = map[string]string{"smtp": "inbound", "submission": "outbound"}[env.Protocol]
		if env.Direction == "" {
			env.Direction = "retrieval"
		}
	}

	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "postern explain: %v\n", err)
		return 1
	}
	defer f.Close()

	ctx := context.Background()
	snap, err := policy.Build(ctx, cfg, policy.Options{CacheDir: cacheDirFor(fs, *cacheDir, cfg)})
	if err != nil {
		return reportConfigError(stderr, err)
	}
	defer snap.Close(ctx)
	sess, err := explainSession(ctx, snap, fo)
	if err != nil {
		fmt.Fprintf(stderr, "postern explain: %v\n", err)
		return 1
	}
	defer sess.Close()
	sp, err := sess.Receive(f)
	if err != nil {
		fmt.Fprintf(stderr, "postern explain: %s: %v\n", fs.Arg(0), err)
		return 1
	}
	defer sp.Close()

	sim, err := simulate(sess, env, rcpts, *from, sp)
	if err != nil {
		fmt.Fprintf(stderr, "postern explain: %s: %v\n", fs.Arg(0), err)
		return 1
	}
	defer sim.outcome.Close()
	res := explainOutput{Config: *cfgPath, ConfigVersion: cfg.Version, Message: explainMessage{Path: fs.Arg(0),
		Size: sp.Size()}, Stages: sim.stages, Final: sim.final}
	if msg := sim.outcome.Msg; msg != nil {
		res.Message.MessageID = firstValue(msg.HeaderValues(0, "Message-ID", false))
		for _, d := range msg.Defects() {
			res.Message.Defects = append(res.Message.Defects, d.String())
		}
	}
	res.Envelope = explainEnvelope{Protocol: env.Protocol, Listener: env.Listener, Direction: env.Direction,
		ClientIP: env.ClientIP, HELO: env.HELO, TLSVersion: env.TLSVersion, User: env.AuthUser, MailFrom: *from,
		Rcpts: rcpts}
	if sim.outcome.Err != nil && sim.final.Action == pluginhost.Accept {
		fmt.Fprintf(stderr, "postern explain: the relay would defer this message: %v\n", sim.outcome.Err)
	}

	if *out != "" {
		content, size := sp.ReaderAt(), sp.Size()
		if sim.final.Action == pluginhost.Accept && sim.outcome.Err == nil {
			content, size = sim.outcome.Content()
		}
		if err := writeMessage(*out, content, size); err != nil {
			fmt.Fprintf(stderr, "postern explain: %v\n", err)
			return 1
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "postern explain: %v\n", err)
			return 1
		}
		return 0
	}
	printExplain(stdout, cfg, &res)
	return 0
}

// explainFlowOptions are the pipeline options of `postern explain`: the configuration's defaults, no audit, no
// quarantine (a quarantine verdict is reported, not carried out). Message content is taken as an SMTP client
// sends a file: with CRLF line ends (NormalizeNewlines), whatever the file has.
func explainFlowOptions() mailflow.Options {
	limits := message.DefaultLimits()
	limits.MaxSize = config.DefaultMessageSize
	return mailflow.Options{SpoolDir: os.TempDir(), MemoryThreshold: config.DefaultMemoryThreshold,
		MessageSize: config.DefaultMessageSize, NormalizeNewlines: true, MessageLimits: limits,
		Logger: slog.New(slog.DiscardHandler)}
}

// explainSession opens a pipeline session on snap, as the relay does on the snapshot current when a client
// connects: the stages nothing runs at are skipped, as by the relay.
func explainSession(ctx context.Context, snap *policy.Snapshot, fo mailflow.Options) (*mailflow.Session, error) {
	fo.Filters = fixedFilter{snap}
	flow, err := mailflow.New(fo)
	if err != nil {
		return nil, err
	}
	return flow.Open(ctx, "explain")
}

// fixedFilter hands out one snapshot.
type fixedFilter struct{ snap *policy.Snapshot }

func (f fixedFilter) Acquire() (mailflow.Filter, func()) { return f.snap, func() {} }

type simulation struct {
	stages  []*policy.Decision
	final   explainFinal
	outcome *mailflow.Outcome
}

// simulate runs the stages a session would, in order, through the pipeline the relay uses and with the inputs the
// relay gives each hook (smtpproxy.ConnectInput, smtpproxy.TransactionInput), stopping where the session would
// stop. At rcpt_to a reject or tempfail refuses that recipient only, as in SMTP; a discard or quarantine there is
// carried out on the message, without a message stage, as the relay does; any other terminal action ends the
// session.
func simulate(sess *mailflow.Session, env pluginhost.Envelope, rcpts []string, from string,
	sp *mailflow.Spool) (*simulation, error) {
	sim := &simulation{}
	final := &sim.final
	decided := func(d *policy.Decision) bool {
		if d.Action == pluginhost.Accept {
			return false
		}
		*final = explainFinal{Action: d.Action, Code: d.Code, Enhanced: d.Enhanced, Text: d.Text,
			Stage: d.Hook.String(), DecidedBy: d.DecidedBy, Rejected: final.Rejected, Discarded: final.Discarded,
			Quarantined: final.Quarantined}
		return true
	}
	stage := func(hook pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
		d := sess.Stage(hook, in)
		if sess.Wants(hook) {
			sim.stages = append(sim.stages, d)
		}
		return d
	}
	mi := mailflow.MessageInput{ID: "explain"}
	smtp := env.Protocol == config.ProtocolSMTP || env.Protocol == config.ProtocolSubmission
	if smtp {
		if decided(stage(pluginhost.HookConnect, smtpproxy.ConnectInput(env))) {
			return sim, sim.empty(sp)
		}
		if decided(stage(pluginhost.HookMailFrom, smtpproxy.TransactionInput(env, from, false, nil))) {
			return sim, sim.empty(sp)
		}
		var accepted []string
		for _, r := range rcpts {
			in := smtpproxy.TransactionInput(env, from, false, slices.Clone(accepted))
			in.RcptCurrent = r
			d := stage(pluginhost.HookRcptTo, in)
			switch d.Action {
			case pluginhost.Reject, pluginhost.Tempfail:
				final.Rejected = append(final.Rejected, r)
				continue
			case pluginhost.Discard:
				// As in the relay: for this recipient only.
				final.Discarded = append(final.Discarded, r)
				continue
			case pluginhost.Quarantine:
				final.Quarantined = append(final.Quarantined, r)
				continue
			}
			if d.Changes != nil {
				mi.RcptsAdded = append(mi.RcptsAdded, d.Changes.Recipients()...)
			}
			accepted = append(accepted, r)
		}
		if len(rcpts) > 0 && len(accepted) == 0 {
			decided(sim.stages[len(sim.stages)-1]) // only a rcpt_to stage that ran refuses
			return sim, sim.empty(sp)
		}
		mi.In = smtpproxy.TransactionInput(env, from, false, accepted)
	} else {
		env.MailFrom, env.HasMailFrom, env.Rcpts = from, from != "", rcpts
		mi.In = &pluginhost.Input{Env: env}
	}
	out, err := sess.Message(sp, mi)
	if err != nil {
		return nil, err
	}
	sim.outcome = out
	d := out.Decision
	if d == nil {
		d = &policy.Decision{Hook: pluginhost.HookMessage, Action: pluginhost.Accept}
	}
	if mi.Pending == nil {
		sim.stages = append(sim.stages, d)
	}
	decided(d)
	final.Changes, final.Tags, final.Score = d.Changes.List(), d.Tags, d.Score
	return sim, nil
}

// empty gives a simulation that ended before the message an outcome for the message as received (never sent).
func (sim *simulation) empty(sp *mailflow.Spool) error {
	sim.outcome = &mailflow.Outcome{}
	msg, err := message.Parse(sp.ReaderAt(), sp.Size(), message.DefaultLimits())
	if err != nil {
		return err
	}
	sim.outcome.Msg = msg
	return nil
}

func writeMessage(path string, content io.ReaderAt, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.NewSectionReader(content, 0, size)); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

func firstValue(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func printExplain(w io.Writer, cfg *config.Config, res *explainOutput) {
	fmt.Fprintf(w, "config:   %s (config sha256 %s)\n", res.Config, res.ConfigVersion)
	fmt.Fprintf(w, "message:  %s (%d bytes", res.Message.Path, res.Message.Size)
	if res.Message.MessageID != "" {
		fmt.Fprintf(w, ", Message-ID %s", res.Message.MessageID)
	}
	fmt.Fprintln(w, ")")
	for _, d := range res.Message.Defects {
		fmt.Fprintf(w, "          defect: %s\n", d)
	}
	e := res.Envelope
	fmt.Fprintf(w, "envelope: %s", e.Protocol)
	if e.Listener != "" {
		fmt.Fprintf(w, " listener %s", e.Listener)
	}
	fmt.Fprintf(w, " (%s) from <%s> to %s", e.Direction, e.MailFrom, strings.Join(bracket(e.Rcpts), " "))
	if e.ClientIP != "" {
		fmt.Fprintf(w, " client %s", e.ClientIP)
	}
	if e.HELO != "" {
		fmt.Fprintf(w, " helo %s", e.HELO)
	}
	if e.User != "" {
		fmt.Fprintf(w, " user %s", e.User)
	}
	if e.TLSVersion != "" {
		fmt.Fprintf(w, " %s", e.TLSVersion)
	}
	fmt.Fprintln(w)
	for _, d := range res.Stages {
		printStage(w, cfg, d)
	}
	f := res.Final
	fmt.Fprintf(w, "\nresult: %s", f.Action)
	if f.Code != 0 {
		fmt.Fprintf(w, " %d %s", f.Code, f.Enhanced)
	}
	if f.Text != "" {
		fmt.Fprintf(w, " %q", f.Text)
	}
	if f.DecidedBy != "" {
		fmt.Fprintf(w, " (policy %q at %s)", f.DecidedBy, f.Stage)
	}
	fmt.Fprintln(w)
	if len(f.Rejected) > 0 {
		fmt.Fprintf(w, "refused recipients: %s\n", strings.Join(bracket(f.Rejected), " "))
	}
	if len(f.Discarded) > 0 {
		fmt.Fprintf(w, "discarded recipients: %s\n", strings.Join(bracket(f.Discarded), " "))
	}
	if len(f.Quarantined) > 0 {
		fmt.Fprintf(w, "quarantined recipients: %s\n", strings.Join(bracket(f.Quarantined), " "))
	}
	if len(f.Tags) > 0 {
		fmt.Fprintf(w, "tags: %s\n", formatTags(f.Tags))
	}
	if f.Score != 0 {
		fmt.Fprintf(w, "score: %g\n", f.Score)
	}
	for _, c := range f.Changes {
		fmt.Fprintf(w, "change: %s\n", formatChange(c))
	}
}

func printStage(w io.Writer, cfg *config.Config, d *policy.Decision) {
	fmt.Fprintf(w, "\n== %s: %s", d.Hook, d.Action)
	if d.Code != 0 {
		fmt.Fprintf(w, " %d %s", d.Code, d.Enhanced)
	}
	if d.Text != "" {
		fmt.Fprintf(w, " %q", d.Text)
	}
	fmt.Fprintf(w, "  (%s)\n", round(d.Duration))
	seen := map[string]bool{}
	for _, p := range d.Policies {
		seen[p.Name] = true
		fmt.Fprintf(w, "  policy %q (%s) ", p.Name, p.Mode)
		switch {
		case p.Error != "":
			fmt.Fprintf(w, "failed: %s\n", p.Error)
		case !p.Matched && strings.HasPrefix(p.Why, "no plugin"):
			fmt.Fprintf(w, "skipped: %s\n", p.Why)
		case !p.Matched:
			fmt.Fprintf(w, "did not match: %s\n", p.Why)
		default:
			fmt.Fprintf(w, "matched: %s\n", p.Why)
		}
		for _, pl := range p.Plugins {
			if pl.Skipped != "" {
				fmt.Fprintf(w, "    plugin %-20s skipped: %s\n", pl.Name, pl.Skipped)
				continue
			}
			v := pl.Verdict
			fmt.Fprintf(w, "    plugin %-20s %s", pl.Name, v.Kind)
			if v.Code != 0 {
				fmt.Fprintf(w, " %d %s", v.Code, v.Enhanced)
			}
			if v.Text != "" {
				fmt.Fprintf(w, " %q", v.Text)
			}
			fmt.Fprintf(w, "  score %g  %s\n", pl.Score, round(pl.Duration))
			if pl.Error != "" {
				fmt.Fprintf(w, "      error: %s\n", pl.Error)
			}
			if len(pl.Tags) > 0 {
				fmt.Fprintf(w, "      tags: %s\n", formatTags(pl.Tags))
			}
			for _, c := range pl.Changes {
				fmt.Fprintf(w, "      change: %s\n", formatChange(c))
			}
			for _, l := range pl.Logs {
				fmt.Fprintf(w, "      log %s: %s\n", l.Level, l.Text)
			}
		}
		if p.Matched {
			fmt.Fprintf(w, "    => %s, score %g", p.Action, p.Score)
			if p.Threshold != "" {
				fmt.Fprintf(w, " (threshold %s)", p.Threshold)
			}
			if p.Mode == policy.ModeMonitor {
				fmt.Fprint(w, " [monitor: not enforced]")
			}
			fmt.Fprintln(w)
		}
	}
	for _, p := range cfg.Policies {
		if !seen[p.Name] {
			fmt.Fprintf(w, "  policy %q (%s) not reached: policy %q decided\n", p.Name, p.Mode, d.DecidedBy)
		}
	}
}

func bracket(addrs []string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = "<" + a + ">"
	}
	return out
}

func formatTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, tags[k])
	}
	return strings.Join(parts, " ")
}

func formatChange(c message.Change) string {
	switch c.Op {
	case "add_header", "set_header":
		return fmt.Sprintf("%s %s: %s", c.Op, c.Name, c.Value)
	case "remove_header":
		return fmt.Sprintf("%s %s", c.Op, c.Name)
	case "prefix_subject", "add_recipient":
		return fmt.Sprintf("%s %q", c.Op, c.Value)
	case "append_banner":
		return fmt.Sprintf("%s (%d bytes of text, %d of HTML)", c.Op, len(c.Value), len(c.HTML))
	case "remove_part":
		return fmt.Sprintf("%s %d", c.Op, c.Part)
	case "replace_part":
		return fmt.Sprintf("%s %d with %s (%d bytes)", c.Op, c.Part, c.ContentType, c.Size)
	}
	return string(c.Op)
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
