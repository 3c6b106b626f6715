package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

// fakePlugin stands in for a loaded plugin in the combination tests, which are about the engine's rules and need
// exact control of every verdict, tag and score. The wasm-backed tests in integration_test.go run the same rules
// through real plugins.
type fakePlugin struct {
	name    string
	hooks   pluginhost.HookSet
	verdict pluginhost.Kind
	score   float64
	tags    map[string]string
	header  string // a header field the plugin adds ("Name: value")
	fails   bool
	logs    []pluginhost.LogLine
	calls   int
}

func (f *fakePlugin) Name() string              { return f.name }
func (f *fakePlugin) SHA256() string            { return "sha-" + f.name }
func (f *fakePlugin) Hooks() pluginhost.HookSet { return f.hooks }

func (f *fakePlugin) Call(_ context.Context, hook pluginhost.Hook, _ *pluginhost.Input) *pluginhost.Result {
	f.calls++
	res := &pluginhost.Result{Plugin: f.name, Hook: hook, Changes: &message.Changes{}, Logs: f.logs}
	if f.fails {
		res.Err = fmt.Errorf("plugin %q: wasm trap: unreachable", f.name)
		res.Verdict = pluginhost.Verdict{Kind: pluginhost.Tempfail, Code: 451, Enhanced: "4.7.1"}
		return res
	}
	res.Verdict = pluginhost.Verdict{Kind: f.verdict}
	switch f.verdict {
	case pluginhost.Reject:
		res.Verdict.Code, res.Verdict.Enhanced, res.Verdict.Text = 550, "5.7.1", f.name+" says no"
	case pluginhost.Tempfail:
		res.Verdict.Code, res.Verdict.Enhanced = 451, "4.7.1"
	}
	res.Score = f.score
	res.Tags = f.tags
	if f.header != "" {
		name, value, _ := strings.Cut(f.header, ": ")
		if err := res.Changes.AddHeader(name, value); err != nil {
			panic(err)
		}
	}
	return res
}

const allHooks = pluginhost.HookSet(0xf)

