package smtpproxy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

type recorder struct {
	mu   sync.Mutex
	recs []*audit.Record
}

func (r *recorder) Append(rec *audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}

func (r *recorder) records() []*audit.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*audit.Record(nil), r.recs...)
}

func TestMessageVerdicts(t *testing.T) {
	cases := []struct {
		name     string
		d        policy.Decision
		reply    string // prefix of "code text"
		relayed  bool
		quarDir  bool
		recorded string
	}{
		{name: "reject", d: policy.Decision{Action: pluginhost.Reject, Code: 554, Enhanced: "5.7.1", Text: "EICAR test file found"},
			reply: "554 5.7.1 EICAR test file found", recorded: "reject"},
		{name: "reject defaults", d: policy.Decision{Action: pluginhost.Reject},
			reply: "550 5.7.1 Message rejected by policy", recorded: "reject"},
		{name: "reject with a non-5xx code", d: policy.Decision{Action: pluginhost.Reject, Code: 250, Enhanced: "2.0.0", Text: "sneaky"},
			reply: "550 5.7.1 sneaky", recorded: "reject"},
		{name: "reject text with line breaks", d: policy.Decision{Action: pluginhost.Reject, Text: "bad\r\n250 2.0.0 fake"},
			reply: "550 5.7.1 bad  250 2.0.0 fake", recorded: "reject"},
		{name: "tempfail", d: policy.Decision{Action: pluginhost.Tempfail, Code: 452, Enhanced: "4.3.1", Text: "scanner busy"},
			reply: "452 4.3.1 scanner busy", recorded: "tempfail"},
		{name: "tempfail with a 5xx code", d: policy.Decision{Action: pluginhost.Tempfail, Code: 550},
			reply: "451 4.7.1 ", recorded: "tempfail"},
		{name: "discard", d: policy.Decision{Action: pluginhost.Discard}, reply: "250 2.0.0 Ok: accepted as ", recorded: "discard"},
		{name: "quarantine", d: policy.Decision{Action: pluginhost.Quarantine, Text: "held for review"},
			reply: "250 2.0.0 Ok: accepted as ", quarDir: true, recorded: "quarantine"},
		{name: "quarantine with a refusal", d: policy.Decision{Action: pluginhost.Quarantine, Code: 550, Text: "held"},
			reply: "550 5.7.1 held", quarDir: true, recorded: "quarantine"},
		{name: "quarantine without directory", d: policy.Decision{Action: pluginhost.Quarantine},
			reply: "451 4.3.0 ", recorded: "quarantine"},
		{name: "accept", d: policy.Decision{Action: pluginhost.Accept}, reply: "250 2.0.0 Ok: queued as UP1", relayed: true, recorded: "accept"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := (&smtptest.Upstream{}).Start(t)
			rec := &recorder{}
			o := smtpproxy.Options{Upstream: up.Addr, Audit: rec,
				Filters: &testFilter{decide: decideAt(pluginhost.HookMessage, tc.d)}}
			if tc.quarDir {
				o.QuarantineDir = t.TempDir()
			}
			addr, _ := startRelay(t, o)
			c := hello(t, addr)
			resets := up.Resets()
			r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
			if got := r.String(); !strings.HasPrefix(got, tc.reply) {
				t.Fatalf("reply %q, want %q...", got, tc.reply)
			}
			if n := len(up.Messages()); (n == 1) != tc.relayed {
				t.Fatalf("upstream got %d messages", n)
			}
			if !tc.relayed {
				// The upstream transaction opened by MAIL and RCPT is reset, not left dangling.
				c.Expect("NOOP", 250)
				if up.Resets() <= resets {
					t.Fatal("upstream transaction not reset")
				}
			}
			recs := rec.records()
			if len(recs) != 1 || recs[0].Action != tc.recorded || recs[0].Hook != "message" {
				t.Fatalf("audit records: %+v", recs)
			}
			if recs[0].Reply == nil || recs[0].Reply.Code != r.Code || recs[0].Size != int64(len(simpleMessage)) ||
				recs[0].MessageID != "<1@example.org>" || *recs[0].MailFrom != "a@example.org" || len(recs[0].SHA256In) != 64 {
				t.Fatalf("audit record: %+v", recs[0])
			}
			if tc.quarDir {
				checkQuarantine(t, o.QuarantineDir)
			}
		})
	}
}

