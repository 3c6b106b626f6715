package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// conditions loads one policy per expression and returns their conditions.
func conditions(t testing.TB, exprs ...string) (*Config, []*Condition) {
	t.Helper()
	var b strings.Builder
	b.WriteString("plugin \"p\" {\n  source = \"p.wasm\"\n}\n")
	for i, e := range exprs {
		fmt.Fprintf(&b, "policy \"c%d\" {\n  plugins = [\"p\"]\n  when = %s\n}\n", i, e)
	}
	dir := writeFiles(t, map[string]string{"main.hcl": b.String(), "p.wasm": string(emptyModule)})
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*Condition, len(cfg.Policies))
	for i, p := range cfg.Policies {
		out[i] = p.When
	}
	return cfg, out
}

var sampleFacts = Facts{
	Hook: "message", Protocol: "smtp", Listener: "mx", Direction: "inbound",
	ClientIP: "192.0.2.77", HELO: "mail.example.net", TLSVersion: "TLS1.3", TLSCipher: "TLS_AES_128_GCM_SHA256",
	UpstreamTLSVersion: "TLS1.2", UpstreamTLSCipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	MailFrom: "Bounce@Sub.Example.NET", Rcpt: []string{"alice@corp.example", "bob@Corp.Example", "carol@other.example"},
	Size: 123456, Subject: "Invoice #4711 overdue", From: "billing@sub.example.net",
	Header: func(name string) []string {
		switch strings.ToLower(name) {
		case "x-mailer":
			return []string{"Outlook 16"}
		case "received":
			return []string{"from a", "from b"}
		}
		return nil
	},
}

func TestWhenEval(t *testing.T) {
	cases := []struct {
		expr string
		want bool
	}{
		{`msg.hook == "message" && msg.protocol == "smtp" && msg.listener == "mx" && msg.direction == "inbound"`, true},
		{`msg.tls && msg.tls_version == "TLS1.3" && msg.helo == "mail.example.net" && msg.user == ""`, true},
		{`msg.tls_cipher == "TLS_AES_128_GCM_SHA256" && msg.upstream_tls_version == "TLS1.2"`, true},
		{`startswith(msg.upstream_tls_cipher, "TLS_ECDHE_")`, true},
		{`msg.mail_from_domain == "sub.example.net"`, true},
		{`msg.rcpt_domains == tolist(["corp.example", "other.example"])`, true},
		{`contains(msg.rcpt_domains, "corp.example") && length(msg.rcpt) == 3`, true},
		{`msg.size > 100000 && msg.size < 200000`, true},
		{`msg.from == "billing@sub.example.net" && msg.from_domain == "sub.example.net"`, true},
		{`cidrmatch(msg.client_ip, "10.0.0.0/8", "192.0.2.0/24")`, true},
		{`cidrmatch(msg.client_ip, ["10.0.0.0/8", "2001:db8::/32"])`, false},
		{`cidrmatch("::ffff:192.0.2.1", "192.0.2.0/24")`, true},
		{`cidrmatch("", "0.0.0.0/0")`, false},
		{`domain_match(msg.from_domain, "*.example.net")`, true},
		{`domain_match("example.net", "*.example.net")`, false},
		{`domain_match("EXAMPLE.net.", "example.NET")`, true},
		{`domain_match(msg.mail_from, ["nope.org", "*.example.net"])`, true},
		{`domain_match("badexample.net", "*.example.net")`, false},
		{`glob(msg.subject, "Invoice #*due")`, true},
		{`glob(msg.subject, "invoice*")`, false},
		{`glob("a*b", "a\\*b") && !glob("axb", "a\\*b") && glob("héllo", "h?llo")`, true},
		{`header("X-Mailer") == "Outlook 16" && header("missing") == ""`, true},
		{`length(headers("Received")) == 2 && length(headers("nope")) == 0`, true},
		{`regex_match(msg.subject, "(?i)invoice\\s+#\\d+")`, true},
		{`regex("#(\\d+)", msg.subject)[0] == "4711"`, true},
		{`regex("#(?P<num>\\d+)", msg.subject).num == "4711"`, true},
		{`length(regexall("[a-z]+", msg.subject)) == 2`, true},
		{`regex_replace(msg.subject, "\\d", "N") == "Invoice #NNNN overdue"`, true},
		{`can(regex("nomatch", msg.subject))`, false},
		{`startswith(msg.subject, "Invoice") && endswith(msg.subject, "due") && strcontains(lower(msg.subject), "#47")`, true},
		{`length([for r in msg.rcpt : r if endswith(lower(r), "corp.example")]) == 2`, true},
	}
	exprs := make([]string, len(cases))
	for i, c := range cases {
		exprs[i] = c.expr
	}
	_, conds := conditions(t, exprs...)
	f := sampleFacts
	s := NewScope(&f)
	for i, c := range cases {
		got, err := conds[i].Eval(s)
		if err != nil || got != c.want {
			t.Errorf("%s = %v, %v; want %v", c.expr, got, err, c.want)
		}
	}
}

