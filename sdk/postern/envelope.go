package postern

import (
	"strconv"
	"time"
)

// Envelope is the context of the current call: the client, the SMTP envelope, and the call's decision. It is
// what OnConnect, OnMailFrom and OnRcptTo handlers receive; Message embeds it. It is valid only during the
// handler it was given to.
//
// A field is unavailable where the host does not know it: at a hook before it is given (HELO and the
// authenticated user during OnConnect, MailFrom before MAIL FROM), or in a protocol that does not have it (POP3
// and IMAP have no MAIL FROM, recipients or HELO; SMTP has no mailbox). The accessors that return one string
// give "" then; the Lookup accessors and those that return ok tell an empty value from an unavailable one, as
// Field does with ErrUnavailable.
type Envelope struct{}

func field(name string) string {
	v, _ := Field(name)
	return v
}

// lookup is Field with ok = false for any error: unavailable here, or unknown to an older host.
func lookup(name string) (string, bool) {
	v, err := Field(name)
	return v, err == nil
}

// lookupUint32 reads a decimal field.
func lookupUint32(name string) (uint32, bool) {
	v, ok := lookup(name)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 32)
	return uint32(n), err == nil
}

// Hook is the current hook: "connect", "mail_from", "rcpt_to" or "message".
func (*Envelope) Hook() string { return field("hook") }

// Protocol is "smtp", "submission", "pop3" or "imap" ("test" under `postern plugin test`).
func (*Envelope) Protocol() string { return field("protocol") }

// Direction is "inbound", "outbound" or "retrieval".
func (*Envelope) Direction() string { return field("direction") }

// Listener is the name of the listener the client connected to.
func (*Envelope) Listener() string { return field("listener") }

// ClientIP is the client's IP address (after the PROXY protocol), "" if unknown.
func (*Envelope) ClientIP() string { return field("client.ip") }

// ClientPort is the client's TCP port, 0 if unknown.
func (*Envelope) ClientPort() int {
	p, _ := strconv.Atoi(field("client.port"))
	return p
}

// HELO is the name the SMTP client gave in HELO or EHLO, "" when unavailable (OnConnect, POP3, IMAP).
func (*Envelope) HELO() string { return field("client.helo") }

// LookupHELO is HELO with ok = false when the name is unavailable.
func (*Envelope) LookupHELO() (string, bool) { return lookup("client.helo") }

// TLSVersion is "TLS1.2" or "TLS1.3", or "" when the client connection is not encrypted.
func (*Envelope) TLSVersion() string { return field("tls.version") }

// TLSCipher is the IANA name of the TLS cipher suite, or "".
func (*Envelope) TLSCipher() string { return field("tls.cipher") }

// UpstreamTLSVersion is "TLS1.2" or "TLS1.3" for the connection to the upstream server, or "" when it is not
// encrypted.
func (*Envelope) UpstreamTLSVersion() string { return field("upstream.tls.version") }

// UpstreamTLSCipher is the IANA name of the upstream connection's cipher suite, or "".
func (*Envelope) UpstreamTLSCipher() string { return field("upstream.tls.cipher") }

// AuthUser is the authenticated user name, or "" (also when unavailable: during OnConnect).
func (*Envelope) AuthUser() string { return field("auth.user") }

// LookupAuthUser is AuthUser with ok = false before the client could authenticate (OnConnect): "" with ok
// means it did not.
func (*Envelope) LookupAuthUser() (string, bool) { return lookup("auth.user") }

// MailFrom is the envelope sender ("" is also the null reverse path); available from OnMailFrom on, never in
// POP3 or IMAP.
func (*Envelope) MailFrom() string { return field("mail_from") }

// LookupMailFrom is MailFrom with ok = false when there is no envelope sender: before MAIL FROM, and at
// retrieval. ("", true) is the null reverse path of a bounce.
func (*Envelope) LookupMailFrom() (string, bool) { return lookup("mail_from") }

// SMTPUTF8 reports whether the SMTP client gave the SMTPUTF8 parameter (RFC 6531) on MAIL FROM, which allows
// UTF-8 in addresses and header fields; available from OnMailFrom on, always false for POP3 and IMAP.
func (*Envelope) SMTPUTF8() bool { return field("smtputf8") == "1" }

// Rcpts returns the envelope recipients accepted so far (SMTP); nil where unavailable (OnConnect, POP3, IMAP:
// use MailboxUser there).
func (*Envelope) Rcpts() []string {
	v, _ := Fields("rcpt")
	return v
}