func checkQuarantine(t *testing.T, dir string) {
	t.Helper()
	emls, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	jsons, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(emls) != 1 || len(jsons) != 1 || strings.TrimSuffix(emls[0], ".eml") != strings.TrimSuffix(jsons[0], ".json") {
		t.Fatalf("quarantine holds %v and %v", emls, jsons)
	}
	b, _ := os.ReadFile(emls[0])
	if string(b) != simpleMessage {
		t.Fatalf("quarantined message differs from the one received: %q", b)
	}
	if fi, _ := os.Stat(emls[0]); fi.Mode().Perm() != 0o600 {
		t.Fatalf("quarantine file mode %v, want 0600", fi.Mode())
	}
	var rec struct {
		MailFrom string   `json:"mail_from"`
		Rcpts    []string `json:"rcpts"`
		SHA256   string   `json:"sha256"`
		Decision struct {
			Action string `json:"action"`
		} `json:"decision"`
	}
	b, _ = os.ReadFile(jsons[0])
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.MailFrom != "a@example.org" || len(rec.Rcpts) != 1 || rec.Decision.Action != "quarantine" || len(rec.SHA256) != 64 {
		t.Fatalf("quarantine record: %s", b)
	}
}

func TestEnvelopeHooks(t *testing.T) {
	t.Run("reject at MAIL FROM never reaches the upstream", func(t *testing.T) {
		up := (&smtptest.RawUpstream{}).Start(t)
		rec := &recorder{}
		f := &testFilter{decide: func(h pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
			if h == pluginhost.HookMailFrom && in.Env.MailFrom == "spammer@example.org" {
				return &policy.Decision{Action: pluginhost.Reject, Code: 553, Enhanced: "5.7.1", Text: "Sender blocked"}
			}
			return nil
		}}
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, Audit: rec})
		c := hello(t, addr)
		if r := c.Cmd("MAIL FROM:<spammer@example.org>"); r.String() != "553 5.7.1 Sender blocked" {
			t.Fatalf("MAIL: %v", r)
		}
		c.Expect("MAIL FROM:<friend@example.org>", 250)
		for _, cmd := range up.Commands() {
			if strings.Contains(cmd, "spammer") {
				t.Fatalf("upstream saw %q", cmd)
			}
		}
		if recs := rec.records(); len(recs) != 1 || recs[0].Hook != "mail_from" || recs[0].Action != "reject" {
			t.Fatalf("audit: %+v", recs)
		}
	})
	t.Run("reject and tempfail at RCPT TO", func(t *testing.T) {
		up := (&smtptest.Upstream{}).Start(t)
		f := &testFilter{decide: func(h pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
			switch {
			case h == pluginhost.HookRcptTo && in.RcptCurrent == "ceo@example.net":
				return &policy.Decision{Action: pluginhost.Reject, Text: "Not from outside"}
			case h == pluginhost.HookRcptTo && in.RcptCurrent == "later@example.net":
				return &policy.Decision{Action: pluginhost.Tempfail}
			}
			return nil
		}}
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f})
		c := hello(t, addr)
		c.Expect("MAIL FROM:<a@example.org>", 250)
		c.Expect("RCPT TO:<b@example.net>", 250)
		if r := c.Cmd("RCPT TO:<ceo@example.net>"); r.String() != "550 5.7.1 Not from outside" {
			t.Fatalf("RCPT: %v", r)
		}
		if r := c.Cmd("RCPT TO:<later@example.net>"); r.Code != 451 {
			t.Fatalf("RCPT: %v", r)
		}
		c.Expect("DATA", 354)
		c.Write(simpleMessage + ".\r\n")
		c.Expect("", 250)
		m := up.Messages()
		if len(m) != 1 || !slices.Equal(m[0].Rcpts, []string{"b@example.net"}) {
			t.Fatalf("upstream: %+v", m)
		}
		rcptCalls := f.at(pluginhost.HookRcptTo)
		if len(rcptCalls) != 3 || rcptCalls[2].env.MailFrom != "a@example.org" || !slices.Equal(rcptCalls[2].env.Rcpts, []string{"b@example.net"}) {
			t.Fatalf("rcpt_to inputs: %+v", rcptCalls)
		}
	})
	t.Run("added recipients go upstream before DATA", func(t *testing.T) {
		up := (&smtptest.Upstream{}).Start(t)
		f := &testFilter{decide: func(h pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
			c := &message.Changes{}
			switch h {
			case pluginhost.HookMailFrom:
				c.AddRecipient("archive@example.net")
			case pluginhost.HookRcptTo:
				c.AddRecipient("archive@example.net") // duplicate
				c.AddRecipient("b@example.net")       // already a recipient
			case pluginhost.HookMessage:
				c.AddRecipient("compliance@example.net")
			}
			return &policy.Decision{Action: pluginhost.Accept, Changes: c}
		}}
		rec := &recorder{}
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, Audit: rec})
		c := hello(t, addr)
		c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
		m := up.Messages()
		want := []string{"b@example.net", "archive@example.net", "compliance@example.net"}
		if len(m) != 1 || !slices.Equal(m[0].Rcpts, want) {
			t.Fatalf("upstream recipients %+v, want %v", m, want)
		}
		if string(m[0].Data) != simpleMessage {
			t.Fatal("adding recipients changed the message")
		}
		if r := rec.records(); len(r) != 1 || !slices.Equal(r[0].RcptsAdded, want[1:]) {
			t.Fatalf("audit: %+v", r)
		}
	})
	t.Run("added recipient refused upstream defers the message", func(t *testing.T) {
		up := (&smtptest.Upstream{OnRcpt: func(to string, _ *smtp.RcptOptions) error {
			if to == "archive@example.net" {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no archive"}
			}
			return nil
		}}).Start(t)
		f := &testFilter{decide: func(h pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
			c := &message.Changes{}
			if h == pluginhost.HookMessage {
				c.AddRecipient("archive@example.net")
			}
			return &policy.Decision{Action: pluginhost.Accept, Changes: c}
		}}
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f})
		c := hello(t, addr)
		if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 451 {
			t.Fatalf("reply %v, want 451", r)
		}
		if len(up.Messages()) != 0 {
			t.Fatal("message went upstream without the recipient the policy required")
		}
	})
	t.Run("discard decided at RCPT TO", func(t *testing.T) {
		up := (&smtptest.Upstream{}).Start(t)
		f := &testFilter{decide: decideAt(pluginhost.HookRcptTo, policy.Decision{Action: pluginhost.Discard})}
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f})
		c := hello(t, addr)
		if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
			t.Fatalf("reply %v", r)
		}
		if len(up.Messages()) != 0 {
			t.Fatal("discarded message relayed")
		}
		if len(f.at(pluginhost.HookMessage)) != 0 {
			t.Fatal("message hook ran after an envelope-stage decision")
		}
	})
	t.Run("connect", func(t *testing.T) {
		for _, tc := range []struct {
			d    policy.Decision
			want int
		}{
			{policy.Decision{Action: pluginhost.Reject, Text: "You are on a block list"}, 554},
			{policy.Decision{Action: pluginhost.Tempfail}, 421},
		} {
			up := (&smtptest.Upstream{}).Start(t)
			f := &testFilter{decide: decideAt(pluginhost.HookConnect, tc.d)}
			addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f})
			c := smtptest.Dial(t, addr)
			r := c.Reply()
			if r.Code != tc.want {
				t.Fatalf("greeting %v, want %d", r, tc.want)
			}
			if up.Sessions() != 0 {
				t.Fatal("upstream contacted for a refused connection")
			}
			if calls := f.at(pluginhost.HookConnect); len(calls) != 1 || calls[0].env.ClientIP != "127.0.0.1" ||
				calls[0].env.ClientPort == 0 || calls[0].env.HELO != "" {
				t.Fatalf("connect input: %+v", calls)
			}
		}
	})
	t.Run("hooks nobody implements are skipped", func(t *testing.T) {
		up := (&smtptest.Upstream{}).Start(t)
		f := &testFilter{hooks: pluginhost.HookSet(1 << pluginhost.HookMessage)}
		addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f})
		c := hello(t, addr)
		c.Send("a@example.org", []string{"b@example.net", "c@example.net"}, simpleMessage)
		c.Expect("QUIT", 221)
		calls := f.seen()
		if len(calls) != 1 || calls[0].hook != pluginhost.HookMessage {
			t.Fatalf("calls: %+v", calls)
		}
		if !bytes.Equal(calls[0].raw, []byte(simpleMessage)) || calls[0].msg.Size() != int64(len(simpleMessage)) {
			t.Fatal("message hook did not see the message as received")
		}
	})
}

