package auditindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern/postern/proxy/audit"

	_ "github.com/jackc/pgx/v5/stdlib"       // the "pgx" database/sql driver
	_ "github.com/ncruces/go-sqlite3/driver" // the "sqlite3" database/sql driver (pure Go)
)

// Drivers.
const (
	// DriverSQLite keeps the index in one file (DSN is its path), for one node.
	DriverSQLite = "sqlite"
	// DriverPostgres keeps it in a PostgreSQL database (DSN is a connection string or postgres:// URL), which
	// several nodes may share.
	DriverPostgres = "postgres"
)

// ErrNotFound is returned by Get for a record the index does not hold.
var ErrNotFound = errors.New("auditindex: no such record")

// Options say which database holds the index.
type Options struct {
	Driver string // DriverSQLite or DriverPostgres
	DSN    string
	// Logger receives the index's log; nil means slog.Default().
	Logger *slog.Logger
}

// Searcher is what a search front end (the CLI, the reviewer page) needs of an index. *Index implements it.
type Searcher interface {
	// Search returns the records that match q, newest first, at most q.Limit (DefaultLimit when 0) from
	// q.Offset on.
	Search(ctx context.Context, q Query) ([]Row, error)
	// Count returns how many records match q (Limit and Offset aside).
	Count(ctx context.Context, q Query) (int64, error)
	// Get returns the record of node at seq, or an error wrapping ErrNotFound.
	Get(ctx context.Context, node string, seq uint64) (Row, error)
}

// Row is one record found.
type Row struct {
	Node string
	Seq  uint64
	// Record is Line decoded.
	Record audit.Record
	// Line is the record's line exactly as in the log, without the newline.
	Line []byte
	// Outcome, for a pending record, is the reply its outcome record says the client got, and OutcomeSeq that
	// record's seq; nil and 0 while there is none (the outcome is not written yet, or Postern stopped before it).
	Outcome    *audit.Reply
	OutcomeSeq uint64
}

// Index is an audit index in one database. Its methods are safe for concurrent use.
type Index struct {
	db     *sql.DB
	d      dialect
	driver string
	log    *slog.Logger
}

var _ Searcher = (*Index)(nil)

// Open connects to the index's database and creates its tables if they do not exist yet. A SQLite file's
// directory is created (mode 0700) if missing.
func Open(ctx context.Context, opts Options) (*Index, error) {
	ix := &Index{driver: opts.Driver, log: opts.Logger}
	if ix.log == nil {
		ix.log = slog.Default()
	}
	var err error
	switch opts.Driver {
	case DriverSQLite:
		if opts.DSN == "" {
			return nil, errors.New("auditindex: sqlite needs the path of the index file")
		}
		if err := os.MkdirAll(filepath.Dir(opts.DSN), 0o700); err != nil {
			return nil, fmt.Errorf("auditindex: %w", err)
		}
		// The index holds what the log holds (addresses, IPs): 0600, as the log. The -wal and -shm files are
		// made with the umask's mode; Open tightens them once they exist.
		f, err := os.OpenFile(opts.DSN, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("auditindex: %w", err)
		}
		f.Close()
		ix.d = sqliteDialect{}
		ix.db, err = sql.Open("sqlite3", sqliteDSN(opts.DSN))
		if err == nil {
			// One writer at a time is all SQLite has; readers run beside it in WAL mode.
			ix.db.SetMaxOpenConns(4)
		}
	case DriverPostgres:
		if opts.DSN == "" {
			return nil, errors.New("auditindex: postgres needs a dsn")
		}
		ix.d = postgresDialect{}
		ix.db, err = sql.Open("pgx", opts.DSN)
		if err == nil {
			ix.db.SetMaxOpenConns(8)
			ix.db.SetConnMaxIdleTime(5 * time.Minute)
		}
	default:
		return nil, fmt.Errorf("auditindex: unknown driver %q (want %q or %q)", opts.Driver, DriverSQLite, DriverPostgres)
	}
	if err != nil {
		return nil, fmt.Errorf("auditindex: %w", err)
	}
	if err := ix.createSchema(ctx); err != nil {
		ix.db.Close()
		return nil, fmt.Errorf("auditindex: %s: %w", ix.where(opts.DSN), err)
	}
	if opts.Driver == DriverSQLite {
		// createSchema wrote, so the WAL and its index exist now, and stay while the pool has a connection.
		for _, p := range []string{opts.DSN + "-wal", opts.DSN + "-shm"} {
			if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
				ix.log.Warn("audit index: cannot make the file private", "file", p, "error", err)
			}
		}
	}
	return ix, nil
}