// engine loads a configuration whose plugin blocks name the given fakes (every block's source is a dummy module;
// config never compiles it) and builds a snapshot over the fakes.
func engine(t testing.TB, policies string, fakes ...*fakePlugin) *Snapshot {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.wasm"), []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	callers := map[string]caller{}
	for _, f := range fakes {
		fmt.Fprintf(&b, "plugin %q {\n  source = \"x.wasm\"\n}\n", f.name)
		callers[f.name] = f
	}
	b.WriteString(policies)
	path := filepath.Join(dir, "main.hcl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return newSnapshot(cfg, callers, nil)
}

func testInput(t testing.TB, raw string) *pluginhost.Input {
	t.Helper()
	in := &pluginhost.Input{Env: pluginhost.Envelope{
		Protocol: "smtp", Direction: "inbound", Listener: "mx", ClientIP: "192.0.2.10", HELO: "client.example",
		MailFrom: "sender@example.net", HasMailFrom: true, Rcpts: []string{"user@corp.example"},
	}}
	if raw != "" {
		m, err := message.Parse(strings.NewReader(raw), int64(len(raw)), message.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		in.Msg = m
	}
	return in
}

const testMessage = "From: Sender <sender@example.net>\r\nTo: user@corp.example\r\nSubject: Hello there\r\n" +
	"Message-ID: <1@example.net>\r\n\r\nHi.\r\n"

// summary describes a decision compactly: action, deciding policy, score, tags and per policy which plugins ran.
func summary(d *Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", d.Action)
	if d.DecidedBy != "" {
		fmt.Fprintf(&b, " by %s", d.DecidedBy)
	}
	fmt.Fprintf(&b, " score=%g", d.Score)
	if len(d.Tags) > 0 {
		keys := make([]string, 0, len(d.Tags))
		for k, v := range d.Tags {
			keys = append(keys, k+"="+v)
		}
		sortStrings(keys)
		fmt.Fprintf(&b, " tags=%s", strings.Join(keys, ","))
	}
	for _, p := range d.Policies {
		if !p.Matched {
			continue
		}
		var ran []string
		for _, pl := range p.Plugins {
			ran = append(ran, pl.Name)
		}
		fmt.Fprintf(&b, " | %s(%s)->%s", p.Name, strings.Join(ran, ","), p.Action)
		if p.Threshold != "" {
			fmt.Fprintf(&b, "[%s]", p.Threshold)
		}
	}
	return b.String()
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestCombination(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		policies string
		fakes    []*fakePlugin
		want     string
		headers  int // header changes enforced
	}{
		{
			name: "accepts accumulate scores, tags and changes",
			policies: `policy "a" {
  plugins = ["p1", "p2"]
}
policy "b" {
  plugins = ["p3"]
}`,
			fakes: []*fakePlugin{
				{name: "p1", hooks: allHooks, score: 1.5, tags: map[string]string{"k": "1", "x": "p1"}, header: "X-A: 1"},
				{name: "p2", hooks: allHooks, score: 2, tags: map[string]string{"k": "2"}},
				{name: "p3", hooks: allHooks, score: -0.5, header: "X-B: 2"},
			},
			want:    "accept score=3 tags=k=2,x=p1 | a(p1,p2)->accept | b(p3)->accept",
			headers: 2,
		},
		{
			name: "terminal verdict stops the chain and later policies",
			policies: `policy "a" {
  plugins = ["p1", "p2", "p3"]
}
policy "b" {
  plugins = ["p4"]
}`,
			fakes: []*fakePlugin{
				{name: "p1", hooks: allHooks, score: 1, header: "X-A: 1"},
				{name: "p2", hooks: allHooks, verdict: pluginhost.Reject, score: 3},
				{name: "p3", hooks: allHooks},
				{name: "p4", hooks: allHooks},
			},
			want:    "reject by a score=4 | a(p1,p2)->reject",
			headers: 1,
		},
		{
			name: "enforce policies before the deciding one contribute",
			policies: `policy "tagger" {
  plugins = ["t"]
}
policy "guard" {
  plugins = ["g"]
}
policy "never" {
  plugins = ["n"]
}`,
			fakes: []*fakePlugin{
				{name: "t", hooks: allHooks, tags: map[string]string{"external": "yes"}, header: "X-External: yes"},
				{name: "g", hooks: allHooks, verdict: pluginhost.Quarantine},
				{name: "n", hooks: allHooks, verdict: pluginhost.Reject},
			},
			want:    "quarantine by guard score=0 tags=external=yes | tagger(t)->accept | guard(g)->quarantine",
			headers: 1,
		},
		{
			name: "thresholds: highest reached wins",
			policies: `policy "spam" {
  plugins = ["s1", "s2"]
  thresholds {
    tag        = 5
    quarantine = 8
    reject     = 15
  }
}`,
			fakes: []*fakePlugin{{name: "s1", hooks: allHooks, score: 6}, {name: "s2", hooks: allHooks, score: 3}},
			want:  "quarantine by spam score=9 | spam(s1,s2)->quarantine[quarantine at 8]",
		},
		{
			name: "threshold tag marks and adds the tag header",
			policies: `policy "spam" {
  plugins = ["s1"]
  thresholds {
    tag    = 5
    reject = 15
  }
}`,
			fakes:   []*fakePlugin{{name: "s1", hooks: allHooks, score: 5}},
			want:    "accept score=5 tags=policy.spam=tag | spam(s1)->accept[tag at 5]",
			headers: 1,
		},
		{
			name: "below every threshold",
			policies: `policy "spam" {
  plugins = ["s1"]
  thresholds {
    tag = 5
  }
}`,
			fakes: []*fakePlugin{{name: "s1", hooks: allHooks, score: 4.99}},
			want:  "accept score=4.99 | spam(s1)->accept",
		},
		{
			name: "a plugin's terminal verdict wins over thresholds",
			policies: `policy "spam" {
  plugins = ["s1", "s2"]
  thresholds {
    reject = 1
  }
}`,
			fakes: []*fakePlugin{{name: "s1", hooks: allHooks, score: 50, verdict: pluginhost.Quarantine},
				{name: "s2", hooks: allHooks, score: 50}},
			want: "quarantine by spam score=50 | spam(s1)->quarantine",
		},
		{
			name: "monitor policy runs everything and contributes nothing",
			policies: `policy "watch" {
  plugins = ["w1", "w2"]
  mode    = "monitor"
  thresholds {
    tag = 1
  }
}
policy "real" {
  plugins = ["r"]
}`,
			fakes: []*fakePlugin{
				{name: "w1", hooks: allHooks, score: 10, tags: map[string]string{"dlp": "card"}, header: "X-W: 1"},
				{name: "w2", hooks: allHooks, verdict: pluginhost.Reject},
				{name: "r", hooks: allHooks, score: 1},
			},
			want: "accept score=1 | watch(w1,w2)->reject | real(r)->accept",
		},
		{
			name: "monitor would-be action from a threshold",
			policies: `policy "watch" {
  plugins = ["w1"]
  mode    = "monitor"
  thresholds {
    reject = 5
  }
}`,
			fakes: []*fakePlugin{{name: "w1", hooks: allHooks, score: 7}},
			want:  "accept score=0 | watch(w1)->reject[reject at 5]",
		},
		{
			name: "when selects policies",
			policies: `policy "outbound" {
  when    = msg.direction == "outbound"
  plugins = ["o"]
}
policy "corp" {
  when    = contains(msg.rcpt_domains, "corp.example") && msg.subject == "Hello there"
  plugins = ["c"]
}`,
			fakes: []*fakePlugin{{name: "o", hooks: allHooks, verdict: pluginhost.Reject},
				{name: "c", hooks: allHooks, score: 2}},
			want: "accept score=2 | corp(c)->accept",
		},
		{
			name: "plugin failure gives its on_error verdict",
			policies: `policy "a" {
  plugins = ["broken", "after"]
}`,
			fakes: []*fakePlugin{{name: "broken", hooks: allHooks, fails: true}, {name: "after", hooks: allHooks}},
			want:  "tempfail by a score=0 | a(broken)->tempfail",
		},
		{
			name: "when failing at run time tempfails an enforce policy",
			policies: `policy "watch" {
  when    = regex("^Nope", msg.subject) == "x"
  mode    = "monitor"
  plugins = ["w"]
}
policy "bad" {
  when    = regex("^Nope", msg.subject) == "x"
  plugins = ["b"]
}
policy "later" {
  plugins = ["l"]
}`,
			fakes: []*fakePlugin{{name: "w", hooks: allHooks}, {name: "b", hooks: allHooks}, {name: "l", hooks: allHooks}},
			want:  "tempfail by bad score=0",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := engine(t, c.policies, c.fakes...)
			in := testInput(t, testMessage)
			d := s.Evaluate(ctx, pluginhost.HookMessage, in)
			if got := summary(d); got != c.want {
				t.Errorf("decision:\n  %s\nwant:\n  %s", got, c.want)
			}
			if d.ConfigVersion != s.Version() || d.Changes == nil {
				t.Errorf("version %q, changes %v", d.ConfigVersion, d.Changes)
			}
			if got := d.Changes.Len(); got != c.headers {
				t.Errorf("%d enforced changes, want %d: %+v", got, c.headers, d.Changes.List())
			}
			if len(d.Policies) != len(s.policies) && d.Action == pluginhost.Accept {
				t.Errorf("trace has %d policies, want all %d", len(d.Policies), len(s.policies))
			}
		})
	}
}

func TestWhenErrorTrace(t *testing.T) {
	s := engine(t, `policy "bad" {
  when    = regex("^Nope", msg.subject) == "x"
  plugins = ["b"]
}`, &fakePlugin{name: "b", hooks: allHooks})
	d := s.Evaluate(context.Background(), pluginhost.HookMessage, testInput(t, testMessage))
	tr := d.Policies[0]
	if d.Code != 451 || d.Enhanced != "4.3.5" || tr.Matched || !strings.Contains(tr.Error, "main.hcl:5:13") ||
		tr.Action != pluginhost.Tempfail {
		t.Errorf("decision %+v, trace %+v", d, tr)
	}
}

func TestThresholdReplies(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		thresholds, extra string
		code              int
		enh, text         string
		kind              pluginhost.Kind
	}{
		{"reject = 1", "", 550, "5.7.1", "Message rejected by policy", pluginhost.Reject},
		{"reject = 1", "reject_code = 554\n  reject_text = \"Spam score too high\"", 554, "5.7.1", "Spam score too high", pluginhost.Reject},
		{"tempfail = 1", "reject_text = \"Try later\"", 451, "4.7.1", "Try later", pluginhost.Tempfail},
		{"discard = 1", "", 0, "", "score 2 reached the discard threshold", pluginhost.Discard},
		{"quarantine = 1", "", 0, "", "score 2 reached the quarantine threshold of policy p", pluginhost.Quarantine},
	} {
		s := engine(t, fmt.Sprintf("policy \"p\" {\n  plugins = [\"s\"]\n  %s\n  thresholds {\n    %s\n  }\n}\n",
			c.extra, c.thresholds), &fakePlugin{name: "s", hooks: allHooks, score: 2})
		d := s.Evaluate(ctx, pluginhost.HookMessage, testInput(t, testMessage))
		if d.Action != c.kind || d.Code != c.code || d.Enhanced != c.enh || d.Text != c.text || d.DecidedBy != "p" {
			t.Errorf("%s: got %s %d %s %q by %q", c.thresholds, d.Action, d.Code, d.Enhanced, d.Text, d.DecidedBy)
		}
	}
}

