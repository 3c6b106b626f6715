// Package field is the one table of what plugins and policies can see of a session and a message: every field's
// name in the plugin ABI (field_get), its type, the protocols and hooks where it is known, its name as a policy
// fact (msg.<name> in a `when` expression), its key in the audit record, and its documentation.
//
// The plugin host answers field_get from this table, the policy language takes its schema and nulls from it, and
// tests check the audit record, sdk/ABI.md, docs/CONFIG.md and both SDKs against it, so a field is added by
// adding one row here (and its value where the session sets it).
package field

import (
	"fmt"
	"strings"
)

// Hook is a stage of a session at which plugins run. The values are those of the plugin ABI's hook bits (ABI
// §2.1) and of pluginhost.Hook.
type Hook int

// The hooks, in the order a session meets them.
const (
	Connect Hook = iota
	MailFrom
	RcptTo
	Message
	NumHooks
)

var hookNames = [NumHooks]string{"connect", "mail_from", "rcpt_to", "message"}

// String returns the hook's name as the ABI's field "hook" spells it.
func (h Hook) String() string {
	if h >= 0 && h < NumHooks {
		return hookNames[h]
	}
	return fmt.Sprintf("hook(%d)", int(h))
}

// Hooks is a set of hooks, bit n for Hook n.
type Hooks uint8

// Hook sets used in the table.
const (
	None      Hooks = 0
	AtConnect Hooks = 1 << Connect
	AtMessage Hooks = 1 << Message
	// Always is every hook.
	Always Hooks = 1<<NumHooks - 1
	// FromMailFrom is MAIL FROM and everything after it.
	FromMailFrom Hooks = 1<<MailFrom | 1<<RcptTo | 1<<Message
	// FromRcptTo is RCPT TO and the message.
	FromRcptTo Hooks = 1<<RcptTo | 1<<Message
	// AtRcptTo is RCPT TO only.
	AtRcptTo Hooks = 1 << RcptTo
)

// Has reports whether h is in the set.
func (s Hooks) Has(h Hook) bool { return h >= 0 && h < NumHooks && s&(1<<h) != 0 }

