package config

import (
	"testing"
)

// fastExprs are conditions the fast path compiles. Each is evaluated both ways on every fact set below.
var fastExprs = []string{
	`msg.hook == "message" && msg.protocol == "smtp"`,
	`msg.listener != "mx" || msg.direction == "inbound"`,
	`!msg.tls && msg.tls_version == ""`,
	`msg.tls == true`,
	`msg.upstream_tls_version != "TLS1.3" && msg.tls_cipher != "" && msg.upstream_tls_cipher != "x"`,
	`msg.user == "" ? msg.helo == "x" : msg.helo != "x"`,
	`(msg.size > 1000 && msg.size <= 123456) || msg.size < 0 || msg.size >= 2e6`,
	`msg.size == 123456`,
	`msg.mail_from_domain == "sub.example.net" || msg.mail_from == ""`,
	`msg.from_domain == msg.mail_from_domain`,
	`msg.rcpt_current == "alice@corp.example"`,
	`contains(msg.rcpt_domains, "corp.example")`,
	`contains(msg.rcpt, "bob@Corp.Example")`,
	`length(msg.rcpt) > 2 && length(msg.rcpt_domains) == 2`,
	`lower(msg.subject) == "invoice #4711 overdue"`,
	`upper(msg.helo) == "MAIL.EXAMPLE.NET"`,
	`startswith(msg.subject, "Inv") && endswith(msg.subject, "due") && strcontains(msg.subject, "#")`,
	`glob(msg.mail_from, "*@*.example.net")`,
	`header("X-Mailer") == "Outlook 16" && header("Nope") == ""`,
	`regex_match(msg.subject, "(?i)^invoice")`,
	`regex_match(lower(msg.from), "^billing@")`,
	`cidrmatch(msg.client_ip, "192.0.2.0/24", ["10.0.0.0/8", "2001:db8::/32"])`,
	`cidrmatch(msg.client_ip, "::/0")`,
	`domain_match(msg.from_domain, "*.example.net")`,
	`domain_match(msg.mail_from, ["example.net", "*.EXAMPLE.net."])`,
	`msg.subject == "café"`,
	`lower(msg.subject) == "ÉCOLE"`,
	`msg.subject == "Café" ? true : false`,
	`msg.size == 0.5`,
	`contains(msg.malformed, "unclosed-boundary") || msg.limit_exceeded == "depth-limit"`,
	`length(msg.malformed) == 0`,
	`msg.helo == null || msg.helo != "x"`,
	`msg.mail_from == "" && msg.rcpt_current != null`,
	`msg.mailbox == "INBOX" && msg.uid == 4242 && msg.uidvalidity != 7`,
	`msg.uidl == "abc" || msg.command == "retr" || msg.internal_date == "2026-01-02T14:04:05Z"`,
	`contains(msg.flags, "\\Seen") && msg.mailbox_user == "alice"`,
	`null == msg.subject`,
	`msg.user == msg.mailbox_user`,
	`!domain_match(msg.mail_from_domain, "*.payments.example.com") && glob(msg.helo, "*")`,
	`startswith(msg.uidl, "a") || endswith(msg.rcpt_current, "x") || strcontains(msg.subject, "x")`,
	`regex_match(msg.mailbox, "^IN") || cidrmatch(msg.helo, "0.0.0.0/0")`,
	`msg.attachments > 0 && (length(msg.ambiguous) > 0 || length(msg.malformed) > 0)`,
	`contains(msg.ambiguous, "boundary-choice")`,
}

// slowExprs are conditions the fast path leaves to hcl.
var slowExprs = []string{
	`msg.size + 1 > 2`,
	`msg.rcpt[0] == "x"`,
	`length([for r in msg.rcpt : r]) > 0`,
	`can(regex("x", msg.subject))`,
	`regex_match(msg.subject, msg.helo)`,
	`msg.size == "5"`,
	`contains(msg.rcpt, 5)`,
	`title(msg.subject) == "X"`,
	`msg.size > 0.1`,
	`cidrmatch(msg.client_ip, msg.helo)`,
}

