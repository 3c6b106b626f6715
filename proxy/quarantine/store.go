package quarantine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/policy"
)

// Stages a message can be withheld at.
const (
	StageSMTP      = "smtp"      // while an SMTP client sent it (relay, submission)
	StageRetrieval = "retrieval" // while a mail client read it (POP3 RETR/TOP, IMAP FETCH)
	StageAppend    = "append"    // while a mail client stored it (IMAP APPEND)
)

// Errors of the store's operations. They are wrapped with the entry ID.
var (
	ErrNotFound        = errors.New("no such quarantine entry")
	ErrAlreadyReleased = errors.New("already released")
	ErrInvalidID       = errors.New("not a quarantine entry ID")
)

// Meta is the metadata record kept beside each quarantined message (ID.json). The JSON names are a stable
// interface: `postern quarantine list -json` prints them, and tools outside Postern read them.
type Meta struct {
	// ID names the entry; Store sets it (the time of storing and the caller's ID).
	ID string `json:"id"`
	// Time is when the message was stored, UTC.
	Time      time.Time `json:"time"`
	Listener  string    `json:"listener"`
	Protocol  string    `json:"protocol,omitempty"`
	Direction string    `json:"direction,omitempty"`
	// Stage is StageSMTP, StageRetrieval or StageAppend; Store derives it when it is empty.
	Stage    string `json:"stage,omitempty"`
	Session  string `json:"session"`
	ClientIP string `json:"client_ip,omitempty"`
	HELO     string `json:"helo,omitempty"`
	TLS      string `json:"tls,omitempty"`
	AuthUser string `json:"auth_user,omitempty"`
	// MailFrom and Rcpts are the SMTP envelope: a release delivers to exactly these recipients.
	MailFrom string   `json:"mail_from"`
	Rcpts    []string `json:"rcpts"`
	// The mailbox a message withheld at retrieval or APPEND came from or was meant for.
	MailboxUser string `json:"mailbox_user,omitempty"`
	Mailbox     string `json:"mailbox,omitempty"`
	UID         uint32 `json:"uid,omitempty"`
	UIDValidity uint32 `json:"uidvalidity,omitempty"`
	UIDL        string `json:"uidl,omitempty"`
	Command     string `json:"command,omitempty"`
	MessageID   string `json:"message_id,omitempty"`
	// Subject is the message's Subject field, RFC 2047 words decoded. Unlike the audit log, the quarantine holds
	// the message itself, so its subject is no more sensitive here; reviewers need it to find a message.
	Subject string `json:"subject,omitempty"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	// Policy, Plugin and Verdict say who withheld the message and why: the deciding policy, the plugin whose
	// verdict it was ("" when a score threshold decided) and the reason text. Action is the decision's action
	// (quarantine; at retrieval also reject or discard, whose originals are kept too). Store derives them from
	// Decision when they are empty.
	Policy   string           `json:"policy,omitempty"`
	Plugin   string           `json:"plugin,omitempty"`
	Verdict  string           `json:"verdict,omitempty"`
	Action   string           `json:"action,omitempty"`
	Decision *policy.Decision `json:"decision"`
	// AuditSeq and AuditHash link the entry to its decision record in the audit log (0 and "" until Link).
	AuditSeq  uint64 `json:"audit_seq,omitempty"`
	AuditHash string `json:"audit_hash,omitempty"`
	// Released is set once the entry was released; the original stays until deleted or expired.
	Released *Released `json:"released,omitempty"`
	// Orphan is set on an entry whose metadata file is missing (a crash between the two renames): only what the
	// message file tells is known.
	Orphan bool `json:"orphan,omitempty"`
}

// Released records a release.
type Released struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Via    string    `json:"via,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Route  string    `json:"route"`
	// Reply is the delivery route's answer ("250 2.0.0 Ok: queued as ...", "OK [APPENDUID 7 12] Append completed").
	Reply string `json:"reply,omitempty"`
	// AuditSeq is the seq of the release record.
	AuditSeq uint64 `json:"audit_seq,omitempty"`
}

