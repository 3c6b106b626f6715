package mailflow

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

type fakeFilter struct {
	decide func(pluginhost.Hook, *pluginhost.Input) *policy.Decision
	ctxs   []context.Context
	hooks  pluginhost.HookSet
}

func (f *fakeFilter) Evaluate(ctx context.Context, h pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
	f.ctxs = append(f.ctxs, ctx)
	return f.decide(h, in)
}
func (f *fakeFilter) Hooks() pluginhost.HookSet { return f.hooks }

type fakeSource struct {
	f        Filter
	released int
}

func (s *fakeSource) Acquire() (Filter, func()) { return s.f, func() { s.released++ } }

type records struct {
	mu   sync.Mutex
	recs []*audit.Record
}

func (r *records) Append(rec *audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}

const testMessage = "From: a@example.org\r\nSubject: hi\r\nMessage-ID: <1@example.org>\r\n\r\nbody\r\n"

func newFlow(t *testing.T, f Filter, rec Auditor, q *Quarantine, resultHeaders bool) (*Flow, *fakeSource) {
	t.Helper()
	src := &fakeSource{f: f}
	o := Options{Audit: rec, Quarantine: q, SpoolDir: t.TempDir(), MemoryThreshold: 1 << 20, MessageSize: 1 << 20,
		MessageLimits: message.DefaultLimits(), ResultHeaders: resultHeaders}
	if f != nil {
		o.Filters = src
	}
	fl, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return fl, src
}

