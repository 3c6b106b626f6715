package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/postern/postern/proxy/audit"
)

func init() {
	register(command{name: "audit verify", summary: "check an audit log's hash chain", run: runAuditVerify})
}

// Exit statuses of `postern audit verify`.
const (
	verifyIntact = 0 // the chain is intact
	verifyBroken = 1 // a record is broken; the output names it
	verifyFailed = 2 // usage error, or the files could not be read
)

// runAuditVerify checks one audit log (its rotated files and the active one, as one chain) or the files given.
func runAuditVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	prev := fs.String("prev", "", "`HASH` of the record before the first one checked, or \"any\" (default: the first record starts the chain)")
	var anchors anchorList
	fs.Var(&anchors, "anchor", "a record `HASH` kept outside the log that must be in the chain (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: postern audit verify [-prev HASH|any] [-anchor HASH]... PATH [FILE...]

Checks an audit log's hash chain and names the first broken record. PATH is the log
as configured (audit.path): its rotated files PATH.<time> are checked first, in chain
order, then PATH itself, as one chain. PATH may also be the directory holding the log,
or one rotated file. With several arguments exactly those files are checked, in the
order given.

Exit status: 0 chain intact, 1 chain broken, 2 usage or read error.

flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return verifyIntact
		}
		return verifyFailed
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return verifyFailed
	}
	files := fs.Args()
	if len(files) == 1 {
		var err error
		if files, err = audit.ChainFiles(files[0]); err != nil {
			fmt.Fprintf(stderr, "postern audit verify: %v\n", err)
			return verifyFailed
		}
	}
	sum, err := audit.VerifyFiles(files, *prev, anchors...)
	if ce, ok := errors.AsType[*audit.ChainError](err); ok {
		fmt.Fprintf(stderr, "broken: %v\n", ce)
		if sum.Records > 0 {
			fmt.Fprintf(stderr, "the %d records before it are intact (seq %d-%d, last hash %s)\n",
				sum.Records, sum.FirstSeq, sum.LastSeq, sum.LastHash)
		}
		return verifyBroken
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern audit verify: %v\n", err)
		return verifyFailed
	}
	for _, r := range sum.Recoveries {
		fmt.Fprintf(stdout, "note: %s:%d (seq %d) records an interrupted write: %d bytes removed from %s at offset %d (sha256 %s)\n",
			r.File, r.Line, r.Seq, r.Recovery.Bytes, r.Recovery.File, r.Recovery.Offset, r.Recovery.SHA256)
	}
	if sum.Records == 0 {
		fmt.Fprintf(stdout, "ok: no records in %s\n", plural(sum.Files, "file"))
		return verifyIntact
	}
	fmt.Fprintf(stdout, "ok: %s in %s, chain intact (seq %d-%d), last hash %s\n",
		plural(sum.Records, "record"), plural(sum.Files, "file"), sum.FirstSeq, sum.LastSeq, sum.LastHash)
	return verifyIntact
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// anchorList collects repeated -anchor flags.
type anchorList []string

func (a *anchorList) String() string { return strings.Join(*a, ",") }

func (a *anchorList) Set(s string) error {
	*a = append(*a, s)
	return nil
}