// RcptCurrent is, in OnRcptTo, the recipient being decided.
func (*Envelope) RcptCurrent() string { return field("rcpt.current") }

// The mailbox accessors describe the message a POP3 or IMAP client reads (RETR, TOP, FETCH) or an IMAP client
// stores (APPEND). Each returns ok = false where the field is unavailable: in SMTP, in OnConnect, and for the
// fields the protocol lacks (POP3 has no mailbox name, UID or flags; IMAP no UIDL) or that are not known yet (no
// UID before APPEND stored the message).

// MailboxUser is whose mailbox the message is in: the user the upstream server logged in.
func (*Envelope) MailboxUser() (string, bool) { return lookup("mailbox.user") }

// Mailbox is the IMAP mailbox name (UTF-8): the one fetched from, or APPEND's target.
func (*Envelope) Mailbox() (string, bool) { return lookup("mailbox.name") }

// UID is the message's IMAP UID.
func (*Envelope) UID() (uint32, bool) { return lookupUint32("message.uid") }

// UIDValidity is the mailbox's IMAP UIDVALIDITY; with the UID it names the message for good.
func (*Envelope) UIDValidity() (uint32, bool) { return lookupUint32("message.uidvalidity") }

// UIDL is the message's POP3 unique-id listing.
func (*Envelope) UIDL() (string, bool) { return lookup("message.uidl") }

// InternalDate is the IMAP INTERNALDATE (or APPEND's date-time), in UTC.
func (*Envelope) InternalDate() (time.Time, bool) {
	v, ok := lookup("message.internal_date")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}

// Flags are the message's IMAP flags and keywords as the server spells them (`\Seen`, `$Junk`).
func (*Envelope) Flags() ([]string, bool) {
	v, err := Fields("message.flags")
	return v, err == nil
}

// Command is what made the message pass the policies: "retr" or "top" (POP3), "fetch" or "append" (IMAP).
func (*Envelope) Command() (string, bool) { return lookup("command") }

// Tag attaches key=value to the call's result (logs, headers, policy conditions). Keys are 1–64 bytes of
// [A-Za-z0-9_.-], values at most 1024 bytes of UTF-8; anything else is ErrInvalid. A repeated key replaces.
func (*Envelope) Tag(key, value string) error { return status(hostTagAdd(key, value)) }

// Score adds delta to the call's score; policies compare the sum over the chain with thresholds. A NaN or
// infinite delta is ErrInvalid.
func (*Envelope) Score(delta float64) error { return status(hostScoreAdd(delta)) }

// Verdict kinds (ABI §3.5).
const (
	kindAccept     = 0
	kindReject     = 1
	kindTempfail   = 2
	kindDiscard    = 3
	kindQuarantine = 4
)

// The verdict methods set the call's verdict; a later call replaces an earlier one, and a handler that sets
// none accepts. They return ErrInvalid, leaving the verdict unchanged, for a value outside the ABI's rules.

// Accept makes the verdict "no objection" (the default).
func (*Envelope) Accept() error { return status(hostSetVerdict(kindAccept, 0, "", "")) }

// Reject refuses permanently. code is 500–599, or 0 for 550; enh is an RFC 3463 code of class 5 ("5.7.1"), or ""
// for 5.7.1; text is the reply text (at most 512 bytes, printable UTF-8, no CR or LF).
func (*Envelope) Reject(code int, enh, text string) error {
	return status(hostSetVerdict(kindReject, i32(code), enh, text))
}

// Tempfail refuses temporarily. code is 400–499, or 0 for 451; enh is of class 4, or "" for 4.7.1.
func (*Envelope) Tempfail(code int, enh, text string) error {
	return status(hostSetVerdict(kindTempfail, i32(code), enh, text))
}

// Discard accepts the message and then drops it silently; the host records it.
func (*Envelope) Discard() error { return status(hostSetVerdict(kindDiscard, 0, "", "")) }

// Quarantine keeps the message in quarantine instead of delivering it; reason is recorded (same rules as a
// reply text).
func (*Envelope) Quarantine(reason string) error {
	return status(hostSetVerdict(kindQuarantine, 0, "", reason))
}

// AddRecipient adds an envelope recipient, local@domain without angle brackets (SMTP only; OnMailFrom, OnRcptTo
// and OnMessage). Elsewhere it is ErrUnavailable.
func (*Envelope) AddRecipient(addr string) error { return status(hostRcptAdd(addr)) }
