package auditindex

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/postern/postern/proxy/audit"
)

// Line is one record's line as the log has it (without its newline) and its seq.
type Line struct {
	Seq  uint64
	Data []byte
}

// Term kinds of audit_terms.
const (
	termRcpt       = "rcpt"        // every recipient (rcpts, rcpt, rcpts_added), normalised
	termRcptDomain = "rcpt_domain" // their domains
	termUser       = "user"        // auth_user and mailbox_user
	termDigest     = "digest"      // sha256_in, sha256_out, sha256_served
	termPolicy     = "policy"      // policies that matched
	termPlugin     = "plugin"      // plugins that ran
	termTag        = "tag"         // every tag, as "name" and as "name=value"
	// termQuarantine is a quarantine entry's ID: of a withheld message (withheld), of a quarantine event
	// (quarantine.id), and on the decision record that event names (quarantine.decision_seq).
	termQuarantine = "quarantine"
)

// quarantineRef is the part of a quarantine event record the index reads. It is decoded from the line by its JSON
// names, so the index follows the record format rather than a Go type.
type quarantineRef struct {
	Quarantine *struct {
		ID          string `json:"id"`
		DecisionSeq uint64 `json:"decision_seq"`
	} `json:"quarantine"`
}

// Add indexes lines of node's chain, in one transaction, and moves node's last indexed record to the last of
// them. Lines already indexed are left as they are, so adding a line twice is harmless. A line that is not a
// record is an error and nothing is added.
func (ix *Index) Add(ctx context.Context, node string, lines []Line) error {
	if len(lines) == 0 {
		return nil
	}
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("auditindex: %w", err)
	}
	defer tx.Rollback()
	insRec, err := tx.PrepareContext(ctx, ix.d.rebind(`INSERT INTO audit_records (node, seq, time_ns, event, listener,
		protocol, direction, client_ip, sender, sender_domain, mailbox, message_id, action, score, size, withheld,
		hash, line) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node, seq) DO NOTHING`))
	if err != nil {
		return fmt.Errorf("auditindex: %w", err)
	}
	defer insRec.Close()
	insTerm, err := tx.PrepareContext(ctx, ix.d.rebind(`INSERT INTO audit_terms (kind, value, node, seq)
		VALUES (?, ?, ?, ?) ON CONFLICT (kind, value, node, seq) DO NOTHING`))
	if err != nil {
		return fmt.Errorf("auditindex: %w", err)
	}
	defer insTerm.Close()
	setOutcome, err := tx.PrepareContext(ctx, ix.d.rebind(`UPDATE audit_records SET outcome_seq = ?, outcome = ?
		WHERE node = ? AND seq = ?`))
	if err != nil {
		return fmt.Errorf("auditindex: %w", err)
	}
	defer setOutcome.Close()
	var last audit.Record
	for _, l := range lines {
		var r audit.Record
		if err := json.Unmarshal(l.Data, &r); err != nil {
			return fmt.Errorf("auditindex: %s seq %d: not a record: %w", node, l.Seq, err)
		}
		if r.Seq != l.Seq {
			return fmt.Errorf("auditindex: %s: the line given as seq %d has seq %d", node, l.Seq, r.Seq)
		}
		res, err := insRec.ExecContext(ctx, node, int64(r.Seq), r.Time.UnixNano(), text(string(r.Event)),
			opt(r.Listener), opt(r.Protocol), opt(r.Direction), opt(r.ClientIP), sender(r.MailFrom),
			senderDomain(r.MailFrom), opt(r.Mailbox), opt(normMessageID(r.MessageID)), opt(r.Action), r.Score,
			r.Size, opt(r.Withheld), r.Hash, bytes.Clone(l.Data))
		if err != nil {
			return fmt.Errorf("auditindex: %s seq %d: %w", node, r.Seq, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			last = r
			continue // indexed before
		}
		for _, t := range terms(&r) {
			if _, err := insTerm.ExecContext(ctx, t[0], t[1], node, int64(r.Seq)); err != nil {
				return fmt.Errorf("auditindex: %s seq %d: %w", node, r.Seq, err)
			}
		}
		var qr quarantineRef
		if err := json.Unmarshal(l.Data, &qr); err == nil && qr.Quarantine != nil && qr.Quarantine.ID != "" {
			// The decision that stored the entry finds its release, deletion or expiry by the same ID.
			for _, seq := range []uint64{r.Seq, qr.Quarantine.DecisionSeq} {
				if seq == 0 || seq > r.Seq {
					continue
				}
				if _, err := insTerm.ExecContext(ctx, termQuarantine, text(qr.Quarantine.ID), node, int64(seq)); err != nil {
					return fmt.Errorf("auditindex: %s seq %d: %w", node, r.Seq, err)
				}
			}
		}
		if r.Event == audit.EventOutcome && r.Pending != 0 && r.Reply != nil {
			reply, _ := json.Marshal(r.Reply)
			if _, err := setOutcome.ExecContext(ctx, int64(r.Seq), text(string(reply)), node, int64(r.Pending)); err != nil {
				return fmt.Errorf("auditindex: %s seq %d: %w", node, r.Seq, err)
			}
		}
		last = r
	}
	if _, err := tx.ExecContext(ctx, ix.d.rebind(`INSERT INTO audit_nodes (node, seq, hash) VALUES (?, ?, ?)
		ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, hash = excluded.hash WHERE excluded.seq > audit_nodes.seq`),
		node, int64(last.Seq), last.Hash); err != nil {
		return fmt.Errorf("auditindex: %s: %w", node, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("auditindex: %s: %w", node, err)
	}
	return nil
}

// terms lists the (kind, value) pairs of r for audit_terms, without duplicates.
func terms(r *audit.Record) [][2]string {
	var out [][2]string
	add := func(kind, v string) {
		if v != "" {
			out = append(out, [2]string{kind, text(v)})
		}
	}
	rcpts := append(append(slices.Clip(r.Rcpts), r.RcptsAdded...), r.Rcpt)
	for _, a := range rcpts {
		a = normAddr(a)
		add(termRcpt, a)
		add(termRcptDomain, domainOf(a))
	}
	add(termUser, normAddr(r.AuthUser))
	add(termUser, strings.ToLower(strings.TrimSpace(r.MailboxUser)))
	add(termQuarantine, r.Withheld)
	for _, d := range []string{r.SHA256In, r.SHA256Out, r.SHA256Served} {
		add(termDigest, strings.ToLower(d))
	}
	tags := func(m map[string]string) {
		for k, v := range m {
			add(termTag, k)
			add(termTag, k+"="+v)
		}
	}
	tags(r.Tags)
	for _, p := range r.Policies {
		if p.Matched {
			add(termPolicy, p.Name)
		}
		for _, pl := range p.Plugins {
			add(termPlugin, pl.Name)
			tags(pl.Tags)
		}
	}
	slices.SortFunc(out, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	return slices.Compact(out)
}

// text makes s storable as text in both databases: PostgreSQL refuses NUL in text, which a client can put in a
// JSON string as \u0000. The line itself is stored as bytes, unchanged.
func text(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// opt is s as a nullable column: NULL when empty.
func opt(s string) sql.NullString {
	return sql.NullString{String: text(s), Valid: s != ""}
}

// sender is the normalised envelope sender: "" for the null reverse path, NULL when none was given.
func sender(from *string) sql.NullString {
	if from == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: text(normAddr(*from)), Valid: true}
}

func senderDomain(from *string) sql.NullString {
	if from == nil {
		return sql.NullString{}
	}
	return opt(domainOf(normAddr(*from)))
}
