package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/config"
)

func init() {
	register(command{name: "audit verify", summary: "check an audit log's hash chain", run: runAuditVerify})
	register(command{name: "audit accept-truncation", summary: "continue an audit log that lost records, on record",
		run: runAcceptTruncation})
}

// auditHeadPath is where `postern run` keeps the audit chain head: in state_dir, away from the log, or beside
// the log when there is no state directory.
func auditHeadPath(cfg *config.Config) string {
	if cfg.StateDir != "" {
		return filepath.Join(cfg.StateDir, "audit.head")
	}
	return cfg.Audit.Path + ".head"
}

// auditTarget resolves the log and its head file from -config, or from PATH and -head; without -head, a head
// file beside the log (PATH.head) is used if there is one.
func auditTarget(configPath, headFlag string, args []string) (path, head string, err error) {
	if configPath != "" {
		if len(args) != 0 || headFlag != "" {
			return "", "", errors.New("-config names the log and its head: give no PATH and no -head")
		}
		cfg, err := config.Load(configPath)
		if err != nil {
			return "", "", err
		}
		if cfg.Audit == nil {
			return "", "", fmt.Errorf("%s has no audit block", configPath)
		}
		return cfg.Audit.Path, auditHeadPath(cfg), nil
	}
	if len(args) == 0 {
		return "", "", errors.New("no audit log given")
	}
	head = headFlag
	if head == "" && len(args) == 1 {
		candidate := args[0] + ".head"
		if fi, err := os.Stat(args[0]); err == nil && fi.IsDir() {
			// The directory holding the log: its one head file, if it has one.
			if m, _ := filepath.Glob(filepath.Join(args[0], "*.head")); len(m) == 1 {
				candidate = m[0]
			}
		}
		if fi, err := os.Stat(candidate); err == nil && fi.Mode().IsRegular() {
			head = candidate
		}
	}
	return args[0], head, nil
}

// Exit statuses of `postern audit verify`.
const (
	verifyIntact = 0 // the chain is intact
	verifyBroken = 1 // a record is broken; the output names it
	verifyFailed = 2 // usage error, or the files could not be read
)