func TestTagHeaderWritten(t *testing.T) {
	s := engine(t, `policy "spam" {
  plugins    = ["s"]
  tag_header = "X-Spam-Flag"
  thresholds {
    tag = 3
  }
}`, &fakePlugin{name: "s", hooks: allHooks, score: 3.25})
	in := testInput(t, testMessage)
	d := s.Evaluate(context.Background(), pluginhost.HookMessage, in)
	var out bytes.Buffer
	if _, err := in.Msg.WriteTo(&out, d.Changes); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "X-Spam-Flag: spam; score=3.25\r\n"+testMessage[:10]) ||
		!strings.HasSuffix(out.String(), testMessage) {
		t.Errorf("written message:\n%s", out.String())
	}
	// At an envelope stage there is no header to add: the tag alone marks it.
	d = s.Evaluate(context.Background(), pluginhost.HookMailFrom, testInput(t, ""))
	if d.Changes.Len() != 0 || d.Tags["policy.spam"] != "tag" {
		t.Errorf("mail_from: changes %v tags %v", d.Changes.List(), d.Tags)
	}
}

func TestHooks(t *testing.T) {
	msgOnly := &fakePlugin{name: "m", hooks: 1 << pluginhost.HookMessage, verdict: pluginhost.Reject}
	rcpt := &fakePlugin{name: "r", hooks: 1 << pluginhost.HookRcptTo, score: 1}
	s := engine(t, `policy "content" {
  plugins = ["m"]
}
policy "envelope" {
  when    = msg.rcpt_current != "blocked@corp.example"
  plugins = ["r", "m"]
}`, msgOnly, rcpt)
	if s.Hooks() != (1<<pluginhost.HookMessage | 1<<pluginhost.HookRcptTo) {
		t.Errorf("Hooks = %v", s.Hooks())
	}
	in := testInput(t, "")
	in.RcptCurrent = "user@corp.example"
	d := s.Evaluate(context.Background(), pluginhost.HookRcptTo, in)
	if got := summary(d); got != "accept score=1 | envelope(r)->accept" || msgOnly.calls != 0 {
		t.Errorf("rcpt_to: %s (message-only plugin called %d times)", got, msgOnly.calls)
	}
	if d.Policies[0].Matched || !strings.Contains(d.Policies[0].Why, "no plugin of this policy implements the rcpt_to hook") {
		t.Errorf("skipped policy trace: %+v", d.Policies[0])
	}
	in.RcptCurrent = "blocked@corp.example"
	if d := s.Evaluate(context.Background(), pluginhost.HookRcptTo, in); summary(d) != "accept score=0" {
		t.Errorf("rcpt_to blocked: %s", summary(d))
	}
	d = s.Evaluate(context.Background(), pluginhost.HookConnect, in)
	if summary(d) != "accept score=0" || rcpt.calls != 1 {
		t.Errorf("connect: %s", summary(d))
	}
}

