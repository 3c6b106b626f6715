package auditindex

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/postern/postern/proxy/audit"
)

// DefaultLimit is how many rows Search returns when Query.Limit is 0; MaxLimit is the most it returns at once.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Query selects records. Every field set must match (AND); the zero Query matches every record but outcome
// records (see Event).
type Query struct {
	// From and To bound the record's time: From ≤ time < To. Zero means unbounded.
	From, To time.Time
	// Node is the node whose chain the record is in.
	Node string
	// Sender is the envelope sender: an address, "@domain" for any address at that domain, or "<>" for the null
	// reverse path.
	Sender string
	// Recipient is any recipient of the message (as sent, or added by a policy, or the one decided at RCPT):
	// an address or "@domain".
	Recipient string
	// User is the authenticated user or the mailbox's owner; Mailbox the IMAP mailbox name.
	User, Mailbox string
	// MessageID is the Message-ID, with or without angle brackets.
	MessageID string
	// Digest is the SHA-256 of the message as received, as sent on or as served.
	Digest string
	// Action is the final action (accept, reject, tempfail, discard, quarantine); Event the record's event
	// ("decision", "pending", …). Without Event, outcome records are left out: their reply is in the pending
	// record they complete (Row.Outcome).
	Action, Event string
	// Policy is a policy that matched; Plugin a plugin that ran.
	Policy, Plugin string
	// Tag is a tag name, or name=value for a tag with that value.
	Tag string
	// MinScore and MaxScore bound the score, inclusive; nil means unbounded.
	MinScore, MaxScore *float64
	// Listener and Protocol are the listener's name and protocol (smtp, submission, pop3, imap).
	Listener, Protocol string
	// Withheld is the quarantine key of a withheld message.
	Withheld string
	// Quarantine is a quarantine entry's ID: it finds the decision that quarantined the message (when a
	// quarantine event names it, or the message was withheld at retrieval with that key) and every release,
	// deletion and expiry of the entry.
	Quarantine string
	// Limit is the most rows returned: DefaultLimit when 0, at most MaxLimit. Offset skips that many first.
	Limit, Offset int
}

// rowColumns are the columns scanRows reads, from audit_records r.
const rowColumns = `r.node, r.seq, r.line, r.outcome_seq, r.outcome`

// where builds the WHERE clause of q, with ? placeholders.
func (q *Query) where() (string, []any) {
	var conds []string
	var args []any
	cond := func(c string, a ...any) {
		conds = append(conds, c)
		args = append(args, a...)
	}
	term := func(kind, value string) {
		cond(`(r.node, r.seq) IN (SELECT t.node, t.seq FROM audit_terms t WHERE t.kind = ? AND t.value = ?)`, kind, text(value))
	}
	if !q.From.IsZero() {
		cond(`r.time_ns >= ?`, q.From.UnixNano())
	}
	if !q.To.IsZero() {
		cond(`r.time_ns < ?`, q.To.UnixNano())
	}
	if q.Node != "" {
		cond(`r.node = ?`, q.Node)
	}
	if q.Sender != "" {
		switch s := strings.TrimSpace(q.Sender); {
		case s == "<>":
			cond(`r.sender = ''`)
		case strings.HasPrefix(s, "@"):
			cond(`r.sender_domain = ?`, text(strings.ToLower(s[1:])))
		default:
			cond(`r.sender = ?`, text(normAddr(s)))
		}
	}
	if q.Recipient != "" {
		if s := strings.TrimSpace(q.Recipient); strings.HasPrefix(s, "@") {
			term(termRcptDomain, strings.ToLower(s[1:]))
		} else {
			term(termRcpt, normAddr(s))
		}
	}
	if q.User != "" {
		term(termUser, normAddr(q.User))
	}
	if q.Mailbox != "" {
		cond(`r.mailbox = ?`, text(q.Mailbox))
	}
	if q.MessageID != "" {
		cond(`r.message_id = ?`, text(normMessageID(q.MessageID)))
	}
	if q.Digest != "" {
		term(termDigest, strings.ToLower(strings.TrimSpace(q.Digest)))
	}
	if q.Action != "" {
		cond(`r.action = ?`, q.Action)
	}
	if q.Event != "" {
		cond(`r.event = ?`, q.Event)
	} else {
		cond(`r.event <> ?`, string(audit.EventOutcome))
	}
	if q.Policy != "" {
		term(termPolicy, q.Policy)
	}
	if q.Plugin != "" {
		term(termPlugin, q.Plugin)
	}
	if q.Tag != "" {
		term(termTag, q.Tag)
	}
	if q.MinScore != nil {
		cond(`r.score >= ?`, *q.MinScore)
	}
	if q.MaxScore != nil {
		cond(`r.score <= ?`, *q.MaxScore)
	}
	if q.Listener != "" {
		cond(`r.listener = ?`, text(q.Listener))
	}
	if q.Protocol != "" {
		cond(`r.protocol = ?`, q.Protocol)
	}
	if q.Withheld != "" {
		cond(`r.withheld = ?`, text(q.Withheld))
	}
	if q.Quarantine != "" {
		term(termQuarantine, strings.TrimSpace(q.Quarantine))
	}
	return strings.Join(conds, " AND "), args
}

// Search returns the records that match q, newest first (by time, then node, then seq).
func (ix *Index) Search(ctx context.Context, q Query) ([]Row, error) {
	if q.Limit < 0 || q.Offset < 0 {
		return nil, fmt.Errorf("auditindex: negative limit or offset")
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	where, args := q.where()
	stmt := `SELECT ` + rowColumns + ` FROM audit_records r WHERE ` + where +
		` ORDER BY r.time_ns DESC, r.node, r.seq DESC LIMIT ? OFFSET ?`
	rows, err := ix.db.QueryContext(ctx, ix.d.rebind(stmt), append(args, limit, q.Offset)...)
	if err != nil {
		return nil, fmt.Errorf("auditindex: search: %w", err)
	}
	out, err := scanRows(rows)
	if err != nil {
		return nil, fmt.Errorf("auditindex: search: %w", err)
	}
	return out, nil
}

// Count returns how many records match q.
func (ix *Index) Count(ctx context.Context, q Query) (int64, error) {
	where, args := q.where()
	var n int64
	err := ix.db.QueryRowContext(ctx, ix.d.rebind(`SELECT COUNT(*) FROM audit_records r WHERE `+where), args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("auditindex: count: %w", err)
	}
	return n, nil
}

// scanRows reads rows of rowColumns and closes them.
func scanRows(rows *sql.Rows) ([]Row, error) {
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var (
			r          Row
			seq        int64
			outcomeSeq sql.NullInt64
			outcome    sql.NullString
		)
		if err := rows.Scan(&r.Node, &seq, &r.Line, &outcomeSeq, &outcome); err != nil {
			return nil, err
		}
		r.Seq = uint64(seq)
		if err := json.Unmarshal(r.Line, &r.Record); err != nil {
			return nil, fmt.Errorf("%s seq %d: the stored line is not a record: %w", r.Node, r.Seq, err)
		}
		if outcome.Valid {
			var reply audit.Reply
			if err := json.Unmarshal([]byte(outcome.String), &reply); err == nil {
				r.Outcome, r.OutcomeSeq = &reply, uint64(outcomeSeq.Int64)
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