func factSets() []Facts {
	nfd := "Cafe\u0301" // "Café" with a combining accent: cty normalises it to NFC
	return []Facts{
		sampleFacts,
		{},
		{Hook: "rcpt_to", Protocol: "submission", Listener: "mx", Direction: "outbound", ClientIP: "2001:db8::1",
			HELO: "MAIL.example.net", User: "alice", MailFrom: "", Rcpt: []string{"x@y"}, RcptCurrent: "alice@corp.example"},
		{Hook: "message", Subject: nfd, ClientIP: "::ffff:192.0.2.9", From: "Billing@Sub.Example.Net",
			MailFrom: "a@b.example.net.", Size: 2000000, Rcpt: []string{"a@corp.example", "b@corp.example", "c"},
			Header: func(string) []string { return []string{"Outlook 16", "x"} }},
		{Subject: "\u00c9COLE", ClientIP: "not an ip", Size: 1000, Malformed: []string{"unclosed-boundary"}},
		{Malformed: []string{"bad-header", "depth-limit"}, LimitExceeded: "depth-limit"},
		{Hook: "connect", Protocol: "smtp", ClientIP: "192.0.2.1"},
		{Hook: "mail_from", Protocol: "smtp", NoMailFrom: true, HELO: "x"},
		{Hook: "message", Protocol: "imap", Direction: "retrieval", User: "alice", MailboxUser: "alice",
			Mailbox: "INBOX", UID: 4242, UIDValidity: 9, InternalDate: "2026-01-02T14:04:05Z",
			Flags: []string{`\Seen`}, Command: "fetch", Size: 10, Subject: "x", MailFrom: "stale@x", HELO: "stale"},
		{Hook: "message", Protocol: "imap", Command: "append", Mailbox: "Sent", Size: 10},
		{Hook: "message", Protocol: "pop3", Command: "retr", UIDL: "abc", MailboxUser: "bob", Size: 10},
		{Hook: "connect", Protocol: "pop3"},
		{Ambiguous: []string{"boundary-choice"}, Attachments: 2},
		{Malformed: []string{"bad-encoding"}, Attachments: 1},
	}
}

func TestFastPathAgrees(t *testing.T) {
	_, conds := conditions(t, fastExprs...)
	for i, c := range conds {
		if c.fast == nil {
			t.Errorf("%s: not compiled by the fast path", fastExprs[i])
			continue
		}
		for j, f := range factSets() {
			want, err := c.evalHCL(NewScope(&f))
			got, ok := c.tryFast(NewScope(&f))
			switch {
			case err != nil && ok:
				// hcl fails on a null (a function argument, an ordering): the fast path must hand over.
				t.Errorf("%s on facts %d: fast %v, hcl fails: %v", fastExprs[i], j, got, err)
			case err != nil:
				if g, gerr := c.Eval(NewScope(&f)); gerr == nil {
					t.Errorf("%s on facts %d: Eval = %v, want hcl's error %v", fastExprs[i], j, g, err)
				}
			case !ok:
				t.Errorf("%s on facts %d: fast path handed over where hcl gives %v", fastExprs[i], j, want)
			case got != want:
				t.Errorf("%s on facts %d: fast %v, hcl %v", fastExprs[i], j, got, want)
			}
		}
	}
	_, conds = conditions(t, slowExprs...)
	for i, c := range conds {
		if c.fast != nil {
			t.Errorf("%s: compiled by the fast path, want hcl", slowExprs[i])
		}
	}
}

// BenchmarkWhen compares one typical condition compiled by the fast path with the same condition evaluated by
// hcl. Each iteration uses a fresh Scope, as each message does.
func BenchmarkWhen(b *testing.B) {
	expr := `msg.direction == "inbound" && contains(msg.rcpt_domains, "corp.example") && regex_match(msg.subject, "(?i)invoice")`
	_, conds := conditions(b, expr)
	c := conds[0]
	if c.fast == nil {
		b.Fatal("not compiled")
	}
	f := sampleFacts
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, _ := c.Eval(NewScope(&f)); !ok {
				b.Fatal("false")
			}
		}
	})
	b.Run("hcl", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, _ := c.evalHCL(NewScope(&f)); !ok {
				b.Fatal("false")
			}
		}
	})
}