// runAuditVerify checks one audit log (its rotated files and the active one, as one chain) or the files given.
func runAuditVerify(args []string, stdout, stderr io.Writer) (status int) {
	fs := flag.NewFlagSet("postern audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	prev := fs.String("prev", "", "`HASH` of the record before the first one checked, or \"any\" (default: the first record starts the chain)")
	var anchors anchorList
	fs.Var(&anchors, "anchor", "a record `HASH` kept outside the log that must be in the chain (repeatable)")
	headFlag := fs.String("head", "", "the chain head `FILE` postern run keeps (state_dir/audit.head): the chain must reach it (default: PATH.head if it exists)")
	configPath := fs.String("config", "", "take the log and its head from the configuration `FILE` instead of PATH and -head")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: postern audit verify [-prev HASH|any] [-anchor HASH]... [-head FILE] PATH [FILE...]
       postern audit verify [-prev HASH|any] [-anchor HASH]... -config FILE

Checks an audit log's hash chain and names the first broken record. PATH is the log
as configured (audit.path): its rotated files PATH.<time> are checked first, in chain
order, then PATH itself, as one chain. PATH may also be the directory holding the log,
or one rotated file. With several arguments exactly those files are checked, in the
order given. With the chain head (-head, or -config), a chain that ends before it
(records cut off the end, a file truncated or deleted) is broken too.

With -config and an audit index (an index block), every chain in the index is
checked too, from the lines it stores: in a PostgreSQL index shared by several
nodes, the chain of each node.

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
	if fs.NArg() == 0 && *configPath == "" {
		fs.Usage()
		return verifyFailed
	}
	if cfg := indexToVerify(*configPath); cfg != nil {
		// After the log's own files: every chain the audit index holds (all nodes of a shared database).
		defer func() { status = worseVerify(status, verifyIndexChains(cfg, stdout, stderr)) }()
	}
	path, headPath, err := auditTarget(*configPath, *headFlag, fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "postern audit verify: not checked:")
		reportConfigError(stderr, err)
		return verifyFailed
	}
	files := fs.Args()
	if len(files) <= 1 {
		if files, err = audit.ChainFiles(path); err != nil && (headPath == "" || !errors.Is(err, iofs.ErrNotExist)) {
			fmt.Fprintf(stderr, "postern audit verify: %v\n", err)
			return verifyFailed
		}
	}
	// The head is read before the files: it never runs ahead of what is on disk, so a log being written is
	// never reported short.
	var kept audit.Head
	if headPath != "" {
		var ok bool
		if kept, ok, err = audit.ReadHead(headPath); err != nil {
			fmt.Fprintf(stderr, "postern audit verify: %v\n", err)
			return verifyFailed
		} else if !ok && *headFlag != "" {
			fmt.Fprintf(stderr, "postern audit verify: no chain head at %s\n", headPath)
			return verifyFailed
		} else if !ok {
			// From -config: a Postern that never ran with this state_dir has kept no head yet.
			fmt.Fprintf(stdout, "note: no chain head at %s yet: records cut off the end would not show\n", headPath)
		}
	}
	want := anchors
	if kept.Seq > 0 {
		want = append(slices.Clip(want), kept.Hash)
	}
	sum, err := audit.VerifyFiles(files, *prev, want...)
	if kept.Seq > 0 && sum.LastSeq < kept.Seq {
		if _, ok := errors.AsType[*audit.ChainError](err); ok || err == nil || len(files) == 0 {
			last := path
			if len(files) > 0 {
				last = files[len(files)-1]
			}
			err = audit.CheckHead(sum, headPath, kept, last)
		}
	}
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
	for i, seq := range sum.Unfinished {
		if i == 20 {
			fmt.Fprintf(stdout, "note: and %d more pending records without an outcome\n", len(sum.Unfinished)-i)
			break
		}
		fmt.Fprintf(stdout, "note: seq %d is a pending decision without an outcome: Postern stopped before the "+
			"message's reply was known; it may or may not have been delivered (see the upstream's log)\n", seq)
	}
	for _, a := range sum.Truncations {
		tr := a.Truncation
		fmt.Fprintf(stdout, "note: %s:%d (seq %d) records an accepted truncation: the log ended at seq %d, its chain head (%s) said seq %d\n",
			a.File, a.Line, a.Seq, tr.FoundSeq, tr.HeadFile, tr.KeptSeq)
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

// runAcceptTruncation opens an audit log that ends before its chain head, records the loss in the chain (a
// truncation record) and moves the head to it, so that `postern run` starts again. It is the deliberate step
// after an operator has looked at what was lost.
func runAcceptTruncation(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern audit accept-truncation", flag.ContinueOnError)
	fs.SetOutput(stderr)
	headFlag := fs.String("head", "", "the chain head `FILE` (default: PATH.head)")
	configPath := fs.String("config", "", "take the log and its head from the configuration `FILE`")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: postern audit accept-truncation -config FILE
       postern audit accept-truncation [-head FILE] PATH

postern run refuses an audit log that ends before the chain head it keeps (records cut
off, the file truncated, replaced or deleted). Once you have kept the files as evidence
and understood the loss, this continues the chain from where the log now ends, with a
"truncation" record that says what the head was and where the log ended. Run it while
Postern is stopped.

flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if (fs.NArg() == 0) == (*configPath == "") || fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	path, headPath, err := auditTarget(*configPath, *headFlag, fs.Args())
	if err == nil && headPath == "" {
		headPath = path + ".head"
	}
	if err != nil {
		return reportConfigError(stderr, err)
	}
	if _, ok, err := audit.ReadHead(headPath); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("no chain head at %s: nothing to accept", headPath)
		}
		fmt.Fprintf(stderr, "postern audit accept-truncation: %v\n", err)
		return 1
	}
	l, err := audit.Open(audit.Options{Path: path, HeadPath: headPath, AcceptTruncation: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintf(stderr, "postern audit accept-truncation: %v\n", err)
		return 1
	}
	lost := l.Accepted()
	seq, hash := l.Head()
	if err := l.Close(); err != nil {
		fmt.Fprintf(stderr, "postern audit accept-truncation: %v\n", err)
		return 1
	}
	if lost == nil {
		fmt.Fprintf(stdout, "nothing to accept: %s holds its chain head (seq %d)\n", path, seq)
		return 0
	}
	fmt.Fprintf(stdout, "accepted: %s ended at seq %d, its chain head said seq %d (hash %s); recorded as seq %d, "+
		"new head %s\n", path, lost.FoundSeq, lost.KeptSeq, lost.KeptHash, seq, hash)
	return 0
}
