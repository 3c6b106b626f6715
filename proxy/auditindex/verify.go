package auditindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/postern/postern/proxy/audit"
)

// ChainResult is the verification of one node's chain in the index.
type ChainResult struct {
	Node string
	// Records is the number of intact records, FirstSeq and LastSeq the first and last of them, LastHash the
	// last one's hash.
	Records           int
	FirstSeq, LastSeq uint64
	LastHash          string
	// Partial is set when the chain in the index does not start at seq 1 (its oldest records were not indexed,
	// or were removed): it is checked from its first record on.
	Partial bool
	// Err says where the chain is broken: a *audit.ChainError naming the record by seq, or a database error.
	Err error
}

// VerifyChains recomputes the hash chain of every node in the index from the stored lines, as `postern audit
// verify` does for files: a line changed, removed, replaced or reordered in the database shows. It also checks
// that each stored line is the record its row says (seq), so that a row moved to another place shows too.
func (ix *Index) VerifyChains(ctx context.Context) ([]ChainResult, error) {
	nodes, err := ix.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []ChainResult
	for _, node := range nodes {
		out = append(out, ix.verifyNode(ctx, node))
	}
	return out, nil
}

func (ix *Index) verifyNode(ctx context.Context, node string) ChainResult {
	res := ChainResult{Node: node}
	var low sql.NullInt64
	err := ix.db.QueryRowContext(ctx, ix.d.rebind(`SELECT MIN(seq) FROM audit_records WHERE node = ?`), node).Scan(&low)
	if err != nil {
		res.Err = fmt.Errorf("auditindex: %s: %w", node, err)
		return res
	}
	first := low.Int64 // no rows: the head check below finds them all missing
	prev := ""
	if first != 1 {
		res.Partial, prev = true, audit.AnyPrev
	}
	rows, err := ix.db.QueryContext(ctx, ix.d.rebind(`SELECT seq, line FROM audit_records WHERE node = ? ORDER BY seq`), node)
	if err != nil {
		res.Err = fmt.Errorf("auditindex: %s: %w", node, err)
		return res
	}
	defer rows.Close()
	// The lines go to audit.Verify as the log file they came from, one per line.
	pr, pw := io.Pipe()
	var rowErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		var seq int64
		var line []byte
		for rows.Next() {
			if err := rows.Scan(&seq, &line); err != nil {
				rowErr = err
				break
			}
			if got := lineSeq(line); got != uint64(seq) {
				rowErr = &audit.ChainError{Seq: uint64(seq), Problem: audit.ProblemReordered,
					Detail: fmt.Sprintf("the row of seq %d holds the record of seq %d", seq, got)}
				break
			}
			if _, err := pw.Write(append(line, '\n')); err != nil {
				return
			}
		}
		if rowErr == nil {
			rowErr = rows.Err()
		}
		pw.CloseWithError(rowErr)
	}()
	last, n, err := audit.Verify(pr, prev)
	pr.Close()
	<-done
	res.Records, res.LastHash = n, last
	if n > 0 {
		res.FirstSeq = uint64(first)
		res.LastSeq = uint64(first) + uint64(n) - 1
	}
	if ce, ok := errors.AsType[*audit.ChainError](err); ok {
		ce.Line = 0 // the line number of the stream means nothing; the seq names the record
	}
	if err == nil && rowErr != nil {
		err = rowErr
	}
	if err == nil {
		// The node's last indexed record, kept apart from the rows: rows deleted from the end show.
		var headSeq int64
		var headHash string
		herr := ix.db.QueryRowContext(ctx, ix.d.rebind(`SELECT seq, hash FROM audit_nodes WHERE node = ?`), node).Scan(&headSeq, &headHash)
		switch {
		case herr != nil:
			err = fmt.Errorf("auditindex: %s: %w", node, herr)
		case uint64(headSeq) > res.LastSeq:
			err = &audit.ChainError{Seq: res.LastSeq, Problem: audit.ProblemTruncated, Detail: fmt.Sprintf(
				"the chain ends at seq %d, but seq %d was indexed: rows were removed from its end", res.LastSeq, headSeq)}
		case uint64(headSeq) == res.LastSeq && headHash != res.LastHash:
			err = &audit.ChainError{Seq: res.LastSeq, Problem: audit.ProblemLink, Detail: fmt.Sprintf(
				"the last record's hash is not the one indexed (%s): it was replaced", headHash)}
		}
	}
	res.Err = err
	return res
}

// lineSeq reads the seq at the start of a line, 0 if there is none.
func lineSeq(line []byte) uint64 {
	const prefix = `{"v":1,"seq":`
	if len(line) < len(prefix) || string(line[:len(prefix)]) != prefix {
		return 0
	}
	var seq uint64
	for _, c := range line[len(prefix):] {
		if c < '0' || c > '9' {
			break
		}
		seq = seq*10 + uint64(c-'0')
	}
	return seq
}