func TestNewNeedsExplicitValues(t *testing.T) {
	for _, o := range []Options{{}, {SpoolDir: "/tmp", MemoryThreshold: 1, MessageSize: 1},
		{SpoolDir: "/tmp", MemoryThreshold: 1, MessageLimits: message.DefaultLimits()}} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestOpenWithoutPolicy(t *testing.T) {
	src := &fakeSource{}
	fl, err := New(Options{Filters: src, SpoolDir: t.TempDir(), MemoryThreshold: 1, MessageSize: 1,
		MessageLimits: message.DefaultLimits()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fl.Open(context.Background(), "s"); !errors.Is(err, ErrNoPolicy) || src.released != 1 {
		t.Fatalf("Open: %v, released %d", err, src.released)
	}
}

// TestMessageOutcomes runs each action through Message and checks what the front end gets and what is recorded.
func TestMessageOutcomes(t *testing.T) {
	qdir := filepath.Join(t.TempDir(), "q")
	q, err := OpenQuarantine(qdir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		d    *policy.Decision
		q    *Quarantine
		want func(t *testing.T, out *Outcome, content string)
	}{
		{"accept unchanged", &policy.Decision{Action: pluginhost.Accept}, nil, func(t *testing.T, out *Outcome, c string) {
			if c != testMessage || out.SHA256Out != "" || out.MessageID != "<1@example.org>" {
				t.Fatalf("content %q, out %+v", c, out)
			}
		}},
		{"accept changed", func() *policy.Decision {
			ch := &message.Changes{}
			ch.AddHeader("X-Seen", "yes")
			return &policy.Decision{Action: pluginhost.Accept, Changes: ch, Score: math.Inf(1)}
		}(), nil, func(t *testing.T, out *Outcome, c string) {
			if !strings.HasPrefix(c, "X-Seen: yes\r\n") || out.SHA256Out == "" || out.SHA256Out == out.SHA256In ||
				out.Decision.Score != audit.MaxScore {
				t.Fatalf("content %q, out %+v", c, out)
			}
		}},
		{"quarantine", &policy.Decision{Action: pluginhost.Quarantine}, q, func(t *testing.T, out *Outcome, _ string) {
			b, err := os.ReadFile(filepath.Join(qdir, out.QuarantineID+".eml"))
			if out.Err != nil || err != nil || string(b) != testMessage {
				t.Fatalf("quarantined %q (%v), out %+v", b, err, out)
			}
			if _, err := os.Stat(filepath.Join(qdir, out.QuarantineID+".json")); err != nil {
				t.Fatal(err)
			}
		}},
		{"quarantine without a store", &policy.Decision{Action: pluginhost.Quarantine}, nil, func(t *testing.T, out *Outcome, _ string) {
			if out.Err == nil {
				t.Fatal("a quarantine verdict without a quarantine was not an error")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeFilter{hooks: ^pluginhost.HookSet(0), decide: func(pluginhost.Hook, *pluginhost.Input) *policy.Decision {
				d := *tc.d
				return &d
			}}
			rec := &records{}
			fl, _ := newFlow(t, f, rec, tc.q, false)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := fl.Open(ctx, "sess")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			sp, err := s.Receive(strings.NewReader(testMessage))
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			out, err := s.Message(sp, MessageInput{ID: "txn1", In: &pluginhost.Input{}})
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			ra, n := out.Content()
			b, _ := io.ReadAll(io.NewSectionReader(ra, 0, n))
			tc.want(t, out, string(b))
			out.Record(audit.Reply{Code: 250, Text: "ok"})
			if len(rec.recs) != 1 || rec.recs[0].Reply.Code != 250 || rec.recs[0].Session != "sess" ||
				rec.recs[0].Action != tc.d.Action.String() {
				t.Fatalf("records %+v", rec.recs)
			}
			if len(f.ctxs) != 1 || f.ctxs[0] != ctx {
				t.Fatal("the plugin call did not get the session's context")
			}
		})
	}
}

func TestReceiveBounds(t *testing.T) {
	fl, _ := newFlow(t, nil, nil, nil, false)
	s, _ := fl.Open(context.Background(), "s")
	if _, err := s.Receive(strings.NewReader(strings.Repeat("x", 2<<20))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	var bn *BareNewlineError
	if _, err := s.Receive(strings.NewReader("a\nb\r\n")); !errors.As(err, &bn) || bn.What != "bare LF" {
		t.Fatalf("bare LF: %v", err)
	}
}

func TestResultHeadersWithoutPolicy(t *testing.T) {
	fl, _ := newFlow(t, nil, nil, nil, true)
	s, _ := fl.Open(context.Background(), "s")
	sp, _ := s.Receive(strings.NewReader("X-Postern-Verdict: forged\r\n" + testMessage))
	defer sp.Close()
	out, err := s.Message(sp, MessageInput{Trace: []HeaderField{{"Received", "from x"}}})
	if err != nil || out.Decision != nil {
		t.Fatalf("%+v %v", out, err)
	}
	defer out.Close()
	if !out.Changed() {
		t.Fatal("a message with result headers added is not reported as changed")
	}
	ra, n := out.Content()
	b, _ := io.ReadAll(io.NewSectionReader(ra, 0, n))
	got := string(b)
	if strings.Contains(got, "forged") || !strings.Contains(got, "X-Postern-Verdict: accept\r\n") ||
		!strings.Contains(got, "X-Postern-Score: 0\r\n") || !strings.Contains(got, "Received: from x\r\n") {
		t.Fatalf("%q", got)
	}
}

func TestBoundScores(t *testing.T) {
	d := &policy.Decision{Score: math.NaN(), Policies: []policy.PolicyTrace{{Score: -math.Inf(1),
		Plugins: []policy.PluginTrace{{Score: 1e300}}}}}
	BoundScores(d)
	if d.Score != 0 || d.Policies[0].Score != -audit.MaxScore || d.Policies[0].Plugins[0].Score != audit.MaxScore {
		t.Fatalf("%+v", d)
	}
}

func TestReplyText(t *testing.T) {
	if got := ReplyText("  a\r\nb\x00\xff  "); got != "a  b ?" {
		t.Fatalf("%q", got)
	}
	if got := ReplyText(strings.Repeat("é", 400)); len(got) > 512 || !strings.HasSuffix(got, "é") {
		t.Fatalf("cut badly: %d bytes", len(got))
	}
}

type versionedFilter struct{ fakeFilter }

func (versionedFilter) Version() string { return "v42" }

func TestPolicyVersion(t *testing.T) {
	accept := func(pluginhost.Hook, *pluginhost.Input) *policy.Decision { return nil }
	fl, _ := newFlow(t, &versionedFilter{fakeFilter{decide: accept}}, nil, nil, false)
	s, err := fl.Open(context.Background(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v := s.PolicyVersion(); v != "v42" {
		t.Fatalf("PolicyVersion = %q", v)
	}
	fl, _ = newFlow(t, &fakeFilter{decide: accept}, nil, nil, false)
	s2, _ := fl.Open(context.Background(), "s2")
	defer s2.Close()
	if v := s2.PolicyVersion(); v != "" {
		t.Fatalf("a filter without a version: %q", v)
	}
}

func TestRecordServed(t *testing.T) {
	rec := &records{}
	reject := func(pluginhost.Hook, *pluginhost.Input) *policy.Decision {
		return &policy.Decision{Hook: pluginhost.HookMessage, Action: pluginhost.Reject}
	}
	fl, _ := newFlow(t, &fakeFilter{decide: reject, hooks: ^pluginhost.HookSet(0)}, rec, nil, false)
	s, _ := fl.Open(context.Background(), "s1")
	defer s.Close()
	sp, err := s.Receive(strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	out, err := s.Message(sp, MessageInput{In: &pluginhost.Input{Env: pluginhost.Envelope{Protocol: "pop3"}}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Changed() {
		t.Fatal("a rejected message reported as changed")
	}
	out.RecordServed(audit.Reply{Status: audit.StatusPOP3OK, Text: "120 octets"}, "abc", "ref-1")
	if len(rec.recs) != 1 || rec.recs[0].SHA256Served != "abc" || rec.recs[0].Withheld != "ref-1" ||
		rec.recs[0].Reply.Status != "+OK" {
		t.Fatalf("records: %+v", rec.recs)
	}
}

// TestQuarantineLinkedToItsRecord checks that a quarantined message's entry names its audit record (seq and
// hash) and the record names the entry, whichever way the front end records it.
func TestQuarantineLinkedToItsRecord(t *testing.T) {
	for _, durable := range []bool{false, true} {
		al, err := audit.Open(audit.Options{Path: filepath.Join(t.TempDir(), "audit.log"), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer al.Close()
		q, err := OpenQuarantine(filepath.Join(t.TempDir(), "q"))
		if err != nil {
			t.Fatal(err)
		}
		f := &fakeFilter{hooks: ^pluginhost.HookSet(0), decide: func(pluginhost.Hook, *pluginhost.Input) *policy.Decision {
			return &policy.Decision{Hook: pluginhost.HookMessage, Action: pluginhost.Quarantine, DecidedBy: "content"}
		}}
		fl, _ := newFlow(t, f, al, q, false)
		s, _ := fl.Open(context.Background(), "sess")
		sp, _ := s.Receive(strings.NewReader(testMessage))
		in := &pluginhost.Input{Env: pluginhost.Envelope{Protocol: "smtp", Direction: "inbound", Listener: "mx",
			MailFrom: "a@example.org", HasMailFrom: true, Rcpts: []string{"b@example.com"}}}
		out, err := s.Message(sp, MessageInput{ID: "txn1", In: in})
		if err != nil || out.Err != nil {
			t.Fatal(err, out.Err)
		}
		if durable {
			err = out.RecordDurable(audit.Reply{Code: 250})
		} else {
			out.Record(audit.Reply{Code: 250})
		}
		if err != nil {
			t.Fatal(err)
		}
		m, err := q.Get(out.QuarantineID)
		if err != nil {
			t.Fatal(err)
		}
		seq, hash := al.Head()
		if m.AuditSeq != seq || m.AuditHash != hash || seq == 0 {
			t.Fatalf("durable %v: linked to %d %s, the record is %d %s", durable, m.AuditSeq, m.AuditHash, seq, hash)
		}
		if m.Subject != "hi" || m.MessageID != "<1@example.org>" || m.Stage != "smtp" || m.Policy != "content" ||
			m.Listener != "mx" || len(m.Rcpts) != 1 {
			t.Fatalf("meta %+v", m)
		}
		sp.Close()
		s.Close()
	}
}