func TestFactsFromMessage(t *testing.T) {
	s := engine(t, `policy "broken-mime" {
  when    = contains(msg.malformed, "unclosed-boundary") && msg.limit_exceeded == ""
  plugins = ["q"]
}
policy "facts" {
  when    = msg.from == "sender@example.net" && msg.subject == "Grüße" && msg.size == 183 && header("X-Test") == "a b"
  plugins = ["t"]
}`, &fakePlugin{name: "q", hooks: allHooks, verdict: pluginhost.Quarantine}, &fakePlugin{name: "t", hooks: allHooks, score: 1})
	raw := "From: \"Sender\" <sender@example.net>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nX-Test: a\r\n b\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nunclosed\r\n"
	d := s.Evaluate(context.Background(), pluginhost.HookMessage, testInput(t, raw))
	if got := summary(d); got != "quarantine by broken-mime score=0 | broken-mime(q)->quarantine" {
		t.Errorf("malformed message: %s (%d bytes)", got, len(raw))
	}
	raw = strings.Replace(raw, "unclosed\r\n", "closed\r\n--b--\r\n", 1)
	d = s.Evaluate(context.Background(), pluginhost.HookMessage, testInput(t, raw))
	if got := summary(d); got != "accept score=1 | facts(t)->accept" {
		t.Errorf("well-formed message (%d bytes): %s", len(raw), got)
	}
}

