package auditindex

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/audit"
)

// twoNodes indexes two chains, mx1 with 6 records and mx2 with 4, and returns the index.
func twoNodes(t *testing.T, ix *Index) {
	t.Helper()
	for node, n := range map[string]int{"mx1": 6, "mx2": 4} {
		path := filepath.Join(t.TempDir(), "audit.log")
		l := openLog(t, path, nil)
		appendN(t, l, 1, n)
		l.Close()
		if _, err := Reindex(context.Background(), ix, node, path); err != nil {
			t.Fatal(err)
		}
	}
}

func chainProblem(t *testing.T, ix *Index, node string) (ChainResult, *audit.ChainError) {
	t.Helper()
	res, err := ix.VerifyChains(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Node == node {
			ce, _ := errors.AsType[*audit.ChainError](r.Err)
			if r.Err != nil && ce == nil {
				t.Fatalf("%s: %v", node, r.Err)
			}
			return r, ce
		}
	}
	t.Fatalf("no result for %s in %+v", node, res)
	return ChainResult{}, nil
}

func TestVerifyChains(t *testing.T) {
	backends(t, testVerifyChains)
}

func testVerifyChains(t *testing.T, open func(*testing.T) *Index) {
	ctx := context.Background()
	exec := func(ix *Index, q string, args ...any) {
		t.Helper()
		if ix.Driver() == DriverPostgres {
			q = strings.ReplaceAll(q, "CAST(replace(CAST(line AS TEXT),", "convert_to(replace(convert_from(line, 'UTF8'),")
			q = strings.ReplaceAll(q, ") AS BLOB)", "), 'UTF8')")
		}
		if _, err := ix.db.ExecContext(ctx, ix.d.rebind(q), args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("intact", func(t *testing.T) {
		ix := open(t)
		twoNodes(t, ix)
		res, err := ix.VerifyChains(ctx)
		if err != nil || len(res) != 2 {
			t.Fatalf("%+v, %v", res, err)
		}
		for _, r := range res {
			want := map[string]int{"mx1": 6, "mx2": 4}[r.Node]
			if r.Err != nil || r.Records != want || r.FirstSeq != 1 || r.LastSeq != uint64(want) || r.Partial || len(r.LastHash) != 64 {
				t.Errorf("%+v", r)
			}
		}
	})
	for _, c := range []struct {
		name    string
		tamper  string
		args    []any
		problem audit.Problem
		seq     uint64
		records int
	}{
		{"line changed", `UPDATE audit_records SET line = CAST(replace(CAST(line AS TEXT), '"accept"', '"reject"') AS BLOB) WHERE node = ? AND seq = 3`,
			[]any{"mx1"}, audit.ProblemEdited, 3, 2},
		{"row deleted", `DELETE FROM audit_records WHERE node = ? AND seq = 4`, []any{"mx1"}, audit.ProblemMissing, 5, 3},
		{"last row deleted", `DELETE FROM audit_records WHERE node = ? AND seq = 6`, []any{"mx1"}, audit.ProblemTruncated, 5, 5},
		{"line moved to another row", `UPDATE audit_records SET line = (SELECT line FROM audit_records WHERE node = 'mx2' AND seq = 2) WHERE node = ? AND seq = 3`,
			[]any{"mx1"}, audit.ProblemReordered, 3, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			ix := open(t)
			twoNodes(t, ix)
			exec(ix, c.tamper, c.args...)
			r, ce := chainProblem(t, ix, "mx1")
			if ce == nil || ce.Problem != c.problem || ce.Seq != c.seq || r.Records != c.records {
				t.Fatalf("result %+v, problem %v; want %q at seq %d after %d records", r, ce, c.problem, c.seq, c.records)
			}
			// The other node's chain is not affected.
			if r, ce := chainProblem(t, ix, "mx2"); ce != nil || r.Records != 4 {
				t.Fatalf("mx2: %+v %v", r, ce)
			}
		})
	}
	t.Run("partial chain", func(t *testing.T) {
		ix := open(t)
		twoNodes(t, ix)
		exec(ix, `DELETE FROM audit_records WHERE node = 'mx2' AND seq < 3`)
		r, ce := chainProblem(t, ix, "mx2")
		if ce != nil || !r.Partial || r.FirstSeq != 3 || r.LastSeq != 4 || r.Records != 2 {
			t.Fatalf("%+v %v", r, ce)
		}
	})
}