// Retention bounds the store. Zero values mean no bound.
type Retention struct {
	// MaxAge removes entries older than this.
	MaxAge time.Duration
	// MaxBytes removes the oldest entries while the messages together are larger than this.
	MaxBytes int64
	// Interval is how often Run applies the retention; 0 means DefaultInterval.
	Interval time.Duration
}

// DefaultInterval is how often Run applies the retention when Retention.Interval is 0.
const DefaultInterval = 10 * time.Minute

// Auditor records the store's actions. *audit.Log implements it.
type Auditor interface {
	AppendDurable(rec *audit.Record) error
	Append(rec *audit.Record) error
}

// Actor is who acts on an entry: Name is the person ("alice", the -by flag, $USER, a reviewer's login), Via the
// way they came ("cli", "web").
type Actor struct {
	Name string
	Via  string
}

func (a Actor) String() string {
	if a.Via == "" {
		return a.Name
	}
	return a.Name + " (" + a.Via + ")"
}

// Options configure a Store.
type Options struct {
	// Dir is the store's directory, created with mode 0700 if missing.
	Dir string
	// Retention bounds the store; Run applies it.
	Retention Retention
	// Audit records releases, deletions and expiries; nil records nothing (and the store logs so at Open).
	Audit Auditor
	// Routes chooses how a release delivers an entry; nil refuses every release.
	Routes Router
	// Hostname names this proxy in the trace field a release adds.
	Hostname string
	// Logger receives the store's log; nil uses slog.Default().
	Logger *slog.Logger
	// Now is the clock (tests set it); nil is time.Now.
	Now func() time.Time
}

// Store is a quarantine directory. Its methods are safe for concurrent use, also by several processes sharing
// the directory.
type Store struct {
	opts Options
	dir  string
	log  *slog.Logger
	now  func() time.Time

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	once sync.Mutex // serialises StoreOnce's look and write in this process
}

// Open opens (and if need be creates) the store and removes what interrupted writes left. It does not apply the
// retention: Run does (at once, then periodically), in the process that owns the store (`postern run`).
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("quarantine: no directory")
	}
	// Quarantined mail is as sensitive as any: the directory is private to the proxy.
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	s := &Store{opts: opts, dir: opts.Dir, log: opts.Logger, now: opts.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.removeTemporaries()
	return s, nil
}

// OpenDir opens a store with no retention, audit or routes: the front ends' own store when no shared one is
// given (tests, library users).
func OpenDir(dir string) (*Store, error) { return Open(Options{Dir: dir}) }

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Options returns the options the store was opened with.
func (s *Store) Options() Options { return s.opts }

// removeTemporaries removes temporary files older than a minute: what a crash left behind. A younger one may be
// another process's write in progress.
func (s *Store) removeTemporaries() {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), tmpPrefix) {
			continue
		}
		if fi, err := de.Info(); err == nil && s.now().Sub(fi.ModTime()) > time.Minute {
			os.Remove(filepath.Join(s.dir, de.Name()))
		}
	}
}

const tmpPrefix = ".tmp-"