func TestDecisionJSON(t *testing.T) {
	s := engine(t, "policy \"p\" {\n  plugins = [\"r\"]\n}\n", &fakePlugin{name: "r", hooks: allHooks, verdict: pluginhost.Reject, tags: map[string]string{"k": "v"}})
	d := s.Evaluate(context.Background(), pluginhost.HookRcptTo, testInput(t, ""))
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"hook":"rcpt_to"`, `"action":"reject"`, `"code":550`, `"decided_by":"p"`, `"tags":{"k":"v"}`,
		`"verdict":{"kind":"reject","code":550,"enhanced":"5.7.1","text":"r says no"}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	var back Decision
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Hook != pluginhost.HookRcptTo || back.Action != pluginhost.Reject || back.DecidedBy != "p" || back.Policies[0].Name != "p" ||
		back.Policies[0].Plugins[0].Verdict != d.Policies[0].Plugins[0].Verdict || back.Policies[0].Plugins[0].Name != "r" {
		t.Errorf("round trip: %+v", back)
	}
}

func TestHostConfig(t *testing.T) {
	pc, err := hostConfig(&config.Plugin{Name: "x", Memory: 4 << 30, OnError: "reject", Grants: []string{"random"},
		Timeout: time.Second, PoolSize: 3, MaxCalls: 7})
	if err != nil {
		t.Fatal(err)
	}
	if pc.Memory != math.MaxUint32 || pc.OnError != pluginhost.OnErrorReject || pc.Grants != (pluginhost.Grants{Random: true}) ||
		pc.Timeout != time.Second || pc.PoolSize != 3 || pc.MaxCalls != 7 {
		t.Errorf("%+v", pc)
	}
	if pc, _ := hostConfig(&config.Plugin{Name: "y", Memory: 32 << 20, Grants: []string{"clock"}}); pc.Memory != 32<<20 ||
		!pc.Grants.Clock || pc.OnError != pluginhost.OnErrorTempfail {
		t.Errorf("%+v", pc)
	}
}

