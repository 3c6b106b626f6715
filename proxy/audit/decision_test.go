package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// Secrets in the fixture. None of them may reach the log.
const (
	secretPassword = "hunter2-Tr0ub4dor"
	secretCard     = "4111111111111111"
	secretSubject  = "Salary review for Dana"
	secretAuthz    = "Basic YWxpY2U6aHVudGVyMg=="
	secretBanner   = "BANNER-7f3a: confidential footer"
	secretHeader   = "X-Copied: " + secretPassword
	secretContent  = "REPLACEMENT-9c1d with the card " + secretCard
)

const fixtureMessage = "Message-ID: <20260102.1234@example.org>\r\n" +
	"From: Alice <alice@example.org>\r\n" +
	"To: Bob <bob@example.com>\r\n" +
	"Subject: " + secretSubject + "\r\n" +
	"Authorization: " + secretAuthz + "\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"My password is " + secretPassword + " and my card is " + secretCard + ".\r\n"

func fixture(t *testing.T) (*pluginhost.Input, *policy.Decision) {
	t.Helper()
	msg, err := message.Parse(strings.NewReader(fixtureMessage), int64(len(fixtureMessage)), message.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	in := &pluginhost.Input{
		Env: pluginhost.Envelope{
			Protocol: "submission", Direction: "outbound", Listener: "sub", ClientIP: "198.51.100.4", ClientPort: 50123,
			HELO: "laptop", TLSVersion: "TLS1.3", TLSCipher: "TLS_AES_128_GCM_SHA256", AuthUser: "alice",
			MailFrom: "alice@example.org", HasMailFrom: true, Rcpts: []string{"bob@example.com"},
		},
		Msg: msg,
	}
	enforced := &message.Changes{}
	must(t, enforced.AddHeader("X-Copied", secretPassword))
	must(t, enforced.AppendBanner(secretBanner, "<p>"+secretBanner+"</p>"))
	must(t, enforced.ReplacePart(0, "text/plain", []byte(secretContent)))
	must(t, enforced.AddRecipient("archive@example.org"))
	d := &policy.Decision{
		Hook:   pluginhost.HookMessage,
		Action: pluginhost.Reject,
		Code:   550, Enhanced: "5.7.1", Text: "Message contains card data",
		Changes:       enforced,
		Tags:          map[string]string{"dlp.card": "card:****1111"},
		Score:         9,
		ConfigVersion: "c0ffee",
		Duration:      1500 * time.Microsecond,
		Policies: []policy.PolicyTrace{
			{Name: "outbound-dlp", Mode: policy.ModeEnforce, Matched: true, Why: `msg.direction == "outbound"`,
				Score: 9, Threshold: "reject", Action: pluginhost.Reject,
				Plugins: []policy.PluginTrace{
					{Name: "dlp", SHA256: "d1", Verdict: pluginhost.Verdict{Kind: pluginhost.Reject, Code: 550, Enhanced: "5.7.1", Text: "Message contains card data"},
						Tags: map[string]string{"dlp.card": "card:****1111"}, Score: 9, Changes: enforced.List(), Duration: 900 * time.Microsecond,
						Logs: []policy.PluginLog{{Level: "info", Text: "matched " + secretCard}}},
					{Name: "broken", SHA256: "b2", Verdict: pluginhost.Verdict{Kind: pluginhost.Tempfail, Code: 451, Enhanced: "4.7.1"},
						Duration: 50 * time.Millisecond, Error: `plugin "broken": timeout after 50ms`},
				}},
			{Name: "compliance", Mode: policy.ModeMonitor, Matched: true, Action: pluginhost.Quarantine, Score: 3,
				Plugins: []policy.PluginTrace{{Name: "keywords", SHA256: "k3", Verdict: pluginhost.Verdict{Kind: pluginhost.Quarantine, Text: "keyword"},
					Tags: map[string]string{"kw": "salary"}, Score: 3, Duration: time.Millisecond}}},
			{Name: "inbound", Mode: policy.ModeEnforce, Matched: false, Why: `msg.direction == "inbound"`},
		},
	}
	return in, d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestNewRecord(t *testing.T) {
	in, d := fixture(t)
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	r := NewRecord(in, d, Facts{Time: when, Session: "s-17", SHA256In: "aa", SHA256Out: "bb",
		Reply: Reply{Code: 550, Enhanced: "5.7.1", Text: "Message contains card data"}})
	from := "alice@example.org"
	want := &Record{
		Event: EventDecision, Time: when, Session: "s-17",
		Listener: "sub", Protocol: "submission", Direction: "outbound", ClientIP: "198.51.100.4", TLS: "TLS1.3",
		AuthUser: "alice", Hook: "message", MailFrom: &from, Rcpts: []string{"bob@example.com"},
		RcptsAdded: []string{"archive@example.org"}, MessageID: "<20260102.1234@example.org>", Size: int64(len(fixtureMessage)),
		SHA256In: "aa", SHA256Out: "bb", ConfigVersion: "c0ffee", Action: "reject",
		Reply: &Reply{Code: 550, Enhanced: "5.7.1", Text: "Message contains card data"},
		Score: 9, Tags: map[string]string{"dlp.card": "card:****1111"},
		Changes: []Change{
			{Op: "add_header", Name: "X-Copied", Bytes: len(secretPassword)},
			{Op: "append_banner", Bytes: 2*len(secretBanner) + len("<p></p>")},
			{Op: "replace_part", Part: 0, ContentType: "text/plain", Bytes: len(secretContent)},
			{Op: "add_recipient", Bytes: len("archive@example.org")},
		},
		DurationNS: 1500000,
	}
	want.Policies = []Policy{
		{Name: "outbound-dlp", Mode: "enforce", Matched: true, Action: "reject", Score: 9, Threshold: "reject", Plugins: []Plugin{
			{Name: "dlp", SHA256: "d1", Verdict: "reject", Code: 550, Enhanced: "5.7.1", Text: "Message contains card data",
				Tags: map[string]string{"dlp.card": "card:****1111"}, Score: 9, Changes: want.Changes, DurationNS: 900000},
			{Name: "broken", SHA256: "b2", Verdict: "tempfail", Code: 451, Enhanced: "4.7.1", DurationNS: 50000000,
				Error: `plugin "broken": timeout after 50ms`},
		}},
		{Name: "compliance", Mode: "monitor", Matched: true, Action: "quarantine", Score: 3, Plugins: []Plugin{
			{Name: "keywords", SHA256: "k3", Verdict: "quarantine", Text: "keyword", Tags: map[string]string{"kw": "salary"},
				Score: 3, DurationNS: 1000000}}},
		{Name: "inbound", Mode: "enforce", Matched: false},
	}
	if !reflect.DeepEqual(r, want) {
		got, _ := json.MarshalIndent(r, "", " ")
		exp, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("record:\n%s\nwant:\n%s", got, exp)
	}
	// NewRecord copies: later changes to the decision do not reach the record.
	d.Tags["dlp.card"] = "changed"
	d.Policies[0].Plugins[0].Tags["dlp.card"] = "changed"
	in.Env.Rcpts[0] = "changed"
	if r.Tags["dlp.card"] != "card:****1111" || r.Policies[0].Plugins[0].Tags["dlp.card"] != "card:****1111" || r.Rcpts[0] != "bob@example.com" {
		t.Fatal("the record shares maps or slices with the decision")
	}
}

// TestNoSecretsInLog writes a decision about a message full of secrets and searches the log file for them.
func TestNoSecretsInLog(t *testing.T) {
	in, d := fixture(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path})
	if err := l.Append(NewRecord(in, d, Facts{Reply: Reply{Code: 550, Text: "Message contains card data"}})); err != nil {
		t.Fatal(err)
	}
	l.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{secretPassword, secretCard, secretSubject, "Salary", secretAuthz, "YWxpY2U6", secretBanner,
		"BANNER-7f3a", "REPLACEMENT-9c1d", "My password", "Alice <alice", "laptop", "TLS_AES", `msg.direction`} {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("the log contains %q:\n%s", s, b)
		}
	}
	// What must be there is there: the redacted tag, the Message-ID, the plugin error.
	for _, s := range []string{`"dlp.card":"card:****1111"`, `"message_id":"<20260102.1234@example.org>"`, `timeout after 50ms`} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("the log lacks %s:\n%s", s, b)
		}
	}
	mustIntact(t, path, 1)
}

