package audit

import (
	"time"
	"unicode/utf8"
)

// Version is the record format version written in every record's "v" field. Verify refuses other versions.
const Version = 1

// Event says what a record is about.
type Event string

const (
	// EventDecision is a policy decision on one message or envelope stage.
	EventDecision Event = "decision"
	// EventRecovery records that the writer, on opening the log, found the last line cut short by an interrupted
	// write (a crash or a full disk) and removed those bytes before continuing the chain. See Recovery.
	EventRecovery Event = "recovery"
	// EventPending is a decision written durably before it is acted on (before the message is sent on), when
	// the outcome (the reply the client gets) is not known yet. See Log.AppendPending.
	EventPending Event = "pending"
	// EventOutcome completes a pending record: Pending names it, Reply says what the client was told.
	EventOutcome Event = "outcome"
	// EventTruncation records that the log was found to end before the chain head kept beside it (records cut
	// off, or the file replaced) and that an operator accepted it. See Truncation.
	EventTruncation Event = "truncation"
	// EventReview records what a user of the reviewer pages did: a login (refused ones too), a logout, a message
	// body viewed or downloaded, an action refused for the user's role. Review says who, what and why.
	EventReview Event = "review"
	// EventQuarantineRelease, EventQuarantineDelete and EventQuarantineExpiry record what became of a quarantined
	// message: released (delivered to its recipients or put back in its mailbox), deleted by someone, or removed by
	// the quarantine's retention. Quarantine says which entry, who and why. A release is written before the
	// delivery and completed by an EventOutcome record naming it in Pending, with the delivery route's reply.
	EventQuarantineRelease Event = "quarantine_release"
	EventQuarantineDelete  Event = "quarantine_delete"
	EventQuarantineExpiry  Event = "quarantine_expiry"
)