// String lists the hooks, for example "connect,message"; "-" for none.
func (s Hooks) String() string {
	var names []string
	for h := range NumHooks {
		if s.Has(h) {
			names = append(names, h.String())
		}
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

// Family is the kind of session a protocol has, which decides which fields exist.
type Family int

// The families. Relay is SMTP and submission (and anything that is not a mailbox protocol, such as the "test"
// protocol of `postern plugin test`): there is an envelope. POP3 and IMAP read (and, IMAP APPEND, store) mail in a
// mailbox: there is no envelope, but a mailbox and a message in it.
const (
	Relay Family = iota
	POP3
	IMAP
	NumFamilies
)

var familyNames = [NumFamilies]string{"smtp", "pop3", "imap"}

// String returns "smtp", "pop3" or "imap".
func (f Family) String() string {
	if f >= 0 && f < NumFamilies {
		return familyNames[f]
	}
	return fmt.Sprintf("family(%d)", int(f))
}

// FamilyOf returns the family of a protocol name as the ABI's field "protocol" spells it.
func FamilyOf(protocol string) Family {
	switch strings.ToLower(protocol) {
	case "pop3":
		return POP3
	case "imap":
		return IMAP
	}
	return Relay
}

// Type is a field's value type, as a policy sees it. Plugins read every field as text (ABI §3.2).
type Type int

// The types.
const (
	String Type = iota
	Number      // a decimal integer to plugins
	Bool        // "1" or "0" to plugins
	List        // several string values: field_get index 0, 1, ...
)

var typeNames = [...]string{"string", "number", "bool", "list of strings"}

// String returns "string", "number", "bool" or "list of strings", as docs/CONFIG.md writes them.
func (t Type) String() string {
	if t >= 0 && int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", int(t))
}

// Field is one row of the table.
type Field struct {
	// Name is the ABI field name (field_get), or "" for a policy fact that plugins read another way (the
	// Subject is a header to them).
	Name string
	Type Type
	// Fact is the name of the policy fact (msg.<Fact>), or "" when policies do not see the field.
	Fact string
	// Audit is the audit record's JSON key for the field, or "" when it is not recorded.
	Audit string
	// At gives, per family, the hooks at which the field is known. Elsewhere it is unavailable: ERR_UNAVAILABLE
	// to plugins, null to `when`.
	At [NumFamilies]Hooks
	// Optional fields may be unknown even where At says they exist (a UID before the server assigned one, an
	// APPEND without a date): the session says so, and the field is then unavailable too.
	Optional bool
	// Doc is the meaning, one sentence of Markdown, for the ABI and configuration references.
	Doc string
}

// Available reports whether the field exists for protocol at hook (before the session's own say for Optional
// fields).
func (f *Field) Available(protocol string, h Hook) bool {
	return f.At[FamilyOf(protocol)].Has(h)
}

// AvailableIn is Available for a family already known, for callers that test many fields of one session.
func (f *Field) AvailableIn(fam Family, h Hook) bool {
	return fam >= 0 && fam < NumFamilies && f.At[fam].Has(h)
}

// everywhere is At for a field every family has at every hook.
var everywhere = [NumFamilies]Hooks{Always, Always, Always}

// Table is every field, in documentation order. Add a field by adding its row; tests check the host, the policy
// language, the audit record, the SDKs and the docs against it.
var Table = []Field{
	{Name: "hook", Type: String, Fact: "hook", Audit: "hook", At: everywhere,
		Doc: "`connect`, `mail_from`, `rcpt_to` or `message`"},
	{Name: "protocol", Type: String, Fact: "protocol", Audit: "protocol", At: everywhere,
		Doc: "`smtp`, `submission`, `pop3` or `imap` (`test` under `postern plugin test` unless set)"},
	{Name: "direction", Type: String, Fact: "direction", Audit: "direction", At: everywhere,
		Doc: "`inbound`, `outbound` (submission, IMAP APPEND) or `retrieval` (POP3 RETR/TOP, IMAP FETCH)"},
	{Name: "listener", Type: String, Fact: "listener", Audit: "listener", At: everywhere,
		Doc: "the listener's name from the configuration"},
	{Name: "client.ip", Type: String, Fact: "client_ip", Audit: "client_ip", At: everywhere,
		Doc: "the client's IP address (after the PROXY protocol), `\"\"` if unknown"},
	{Name: "client.port", Type: Number, At: everywhere,
		Doc: "the client's TCP port, decimal (`0` if unknown)"},
	{Name: "client.helo", Type: String, Fact: "helo", At: [NumFamilies]Hooks{FromMailFrom, None, None},
		Doc: "the name the SMTP client gave in HELO or EHLO (not known yet at `connect`)"},
	{Name: "", Type: Bool, Fact: "tls", At: everywhere,
		Doc: "the client connection is encrypted"},
	{Name: "tls.version", Type: String, Fact: "tls_version", Audit: "tls", At: everywhere,
		Doc: "`TLS1.2`, `TLS1.3`, or `\"\"` when the client connection is not encrypted"},
	{Name: "tls.cipher", Type: String, Fact: "tls_cipher", At: everywhere,
		Doc: "the client connection's cipher suite (IANA name), or `\"\"`"},
	{Name: "upstream.tls.version", Type: String, Fact: "upstream_tls_version", At: everywhere,
		Doc: "the connection to the upstream server: `TLS1.2`, `TLS1.3`, or `\"\"` when it is not encrypted (always `\"\"` at `connect` before the upstream answered, and for the embedded upstream)"},
	{Name: "upstream.tls.cipher", Type: String, Fact: "upstream_tls_cipher", At: everywhere,
		Doc: "the upstream connection's cipher suite, or `\"\"`"},
	{Name: "auth.user", Type: String, Fact: "user", Audit: "auth_user",
		At:  [NumFamilies]Hooks{FromMailFrom, AtMessage, AtMessage},
		Doc: "the user the client authenticated as, `\"\"` if it did not (SMTP); not known yet at `connect`"},
	{Name: "mail_from", Type: String, Fact: "mail_from", Audit: "mail_from", Optional: true,
		At:  [NumFamilies]Hooks{FromMailFrom, None, None},
		Doc: "the SMTP envelope sender (`\"\"` is the null reverse path); there is none at retrieval"},
	{Name: "", Type: String, Fact: "mail_from_domain", Optional: true, At: [NumFamilies]Hooks{FromMailFrom, None, None},
		Doc: "the envelope sender's domain, lower-case"},
	{Name: "smtputf8", Type: Bool, Optional: true, At: [NumFamilies]Hooks{FromMailFrom, None, None},
		Doc: "`1` when the SMTP client gave the `SMTPUTF8` parameter (RFC 6531) on `MAIL FROM`, else `0`"},
	{Name: "rcpt", Type: List, Fact: "rcpt", Audit: "rcpts", At: [NumFamilies]Hooks{FromMailFrom, None, None},
		Doc: "the SMTP envelope recipients accepted so far; there are none at retrieval (see the mailbox user)"},
	{Name: "", Type: List, Fact: "rcpt_domains", At: [NumFamilies]Hooks{FromMailFrom, None, None},
		Doc: "the recipients' domains, lower-case, sorted, each once"},
	{Name: "rcpt.current", Type: String, Fact: "rcpt_current", At: [NumFamilies]Hooks{AtRcptTo, None, None},
		Doc: "the recipient being decided"},
	{Name: "mailbox.user", Type: String, Fact: "mailbox_user", Audit: "mailbox_user",
		At:  [NumFamilies]Hooks{None, AtMessage, AtMessage},
		Doc: "whose mailbox the message is in (POP3, IMAP): the user the upstream server logged in"},
	{Name: "mailbox.name", Type: String, Fact: "mailbox", Audit: "mailbox", At: [NumFamilies]Hooks{None, None, AtMessage},
		Doc: "the IMAP mailbox (folder) name, UTF-8: the one fetched from, or APPEND's target"},
	{Name: "message.uid", Type: Number, Fact: "uid", Audit: "uid", Optional: true,
		At:  [NumFamilies]Hooks{None, None, AtMessage},
		Doc: "the message's IMAP UID (unavailable at APPEND: the server has not assigned it)"},
	{Name: "message.uidvalidity", Type: Number, Fact: "uidvalidity", Audit: "uidvalidity", Optional: true,
		At:  [NumFamilies]Hooks{None, None, AtMessage},
		Doc: "the mailbox's IMAP UIDVALIDITY (with the UID it names the message for good)"},
	{Name: "message.uidl", Type: String, Fact: "uidl", Audit: "uidl", Optional: true,
		At:  [NumFamilies]Hooks{None, AtMessage, None},
		Doc: "the message's POP3 unique-id listing (UIDL), when the server has UIDL"},
	{Name: "message.internal_date", Type: String, Fact: "internal_date", Optional: true,
		At:  [NumFamilies]Hooks{None, None, AtMessage},
		Doc: "the IMAP INTERNALDATE (or APPEND's date), RFC 3339 in UTC, e.g. `2026-01-02T15:04:05Z`"},
	{Name: "message.flags", Type: List, Fact: "flags", At: [NumFamilies]Hooks{None, None, AtMessage},
		Doc: "the message's IMAP flags and keywords as the server spells them (`\\Seen`, `$Junk`), or APPEND's"},
	{Name: "command", Type: String, Fact: "command", Audit: "command", At: [NumFamilies]Hooks{None, AtMessage, AtMessage},
		Doc: "what made the message pass the policies: `retr` or `top` (POP3), `fetch` or `append` (IMAP)"},
	{Name: "message.size", Type: Number, Fact: "size", Audit: "size", At: [NumFamilies]Hooks{AtMessage, AtMessage, AtMessage},
		Doc: "the size in bytes of the message as received"},
	{Name: "", Type: String, Fact: "subject", At: [NumFamilies]Hooks{AtMessage, AtMessage, AtMessage},
		Doc: "the Subject, RFC 2047 decoded"},
	{Name: "", Type: String, Fact: "from", At: [NumFamilies]Hooks{AtMessage, AtMessage, AtMessage},
		Doc: "the address in the From header (not the display name)"},
	{Name: "", Type: String, Fact: "from_domain", At: [NumFamilies]Hooks{AtMessage, AtMessage, AtMessage},
		Doc: "its domain, lower-case"},
	{Name: "message.malformed", Type: List, Fact: "malformed", Audit: "malformed", At: [NumFamilies]Hooks{AtMessage, AtMessage, AtMessage},
		Doc: "the message's defects: to plugins one `kind: detail` per value (`depth-limit: MIME nesting deeper than 32`), to policies the distinct kinds (`unclosed-boundary`, `bad-header`, `depth-limit`); none when well formed"},
	{Name: "message.ambiguous", Type: List, Fact: "ambiguous", Audit: "ambiguous", At: [NumFamilies]Hooks{AtMessage, AtMessage, AtMessage},
		Doc: "where mail clients read the message differently: to plugins one `kind: detail` per value, to policies the distinct kinds (`duplicate-parameter`, `boundary`, `filename`, ...); none when every client reads it one way"},
	{Name: "", Type: Number, Fact: "attachments", At: [NumFamilies]Hooks{AtMessage, AtMessage, AtMessage},
		Doc: "how many parts are attachments (a file name, or a disposition of attachment), derived readings included"},
	{Name: "message.limit_exceeded", Type: String, Fact: "limit_exceeded", Audit: "limit_exceeded", At: [NumFamilies]Hooks{AtMessage, AtMessage, AtMessage},
		Doc: "the limit that stopped indexing (`size-limit`, `depth-limit`, `part-limit`, `header-limit`, `line-limit`, `decode-limit`), or `\"\"`; parts past it were not inspected"},
}

var (
	byName = map[string]*Field{}
	byFact = map[string]*Field{}
)

func init() {
	for i := range Table {
		f := &Table[i]
		if f.Name != "" {
			if byName[f.Name] != nil {
				panic("field: duplicate name " + f.Name)
			}
			byName[f.Name] = f
		}
		if f.Fact != "" {
			if byFact[f.Fact] != nil {
				panic("field: duplicate fact " + f.Fact)
			}
			byFact[f.Fact] = f
		}
	}
}

// Lookup returns the field a plugin names in field_get.
func Lookup(name string) (*Field, bool) {
	f, ok := byName[name]
	return f, ok
}

// LookupBytes is Lookup for a name in a guest's memory, without copying it.
func LookupBytes(name []byte) (*Field, bool) {
	f, ok := byName[string(name)]
	return f, ok
}

// Fact returns the field behind a policy fact, msg.<name>.
func Fact(name string) (*Field, bool) {
	f, ok := byFact[name]
	return f, ok
}