func TestWhenRuntimeError(t *testing.T) {
	_, conds := conditions(t, `regex("nomatch", msg.subject) == "x"`, `try(msg.subject, false)`)
	f := sampleFacts
	s := NewScope(&f)
	_, err := conds[0].Eval(s)
	if err == nil || !strings.Contains(err.Error(), "main.hcl:6:10") || !strings.Contains(err.Error(), "did not match") {
		t.Errorf("regex without a match: err = %v, want one naming main.hcl:6:10", err)
	}
	_, err = conds[1].Eval(s)
	if err == nil || !strings.Contains(err.Error(), "not a bool") {
		t.Errorf("non-bool at run time: err = %v", err)
	}
}

func TestWhenEnvelopeStage(t *testing.T) {
	// Before the message exists the message facts are null (not "" or 0) and header() is "".
	_, conds := conditions(t,
		`msg.subject == null && msg.size == null && header("Subject") == "" && msg.rcpt == null && msg.helo == null && msg.user == null`,
		`msg.subject == ""`,
		`msg.client_ip == "192.0.2.1" && msg.tls == false`)
	s := NewScope(&Facts{Hook: "connect", Protocol: "smtp", ClientIP: "192.0.2.1", HELO: "early", User: "early"})
	for i, want := range []bool{true, false, true} {
		if ok, err := conds[i].Eval(s); ok != want || err != nil {
			t.Errorf("connect: %s = %v, %v; want %v", conds[i], ok, err, want)
		}
	}
}

// TestWhenRetrieval: at retrieval there is no envelope. A bounce rule does not match every retrieved message, the
// mailbox facts are there, a null matches no pattern, and another function given an unknown fact fails as a
// run-time error (which tempfails the policy) rather than matching.
func TestWhenRetrieval(t *testing.T) {
	_, conds := conditions(t,
		`msg.mail_from == ""`,
		`msg.mail_from == null && msg.rcpt == null && msg.helo == null && msg.rcpt_current == null`,
		`msg.protocol == "imap" && msg.mailbox == "Archive" && msg.uid == 17 && msg.uidvalidity == 3 && msg.uidl == null`,
		`contains(msg.flags, "$Junk") && msg.command == "fetch" && msg.mailbox_user == "alice" && msg.user == "alice"`,
		`msg.internal_date == "2026-01-02T14:04:05Z" && msg.subject == "hello"`,
		`lower(msg.mail_from) == "x"`,
		`msg.mail_from != null && endswith(msg.mail_from, "@example.org")`,
		`endswith(msg.mail_from, "") || glob(msg.helo, "*") || domain_match(msg.mail_from_domain, "example.org") || regex_match(msg.rcpt_current, "") || cidrmatch(msg.helo, "0.0.0.0/0")`,
		`!domain_match(msg.mail_from_domain, "*.payments.example.com")`,
	)
	f := Facts{Hook: "message", Protocol: "imap", Direction: "retrieval", User: "alice", MailboxUser: "alice",
		Mailbox: "Archive", UID: 17, UIDValidity: 3, InternalDate: "2026-01-02T14:04:05Z",
		Flags: []string{`\Seen`, "$Junk"}, Command: "fetch", Subject: "hello", Size: 5,
		MailFrom: "", HELO: "stale"}
	s := NewScope(&f)
	for i, want := range []bool{false, true, true, true, true, false, false, false, true} {
		ok, err := conds[i].Eval(s)
		if i == 5 {
			if err == nil || !strings.Contains(err.Error(), "null") {
				t.Errorf("%s: %v, %v; want an error about the null", conds[i], ok, err)
			}
			continue
		}
		if ok != want || err != nil {
			t.Errorf("%s = %v, %v; want %v", conds[i], ok, err, want)
		}
	}
	// POP3: a UIDL, no IMAP facts; APPEND: no UID yet.
	_, conds = conditions(t, `msg.uidl == "u1" && msg.mailbox == null && msg.uid == null && msg.command == "retr"`,
		`msg.uid == null && msg.mailbox == "Sent" && msg.command == "append" && length(msg.flags) == 0`)
	if ok, err := conds[0].Eval(NewScope(&Facts{Hook: "message", Protocol: "pop3", UIDL: "u1", Command: "retr", Mailbox: "x", UID: 4})); !ok || err != nil {
		t.Errorf("pop3: %v, %v", ok, err)
	}
	if ok, err := conds[1].Eval(NewScope(&Facts{Hook: "message", Protocol: "imap", Command: "append", Mailbox: "Sent"})); !ok || err != nil {
		t.Errorf("append: %v, %v", ok, err)
	}
}

