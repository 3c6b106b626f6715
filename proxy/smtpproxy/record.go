package smtpproxy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// audit appends the record of one decision. Accepts at envelope stages are not recorded (every RCPT would make a
// line); every message decision is.
func (cs *connState) audit(t *txn, d *policy.Decision, reply *smtp.SMTPError) {
	a := cs.srv.opts.Audit
	if a == nil || d == nil {
		return
	}
	rec := cs.record(t, d, reply)
	if err := a.Append(rec); err != nil {
		cs.log().Error("audit record not written", "err", err, "hook", d.Hook.String())
	}
}

// record builds the audit record of a decision: the session's facts, the transaction's and the policy's trace.
// Message content never enters it: only sizes, digests and the Message-ID.
func (cs *connState) record(t *txn, d *policy.Decision, reply *smtp.SMTPError) *audit.Record {
	env := cs.envelope()
	rec := &audit.Record{
		Event:         audit.EventDecision,
		Time:          time.Now().UTC(),
		Session:       cs.id,
		Listener:      env.Listener,
		Protocol:      env.Protocol,
		Direction:     env.Direction,
		ClientIP:      env.ClientIP,
		TLS:           env.TLSVersion,
		AuthUser:      env.AuthUser,
		Hook:          d.Hook.String(),
		ConfigVersion: d.ConfigVersion,
		Action:        d.Action.String(),
		Score:         d.Score,
		Tags:          d.Tags,
		DurationNS:    int64(d.Duration),
		Changes:       auditChanges(d.Changes),
		Policies:      auditPolicies(d.Policies),
	}
	if t != nil && t.id != "" {
		from := t.from
		rec.MailFrom = &from
		rec.Rcpts = t.rcpts
		rec.RcptsAdded = t.added
		rec.MessageID = t.msgID
		rec.Size = t.size
		rec.SHA256In = t.sumIn
		rec.SHA256Out = t.sumOut
		rec.Malformed, rec.Ambiguous, rec.LimitExceeded = t.malformed, t.ambiguous, t.limit
	}
	if reply != nil {
		rec.Reply = &audit.Reply{Code: reply.Code, Enhanced: enhanced(reply), Text: reply.Message}
	}
	return rec
}

func auditChanges(c *message.Changes) []audit.Change {
	list := c.List()
	if len(list) == 0 {
		return nil
	}
	out := make([]audit.Change, len(list))
	for i, ch := range list {
		out[i] = audit.Change{Op: string(ch.Op), Name: ch.Name, Part: ch.Part, ContentType: ch.ContentType,
			Bytes: len(ch.Value) + len(ch.HTML) + len(ch.Content)}
		if ch.Op == message.OpAddRecipient {
			out[i].Bytes = 0
		}
	}
	return out
}

func auditPolicies(ps []policy.PolicyTrace) []audit.Policy {
	if len(ps) == 0 {
		return nil
	}
	out := make([]audit.Policy, len(ps))
	for i, p := range ps {
		ap := audit.Policy{Name: p.Name, Mode: string(p.Mode), Matched: p.Matched, Action: p.Action.String(),
			Score: p.Score, Threshold: p.Threshold}
		for _, pl := range p.Plugins {
			ac := make([]audit.Change, 0, len(pl.Changes))
			for _, ch := range pl.Changes {
				ac = append(ac, audit.Change{Op: string(ch.Op), Name: ch.Name, Part: ch.Part,
					ContentType: ch.ContentType, Bytes: len(ch.Value) + len(ch.HTML) + len(ch.Content)})
			}
			ap.Plugins = append(ap.Plugins, audit.Plugin{
				Name: pl.Name, SHA256: pl.SHA256, Verdict: pl.Verdict.Kind.String(), Code: pl.Verdict.Code,
				Enhanced: pl.Verdict.Enhanced, Text: pl.Verdict.Text, Tags: pl.Tags, Score: pl.Score,
				Changes: ac, DurationNS: int64(pl.Duration), Error: pl.Error,
			})
		}
		out[i] = ap
	}
	return out
}

// quarantineRecord is written beside each quarantined message.
type quarantineRecord struct {
	ID        string           `json:"id"`
	Time      time.Time        `json:"time"`
	Listener  string           `json:"listener"`
	Session   string           `json:"session"`
	ClientIP  string           `json:"client_ip,omitempty"`
	HELO      string           `json:"helo,omitempty"`
	TLS       string           `json:"tls,omitempty"`
	AuthUser  string           `json:"auth_user,omitempty"`
	MailFrom  string           `json:"mail_from"`
	Rcpts     []string         `json:"rcpts"`
	MessageID string           `json:"message_id,omitempty"`
	Size      int64            `json:"size"`
	SHA256    string           `json:"sha256"`
	Decision  *policy.Decision `json:"decision"`
}

// quarantine stores the message as received, and its decision, in the quarantine directory. Both files are
// written under temporary names, synced and renamed, the record last, so a NAME.json always has its NAME.eml.
func (s *session) quarantine(sp *spool, d *policy.Decision) *smtp.SMTPError {
	cs := s.cs
	t := s.txn
	dir := cs.srv.opts.QuarantineDir
	if dir == "" {
		cs.log().Error("quarantine verdict but no quarantine_dir configured; deferring the message", "txn", t.id)
		return cs.countError(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
			Message: "Requested action aborted: local error in processing"})
	}
	env := cs.envelope()
	now := time.Now().UTC()
	name := now.Format("20060102T150405Z") + "-" + t.id
	rec := quarantineRecord{ID: t.id, Time: now, Listener: env.Listener, Session: cs.id, ClientIP: env.ClientIP,
		HELO: env.HELO, TLS: env.TLSVersion, AuthUser: env.AuthUser, MailFrom: t.from, Rcpts: t.rcpts,
		MessageID: t.msgID, Size: t.size, SHA256: t.sumIn, Decision: d}
	js, err := json.MarshalIndent(rec, "", "  ")
	if err == nil {
		err = writeFileSync(filepath.Join(dir, name+".eml"), func(f *os.File) error {
			_, err := f.ReadFrom(sp.Reader())
			return err
		})
	}
	if err == nil {
		err = writeFileSync(filepath.Join(dir, name+".json"), func(f *os.File) error {
			_, err := f.Write(append(js, '\n'))
			return err
		})
	}
	if err != nil {
		cs.log().Error("quarantining failed; deferring the message", "txn", t.id, "err", err)
		return cs.countError(localError())
	}
	cs.log().Info("message quarantined", "txn", t.id, "file", filepath.Join(dir, name+".eml"))
	if d.Code >= 400 && d.Code < 600 {
		// The policy may want the sender told (for example 550 "held for review").
		if e := refusal(&policy.Decision{Hook: d.Hook, Action: codeAction(d.Code), Code: d.Code,
			Enhanced: d.Enhanced, Text: d.Text}); e != nil {
			return cs.countError(e)
		}
	}
	return accepted(t.id)
}

func codeAction(code int) pluginhost.Kind {
	if code/100 == 4 {
		return pluginhost.Tempfail
	}
	return pluginhost.Reject
}

// writeFileSync creates path (mode 0600) through a temporary name, fills it, syncs it and renames it.
func writeFileSync(path string, fill func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
