package review

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/postern/postern/proxy/auditindex"
	"github.com/postern/postern/proxy/quarantine"
)

// Store is the quarantine store as the pages use it.
type Store struct{ S *quarantine.Store }

var _ Quarantine = Store{}

func entryOf(m *quarantine.Meta) Entry {
	e := Entry{ID: m.ID, Time: m.Time, Listener: m.Listener, Protocol: m.Protocol, Stage: m.Stage, Policy: m.Policy,
		Plugin: m.Plugin, Verdict: m.Verdict, Sender: m.MailFrom, Rcpts: m.Rcpts, User: m.MailboxUser,
		Mailbox: m.Mailbox, MessageID: m.MessageID, Subject: m.Subject, Size: m.Size, SHA256: m.SHA256,
		AuditSeq: m.AuditSeq, AuditHash: m.AuditHash}
	if e.User == "" && m.Stage != quarantine.StageSMTP {
		e.User = m.AuthUser
	}
	if r := m.Released; r != nil {
		e.State = fmt.Sprintf("released %s by %s: %s", r.Time.UTC().Format("2006-01-02 15:04:05Z"), r.Actor, r.Reason)
	}
	if m.Orphan {
		e.State = "metadata lost (only the message file is left)"
	}
	return e
}

func storeErr(err error) error {
	if errors.Is(err, quarantine.ErrNotFound) || errors.Is(err, quarantine.ErrInvalidID) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

// List lists the entries f selects, newest first.
func (s Store) List(_ context.Context, f QuarantineFilter) ([]Entry, error) {
	ms, err := s.S.List(quarantine.Filter{Since: f.From, Until: f.To, Listener: f.Listener, Policy: f.Policy,
		Sender: f.Sender, Recipient: f.Recipient, User: f.User, MessageID: f.MessageID, Limit: f.Limit})
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(ms))
	for i, m := range ms {
		out[i] = entryOf(m)
	}
	return out, nil
}

// Get returns one entry.
func (s Store) Get(_ context.Context, id string) (Entry, error) {
	m, err := s.S.Get(id)
	if err != nil {
		return Entry{}, storeErr(err)
	}
	return entryOf(m), nil
}

// Open opens the original message.
func (s Store) Open(_ context.Context, id string) (io.ReaderAt, int64, io.Closer, error) {
	f, err := s.S.Message(id)
	if err != nil {
		return nil, 0, nil, storeErr(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	return f, fi.Size(), f, nil
}

// Release releases the entry as the reviewer, through the web.
func (s Store) Release(ctx context.Context, id string, by Actor, reason string) (string, error) {
	m, err := s.S.Release(ctx, id, quarantine.Actor{Name: by.Name, Via: "web"}, reason)
	if err != nil {
		return "", storeErr(err)
	}
	if r := m.Released; r != nil {
		if r.Reply != "" {
			return r.Route + " (" + r.Reply + ")", nil
		}
		return r.Route, nil
	}
	return "", nil
}

// Delete deletes the entry as the reviewer, through the web.
func (s Store) Delete(_ context.Context, id string, by Actor, reason string) error {
	return storeErr(s.S.Delete(id, quarantine.Actor{Name: by.Name, Via: "web"}, reason))
}

// Index is the audit index as the pages search it. Node is this node's chain, for records asked for without one.
type Index struct {
	S    auditindex.Searcher
	Node string
}

var _ Decisions = Index{}

// Search runs q on the index.
func (x Index) Search(ctx context.Context, q DecisionQuery) ([]DecisionRow, error) {
	rows, err := x.S.Search(ctx, auditindex.Query{From: q.From, To: q.To, Node: q.Node, Sender: q.Sender,
		Recipient: q.Recipient, User: q.User, Mailbox: q.Mailbox, MessageID: q.MessageID, Digest: q.Digest,
		Action: q.Action, Event: q.Event, Policy: q.Policy, Plugin: q.Plugin, Tag: q.Tag, Listener: q.Listener,
		Protocol: q.Protocol, Limit: q.Limit, Offset: q.Offset})
	if err != nil {
		return nil, err
	}
	out := make([]DecisionRow, len(rows))
	for i, r := range rows {
		out[i] = DecisionRow{Node: r.Node, Record: r.Record, Outcome: r.Outcome}
	}
	return out, nil
}

// Record returns node's record at seq (this node's when node is "").
func (x Index) Record(ctx context.Context, node string, seq uint64) (*DecisionRow, error) {
	if node == "" {
		node = x.Node
	}
	r, err := x.S.Get(ctx, node, seq)
	if errors.Is(err, auditindex.ErrNotFound) {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	return &DecisionRow{Node: r.Node, Record: r.Record, Outcome: r.Outcome}, nil
}
