package audit

import (
	"maps"
	"math"
	"time"

	"github.com/postern/postern/proxy/field"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// Facts are what the protocol session knows about a message beyond the policy's Decision.
type Facts struct {
	// Time is when the decision was made; zero means when Append runs.
	Time time.Time
	// Session identifies the client session in Postern's operational log.
	Session string
	// SHA256In is the hex SHA-256 of the message as received. SHA256Out is that of the message as sent on; it is
	// recorded only when it differs, so callers may set it always.
	SHA256In, SHA256Out string
	// Reply is the reply the client was given (for SMTP the upstream's, when the message went on).
	Reply Reply
	// SHA256Served is, at retrieval, the hex SHA-256 of the bytes the client was served (the message, its changed
	// version, or the notice in its place); Withheld is the quarantine entry that keeps a withheld original.
	SHA256Served, Withheld string
}

// NewRecord builds the record of one decision: the envelope and Message-ID from in (either may be nil, as may
// in.Msg for envelope stages), the policy's work from d, the rest from f.
//
// It keeps only what the record format lists: no header other than Message-ID, no body, no plugin log lines, and
// for changes only their kind, place and size. It copies what it keeps, so in and d may be reused afterwards.
func NewRecord(in *pluginhost.Input, d *policy.Decision, f Facts) *Record {
	r := &Record{
		Event:     EventDecision,
		Time:      f.Time,
		Session:   f.Session,
		SHA256In:  f.SHA256In,
		SHA256Out: f.SHA256Out,
		// What was served is recorded even when it is the message as received: it says what the client got.
		SHA256Served: f.SHA256Served,
		Withheld:     clip(f.Withheld),
	}
	if r.SHA256Out == r.SHA256In {
		r.SHA256Out = ""
	}
	if f.Reply != (Reply{}) {
		reply := f.Reply
		r.Reply = &reply
	}
	if in != nil {
		env := &in.Env
		r.Listener, r.Protocol, r.Direction = env.Listener, env.Protocol, env.Direction
		r.ClientIP, r.TLS, r.AuthUser = env.ClientIP, env.TLSVersion, clip(env.AuthUser)
		// A relay has an envelope; a mailbox protocol has a mailbox instead (the field table's families).
		if field.FamilyOf(env.Protocol) == field.Relay {
			if env.HasMailFrom {
				from := clip(env.MailFrom)
				r.MailFrom = &from
			}
			r.Rcpts = clipAll(env.Rcpts)
			r.Rcpt = clip(in.RcptCurrent)
		} else {
			r.MailboxUser, r.Mailbox, r.UIDL = clip(env.MailboxUser), clip(env.Mailbox), clip(env.UIDL)
			r.UID, r.UIDValidity, r.Command = env.UID, env.UIDValidity, env.Command
		}
		if in.Msg != nil {
			r.Size = in.Msg.Size()
			if ids := in.Msg.HeaderValues(0, "Message-ID", false); len(ids) > 0 {
				r.MessageID = clip(ids[0])
			}
			r.Malformed = message.DefectKinds(in.Msg.Defects())
			r.Ambiguous = message.DefectKinds(in.Msg.Ambiguities())
			r.LimitExceeded = in.Msg.LimitExceeded()
		}
	}
	if d == nil {
		return r
	}
	r.Hook = d.Hook.String()
	r.Action = d.Action.String()
	r.ConfigVersion = d.ConfigVersion
	r.Score = BoundScore(d.Score)
	r.Tags = maps.Clone(d.Tags)
	r.DurationNS = int64(d.Duration)
	if d.Changes != nil {
		r.Changes = changes(d.Changes.List())
		r.RcptsAdded = clipAll(d.Changes.Recipients())
	}
	r.Policies = make([]Policy, len(d.Policies))
	for i, pt := range d.Policies {
		p := Policy{Name: pt.Name, Mode: string(pt.Mode), Matched: pt.Matched}
		if pt.Matched {
			// An unmatched policy did nothing; its name says it was considered.
			p.Action, p.Score, p.Threshold = pt.Action.String(), BoundScore(pt.Score), pt.Threshold
		}
		for _, pl := range pt.Plugins {
			p.Plugins = append(p.Plugins, Plugin{
				Name:       pl.Name,
				SHA256:     pl.SHA256,
				Verdict:    pl.Verdict.Kind.String(),
				Code:       pl.Verdict.Code,
				Enhanced:   pl.Verdict.Enhanced,
				Text:       pl.Verdict.Text,
				Tags:       maps.Clone(pl.Tags),
				Score:      BoundScore(pl.Score),
				Changes:    changes(pl.Changes),
				DurationNS: int64(pl.Duration),
				Error:      pl.Error,
				Skipped:    pl.Skipped,
			})
		}
		r.Policies[i] = p
	}
	return r
}

// changes describes changes without their content.
func changes(list []message.Change) []Change {
	if len(list) == 0 {
		return nil
	}
	out := make([]Change, len(list))
	for i, c := range list {
		// Name is a header name; values (a new header's, a banner, an added recipient) stay out.
		out[i] = Change{Op: string(c.Op), Name: c.Name, Part: c.Part, ContentType: c.ContentType,
			Bytes: len(c.Value) + len(c.HTML) + len(c.Content)}
	}
	return out
}

func clipAll(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = clip(s)
	}
	return out
}

// MaxScore bounds every score an audit record (and a result header) carries: a score beyond ±MaxScore is
// recorded as ±MaxScore, and NaN (which only a sum of +Inf and -Inf gives) as 0. JSON has no NaN or infinity,
// and a sum of finite plugin scores can overflow; no threshold needs a larger number.
const MaxScore = 1e9

// BoundScore returns x bounded as MaxScore says.
func BoundScore(x float64) float64 {
	switch {
	case math.IsNaN(x):
		return 0
	case x > MaxScore:
		return MaxScore
	case x < -MaxScore:
		return -MaxScore
	}
	return x
}
