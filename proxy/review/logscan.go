package review

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/postern/postern/proxy/audit"
)

// LogScan answers decision searches by reading the audit log files, oldest first, keeping the newest matches.
// It needs no index and costs a read of the whole log per search: for a small site or until an index is
// configured.
type LogScan struct {
	Path string // the active log file; rotated files beside it are read too
}

// maxRecordLine bounds one line of the log (a record is at most 1 MiB).
const maxRecordLine = 2 << 20

// maxScanWindow bounds what a search of the log keeps in memory (Limit + Offset records).
const maxScanWindow = 10000

// Search returns the records matching q, newest first.
func (s LogScan) Search(ctx context.Context, q DecisionQuery) ([]DecisionRow, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	keep := min(limit+max(q.Offset, 0), maxScanWindow)
	ring := make([]DecisionRow, 0, keep)
	err := s.scan(ctx, func(r *audit.Record) bool {
		if !Matches(r, q) {
			return true
		}
		if len(ring) == keep {
			copy(ring, ring[1:])
			ring = ring[:keep-1]
		}
		ring = append(ring, DecisionRow{Record: *r})
		return true
	})
	slices.Reverse(ring)
	if q.Offset >= len(ring) {
		return nil, err
	}
	ring = ring[max(q.Offset, 0):]
	return ring[:min(limit, len(ring))], err
}

// Record returns the record with that seq; node must be "" (the log is this node's).
func (s LogScan) Record(ctx context.Context, node string, seq uint64) (*DecisionRow, error) {
	if node != "" {
		return nil, ErrNotFound
	}
	var found *DecisionRow
	err := s.scan(ctx, func(r *audit.Record) bool {
		if r.Seq == seq {
			found = &DecisionRow{Record: *r}
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, ErrNotFound
	}
	return found, nil
}

func (s LogScan) scan(ctx context.Context, fn func(*audit.Record) bool) error {
	files, err := audit.ChainFiles(s.Path)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			if os.IsNotExist(err) {
				continue // rotated away meanwhile
			}
			return fmt.Errorf("audit log: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), maxRecordLine)
		n := 0
		for sc.Scan() {
			if n++; n%4096 == 0 && ctx.Err() != nil {
				f.Close()
				return ctx.Err()
			}
			var r audit.Record
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				continue // a line cut short by a crash; `postern audit verify` reports it
			}
			if !fn(&r) {
				f.Close()
				return nil
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return fmt.Errorf("audit log %s: %w", name, err)
		}
	}
	return nil
}

// Matches reports whether r is selected by q's filters (Node, Limit and Offset aside).
func Matches(r *audit.Record, q DecisionQuery) bool {
	if q.Event != "" && string(r.Event) != q.Event || q.Event == "" && r.Event == audit.EventOutcome {
		// An outcome's reply is shown with the pending record it completes.
		return false
	}
	if !q.From.IsZero() && r.Time.Before(q.From) || !q.To.IsZero() && !r.Time.Before(q.To) {
		return false
	}
	eq := strings.EqualFold
	if q.Sender != "" && (r.MailFrom == nil || !eq(*r.MailFrom, q.Sender)) {
		return false
	}
	if q.Recipient != "" && !slices.ContainsFunc(r.Rcpts, func(s string) bool { return eq(s, q.Recipient) }) &&
		!eq(r.Rcpt, q.Recipient) {
		return false
	}
	if q.User != "" && !eq(r.AuthUser, q.User) && !eq(r.MailboxUser, q.User) {
		return false
	}
	if q.Mailbox != "" && r.Mailbox != q.Mailbox {
		return false
	}
	if q.MessageID != "" && strings.Trim(r.MessageID, "<>") != strings.Trim(q.MessageID, "<> ") {
		return false
	}
	if q.Digest != "" && !eq(r.SHA256In, q.Digest) && !eq(r.SHA256Out, q.Digest) && !eq(r.SHA256Served, q.Digest) {
		return false
	}
	if q.Action != "" && r.Action != q.Action {
		return false
	}
	if q.Listener != "" && r.Listener != q.Listener {
		return false
	}
	if q.Protocol != "" && r.Protocol != q.Protocol {
		return false
	}
	if q.Tag != "" {
		name, value, hasValue := strings.Cut(q.Tag, "=")
		v, ok := r.Tags[name]
		if !ok || hasValue && v != value {
			return false
		}
	}
	if q.Policy != "" || q.Plugin != "" {
		ok := false
		for _, p := range r.Policies {
			if !p.Matched || q.Policy != "" && p.Name != q.Policy {
				continue
			}
			if q.Plugin == "" || slices.ContainsFunc(p.Plugins, func(pl audit.Plugin) bool { return pl.Name == q.Plugin }) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
