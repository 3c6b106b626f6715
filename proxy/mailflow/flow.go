package mailflow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/metrics"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// Filter decides what happens at one hook of one session. *policy.Snapshot implements it; a session calls it from
// one goroutine at a time.
type Filter interface {
	Evaluate(ctx context.Context, hook pluginhost.Hook, in *pluginhost.Input) *policy.Decision
}

// FilterSource hands out the filter that is current when a session starts. The session keeps it for its whole
// life (a configuration reload affects new sessions only) and calls release when it ends.
type FilterSource interface {
	Acquire() (f Filter, release func())
}

// SnapshotSource is the hot-reload handle of the policy package: *policy.Manager implements it.
type SnapshotSource interface {
	Acquire() (*policy.Snapshot, func())
}

// Policies adapts a *policy.Manager to a FilterSource.
func Policies(src SnapshotSource) FilterSource { return snapshotSource{src} }

type snapshotSource struct{ src SnapshotSource }

func (s snapshotSource) Acquire() (Filter, func()) {
	snap, release := s.src.Acquire()
	if snap == nil {
		// A nil *Snapshot in a Filter would not compare equal to nil.
		return nil, release
	}
	return snap, release
}

// HookReporter is implemented by filters that know which hooks anything runs at. A session skips the hooks a
// filter reports as empty, which saves building the plugin input for every RCPT of a message nobody inspects.
type HookReporter interface {
	Hooks() pluginhost.HookSet
}

// Auditor receives one record per decision. *audit.Log implements it. Append is called from session goroutines,
// concurrently; an error is logged and does not change the reply (the decision was already carried out).
type Auditor interface {
	Append(rec *audit.Record) error
}

// DurableAuditor is an Auditor that can put a record on disk before the decision is acted on; *audit.Log
// implements it. With one, a front end never acknowledges a message (SMTP's 250) whose record is not durable:
// see Outcome.Pending and Outcome.RecordDurable. Their errors wrap audit.ErrNotRecorded.
type DurableAuditor interface {
	Auditor
	AppendDurable(rec *audit.Record) error
	AppendPending(rec *audit.Record) (*audit.Pending, error)
}

// Options configure a Flow. The library has no defaults of its own: the configuration package holds them, and
// every size here must be set.
type Options struct {
	// Filters supplies the policy. nil passes every message unchanged (apart from the result headers asked for).
	Filters FilterSource
	// Audit receives a record of every decision that is not a plain accept at an envelope stage; nil records
	// nothing.
	Audit Auditor
	// Quarantine keeps quarantined messages; nil answers a quarantine verdict with a temporary error (Outcome.Err)
	// rather than losing the message.
	Quarantine *Quarantine

	// SpoolDir holds messages larger than MemoryThreshold while they are filtered, in files unlinked as soon as
	// they are created.
	SpoolDir        string
	MemoryThreshold int64
	// MessageSize is the largest message accepted, in bytes; Receive refuses a larger one with ErrTooLarge.
	MessageSize int64
	// NormalizeNewlines repairs bare CR, bare LF and NUL in message content instead of refusing the message.
	NormalizeNewlines bool
	// MessageLimits bound the MIME indexing of each message.
	MessageLimits message.Limits
	// ResultHeaders adds X-Postern-Verdict, X-Postern-Score and X-Postern-Tags to every message served or sent
	// on, after removing any the message already carried.
	ResultHeaders bool
	// Logger receives the pipeline's log; nil uses slog.Default().
	Logger *slog.Logger
}

// Flow is the protocol-neutral "filter one message" pipeline of one listener. Front ends (SMTP, and the
// retrieval protocols) open a Session per client connection.
type Flow struct {
	opts Options
	log  *slog.Logger
}

