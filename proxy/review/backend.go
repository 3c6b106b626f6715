package review

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/postern/postern/proxy/audit"
)

// ErrNotFound is what a backend returns for a quarantine entry or a decision record that does not exist.
var ErrNotFound = errors.New("not found")

// Actor is who does something through the pages, for the backends' audit records.
type Actor struct {
	Name     string // the reviewer's login
	Role     Role
	ClientIP string
}

// Entry is a quarantined message's metadata, as the list and the message page show it.
type Entry struct {
	ID       string
	Time     time.Time
	Listener string
	Protocol string // smtp, submission, pop3, imap
	Stage    string // smtp, retrieval, append
	Policy   string
	Plugin   string
	Verdict  string // the reply text or the plugin's reason
	Sender   string
	Rcpts    []string
	User     string // whose mailbox, at retrieval
	Mailbox  string
	// MessageID and Subject are as received. The Subject is content: only roles that read content see it.
	MessageID string
	Subject   string
	Size      int64
	SHA256    string
	// AuditSeq and AuditHash link the entry to its decision record.
	AuditSeq  uint64
	AuditHash string
	// State is "" (held), "released" or "deleted", with who did it, when and why where the store keeps them.
	State string
}

// QuarantineFilter selects entries; empty fields select everything.
type QuarantineFilter struct {
	From, To                time.Time
	Listener, Policy        string
	Sender, Recipient, User string
	MessageID               string
	Limit                   int // at most this many, newest first
}

// Quarantine is the store of withheld messages as the pages need it. Release and Delete record their own audit
// records (who, when, why, which entry), as `postern quarantine` does.
type Quarantine interface {
	List(ctx context.Context, f QuarantineFilter) ([]Entry, error)
	Get(ctx context.Context, id string) (Entry, error)
	// Open returns the original message, byte for byte, and its size.
	Open(ctx context.Context, id string) (io.ReaderAt, int64, io.Closer, error)
	// Release delivers the message (SMTP time) or puts it back in its mailbox (retrieval time) and returns
	// where it went, for the page.
	Release(ctx context.Context, id string, by Actor, reason string) (string, error)
	Delete(ctx context.Context, id string, by Actor, reason string) error
}

// DecisionQuery selects decision records, like `postern audit search`; empty fields select everything.
type DecisionQuery struct {
	From, To  time.Time
	Sender    string // envelope sender: an address (case-insensitive); the index also takes "@domain"
	Recipient string
	User      string // the authenticated user or the mailbox user
	Mailbox   string
	MessageID string
	Digest    string // sha256_in, sha256_out or sha256_served
	Action    string
	Event     string // decision, pending, review, quarantine_release, ...; "" is every event but outcome
	Policy    string // a policy that matched
	Plugin    string
	Listener  string
	Protocol  string
	Tag       string // a tag name, or name=value
	Node      string // the node whose chain the record is in (an index of a fleet)
	Limit     int    // at most this many, newest first
	Offset    int    // paging: skip this many first
}

// DecisionRow is a decision record found, with the node whose chain holds it and, for a pending record, the
// reply its outcome record gave.
type DecisionRow struct {
	Node    string
	Record  audit.Record
	Outcome *audit.Reply
}

// Decisions finds decision records: the audit index when one is configured, else a scan of the log.
type Decisions interface {
	Search(ctx context.Context, q DecisionQuery) ([]DecisionRow, error)
	// Record returns the record at seq in node's chain ("" for this node's own log), or ErrNotFound.
	Record(ctx context.Context, node string, seq uint64) (*DecisionRow, error)
}

// Recorder appends the pages' own audit records (logins, views, refusals). *audit.Log is one.
type Recorder interface {
	Append(r *audit.Record) error
}