// where names the database for messages without its password.
func (ix *Index) where(dsn string) string {
	if ix.driver == DriverSQLite {
		return dsn
	}
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		u.User = nil
		return u.Redacted()
	}
	return "postgres"
}

// sqliteDSN opens the file in WAL mode, so that searches (also from `postern audit search` in another
// process) run while the feeder writes, and waits for a lock instead of failing at once.
func sqliteDSN(path string) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=journal_mode(wal)&_pragma=synchronous(normal)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(off)"
}

// Driver is the driver the index was opened with.
func (ix *Index) Driver() string { return ix.driver }

// Close closes the database.
func (ix *Index) Close() error { return ix.db.Close() }

// Nodes lists the nodes that have records in the index, sorted.
func (ix *Index) Nodes(ctx context.Context) ([]string, error) {
	rows, err := ix.db.QueryContext(ctx, `SELECT node FROM audit_nodes ORDER BY node`)
	if err != nil {
		return nil, fmt.Errorf("auditindex: listing nodes: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("auditindex: listing nodes: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// Last returns the seq and hash of the last record of node's chain that the index holds (0 and "" for none).
func (ix *Index) Last(ctx context.Context, node string) (seq uint64, hash string, err error) {
	var s int64
	err = ix.db.QueryRowContext(ctx, ix.d.rebind(`SELECT seq, hash FROM audit_nodes WHERE node = ?`), node).Scan(&s, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("auditindex: last record of %s: %w", node, err)
	}
	return uint64(s), hash, nil
}

// Get returns the record of node at seq.
func (ix *Index) Get(ctx context.Context, node string, seq uint64) (Row, error) {
	rows, err := ix.db.QueryContext(ctx, ix.d.rebind(`SELECT `+rowColumns+` FROM audit_records r WHERE node = ? AND seq = ?`),
		node, int64(seq))
	if err != nil {
		return Row{}, fmt.Errorf("auditindex: get %s/%d: %w", node, seq, err)
	}
	found, err := scanRows(rows)
	if err != nil {
		return Row{}, fmt.Errorf("auditindex: get %s/%d: %w", node, seq, err)
	}
	if len(found) == 0 {
		return Row{}, fmt.Errorf("%w: %s seq %d", ErrNotFound, node, seq)
	}
	return found[0], nil
}

// DeleteNode removes every record of node from the index (before a reindex).
func (ix *Index) DeleteNode(ctx context.Context, node string) error {
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("auditindex: deleting %s: %w", node, err)
	}
	defer tx.Rollback()
	for _, q := range []string{`DELETE FROM audit_terms WHERE node = ?`, `DELETE FROM audit_records WHERE node = ?`,
		`DELETE FROM audit_nodes WHERE node = ?`} {
		if _, err := tx.ExecContext(ctx, ix.d.rebind(q), node); err != nil {
			return fmt.Errorf("auditindex: deleting %s: %w", node, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("auditindex: deleting %s: %w", node, err)
	}
	return nil
}

// normAddr is how addresses and user names are kept and matched: trimmed, without angle brackets, lower case.
// The local part of an address is case-sensitive in theory and never in practice (Postfix, Dovecot and every
// mailbox provider fold it), and a search that missed "Alice@" for "alice@" would miss the message.
func normAddr(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = s[1 : len(s)-1]
	}
	return strings.ToLower(s)
}

// domainOf is the domain of an address, "" for none.
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// normMessageID keeps a Message-ID as written, without its angle brackets: a pasted ID has them or not.
func normMessageID(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = s[1 : len(s)-1]
	}
	return s
}
