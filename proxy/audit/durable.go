package audit

import (
	"errors"
	"fmt"
	"time"

	"github.com/postern/postern/proxy/metrics"
)

// observe puts an append that started at start and ended with *err in the metrics.
func observe(start time.Time, err *error) { metrics.AuditAppend(time.Since(start), *err) }

// ErrNotRecorded is wrapped by every error of Append, AppendDurable, AppendPending and Pending.Outcome: the record
// is not known to be in the log (the disk is full, a write or fsync failed, the log is closed). A caller that must
// not act on a decision without its record answers with a temporary failure (SMTP: 451 4.3.0) and does not act;
// the client retries later, when the record can be written.
var ErrNotRecorded = errors.New("audit record not written")

// AppendDurable writes r as the next record and returns once it is on disk (fsynced), whatever SyncInterval
// says; concurrent callers share fsyncs. Use it for a decision that must be on record before it is acted on: a
// nil error means a power loss cannot take the record. An error wraps ErrNotRecorded and the cause (for a full
// disk, syscall.ENOSPC); the record may or may not be in the file, and the chain stays valid either way: the next
// Append reopens the log, removing a partial line with a recovery record.
func (l *Log) AppendDurable(r *Record) (err error) {
	defer observe(time.Now(), &err)
	seq, err := l.append(r)
	if err != nil {
		return err
	}
	if err := l.syncUpTo(seq); err != nil {
		return fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	return nil
}

// Pending is a decision on record before its outcome is known; see AppendPending.
type Pending struct {
	log     *Log
	seq     uint64
	session string
	done    bool
}

// Seq is the pending record's seq.
func (p *Pending) Seq() uint64 { return p.seq }

// AppendPending writes r durably (as AppendDurable) as an EventPending record, for a decision whose reply is not
// known yet: the SMTP relay writes it before it sends a message on, so that no message is delivered without its
// record, and completes it with Outcome once the upstream has answered. A pending record without an outcome
// (Postern stopped in between) says the message may or may not have been delivered. An error wraps ErrNotRecorded:
// do not act on the decision.
func (l *Log) AppendPending(r *Record) (*Pending, error) {
	r.Event = EventPending
	if err := l.AppendDurable(r); err != nil {
		return nil, err
	}
	return &Pending{log: l, seq: r.Seq, session: r.Session}, nil
}

// Outcome appends the EventOutcome record of p: what the client was told. It is written as Append writes (with
// SyncInterval's durability): the decision itself is already on disk. Calling it twice is an error.
func (p *Pending) Outcome(reply Reply) error {
	if p.done {
		return fmt.Errorf("%w: audit: the outcome of record %d is already written", ErrNotRecorded, p.seq)
	}
	rec := &Record{Event: EventOutcome, Session: p.session, Pending: p.seq, Reply: &reply}
	if err := p.log.Append(rec); err != nil {
		return err
	}
	p.done = true
	return nil
}

// UnavailableReply is what a client is told when its decision cannot be recorded: a temporary failure, so that
// a sending server keeps the message and retries. docs/AUDIT.md documents it.
var UnavailableReply = Reply{Code: 451, Enhanced: "4.3.0", Text: "Audit log unavailable, try again later"}