func TestNewRecordEdges(t *testing.T) {
	// Envelope stage: no message, no sender yet.
	r := NewRecord(&pluginhost.Input{Env: pluginhost.Envelope{Listener: "mx", ClientIP: "192.0.2.1"}},
		&policy.Decision{Hook: pluginhost.HookConnect, Action: pluginhost.Accept, Changes: &message.Changes{}}, Facts{})
	if r.MailFrom != nil || r.Size != 0 || r.MessageID != "" || r.Reply != nil || r.Changes != nil || r.Hook != "connect" {
		t.Fatalf("connect record: %+v", r)
	}
	// The null reverse path is recorded as "", not left out.
	r = NewRecord(&pluginhost.Input{Env: pluginhost.Envelope{HasMailFrom: true}}, nil, Facts{})
	if b, _ := json.Marshal(r); r.MailFrom == nil || !bytes.Contains(b, []byte(`"mail_from":""`)) {
		t.Fatalf("null sender: %s", b)
	}
	// No decision, no input: still a record.
	if r := NewRecord(nil, nil, Facts{SHA256In: "aa", SHA256Out: "aa"}); r.SHA256Out != "" || r.Event != EventDecision {
		t.Fatalf("unchanged message should have no sha256_out: %+v", r)
	}
	// Scores that JSON cannot carry, and a client's giant Message-ID.
	long := "<" + strings.Repeat("é", 2000) + "@x>"
	raw := "Message-ID: " + long + "\r\n\r\nbody\r\n"
	msg, err := message.Parse(strings.NewReader(raw), int64(len(raw)), message.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	r = NewRecord(&pluginhost.Input{Msg: msg}, &policy.Decision{Score: math.Inf(1),
		Policies: []policy.PolicyTrace{{Name: "p", Matched: true, Score: math.NaN(),
			Plugins: []policy.PluginTrace{{Name: "x", Score: math.Inf(-1)}}}}}, Facts{})
	if r.Score != MaxScore || r.Policies[0].Score != 0 || r.Policies[0].Plugins[0].Score != -MaxScore {
		t.Fatalf("scores: %v %v %v", r.Score, r.Policies[0].Score, r.Policies[0].Plugins[0].Score)
	}
	if len(r.MessageID) > maxField || !strings.HasSuffix(r.MessageID, "…") || !strings.HasPrefix(r.MessageID, "<éé") {
		t.Fatalf("Message-ID not cut: %d bytes", len(r.MessageID))
	}
	l := openLog(t, Options{Path: filepath.Join(t.TempDir(), "audit.log")})
	defer l.Close()
	if err := l.Append(r); err != nil {
		t.Fatalf("a record with extreme scores must still be written: %v", err)
	}
}

// TestNewRecordRetrieval: a message read over IMAP is recorded with its mailbox, UID, UIDVALIDITY and command,
// what was served and the notice's reference, and the IMAP reply; an SMTP envelope a session left in the input
// is not (retrieval has none).
func TestNewRecordRetrieval(t *testing.T) {
	raw := "Message-ID: <r@example.org>\r\nSubject: x\r\n\r\nbody\r\n"
	m, err := message.Parse(strings.NewReader(raw), int64(len(raw)), message.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	in := &pluginhost.Input{Env: pluginhost.Envelope{Protocol: "imap", Direction: "retrieval", Listener: "imap",
		AuthUser: "alice", MailboxUser: "alice", Mailbox: "INBOX", UID: 42, UIDValidity: 1700000000,
		Command: "fetch", MailFrom: "stale@example.org", HasMailFrom: true, Rcpts: []string{"stale@example.com"}}, Msg: m}
	d := &policy.Decision{Hook: pluginhost.HookMessage, Action: pluginhost.Quarantine}
	r := NewRecord(in, d, Facts{SHA256In: "aa", SHA256Served: "cc", Withheld: "q-1",
		Reply: Reply{Status: StatusIMAPOK, Text: "FETCH completed"}})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	line := string(b)
	for _, want := range []string{`"mailbox_user":"alice"`, `"mailbox":"INBOX"`, `"uid":42`, `"uidvalidity":1700000000`,
		`"command":"fetch"`, `"sha256_served":"cc"`, `"withheld":"q-1"`, `"reply":{"status":"OK","text":"FETCH completed"}`} {
		if !strings.Contains(line, want) {
			t.Errorf("record lacks %s: %s", want, line)
		}
	}
	for _, bad := range []string{`"mail_from"`, `"rcpts"`, `"uidl"`, `"code"`} {
		if strings.Contains(line, bad) {
			t.Errorf("record has %s: %s", bad, line)
		}
	}
	// POP3: the UIDL, no UID; the reply's status and response code.
	in.Env = pluginhost.Envelope{Protocol: "pop3", MailboxUser: "bob", UIDL: "u-7", Command: "retr"}
	r = NewRecord(in, d, Facts{Reply: Reply{Status: StatusPOP3Err, Text: "[SYS/TEMP] message filter temporarily unavailable"}})
	b, _ = json.Marshal(r)
	for _, want := range []string{`"uidl":"u-7"`, `"command":"retr"`, `"reply":{"status":"-ERR","text":"[SYS/TEMP] message filter temporarily unavailable"}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("pop3 record lacks %s: %s", want, b)
		}
	}
	// SMTP replies are written as before: no status.
	b, _ = json.Marshal(Reply{Code: 250, Enhanced: "2.0.0", Text: "OK"})
	if string(b) != `{"code":250,"enhanced":"2.0.0","text":"OK"}` {
		t.Errorf("SMTP reply = %s", b)
	}
}

// The record keeps what the parser could not read for certain: defect and ambiguity kinds and the bound passed.
func TestRecordFlags(t *testing.T) {
	raw := "Content-Type: multipart/mixed; boundary=a; boundary=b\r\n\r\n--a\r\n" +
		"Content-Disposition: attachment; filename=\"a.txt\"; filename=\"a.vbs\"\r\n\r\nx\r\n--a--\r\n" +
		"--b\r\n\r\ny\r\n--b--\r\n" // the structure under boundary b passes the part limit
	m, err := message.Parse(strings.NewReader(raw), int64(len(raw)), message.Limits{MaxParts: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRecord(&pluginhost.Input{Msg: m}, nil, Facts{})
	if !slices.Contains(r.Malformed, message.KindBadContentType) || !slices.Contains(r.Ambiguous, message.AmbiguousBoundary) ||
		!slices.Contains(r.Ambiguous, message.AmbiguousParameter) || r.LimitExceeded != message.KindPartLimit {
		t.Errorf("malformed %q, ambiguous %q, limit %q", r.Malformed, r.Ambiguous, r.LimitExceeded)
	}
	clean := "Subject: x\r\n\r\nhello\r\n"
	m, _ = message.Parse(strings.NewReader(clean), int64(len(clean)), message.Limits{})
	if r := NewRecord(&pluginhost.Input{Msg: m}, nil, Facts{}); r.Malformed != nil || r.Ambiguous != nil || r.LimitExceeded != "" {
		t.Errorf("clean message: %+v", r)
	}
}

// TestNewRecordSkippedPlugin: a plugin the host did not call (it declared the message is not for it) is in the
// record, with why.
func TestNewRecordSkippedPlugin(t *testing.T) {
	r := NewRecord(&pluginhost.Input{}, &policy.Decision{Hook: pluginhost.HookMessage, Policies: []policy.PolicyTrace{{
		Name: "malware", Matched: true,
		Plugins: []policy.PluginTrace{{Name: "attachment-guard", SHA256: "a1", Skipped: "the message carries no file"}}}}}, Facts{})
	if len(r.Policies) != 1 || len(r.Policies[0].Plugins) != 1 {
		t.Fatalf("policies %+v", r.Policies)
	}
	if pl := r.Policies[0].Plugins[0]; pl.Skipped != "the message carries no file" || pl.Verdict != "accept" {
		t.Errorf("plugin record %+v", pl)
	}
}