// ValidID reports whether id can name an entry: letters, digits, '.', '_' and '-', not starting with '.'.
func ValidID(id string) bool {
	if id == "" || len(id) > 200 || id[0] == '.' {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Store keeps the message read from content with its metadata and returns the new entry's ID. m.ID is the
// caller's reference for the message (SMTP: the transaction ID); the entry's ID is the time of storing and that
// reference. Time, ID, and what Meta says Store derives, are set here. The message is written first, then the
// metadata, each through a temporary file, fsync and rename, so an ID.json always has its ID.eml.
func (s *Store) Store(content io.Reader, m Meta) (string, error) {
	m.Time = s.now().UTC()
	ref := sanitizeRef(m.ID)
	m.ID = m.Time.Format("20060102T150405Z") + "-" + ref
	fill(&m)
	if _, err := os.Lstat(s.path(m.ID, extMessage)); err == nil {
		// Two messages with one reference in one second: keep both.
		m.ID += "-" + randomSuffix()
	}
	js, err := encodeMeta(&m)
	if err != nil {
		return "", err
	}
	err = writeFileSync(s.path(m.ID, extMessage), func(f *os.File) error {
		_, err := f.ReadFrom(content)
		return err
	})
	if err == nil {
		err = writeFileSync(s.path(m.ID, extMeta), func(f *os.File) error {
			_, err := f.Write(js)
			return err
		})
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		os.Remove(s.path(m.ID, extMessage))
		return "", fmt.Errorf("quarantine: %w", err)
	}
	return m.ID, nil
}

// StoreOnce is Store for a message whose reference names it for good (IMAP: the same UID of the same mailbox,
// read again in another session or after the result cache let it go): when an entry with that reference and the
// same SHA-256 is held already, it returns that entry's ID and keeps nothing, so that reading a withheld message
// again does not fill the store with copies; once that entry is released or deleted, a new one is kept. Without
// m.SHA256 it is Store.
func (s *Store) StoreOnce(content io.Reader, m Meta) (string, error) {
	if m.SHA256 == "" {
		return s.Store(content, m)
	}
	s.once.Lock()
	defer s.once.Unlock()
	id, err := s.kept(sanitizeRef(m.ID), m.SHA256)
	if err != nil || id != "" {
		return id, err
	}
	return s.Store(content, m)
}

// Resolve returns the ID of the entry that name names: its ID, or the reference a notice quotes (the ID without
// the time of storing, as an IMAP notice gives it). A reference that names several entries is an error listing
// them.
func (s *Store) Resolve(name string) (string, error) {
	if !ValidID(name) {
		return "", fmt.Errorf("quarantine: %q: %w", name, ErrInvalidID)
	}
	if _, err := os.Lstat(s.path(name, extMessage)); err == nil {
		return name, nil
	}
	ids, err := s.ids()
	if err != nil {
		return "", err
	}
	var found []string
	for _, id := range ids {
		if hasRef(id, name) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("quarantine: %s: %w", name, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("quarantine: %s names %d entries: %s", name, len(found), strings.Join(found, ", "))
}

// kept returns the ID of a held entry (not released) with reference ref and the given digest, "" when there is
// none. It reads the store's listing: it runs only for a withheld message, which are few.
func (s *Store) kept(ref, sha256 string) (string, error) {
	ids, err := s.ids()
	if err != nil {
		return "", err
	}
	for _, id := range ids {
		if !hasRef(id, ref) {
			continue
		}
		if m, err := s.read(id); err == nil && !m.Orphan && m.SHA256 == sha256 && m.Released == nil {
			return id, nil
		}
	}
	return "", nil
}

// hasRef reports whether the entry id was stored under the reference ref: an ID is "<time>-<ref>", or
// "<time>-<ref>-<suffix>" for a second entry of one reference in one second.
func hasRef(id, ref string) bool {
	_, rest, ok := strings.Cut(id, "-")
	return ok && (rest == ref || strings.HasPrefix(rest, ref+"-"))
}

// fill derives what Meta leaves empty from the rest.
func fill(m *Meta) {
	if m.Stage == "" {
		switch {
		case m.Command == "append":
			m.Stage = StageAppend
		case m.Direction == "retrieval" || m.MailboxUser != "" || m.UIDL != "" || m.UID != 0:
			m.Stage = StageRetrieval
		default:
			m.Stage = StageSMTP
		}
	}
	d := m.Decision
	if d == nil {
		return
	}
	if m.Action == "" {
		m.Action = d.Action.String()
	}
	if m.Policy == "" {
		m.Policy = d.DecidedBy
	}
	if m.Verdict == "" {
		m.Verdict = d.Text
	}
	if m.Plugin == "" {
		for _, pt := range d.Policies {
			if pt.Name != d.DecidedBy {
				continue
			}
			// The plugin whose own verdict was the action; none when a score threshold decided.
			for _, pl := range pt.Plugins {
				if pl.Verdict.Kind == d.Action {
					m.Plugin = pl.Name
					if m.Verdict == "" {
						m.Verdict = pl.Verdict.Text
					}
					break
				}
			}
		}
	}
}

func sanitizeRef(ref string) string {
	b := []byte(ref)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 100 {
		b = b[:100]
	}
	if len(b) == 0 {
		return randomSuffix()
	}
	return string(b)
}

// Link records the audit record the entry's decision was written as. Front ends call it (through mailflow) once
// the record is appended.
func (s *Store) Link(id string, seq uint64, hash string) error {
	if seq == 0 {
		return nil
	}
	return s.update(id, func(m *Meta) error {
		if m.AuditSeq == 0 { // an entry StoreOnce found kept stays linked to the decision that kept it
			m.AuditSeq, m.AuditHash = seq, hash
		}
		return nil
	})
}

// Get returns an entry's metadata.
func (s *Store) Get(id string) (*Meta, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("quarantine: %q: %w", id, ErrInvalidID)
	}
	m, err := s.read(id)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %s: %w", id, err)
	}
	return m, nil
}

// Message opens an entry's original bytes. The caller closes the file.
func (s *Store) Message(id string) (*os.File, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("quarantine: %q: %w", id, ErrInvalidID)
	}
	f, err := os.Open(s.path(id, extMessage))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("quarantine: %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return f, nil
}

// Filter selects entries for List. Empty fields select everything. Text fields match case-insensitively:
// Sender, Recipient, User and Subject as substrings, MessageID with or without its angle brackets, exactly.
type Filter struct {
	Since, Until time.Time // Time in [Since, Until)
	Listener     string
	Stage        string
	Policy       string
	Sender       string
	Recipient    string
	// User matches the mailbox user or the authenticated user.
	User      string
	MessageID string
	Subject   string
	// Released selects by release state: nil either, true only released, false only not released.
	Released *bool
	// Limit stops after this many entries, newest first (0: all).
	Limit int
}

// Match reports whether m passes f.
func (f *Filter) Match(m *Meta) bool {
	has := func(s, sub string) bool {
		return sub == "" || strings.Contains(strings.ToLower(s), strings.ToLower(sub))
	}
	switch {
	case !f.Since.IsZero() && m.Time.Before(f.Since),
		!f.Until.IsZero() && !m.Time.Before(f.Until),
		f.Listener != "" && m.Listener != f.Listener,
		f.Stage != "" && m.Stage != f.Stage,
		f.Policy != "" && m.Policy != f.Policy,
		!has(m.MailFrom, f.Sender),
		!has(m.Subject, f.Subject),
		f.User != "" && !has(m.MailboxUser, f.User) && !has(m.AuthUser, f.User),
		f.MessageID != "" && !strings.EqualFold(trimAngle(m.MessageID), trimAngle(f.MessageID)),
		f.Released != nil && *f.Released != (m.Released != nil):
		return false
	}
	if f.Recipient != "" && !slices.ContainsFunc(m.Rcpts, func(r string) bool { return has(r, f.Recipient) }) {
		return false
	}
	return true
}

func trimAngle(s string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">")
}

// List returns the entries f selects, newest first.
func (s *Store) List(f Filter) ([]*Meta, error) {
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	var out []*Meta
	for i := len(ids) - 1; i >= 0; i-- {
		m, err := s.read(ids[i])
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			s.log.Warn("quarantine: unreadable entry", "id", ids[i], "err", err)
			continue
		}
		if f.Match(m) {
			out = append(out, m)
		}
	}
	// IDs order entries by the second; within one, the stored time (to the nanosecond) does.
	slices.SortStableFunc(out, func(a, b *Meta) int { return b.Time.Compare(a.Time) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// ids lists the entries by their message files, oldest first (the IDs begin with the time).
func (s *Store) ids() ([]string, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	var ids []string
	for _, de := range des {
		if id, ok := strings.CutSuffix(de.Name(), extMessage); ok && ValidID(id) && de.Type().IsRegular() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// maxMetaBytes bounds a metadata file that is read: a decision with every trace is a few KiB; a larger file is
// not one the store wrote.
const maxMetaBytes = 4 << 20

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, err
}

const (
	extMessage = ".eml"
	extMeta    = ".json"
)

func (s *Store) path(id, ext string) string { return filepath.Join(s.dir, id+ext) }

// read loads an entry's metadata; an entry whose metadata file is missing is an orphan with what its message
// file tells.
func (s *Store) read(id string) (*Meta, error) {
	b, err := readBounded(s.path(id, extMeta), maxMetaBytes)
	if errors.Is(err, fs.ErrNotExist) {
		fi, serr := os.Stat(s.path(id, extMessage))
		if serr != nil {
			return nil, ErrNotFound
		}
		return &Meta{ID: id, Time: fi.ModTime().UTC(), Size: fi.Size(), Orphan: true}, nil
	}
	if err != nil {
		return nil, err
	}
	m := new(Meta)
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.path(id, extMeta), err)
	}
	// The file name is the ID: entries written before the metadata carried it had the session's reference here.
	m.ID = id
	if m.Stage == "" {
		fill(m)
	}
	return m, nil
}

func encodeMeta(m *Meta) ([]byte, error) {
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("quarantine: encoding the record: %w", err)
	}
	return append(js, '\n'), nil
}

// update changes an entry's metadata under its lock.
func (s *Store) update(id string, change func(*Meta) error) error {
	if !ValidID(id) {
		return fmt.Errorf("quarantine: %q: %w", id, ErrInvalidID)
	}
	unlock, err := s.lock(id)
	if err != nil {
		return fmt.Errorf("quarantine: %s: %w", id, err)
	}
	defer unlock()
	m, err := s.read(id)
	if err != nil {
		return fmt.Errorf("quarantine: %s: %w", id, err)
	}
	if err := change(m); err != nil {
		return err
	}
	return s.writeMeta(m)
}

func (s *Store) writeMeta(m *Meta) error {
	m.Orphan = false
	js, err := encodeMeta(m)
	if err != nil {
		return err
	}
	if err := writeFileSync(s.path(m.ID, extMeta), func(f *os.File) error {
		_, err := f.Write(js)
		return err
	}); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	return syncDir(s.dir)
}

// lock takes the entry's lock: an exclusive flock on its message file, which is never replaced. It waits for
// another holder. ErrNotFound when the entry is gone (before or while waiting).
func (s *Store) lock(id string) (unlock func(), err error) {
	f, err := os.Open(s.path(id, extMessage))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking: %w", err)
	}
	// Deleted while we waited: the lock is on a file no longer in the directory.
	if _, err := os.Stat(s.path(id, extMessage)); err != nil {
		f.Close()
		return nil, ErrNotFound
	}
	return func() { f.Close() }, nil
}