// TestMsgSchemaMatchesValue: the object built for a scope has exactly the schema's attributes and types, at
// every hook and in every protocol.
func TestMsgSchemaMatchesValue(t *testing.T) {
	for _, p := range []string{"smtp", "pop3", "imap"} {
		for _, h := range []string{"connect", "mail_from", "rcpt_to", "message"} {
			f := Facts{Hook: h, Protocol: p}
			if got := f.value().Type(); !got.Equals(MsgType) {
				t.Errorf("%s %s: msg is %s, schema %s", p, h, got.GoString(), MsgType.GoString())
			}
		}
	}
}

func TestRegexCompiledOnce(t *testing.T) {
	cfg, conds := conditions(t, `regex_match(msg.subject, "(?i)invoice")`, `regex_match(msg.subject, msg.helo)`,
		`regex("[0-9]+", msg.subject) != ""`)
	l := cfg.lang
	if _, ok := l.patterns["(?i)invoice"]; !ok {
		t.Fatal("constant pattern not compiled at load")
	}
	if _, ok := l.patterns["[0-9]+"]; !ok {
		t.Fatal("constant regex() pattern not compiled at load")
	}
	n, compiles := len(l.patterns), l.compiles.Load()
	f := sampleFacts
	for range 3 {
		s := NewScope(&f)
		for _, c := range conds {
			if _, err := c.evalHCL(s); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Eval(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A pattern taken from the message is compiled per call and never cached: senders must not grow the cache.
	if len(l.patterns) != n {
		t.Errorf("pattern cache grew from %d to %d after load", n, len(l.patterns))
	}
	// Constant patterns were not compiled again; the one from msg.helo was, on every evaluation (two per round).
	if got := l.compiles.Load() - compiles; got != 3*2 {
		t.Errorf("%d compilations during evaluation, want 6 (msg.helo's pattern only)", got)
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		s, p string
		want bool
	}{
		{"", "", true}, {"", "*", true}, {"a", "", false}, {"abc", "a*c", true}, {"abc", "a*", true},
		{"abc", "*c", true}, {"abc", "*b", false}, {"abc", "a?c", true}, {"ac", "a?c", false},
		{"aaa", "a*a*a", true}, {"aa", "a*a*a", false}, {"a*", `a\*`, true}, {"ab", `a\*`, false},
		{"ünï", "?n?", true}, {"mississippi", "m*iss*pi", true},
	} {
		if got := globMatch(c.s, c.p); got != c.want {
			t.Errorf("glob(%q, %q) = %v, want %v", c.s, c.p, got, c.want)
		}
	}
	// Backtracking stays polynomial: this pattern is exponential for a naive recursive matcher.
	long := strings.Repeat("a", 5000)
	if globMatch(long, strings.Repeat("*a", 50)+"b") {
		t.Error("pathological glob matched")
	}
}

func TestFromAddress(t *testing.T) {
	for in, want := range map[string]string{
		"Alice <alice@example.com>":            "alice@example.com",
		"bob@example.com":                      "bob@example.com",
		"=?utf-8?q?J=C3=B6rg?= <j@example.de>": "j@example.de",
		"broken <<x@y.z>":                      "x@y.z",
		"":                                     "",
	} {
		if got := FromAddress(in); got != want {
			t.Errorf("FromAddress(%q) = %q, want %q", in, got, want)
		}
	}
}
