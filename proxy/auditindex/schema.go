package auditindex

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// schemaVersion is the layout of the tables below. A database of another version is refused: the index is
// derived, so the remedy is a new database and `postern audit reindex`.
const schemaVersion = 1

// dialect is what differs between the two databases: types, placeholders and the lock around schema creation.
type dialect interface {
	blob() string
	rebind(q string) string
	// lockSchema serialises schema creation between nodes starting at once (PostgreSQL's CREATE TABLE IF NOT
	// EXISTS is not safe against a concurrent one).
	lockSchema() string
}

type sqliteDialect struct{}

func (sqliteDialect) blob() string           { return "BLOB" }
func (sqliteDialect) rebind(q string) string { return q }
func (sqliteDialect) lockSchema() string     { return "" }

type postgresDialect struct{}

func (postgresDialect) blob() string { return "BYTEA" }

// rebind turns ? placeholders into $1, $2, …; the queries here have no ? inside literals.
func (postgresDialect) rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// The key is arbitrary; it only has to be the same on every node.
func (postgresDialect) lockSchema() string { return "SELECT pg_advisory_xact_lock(7301946281)" }

// The tables. audit_records has one row per record: the line as written and the columns a search filters or
// sorts on. audit_terms has the values a record has several of (recipients, digests, users, policies, plugins,
// tags), one row each, for exact lookups. audit_nodes has each node's last indexed record, where the feeder
// resumes. Absent values are NULL, so that a sender "" (the null reverse path) stays apart from no sender.
func schema(d dialect) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS audit_records (
			node TEXT NOT NULL,
			seq BIGINT NOT NULL,
			time_ns BIGINT NOT NULL,
			event TEXT NOT NULL,
			listener TEXT,
			protocol TEXT,
			direction TEXT,
			client_ip TEXT,
			sender TEXT,
			sender_domain TEXT,
			mailbox TEXT,
			message_id TEXT,
			action TEXT,
			score DOUBLE PRECISION,
			size BIGINT,
			withheld TEXT,
			outcome_seq BIGINT,
			outcome TEXT,
			hash TEXT NOT NULL,
			line ` + d.blob() + ` NOT NULL,
			PRIMARY KEY (node, seq))`,
		`CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time_ns)`,
		`CREATE INDEX IF NOT EXISTS audit_records_sender ON audit_records (sender, time_ns)`,
		`CREATE INDEX IF NOT EXISTS audit_records_sender_domain ON audit_records (sender_domain, time_ns)`,
		`CREATE INDEX IF NOT EXISTS audit_records_message_id ON audit_records (message_id)`,
		`CREATE INDEX IF NOT EXISTS audit_records_withheld ON audit_records (withheld)`,
		`CREATE TABLE IF NOT EXISTS audit_terms (
			kind TEXT NOT NULL,
			value TEXT NOT NULL,
			node TEXT NOT NULL,
			seq BIGINT NOT NULL,
			PRIMARY KEY (kind, value, node, seq))`,
		`CREATE INDEX IF NOT EXISTS audit_terms_record ON audit_terms (node, seq)`,
		`CREATE TABLE IF NOT EXISTS audit_nodes (node TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)`,
	}
}

func (ix *Index) createSchema(ctx context.Context) error {
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if q := ix.d.lockSchema(); q != "" {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	for _, q := range schema(ix.d) {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("creating the tables: %w", err)
		}
	}
	var v string
	err = tx.QueryRowContext(ctx, `SELECT value FROM audit_meta WHERE name = 'schema'`).Scan(&v)
	switch {
	case err == nil && v != strconv.Itoa(schemaVersion):
		return fmt.Errorf("the index has schema version %s, this Postern writes version %d: "+
			"point it at a new database and run `postern audit reindex`", v, schemaVersion)
	case err != nil:
		if _, err := tx.ExecContext(ctx, ix.d.rebind(`INSERT INTO audit_meta (name, value) VALUES ('schema', ?)`),
			strconv.Itoa(schemaVersion)); err != nil {
			return err
		}
	}
	return tx.Commit()
}