// Delete removes an entry, recording who and why first: without the record the entry stays.
func (s *Store) Delete(id string, who Actor, reason string) error {
	if !ValidID(id) {
		return fmt.Errorf("quarantine: %q: %w", id, ErrInvalidID)
	}
	unlock, err := s.lock(id)
	if err != nil {
		return fmt.Errorf("quarantine: %s: %w", id, err)
	}
	defer unlock()
	m, err := s.read(id)
	if err != nil {
		return fmt.Errorf("quarantine: %s: %w", id, err)
	}
	rec := actionRecord(audit.EventQuarantineDelete, m, who, reason)
	if err := s.record(rec); err != nil {
		return fmt.Errorf("quarantine: %s not deleted: %w", id, err)
	}
	if err := s.remove(id); err != nil {
		return err
	}
	s.log.Info("quarantine entry deleted", "id", id, "by", who.String(), "reason", reason, "audit_seq", rec.Seq)
	return nil
}

// remove deletes an entry's files, the metadata first, so that a crash in between leaves an orphan that is still
// listed rather than metadata without a message.
func (s *Store) remove(id string) error {
	for _, ext := range []string{extMeta, extMessage} {
		if err := os.Remove(s.path(id, ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("quarantine: %w", err)
		}
	}
	return syncDir(s.dir)
}

// record writes an action's audit record durably; without an auditor it does nothing.
func (s *Store) record(rec *audit.Record) error {
	if s.opts.Audit == nil {
		return nil
	}
	return s.opts.Audit.AppendDurable(rec)
}

// actionRecord builds the audit record of an action on entry m.
func actionRecord(ev audit.Event, m *Meta, who Actor, reason string) *audit.Record {
	rec := &audit.Record{Event: ev, Listener: m.Listener, Protocol: m.Protocol, Direction: m.Direction,
		AuthUser: m.AuthUser, MessageID: m.MessageID, Size: m.Size, SHA256In: m.SHA256, Action: m.Action,
		Quarantine: &audit.QuarantineAction{ID: m.ID, Actor: who.Name, Via: who.Via, Reason: reason,
			DecisionSeq: m.AuditSeq, DecisionHash: m.AuditHash}}
	if m.Stage == StageSMTP {
		from := m.MailFrom
		rec.MailFrom, rec.Rcpts = &from, m.Rcpts
	} else {
		rec.MailboxUser, rec.Mailbox, rec.UID, rec.UIDValidity, rec.UIDL = m.MailboxUser, m.Mailbox, m.UID,
			m.UIDValidity, m.UIDL
	}
	return rec
}

// Expired is one entry Expire removed.
type Expired struct {
	ID  string
	Why string // "max_age" or "max_bytes"
}

// Expire applies the retention now: entries older than MaxAge go, then the oldest while the total is above
// MaxBytes. Each removal is recorded first; an entry whose record cannot be written stays (and the error is
// returned after the others were tried). An entry locked by a release in progress is skipped this time.
func (s *Store) Expire() ([]Expired, error) {
	r := s.opts.Retention
	if r.MaxAge <= 0 && r.MaxBytes <= 0 {
		return nil, nil
	}
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	type entry struct {
		id   string
		size int64
		time time.Time
	}
	var all []entry
	var total int64
	for _, id := range ids {
		fi, err := os.Stat(s.path(id, extMessage))
		if err != nil {
			continue
		}
		t := fi.ModTime()
		if ts, err := time.Parse("20060102T150405Z", strings.SplitN(id, "-", 2)[0]); err == nil {
			t = ts
		}
		all = append(all, entry{id, fi.Size(), t})
		total += fi.Size()
	}
	slices.SortStableFunc(all, func(a, b entry) int { return a.time.Compare(b.time) })
	now := s.now()
	var out []Expired
	var errs []error
	for _, e := range all {
		why := ""
		switch {
		case r.MaxAge > 0 && now.Sub(e.time) > r.MaxAge:
			why = "max_age"
		case r.MaxBytes > 0 && total > r.MaxBytes:
			why = "max_bytes"
		default:
			continue
		}
		if err := s.expire(e.id, why); err != nil {
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, errBusy) {
				errs = append(errs, err)
			}
			continue
		}
		total -= e.size
		out = append(out, Expired{e.id, why})
	}
	return out, errors.Join(errs...)
}

