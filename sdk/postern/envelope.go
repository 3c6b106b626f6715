package postern

import "strconv"

// Envelope is the context of the current call: the client, the SMTP envelope, and the call's decision. It is
// what OnConnect, OnMailFrom and OnRcptTo handlers receive; Message embeds it. It is valid only during the
// handler it was given to.
//
// The string accessors return "" when the field is not available at this hook (MailFrom during OnConnect);
// use Field to tell an empty value from an unavailable one.
type Envelope struct{}

func field(name string) string {
	v, _ := Field(name)
	return v
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

// HELO is the name the SMTP client gave in HELO or EHLO.
func (*Envelope) HELO() string { return field("client.helo") }

// TLSVersion is "TLS1.2" or "TLS1.3", or "" when the client connection is not encrypted.
func (*Envelope) TLSVersion() string { return field("tls.version") }

// TLSCipher is the IANA name of the TLS cipher suite, or "".
func (*Envelope) TLSCipher() string { return field("tls.cipher") }

// AuthUser is the authenticated user name, or "".
func (*Envelope) AuthUser() string { return field("auth.user") }

// MailFrom is the envelope sender ("" is also the null reverse path); available from OnMailFrom on.
func (*Envelope) MailFrom() string { return field("mail_from") }

// SMTPUTF8 reports whether the SMTP client gave the SMTPUTF8 parameter (RFC 6531) on MAIL FROM, which allows
// UTF-8 in addresses and header fields; available from OnMailFrom on, always false for POP3 and IMAP.
func (*Envelope) SMTPUTF8() bool { return field("smtputf8") == "1" }

// Rcpts returns the envelope recipients accepted so far (SMTP), or the mailbox owner (POP3, IMAP).
func (*Envelope) Rcpts() []string {
	v, _ := Fields("rcpt")
	return v
}

// RcptCurrent is, in OnRcptTo, the recipient being decided.
func (*Envelope) RcptCurrent() string { return field("rcpt.current") }

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