// New checks the options and returns a Flow.
func New(opts Options) (*Flow, error) {
	switch {
	case opts.MemoryThreshold <= 0:
		return nil, errors.New("mailflow: MemoryThreshold must be positive")
	case opts.MessageSize <= 0:
		return nil, errors.New("mailflow: MessageSize must be positive")
	case opts.SpoolDir == "":
		return nil, errors.New("mailflow: SpoolDir must be set")
	case opts.MessageLimits == (message.Limits{}):
		return nil, errors.New("mailflow: MessageLimits must be set")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Flow{opts: opts, log: opts.Logger}, nil
}

// Options returns the options the flow was made with.
func (f *Flow) Options() Options { return f.opts }

// ErrNoPolicy is returned by Open when the filter source has no policy to give (it is closing): mail must not
// pass unchecked, so the front end refuses the session.
var ErrNoPolicy = errors.New("mailflow: no policy available")

// Session is one client session's use of the pipeline: the policy snapshot it acquired and the context its
// plugin calls run under. Its methods are called from one goroutine at a time.
type Session struct {
	flow    *Flow
	id      string
	ctx     context.Context
	filter  Filter
	hooks   pluginhost.HookSet
	release func()
	once    sync.Once
}

// Open starts a session: it acquires the policy that is current now. ctx is the session's: plugin calls stop when
// it is cancelled (the client left, or the session was cut at shutdown). id names the session in logs and audit
// records.
func (f *Flow) Open(ctx context.Context, id string) (*Session, error) {
	s := &Session{flow: f, id: id, ctx: ctx}
	if f.opts.Filters != nil {
		s.filter, s.release = f.opts.Filters.Acquire()
		if s.filter == nil {
			if s.release != nil {
				s.release()
			}
			return nil, ErrNoPolicy
		}
		s.hooks = ^pluginhost.HookSet(0)
		if hr, ok := s.filter.(HookReporter); ok {
			s.hooks = hr.Hooks()
		}
	}
	return s, nil
}

// Close releases the session's policy snapshot.
func (s *Session) Close() {
	s.once.Do(func() {
		if s.release != nil {
			s.release()
		}
	})
}

// ID is the session's identifier.
func (s *Session) ID() string { return s.id }

// Context is the context the session's plugin calls run under.
func (s *Session) Context() context.Context { return s.ctx }

// PolicyVersion identifies the configuration the session's policy comes from (the filter's Version, as
// *policy.Snapshot has it), "" when the filter has none: a front end that caches filtered messages keys them by
// it, so that a reload never serves what an older configuration decided.
func (s *Session) PolicyVersion() string {
	if v, ok := s.filter.(interface{ Version() string }); ok {
		return v.Version()
	}
	return ""
}

// Wants reports whether anything runs at hook h: when it does not, the front end may skip building its input.
func (s *Session) Wants(h pluginhost.Hook) bool {
	return s.filter != nil && s.hooks.Has(h)
}

// Stage runs the policy for an envelope or login stage. It never returns nil: a stage nothing runs at, or a nil
// decision from the filter, is an accept.
func (s *Session) Stage(h pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
	var d *policy.Decision
	if s.Wants(h) {
		d = s.filter.Evaluate(s.ctx, h, in)
	}
	if d == nil {
		return &policy.Decision{Hook: h, Action: pluginhost.Accept}
	}
	BoundScores(d)
	return d
}

// Record appends the audit record of a stage decision with the reply the client was given. Accepts at envelope
// stages are not recorded by the front ends (every RCPT would make a line); every refusal is.
func (s *Session) Record(in *pluginhost.Input, d *policy.Decision, reply audit.Reply) {
	countStage(in, d, reply)
	s.record(in, d, audit.Facts{Reply: reply}, nil)
}

// countStage counts a stage decision and its reply in the metrics.
func countStage(in *pluginhost.Input, d *policy.Decision, reply audit.Reply) {
	if in == nil || d == nil {
		return
	}
	metrics.StageDecision(in.Env.Listener, in.Env.Protocol, d.Hook.String(), d.Action.String(),
		metrics.ReplyClass(reply.Status, reply.Code))
}

// RecordDurable appends the record of a stage decision and returns once it is on disk, when the auditor is a
// DurableAuditor (otherwise it is Record). Front ends use it for a decision the client is told succeeded without
// the upstream (a recipient discarded at RCPT TO); an error wraps audit.ErrNotRecorded.
func (s *Session) RecordDurable(in *pluginhost.Input, d *policy.Decision, reply audit.Reply) error {
	da, durable := s.flow.opts.Audit.(DurableAuditor)
	if d == nil || !durable {
		s.Record(in, d, reply)
		return nil
	}
	err := da.AppendDurable(s.newRecord(in, d, audit.Facts{Reply: reply}, nil))
	if err != nil {
		reply = audit.UnavailableReply
	}
	countStage(in, d, reply)
	return err
}

// record appends a record; added, when not nil, replaces the recipients the decision added.
func (s *Session) record(in *pluginhost.Input, d *policy.Decision, f audit.Facts, added *[]string) {
	a := s.flow.opts.Audit
	if a == nil || d == nil {
		return
	}
	rec := s.newRecord(in, d, f, added)
	if err := a.Append(rec); err != nil {
		s.flow.log.Error("audit record not written", "session", s.id, "err", err, "hook", d.Hook.String())
		return
	}
	s.link(f.Withheld, rec)
}

// link records in the quarantine entry id (if any) which audit record its decision was written as.
func (s *Session) link(id string, rec *audit.Record) {
	q := s.flow.opts.Quarantine
	if id == "" || q == nil || rec.Seq == 0 {
		return
	}
	if err := q.Link(id, rec.Seq, rec.Hash); err != nil {
		s.flow.log.Warn("quarantine entry not linked to its audit record", "session", s.id, "quarantine_id", id,
			"seq", rec.Seq, "err", err)
	}
}

// newRecord builds the audit record of a decision; added, when not nil, replaces the recipients it added.
func (s *Session) newRecord(in *pluginhost.Input, d *policy.Decision, f audit.Facts, added *[]string) *audit.Record {
	f.Time = time.Now().UTC()
	f.Session = s.id
	rec := audit.NewRecord(in, d, f)
	if added != nil {
		rec.RcptsAdded = *added
	}
	return rec
}

// ErrTooLarge is returned by Receive for a message larger than Options.MessageSize.
var ErrTooLarge = errors.New("mailflow: message too large")

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// CopyBuffer lends a 32 KiB buffer from the pipeline's pool to f.
func CopyBuffer(f func(buf []byte) error) error {
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	return f(*bufp)
}

// Receive reads a message from r into a new spool, through the line guard (a bare CR, bare LF or NUL is a
// *BareNewlineError unless Options.NormalizeNewlines), bounded by Options.MessageSize (ErrTooLarge). Errors of r
// are returned as they are. The caller closes the spool.
func (s *Session) Receive(r io.Reader) (*Spool, error) {
	o := &s.flow.opts
	sp := NewSpool(o.SpoolDir, o.MemoryThreshold, o.Audit != nil || o.Quarantine != nil)
	g := LineGuard{Normalize: o.NormalizeNewlines}
	err := CopyBuffer(func(buf []byte) error {
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if werr := g.Write(sp, buf[:n]); werr != nil {
					return werr
				}
				if sp.Size() > o.MessageSize {
					return ErrTooLarge
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	if err == nil {
		err = g.Finish(sp)
	}
	if err == nil && sp.Size() > o.MessageSize {
		err = ErrTooLarge
	}
	if err != nil {
		sp.Close()
		return nil, err
	}
	return sp, nil
}

// HeaderField is a header field a front end adds to a message it sends on (SMTP's Received:).
type HeaderField struct{ Name, Value string }

// MessageInput is what the front end knows about a message besides its bytes.
type MessageInput struct {
	// In is the plugins' view of the session and envelope; Message sets In.Msg.
	In *pluginhost.Input
	// ID names the message in logs and in the quarantine (SMTP: the transaction id).
	ID string
	// Lasting marks an ID that names the message for good (IMAP: a UID of a mailbox, read in any session): a
	// quarantined copy already kept under it with the same digest is not kept again (quarantine.StoreOnce).
	Lasting bool
	// Pending is a decision taken at an envelope stage (a discard or quarantine) that is carried out on the
	// message instead of running the message stage.
	Pending *policy.Decision
	// RcptsAdded are the recipients the policy added at earlier stages, for the audit record.
	RcptsAdded []string
	// Trace are header fields the front end adds, after the policy's changes, to a message that is sent on.
	Trace []HeaderField
}

// Outcome is what the pipeline did with one message. The front end maps it to its protocol's reply, serves or
// sends Content when Action is accept, calls Record with the reply the client got, and then Close.
type Outcome struct {
	// Decision is the policy's decision, nil when no policy ran (nothing is recorded then).
	Decision *policy.Decision
	// Action is what happens to the message: Decision's action, or accept.
	Action pluginhost.Kind
	// Err is set when the action could not be carried out (the quarantine could not store the message, the
	// changes could not be applied): the front end answers a temporary error. Such an outcome is recorded too.
	Err error
	// Msg is the indexed message, nil when nothing needed it.
	Msg *message.Message
	// Size is the size of the message as received; SHA256In and SHA256Out the digests of the message as received
	// and as served or sent on (SHA256Out is "" when it went out unchanged, or without digests).
	Size                int64
	SHA256In, SHA256Out string
	// MessageID is the message's Message-ID field, if it has one and was indexed.
	MessageID string
	// QuarantineID names the stored copy when the message was quarantined.
	QuarantineID string
	// RcptsAdded are the recipients the policy added, as the audit record lists them: MessageInput.RcptsAdded,
	// which the front end may update once it knows which ones it sent on.
	RcptsAdded []string

	sess     *Session
	in       *pluginhost.Input
	original *Spool
	rendered *Spool
}

// Content returns the bytes to serve or send on: the original, or the message with the changes applied. They
// stay valid until Close.
func (o *Outcome) Content() (io.ReaderAt, int64) {
	sp := o.original
	if o.rendered != nil {
		sp = o.rendered
	}
	if sp == nil {
		return bytes.NewReader(nil), 0
	}
	return sp.ReaderAt(), sp.Size()
}

// Changed reports whether Content is a rendered copy (the policy's changes, result headers or trace fields
// applied) rather than the message as received.
func (o *Outcome) Changed() bool { return o.rendered != nil }

// Original returns the message as received.
func (o *Outcome) Original() *Spool { return o.original }

// Record appends the outcome's audit record, with the reply the client was given.
func (o *Outcome) Record(reply audit.Reply) {
	o.count(reply)
	if o.Decision == nil {
		return
	}
	o.sess.record(o.in, o.Decision, o.facts(reply), &o.RcptsAdded)
}

// Pending puts the outcome's decision on record before the message is sent on (SMTP: before the relay's DATA to
// the upstream): durably, as a pending record, when the auditor is a DurableAuditor. An error (wrapping
// audit.ErrNotRecorded) means the record is not on disk: the message must not be sent on, and the client is told
// audit.UnavailableReply. Otherwise the front end calls done with the reply the client got once the message went
// on, or failed to. With a plain Auditor, done appends the whole record then, as Record does.
func (o *Outcome) Pending() (done func(reply audit.Reply), err error) {
	a := o.sess.flow.opts.Audit
	da, durable := a.(DurableAuditor)
	if o.Decision == nil || !durable {
		return o.Record, nil
	}
	rec := o.sess.newRecord(o.in, o.Decision, o.facts(audit.Reply{}), &o.RcptsAdded)
	p, err := da.AppendPending(rec)
	if err != nil {
		o.count(audit.UnavailableReply)
		return nil, err
	}
	return func(reply audit.Reply) {
		o.count(reply)
		if err := p.Outcome(reply); err != nil {
			o.sess.flow.log.Error("audit outcome not written", "session", o.sess.id, "pending", p.Seq(), "err", err)
		}
	}, nil
}

// RecordDurable appends the outcome's record, with the reply the client is about to be given, and returns once it
// is on disk when the auditor is a DurableAuditor. Front ends use it for a message they acknowledge without
// sending it on (discard, quarantine): an error (wrapping audit.ErrNotRecorded) means they must answer
// audit.UnavailableReply instead. With a plain Auditor it is Record.
func (o *Outcome) RecordDurable(reply audit.Reply) error {
	da, durable := o.sess.flow.opts.Audit.(DurableAuditor)
	if o.Decision == nil || !durable {
		o.Record(reply)
		return nil
	}
	rec := o.sess.newRecord(o.in, o.Decision, o.facts(reply), &o.RcptsAdded)
	err := da.AppendDurable(rec)
	if err != nil {
		reply = audit.UnavailableReply
	} else {
		o.sess.link(o.QuarantineID, rec)
	}
	o.count(reply)
	return err
}

// count counts the outcome and the reply the client got in the metrics: the hook that decided (the message
// stage, or the envelope stage a pending decision came from) and the final action, tempfail when the action could
// not be carried out.
func (o *Outcome) count(reply audit.Reply) {
	hook, action := pluginhost.HookMessage.String(), o.Action.String()
	if o.Decision != nil {
		hook = o.Decision.Hook.String()
	}
	if o.Err != nil {
		action = pluginhost.Tempfail.String()
	}
	metrics.Message(o.in.Env.Listener, o.in.Env.Protocol, hook, action, metrics.ReplyClass(reply.Status, reply.Code))
}

// facts are the outcome's audit facts. A quarantined message's record names its entry in Withheld, as a
// message withheld at retrieval does.
func (o *Outcome) facts(reply audit.Reply) audit.Facts {
	return audit.Facts{SHA256In: o.SHA256In, SHA256Out: o.SHA256Out, Reply: reply, Withheld: o.QuarantineID}
}

// RecordServed appends the outcome's audit record at retrieval: the reply the client was given, the digest of
// what it was served (the message, its changed version or a notice) and, for a withheld message, the reference
// its notice gives.
func (o *Outcome) RecordServed(reply audit.Reply, sha256Served, withheld string) {
	o.count(reply)
	if o.Decision == nil {
		return
	}
	o.sess.record(o.in, o.Decision, audit.Facts{SHA256In: o.SHA256In, SHA256Out: o.SHA256Out, Reply: reply,
		SHA256Served: sha256Served, Withheld: withheld}, &o.RcptsAdded)
}

// Close frees the rendered copy. The original spool belongs to the caller of Message.
func (o *Outcome) Close() {
	if o.rendered != nil {
		o.rendered.Close()
		o.rendered = nil
	}
}

// Message runs the message stage on a received message: it indexes it, runs the policy (or carries out a decision
// pending from an envelope stage), and carries out the action that needs no protocol: quarantine stores it,
// accept renders the changes and the result headers. An error means the message could not be indexed; the front
// end answers a temporary error.
func (s *Session) Message(sp *Spool, mi MessageInput) (*Outcome, error) {
	o := &s.flow.opts
	in := mi.In
	if in == nil {
		in = &pluginhost.Input{}
	}
	out := &Outcome{sess: s, in: in, RcptsAdded: mi.RcptsAdded, original: sp, Size: sp.Size(), SHA256In: sp.Sum(),
		Action: pluginhost.Accept}
	if s.Wants(pluginhost.HookMessage) || len(mi.Trace) > 0 || o.ResultHeaders || mi.Pending != nil {
		msg, err := message.Parse(sp.ReaderAt(), sp.Size(), o.MessageLimits)
		if err != nil {
			return nil, fmt.Errorf("indexing message: %w", err)
		}
		out.Msg = msg
		in.Msg = msg
		if ids := msg.HeaderValues(0, "Message-Id", false); len(ids) > 0 {
			out.MessageID = ids[0]
		}
	}
	d := mi.Pending
	if d == nil && s.Wants(pluginhost.HookMessage) {
		d = s.Stage(pluginhost.HookMessage, in)
	}
	out.Decision = d
	if d != nil {
		out.Action = d.Action
	}
	switch out.Action {
	case pluginhost.Reject, pluginhost.Tempfail, pluginhost.Discard:
	case pluginhost.Quarantine:
		if o.Quarantine == nil {
			out.Err = errors.New("quarantine verdict but no quarantine directory configured")
			break
		}
		qm := QuarantineMeta(s.id, &in.Env, d, out.Msg)
		qm.ID, qm.Size, qm.SHA256 = mi.ID, sp.Size(), sp.Sum()
		store := o.Quarantine.Store
		if mi.Lasting {
			store = o.Quarantine.StoreOnce
		}
		out.QuarantineID, out.Err = store(sp.Reader(), qm)
	default:
		out.Err = s.render(out, d, mi)
	}
	return out, nil
}

// render applies the policy's changes, the result headers and the trace fields. The result goes through the line
// guard again, so whatever a plugin's banner or header contained, only CRLF line endings go out.
func (s *Session) render(out *Outcome, d *policy.Decision, mi MessageInput) error {
	o := &s.flow.opts
	changes, err := outgoingChanges(o.ResultHeaders, d, mi.Trace)
	if err != nil {
		return fmt.Errorf("building trace headers: %w", err)
	}
	if changes == nil || out.Msg == nil {
		return nil
	}
	rendered := NewSpool(o.SpoolDir, o.MemoryThreshold, out.SHA256In != "")
	g := &LineGuard{Normalize: true}
	_, err = out.Msg.WriteTo(GuardWriter{g, rendered}, changes)
	if errors.Is(err, message.ErrDecode) {
		// A banner aimed at a part that cannot be decoded to be extended. Plugins hear of that when they add a
		// banner, but the chain's changes together (a part removed by one plugin, a banner from another) can still
		// aim one there. The policy accepted the message: deliver it without banners rather than defer it for
		// ever. WriteTo checks before it writes, so nothing was written yet.
		s.flow.log.Warn("banner left out: its body part cannot be decoded", "session", s.id, "txn", mi.ID, "err", err)
		changes = changes.Filter(func(c message.Change) bool { return c.Op != message.OpAppendBanner })
		_, err = out.Msg.WriteTo(GuardWriter{g, rendered}, changes)
	}
	if err == nil {
		err = g.Finish(rendered)
	}
	if err != nil {
		rendered.Close()
		return fmt.Errorf("applying the policy's changes: %w", err)
	}
	out.rendered = rendered
	out.SHA256Out = rendered.Sum()
	return nil
}