func (s *Store) expire(id, why string) error {
	unlock, err := s.tryLock(id)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := s.read(id)
	if err != nil {
		return err
	}
	rec := actionRecord(audit.EventQuarantineExpiry, m, Actor{Name: "retention", Via: "retention"}, "")
	rec.Quarantine.Expired = why
	if err := s.record(rec); err != nil {
		return fmt.Errorf("quarantine: %s not expired: %w", id, err)
	}
	if err := s.remove(id); err != nil {
		return err
	}
	s.log.Info("quarantine entry expired", "id", id, "bound", why, "audit_seq", rec.Seq)
	return nil
}

// tryLock takes the entry's lock without waiting: ErrNotFound when it is gone, errBusy when someone holds it.
func (s *Store) tryLock(id string) (func(), error) {
	f, err := os.Open(s.path(id, extMessage))
	if err != nil {
		return nil, ErrNotFound
	}
	if err := tryFlock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("quarantine: %s: %w", id, err)
	}
	if _, err := os.Stat(s.path(id, extMessage)); err != nil {
		f.Close()
		return nil, ErrNotFound
	}
	return func() { f.Close() }, nil
}

// Run applies the retention now and then every Retention.Interval until Close. It returns at once; without a
// retention bound it does nothing.
func (s *Store) Run() {
	r := s.opts.Retention
	if r.MaxAge <= 0 && r.MaxBytes <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return
	}
	interval := r.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if _, err := s.Expire(); err != nil {
				s.log.Error("quarantine retention", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Close stops Run.
func (s *Store) Close() error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// writeFileSync creates path (mode 0600) through a temporary name, fills it, syncs it and renames it.
func writeFileSync(path string, fill func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), tmpPrefix+"*")
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