// Record is one line of the audit log. The JSON names are a stable interface: tools outside Postern parse them.
// Fields that are empty are left out of the line; a missing number means 0.
//
// Append fills V, Seq, Prev and Hash; everything else comes from NewRecord or the caller.
type Record struct {
	V     int    `json:"v"`             // format version, Version
	Seq   uint64 `json:"seq,omitempty"` // position in the chain, 1 for the first record ever written
	Event Event  `json:"event"`
	// Time is when the decision was made, in UTC.
	Time time.Time `json:"time"`
	// Session identifies the client session in Postern's operational log, to join the two.
	Session   string `json:"session,omitempty"`
	Listener  string `json:"listener,omitempty"`
	Protocol  string `json:"protocol,omitempty"`
	Direction string `json:"direction,omitempty"`
	ClientIP  string `json:"client_ip,omitempty"`
	// TLS is the TLS version of the client connection ("TLS1.3"); absent when it was not encrypted.
	TLS      string `json:"tls,omitempty"`
	AuthUser string `json:"auth_user,omitempty"`
	// Hook is the stage decided: connect, mail_from, rcpt_to or message.
	Hook string `json:"hook,omitempty"`
	// MailFrom is the envelope sender; "" is the null reverse path, absent means none was given yet.
	MailFrom *string  `json:"mail_from,omitempty"`
	Rcpts    []string `json:"rcpts,omitempty"`
	// Rcpt is the recipient decided at the rcpt_to stage (Rcpts are those accepted before it).
	Rcpt       string   `json:"rcpt,omitempty"`
	RcptsAdded []string `json:"rcpts_added,omitempty"` // recipients the policy added
	// The mailbox of a message read (POP3 RETR/TOP, IMAP FETCH) or stored (IMAP APPEND): whose it is, the IMAP
	// mailbox name, the message's UID and the mailbox's UIDVALIDITY (IMAP) or its UIDL (POP3), and the command
	// that made it pass the policies (retr, top, fetch, append).
	MailboxUser string `json:"mailbox_user,omitempty"`
	Mailbox     string `json:"mailbox,omitempty"`
	UID         uint32 `json:"uid,omitempty"`
	UIDValidity uint32 `json:"uidvalidity,omitempty"`
	UIDL        string `json:"uidl,omitempty"`
	Command     string `json:"command,omitempty"`
	MessageID   string `json:"message_id,omitempty"`
	Size        int64  `json:"size,omitempty"` // bytes as received
	// SHA256In is the hex SHA-256 of the message as received; SHA256Out that of the message as sent on, present
	// only when the policy changed it.
	SHA256In  string `json:"sha256_in,omitempty"`
	SHA256Out string `json:"sha256_out,omitempty"`
	// SHA256Served is, at retrieval, the hex SHA-256 of what the client was served: the message, its changed
	// version, or the notice that took a withheld message's place. Withheld is then the ID of the quarantine entry
	// that keeps the original, which the notice quotes (IMAP: without the time of storing).
	SHA256Served string `json:"sha256_served,omitempty"`
	Withheld     string `json:"withheld,omitempty"`
	// Malformed lists the distinct kinds of the message's defects ("unclosed-boundary", "depth-limit", ...),
	// Ambiguous those of the places where mail clients read it differently ("duplicate-parameter", ...), and
	// LimitExceeded names the bound that kept it from being indexed completely: what the filters could not see
	// for certain, kept with the decision.
	Malformed     []string `json:"malformed,omitempty"`
	Ambiguous     []string `json:"ambiguous,omitempty"`
	LimitExceeded string   `json:"limit_exceeded,omitempty"`
	ConfigVersion string   `json:"config_version,omitempty"`
	// Action is the final action: accept, reject, tempfail, discard or quarantine.
	Action string `json:"action,omitempty"`
	// Reply is what the client was told.
	Reply *Reply            `json:"reply,omitempty"`
	Score float64           `json:"score,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"`
	// Raw holds the exact bytes, base64, of every client-supplied text field that is not valid UTF-8:
	// JSON can only show such a field with U+FFFD in place of each bad byte, so two different addresses could
	// look alike. Keys are the field names, with [i] for the i-th entry of a list ("mail_from", "rcpts[2]").
	Raw map[string]string `json:"raw,omitempty"`
	// Changes are the changes made to the message (what and where, never the new content).
	Changes []Change `json:"changes,omitempty"`
	// Pending, in an EventOutcome record, is the seq of the pending record it completes.
	Pending uint64 `json:"pending,omitempty"`
	// Truncation, in an EventTruncation record, describes the loss an operator accepted.
	Truncation *Truncation `json:"truncation,omitempty"`
	// Quarantine, in a quarantine event record, names the entry, who acted, why, and the decision record the
	// entry was stored with.
	Quarantine *QuarantineAction `json:"quarantine,omitempty"`
	// Policies trace every policy considered, in evaluation order.
	Policies   []Policy  `json:"policies,omitempty"`
	DurationNS int64     `json:"duration_ns,omitempty"` // policy evaluation time
	Recovery   *Recovery `json:"recovery,omitempty"`    // EventRecovery only
	// Review, in an EventReview record, is the reviewer pages' action; AuthUser is then who acted (as typed,
	// for a refused login) and ClientIP from where.
	Review *ReviewAction `json:"review,omitempty"`
	// Truncated is set when the record was too large for one line (1 MiB): its tags and change lists were then
	// dropped and its recipient lists cut to their first 100 entries.
	Truncated bool   `json:"truncated,omitempty"`
	Prev      string `json:"prev,omitempty"` // hex SHA-256 of the previous record; 64 zeros for the first
	Hash      string `json:"hash,omitempty"` // hex SHA-256 of this record's line without the hash member
}

// Reply is the reply the client was given, in any protocol: an SMTP reply has its Code (and Enhanced code); a
// POP3 or IMAP reply has its Status instead ("+OK" or "-ERR"; "OK", "NO", "BAD" or "BYE"), and Text holds the
// rest of the line as the client got it, a response code such as "[SYS/TEMP]" or "[UNAVAILABLE]" included.
type Reply struct {
	Status   string `json:"status,omitempty"`
	Code     int    `json:"code,omitempty"`
	Enhanced string `json:"enhanced,omitempty"`
	Text     string `json:"text,omitempty"`
}

// Reply statuses of POP3 (RFC 1939) and IMAP (RFC 3501). An SMTP reply has none: its code says it.
const (
	StatusPOP3OK  = "+OK"
	StatusPOP3Err = "-ERR"
	StatusIMAPOK  = "OK"
	StatusIMAPNo  = "NO"
	StatusIMAPBad = "BAD"
	StatusIMAPBye = "BYE"
)