func TestPolicySnapshotHeldForSession(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	f := &testFilter{}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f})
	c := hello(t, addr)
	c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
	c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
	c.Expect("QUIT", 221)
	c.ReadReply() // wait for the close
	waitFor(t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.released == 1 })
	if f.acquired != 1 {
		t.Fatalf("acquired %d times for one session", f.acquired)
	}
}

func TestNoPolicyAvailableRefusesSession(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: nilSource{}})
	c := smtptest.Dial(t, addr)
	if r := c.Reply(); r.Code != 421 {
		t.Fatalf("greeting %v, want 421", r)
	}
}

type nilSource struct{}

func (nilSource) Acquire() (smtpproxy.Filter, func()) { return nil, func() {} }

// TestRecipientDiscardAndQuarantine: a discard or quarantine decided at RCPT TO is for that recipient only. The
// client is told the recipient is accepted; the upstream never hears of it; a quarantined recipient's copy is in
// the quarantine; the other recipients get the message; each decision is on record.
func TestRecipientDiscardAndQuarantine(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	f := &testFilter{decide: func(h pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
		switch {
		case h == pluginhost.HookRcptTo && in.RcptCurrent == "trap@example.net":
			return &policy.Decision{Action: pluginhost.Discard}
		case h == pluginhost.HookRcptTo && in.RcptCurrent == "held@example.net":
			return &policy.Decision{Action: pluginhost.Quarantine}
		}
		return nil
	}}
	rec := &recorder{}
	qdir := t.TempDir()
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, Audit: rec, QuarantineDir: qdir})
	c := hello(t, addr)
	if r := c.Send("a@example.org", []string{"b@example.net", "trap@example.net", "held@example.net", "c@example.net"},
		simpleMessage); r.Code != 250 || !strings.Contains(r.Text(), "UP1") {
		t.Fatalf("reply %v, want the upstream's 250", r)
	}
	m := up.Messages()
	if len(m) != 1 || strings.Join(m[0].Rcpts, ",") != "b@example.net,c@example.net" || string(m[0].Data) != simpleMessage {
		t.Fatalf("upstream got %+v", m)
	}
	q, _ := filepath.Glob(filepath.Join(qdir, "*.json"))
	if len(q) != 1 {
		t.Fatalf("quarantine: %v", q)
	}
	js, _ := os.ReadFile(q[0])
	if !strings.Contains(string(js), `"held@example.net"`) || strings.Contains(string(js), `"b@example.net"`) {
		t.Fatalf("quarantine record names the wrong recipients:\n%s", js)
	}
	var got []string
	for _, r := range rec.records() {
		got = append(got, r.Hook+" "+r.Action+" "+r.Rcpt+" "+strings.Join(r.Rcpts, ","))
	}
	want := []string{
		"rcpt_to discard trap@example.net b@example.net",
		"rcpt_to quarantine held@example.net held@example.net",
		"message accept  b@example.net,c@example.net",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Every recipient withheld: nothing goes upstream, the client gets 250, the session goes on.
	if r := c.Send("a@example.org", []string{"trap@example.net", "held@example.net"}, simpleMessage); r.Code != 250 {
		t.Fatalf("all withheld: %v", r)
	}
	if len(up.Messages()) != 1 {
		t.Fatalf("upstream got a message for withheld recipients")
	}
	if q, _ := filepath.Glob(filepath.Join(qdir, "*.json")); len(q) != 2 {
		t.Fatalf("quarantine: %v", q)
	}
	if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 || len(up.Messages()) != 2 {
		t.Fatalf("next message: %v", r)
	}
}
