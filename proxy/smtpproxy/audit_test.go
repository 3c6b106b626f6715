package smtpproxy_test

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// TestEnvelopeRefusalRecords: the audit records of a MAIL FROM and a RCPT TO refusal name the refused address,
// with the reply the client got.
func TestEnvelopeRefusalRecords(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	f := &testFilter{decide: func(h pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
		switch {
		case h == pluginhost.HookMailFrom && in.Env.MailFrom == "spammer@bad.test":
			return &policy.Decision{Hook: h, Action: pluginhost.Reject, Code: 550, Text: "go away"}
		case h == pluginhost.HookRcptTo && in.RcptCurrent == "nobody@example.net":
			return &policy.Decision{Hook: h, Action: pluginhost.Reject, Code: 550, Enhanced: "5.1.1", Text: "no such user"}
		}
		return nil
	}}
	rec := &recorder{}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, Audit: rec})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<spammer@bad.test>", 550)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	c.Expect("RCPT TO:<b@example.net>", 250)
	c.Expect("RCPT TO:<nobody@example.net>", 550)
	c.Expect("RSET", 250)

	recs := rec.records()
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(recs), recs)
	}
	mail, rcpt := recs[0], recs[1]
	if mail.Hook != "mail_from" || mail.Action != "reject" || mail.MailFrom == nil ||
		*mail.MailFrom != "spammer@bad.test" || mail.Reply == nil || mail.Reply.Code != 550 || mail.Reply.Text != "go away" {
		t.Errorf("MAIL FROM refusal: %+v", mail)
	}
	if rcpt.Hook != "rcpt_to" || rcpt.Action != "reject" || rcpt.Rcpt != "nobody@example.net" ||
		len(rcpt.Rcpts) != 1 || rcpt.Rcpts[0] != "b@example.net" || rcpt.MailFrom == nil || *rcpt.MailFrom != "a@example.org" ||
		rcpt.Reply == nil || rcpt.Reply.Code != 550 || rcpt.Reply.Enhanced != "5.1.1" {
		t.Errorf("RCPT TO refusal: %+v", rcpt)
	}
}

// TestNonFiniteScore: a summed score of +Inf or NaN is bounded: the message is handled by its verdict, the score
// header shows a number, the quarantine keeps the message, and the audit record is written.
func TestNonFiniteScore(t *testing.T) {
	for _, tc := range []struct {
		name   string
		d      policy.Decision
		header string
	}{
		{"+Inf accepted", policy.Decision{Action: pluginhost.Accept, Score: math.Inf(1),
			Policies: []policy.PolicyTrace{{Name: "p", Matched: true, Score: math.Inf(1),
				Plugins: []policy.PluginTrace{{Name: "x", Score: math.Inf(1)}}}}}, "X-Postern-Score: 1000000000\r\n"},
		{"NaN accepted", policy.Decision{Action: pluginhost.Accept, Score: math.NaN()}, "X-Postern-Score: 0\r\n"},
		{"-Inf quarantined", policy.Decision{Action: pluginhost.Quarantine, Score: math.Inf(-1)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			log, err := audit.Open(audit.Options{Path: filepath.Join(dir, "audit.log"), Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			up := (&smtptest.Upstream{}).Start(t)
			f := &testFilter{decide: decideAt(pluginhost.HookMessage, tc.d)}
			addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, Audit: log, ResultHeaders: true,
				QuarantineDir: filepath.Join(dir, "quarantine")})
			c := hello(t, addr)
			if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
				t.Fatalf("reply %v, want 250", r)
			}
			c.Expect("QUIT", 221)
			if tc.header != "" {
				m := up.Messages()
				if len(m) != 1 || !strings.Contains(string(m[0].Data), tc.header) {
					t.Fatalf("upstream got %+v, want %q", m, tc.header)
				}
			} else if q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "*.json")); len(q) != 1 {
				t.Fatalf("quarantine: %v", q)
			}
			if err := log.Close(); err != nil {
				t.Fatal(err)
			}
			file, err := os.Open(filepath.Join(dir, "audit.log"))
			if err != nil {
				t.Fatal(err)
			}
			defer file.Close()
			var recs []audit.Record
			for sc := bufio.NewScanner(file); sc.Scan(); {
				var r audit.Record
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatal(err)
				}
				recs = append(recs, r)
			}
			// A message sent on is a pending record and its outcome; one kept in the quarantine is one record.
			want := 1
			if tc.header != "" {
				want = 2
			}
			if len(recs) != want || recs[0].Action != tc.d.Action.String() || math.Abs(recs[0].Score) > audit.MaxScore ||
				recs[len(recs)-1].Reply == nil || recs[len(recs)-1].Reply.Code != 250 {
				t.Fatalf("audit records: %+v", recs)
			}
		})
	}
}