// TestPluginLogs sends a plugin's log lines to the proxy's log, with the plugin, policy and client, and to the
// decision's trace (explain shows them).
func TestPluginLogs(t *testing.T) {
	f := &fakePlugin{name: "noisy", hooks: allHooks, logs: []pluginhost.LogLine{
		{Level: slog.LevelWarn, Text: "suspicious link"}, {Level: slog.LevelDebug, Text: "details"}}}
	s := engine(t, "policy \"p\" {\n  plugins = [\"noisy\"]\n}\n", f)
	var buf bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d := s.Evaluate(context.Background(), pluginhost.HookMessage, testInput(t, testMessage))
	logs := d.Policies[0].Plugins[0].Logs
	if len(logs) != 2 || logs[0] != (PluginLog{Level: "warn", Text: "suspicious link"}) || logs[1].Level != "debug" {
		t.Errorf("trace logs %+v", logs)
	}
	out := buf.String()
	for _, want := range []string{"level=WARN", `msg="plugin: suspicious link"`, "plugin=noisy", "policy=p", "hook=message",
		"listener=mx", "client_ip=192.0.2.10"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "details") {
		t.Errorf("a debug line passed an info-level log:\n%s", out)
	}
}

// TestFactsAtRetrieval: the engine gives `when` the session's mailbox and no envelope at retrieval, so a bounce
// rule does not match a message read over POP3, and the retrieval facts reach the condition.
func TestFactsAtRetrieval(t *testing.T) {
	s := engine(t, `policy "bounces" {
  when    = msg.mail_from == ""
  plugins = ["b"]
}
policy "mailbox" {
  when    = msg.protocol == "imap" && msg.mailbox == "Archive" && msg.uid == 7 && msg.uidvalidity == 3 && contains(msg.flags, "$Junk") && msg.command == "fetch" && msg.mailbox_user == "alice" && msg.internal_date == "2026-01-02T14:04:05Z"
  plugins = ["m"]
}
policy "pop3" {
  when    = msg.uidl == "u-1" && msg.command == "retr" && msg.mailbox == null
  plugins = ["p"]
}`, &fakePlugin{name: "b", hooks: allHooks, verdict: pluginhost.Reject}, &fakePlugin{name: "m", hooks: allHooks, score: 1},
		&fakePlugin{name: "p", hooks: allHooks, score: 2})
	raw := "Subject: x\r\n\r\nbody\r\n"
	// The relay: a bounce (null reverse path) matches.
	in := testInput(t, raw)
	in.Env.MailFrom, in.Env.HasMailFrom = "", true
	if got := summary(s.Evaluate(context.Background(), pluginhost.HookMessage, in)); !strings.HasPrefix(got, "reject by bounces") {
		t.Errorf("SMTP bounce: %s", got)
	}
	// IMAP FETCH: no sender at all, whatever the session left in MailFrom.
	in = testInput(t, raw)
	in.Env = pluginhost.Envelope{Protocol: "imap", Direction: "retrieval", MailFrom: "", HasMailFrom: true,
		MailboxUser: "alice", Mailbox: "Archive", UID: 7, UIDValidity: 3, Flags: []string{`\Seen`, "$Junk"},
		Command: "fetch", InternalDate: time.Date(2026, 1, 2, 15, 4, 5, 0, time.FixedZone("CET", 3600))}
	if got := summary(s.Evaluate(context.Background(), pluginhost.HookMessage, in)); got != "accept score=1 | mailbox(m)->accept" {
		t.Errorf("IMAP FETCH: %s", got)
	}
	in.Env = pluginhost.Envelope{Protocol: "pop3", Direction: "retrieval", UIDL: "u-1", Command: "retr", Mailbox: "stale"}
	if got := summary(s.Evaluate(context.Background(), pluginhost.HookMessage, in)); got != "accept score=2 | pop3(p)->accept" {
		t.Errorf("POP3 RETR: %s", got)
	}
}