// Policy is what one policy did with the message.
type Policy struct {
	Name    string `json:"name"`
	Mode    string `json:"mode,omitempty"` // enforce or monitor
	Matched bool   `json:"matched"`
	// Action is what the policy decided; in monitor mode what it would have decided.
	Action    string   `json:"action,omitempty"`
	Score     float64  `json:"score,omitempty"`
	Threshold string   `json:"threshold,omitempty"` // the score threshold that fired, if any
	Plugins   []Plugin `json:"plugins,omitempty"`
}

// Plugin is one plugin call of a policy's chain.
type Plugin struct {
	Name     string            `json:"name"`
	SHA256   string            `json:"sha256"` // of the module that ran
	Verdict  string            `json:"verdict"`
	Code     int               `json:"code,omitempty"`
	Enhanced string            `json:"enhanced,omitempty"`
	Text     string            `json:"text,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
	Score    float64           `json:"score,omitempty"`
	Changes  []Change          `json:"changes,omitempty"`
	// DurationNS is the wall time of the call in nanoseconds.
	DurationNS int64 `json:"duration_ns"`
	// Error is why the call failed (then Verdict is the plugin's on_error outcome).
	Error string `json:"error,omitempty"`
	// Skipped is why the plugin was not called: it declared the message is not for it (ABI postern_wants).
	Skipped string `json:"skipped,omitempty"`
}

// Change says what a change did, never with which content: header values, banners and replacement parts may
// carry data from the message.
type Change struct {
	Op          string `json:"op"`
	Name        string `json:"name,omitempty"` // header name
	Part        int    `json:"part,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Bytes       int    `json:"bytes,omitempty"` // size of the value, banner or content the change carries
}

// QuarantineAction is what a quarantine event record says about the entry acted on. The record's own envelope
// fields (listener, protocol, sender, recipients or mailbox, Message-ID, size, sha256_in) describe the message.
type QuarantineAction struct {
	// ID is the quarantine entry's ID.
	ID string `json:"id"`
	// Actor is who released or deleted the entry (the -by of the command line, or $USER; the reviewer's login);
	// "retention" for an expiry. Via says through what: "cli", "web", "retention".
	Actor string `json:"actor,omitempty"`
	Via   string `json:"via,omitempty"`
	// Reason is the reason given, as typed.
	Reason string `json:"reason,omitempty"`
	// DecisionSeq and DecisionHash are the seq and hash of the decision record the entry was stored with (absent
	// when it was not known, as for an entry stored before its record could be linked).
	DecisionSeq  uint64 `json:"decision_seq,omitempty"`
	DecisionHash string `json:"decision_hash,omitempty"`
	// Route, for a release, is where the message went: "smtp 192.0.2.1:25", "lmtp ...", "imap ... INBOX".
	Route string `json:"route,omitempty"`
	// Expired, for an expiry, is the bound that removed it: "max_age" or "max_bytes".
	Expired string `json:"expired,omitempty"`
}

// Recovery describes bytes an interrupted write left at the end of the log, which the writer removed before
// continuing the chain. The bytes were never a complete record: every record is written with one write call that
// ends in a newline, and a record counts as written only when that call completed.
type Recovery struct {
	File   string `json:"file"`   // base name of the file
	Offset int64  `json:"offset"` // where the removed bytes began
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"` // of the removed bytes
}

// maxField bounds the text fields a client controls (Message-ID, addresses, user name): they are for finding a
// message, not for storing whatever a client sends.
const maxField = 998

// clip shortens s to at most maxField bytes at a UTF-8 boundary, marking the cut with "…".
func clip(s string) string {
	if len(s) <= maxField {
		return s
	}
	cut := maxField - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// ReviewAction is what an EventReview record says about an action on the reviewer pages.
type ReviewAction struct {
	// Action is login, login_failed, login_limited, logout, view_body, download or forbidden.
	Action string `json:"action"`
	// Role is the user's role (auditor, reviewer, admin); absent for a refused login.
	Role string `json:"role,omitempty"`
	// Target is what the action was on: a quarantine entry's ID, a part of it ("ID part 2"), a page.
	Target string `json:"target,omitempty"`
	// Reason is why: the reason a reviewer gave, or why a login or an action was refused.
	Reason string `json:"reason,omitempty"`
}
