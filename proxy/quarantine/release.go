package quarantine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/postern/postern/proxy/audit"
)

// Route delivers released messages: SMTPRoute (SMTP or LMTP) and IMAPRoute (APPEND with an administrative login).
type Route interface {
	// Deliver delivers msg, size bytes (the trace field followed by the original), for entry m, and returns the
	// server's final reply. An error means it was not delivered. A *ReplyError carries the server's refusal.
	Deliver(ctx context.Context, m *Meta, msg io.Reader, size int64) (reply string, err error)
	// String describes the route for logs and audit records: "smtp 192.0.2.1:25", "imap 192.0.2.1:143 INBOX".
	String() string
}

// Router chooses the route that releases an entry: the configuration maps listeners to routes (an SMTP-time entry
// goes through its listener's upstream; a retrieval-time one through the route configured for its listener).
type Router interface {
	Route(m *Meta) (Route, error)
}

// RouterFunc is a Router that is a function.
type RouterFunc func(m *Meta) (Route, error)

// Route calls f.
func (f RouterFunc) Route(m *Meta) (Route, error) { return f(m) }

// ErrNoRoute is wrapped by Release's error when no route is configured for the entry.
var ErrNoRoute = errors.New("no release route")

// DefaultReleaseTimeout bounds one release when the context has no deadline.
const DefaultReleaseTimeout = 2 * time.Minute

// Release delivers an entry through its route: an SMTP-time entry as received to its original recipients, a
// retrieval-time one as a new message in its user's mailbox, each with a Received: field saying who released it
// and when. The release is on record (durably) before the delivery and its outcome after it; the entry stays,
// marked released, until it is deleted or expires. Releasing an entry twice is refused (ErrAlreadyReleased).
func (s *Store) Release(ctx context.Context, id string, who Actor, reason string) (*Meta, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("quarantine: %q: %w", id, ErrInvalidID)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultReleaseTimeout)
		defer cancel()
	}
	unlock, err := s.lock(id)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %s: %w", id, err)
	}
	defer unlock()
	m, err := s.read(id)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %s: %w", id, err)
	}
	if r := m.Released; r != nil {
		return m, fmt.Errorf("quarantine: %s: %w at %s by %s", id, ErrAlreadyReleased,
			r.Time.Format(time.RFC3339), Actor{r.Actor, r.Via})
	}
	if m.Orphan {
		return nil, fmt.Errorf("quarantine: %s: %w: the entry has no metadata, so its recipients are unknown", id, ErrNoRoute)
	}
	if s.opts.Routes == nil {
		return nil, fmt.Errorf("quarantine: %s: %w", id, ErrNoRoute)
	}
	route, err := s.opts.Routes.Route(m)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %s: %w", id, err)
	}
	f, err := s.Message(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}

	now := s.now().UTC()
	rec := actionRecord(audit.EventQuarantineRelease, m, who, reason)
	rec.Quarantine.Route = route.String()
	if err := s.record(rec); err != nil {
		return nil, fmt.Errorf("quarantine: %s not released: %w", id, err)
	}
	trace := TraceField(s.opts.Hostname, m, who, now)
	reply, derr := route.Deliver(ctx, m, io.MultiReader(strings.NewReader(trace), f), int64(len(trace))+fi.Size())
	s.outcome(rec.Seq, reply, derr)
	if derr != nil {
		s.log.Warn("quarantine release failed", "id", id, "route", route.String(), "by", who.String(), "err", derr)
		return nil, fmt.Errorf("quarantine: releasing %s through %s: %w", id, route, derr)
	}
	m.Released = &Released{Time: now, Actor: who.Name, Via: who.Via, Reason: reason, Route: route.String(),
		Reply: reply, AuditSeq: rec.Seq}
	if err := s.writeMeta(m); err != nil {
		// Delivered and on record; only the mark is missing, and the audit log has it.
		s.log.Error("quarantine: released, but the entry could not be marked", "id", id, "err", err)
	}
	s.log.Info("quarantine entry released", "id", id, "route", route.String(), "by", who.String(),
		"reason", reason, "reply", reply, "audit_seq", rec.Seq)
	return m, nil
}

// outcome appends the outcome record of a release (the route's reply, or the error as a temporary failure).
func (s *Store) outcome(seq uint64, reply string, err error) {
	if s.opts.Audit == nil || seq == 0 {
		return
	}
	r := replyOf(reply, err)
	if aerr := s.opts.Audit.Append(&audit.Record{Event: audit.EventOutcome, Pending: seq, Reply: &r}); aerr != nil {
		s.log.Error("quarantine: the outcome of a release was not recorded", "audit_seq", seq, "err", aerr)
	}
}

// replyOf turns a route's reply into the audit record's: "250 2.0.0 text" has a code, "OK text" a status.
func replyOf(reply string, err error) audit.Reply {
	if err != nil {
		reply = err.Error()
		var re *ReplyError
		if errors.As(err, &re) {
			reply = re.Reply
		} else {
			return audit.Reply{Code: 451, Enhanced: "4.4.0", Text: clipText(reply)}
		}
	}
	code, rest, _ := strings.Cut(reply, " ")
	var n int
	if _, serr := fmt.Sscanf(code, "%d", &n); serr == nil && n >= 200 && n < 600 && len(code) == 3 {
		r := audit.Reply{Code: n, Text: rest}
		if enh, text, ok := strings.Cut(rest, " "); ok && strings.Count(enh, ".") == 2 && enh[0] >= '2' && enh[0] <= '5' {
			r.Enhanced, r.Text = enh, text
		}
		r.Text = clipText(r.Text)
		return r
	}
	return audit.Reply{Status: code, Text: clipText(rest)}
}

func clipText(s string) string {
	if len(s) > 512 {
		return s[:512]
	}
	return s
}

// ReplyError is a delivery the server refused: Reply is its reply line ("550 5.1.1 No such user", "NO [OVERQUOTA]
// Quota exceeded").
type ReplyError struct {
	Reply string
}

func (e *ReplyError) Error() string { return "refused: " + e.Reply }

// TraceField is the Received: field a release puts on top of the message (RFC 5321 §4.4 syntax, the release
// in comments): who released it and when, and the entry it came from. The rest of the message is not touched, so
// its DKIM signatures still verify.
func TraceField(hostname string, m *Meta, who Actor, now time.Time) string {
	if hostname == "" {
		hostname = "localhost"
	}
	var b strings.Builder
	b.WriteString("Received: by ")
	b.WriteString(traceAtom(hostname))
	b.WriteString(" (Postern quarantine) with ")
	if m.Stage == StageSMTP {
		b.WriteString("ESMTP")
	} else {
		b.WriteString("LOCAL")
	}
	b.WriteString(" id ")
	b.WriteString(traceAtom(m.ID))
	b.WriteString("\r\n\t(released by ")
	b.WriteString(traceComment(who.Name))
	if who.Via != "" {
		b.WriteString(" via ")
		b.WriteString(traceComment(who.Via))
	}
	b.WriteString(", held since ")
	b.WriteString(m.Time.UTC().Format(time.RFC1123Z))
	b.WriteString(");\r\n\t")
	b.WriteString(now.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return b.String()
}

// traceAtom keeps what may appear as a domain or atom in a Received: field.
func traceAtom(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// traceComment makes s safe inside a header comment: printable ASCII without parentheses or backslashes, at most
// 64 bytes.
func traceComment(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if b.Len() >= 64 {
			break
		}
		switch {
		case c == '(' || c == ')' || c == '\\':
			b.WriteByte('_')
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}
