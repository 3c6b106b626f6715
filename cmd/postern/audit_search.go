package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/auditindex"
	"github.com/postern/postern/proxy/config"
)

func init() {
	register(command{name: "audit search", summary: "search the audit index for decisions", run: runAuditSearch})
	register(command{name: "audit reindex", summary: "rebuild the audit index from the audit log", run: runAuditReindex})
}

// openConfiguredIndex loads the configuration and opens its audit index.
func openConfiguredIndex(ctx context.Context, configPath string) (*config.Config, *auditindex.Index, error) {
	if configPath == "" {
		return nil, nil, errors.New("no -config given: the audit index is configured in the audit block")
	}
	cfg, err := config.Load(configPath)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Audit == nil || cfg.Audit.Index == nil {
		return nil, nil, fmt.Errorf("%s has no audit index (an index block inside audit)", configPath)
	}
	ix, err := auditindex.Open(ctx, auditIndexOptions(cfg.Audit.Index, slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, nil, err
	}
	return cfg, ix, nil
}

// Exit statuses of `postern audit search`, as grep's.
const (
	searchFound   = 0
	searchNone    = 1
	searchTrouble = 2
)

// scoreFlag is an optional number.
type scoreFlag struct{ v **float64 }

func (s *scoreFlag) String() string {
	if s.v == nil || *s.v == nil {
		return ""
	}
	return strconv.FormatFloat(**s.v, 'g', -1, 64)
}

func (s *scoreFlag) Set(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f != f {
		return errors.New("not a number")
	}
	*s.v = &f
	return nil
}

// timeFlag is a point in time: RFC 3339, a date, a date and time (UTC), or a duration before now ("24h").
type timeFlag struct {
	t   *time.Time
	now func() time.Time
}

func (f *timeFlag) String() string {
	if f.t == nil || f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Set(v string) error {
	t, err := parseWhen(v, f.now())
	if err != nil {
		return err
	}
	*f.t = t
	return nil
}

func parseWhen(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(strings.TrimPrefix(v, "-")); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("want RFC 3339 (2026-03-04T10:00:00Z), a date (2026-03-04, UTC), or a duration before now (24h)")
}

func runAuditSearch(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern audit search", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "the configuration `FILE` whose audit index to search")
	var q auditindex.Query
	now := time.Now
	fs.Var(&timeFlag{&q.From, now}, "from", "records at or after `TIME` (RFC 3339, a UTC date, or a duration before now: 24h)")
	fs.Var(&timeFlag{&q.To, now}, "to", "records before `TIME`")
	fs.StringVar(&q.Sender, "sender", "", "envelope sender `ADDRESS`, @domain, or <> for the null sender")
	fs.StringVar(&q.Recipient, "rcpt", "", "a recipient `ADDRESS`, or @domain")
	fs.StringVar(&q.User, "user", "", "authenticated user or mailbox owner `NAME`")
	fs.StringVar(&q.Mailbox, "mailbox", "", "IMAP mailbox `NAME`")
	fs.StringVar(&q.MessageID, "message-id", "", "Message-ID `ID`, with or without <>")
	fs.StringVar(&q.Digest, "digest", "", "SHA-256 `HEX` of the message as received, sent on or served")
	fs.StringVar(&q.Action, "action", "", "final `ACTION`: accept, reject, tempfail, discard, quarantine")
	fs.StringVar(&q.Policy, "policy", "", "a policy `NAME` that matched")
	fs.StringVar(&q.Plugin, "plugin", "", "a plugin `NAME` that ran")
	fs.StringVar(&q.Tag, "tag", "", "a tag `NAME` or NAME=VALUE")
	fs.Var(&scoreFlag{&q.MinScore}, "min-score", "score at least `N`")
	fs.Var(&scoreFlag{&q.MaxScore}, "max-score", "score at most `N`")
	fs.StringVar(&q.Listener, "listener", "", "listener `NAME`")
	fs.StringVar(&q.Protocol, "protocol", "", "`PROTOCOL`: smtp, submission, pop3, imap")
	fs.StringVar(&q.Node, "node", "", "only the chain of `NODE`")
	fs.StringVar(&q.Event, "event", "", "record `EVENT` (decision, pending, outcome, …; default all but outcome)")
	fs.StringVar(&q.Withheld, "withheld", "", "quarantine `KEY` of a withheld message")
	fs.IntVar(&q.Limit, "limit", auditindex.DefaultLimit, fmt.Sprintf("at most `N` records (up to %d)", auditindex.MaxLimit))
	fs.IntVar(&q.Offset, "offset", 0, "skip the first `N` records")
	format := fs.String("format", "table", "output `FORMAT`: table, json (one object per line) or csv")
	count := fs.Bool("count", false, "print only the number of matching records")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: postern audit search -config FILE [filters] [-format table|json|csv]

Searches the audit index (the index block of the audit configuration) for records,
newest first. Filters combine: every one given must match. Addresses and user names
match whatever their case; -sender and -rcpt take @domain for a whole domain.

Exit status: 0 records found, 1 none found, 2 usage or index error.

flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return searchFound
		}
		return searchTrouble
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "postern audit search: unexpected argument %q (filters are flags)\n", fs.Arg(0))
		return searchTrouble
	}
	switch {
	case *format != "table" && *format != "json" && *format != "csv":
		fmt.Fprintf(stderr, "postern audit search: -format %q: want table, json or csv\n", *format)
		return searchTrouble
	case q.Limit < 1 || q.Limit > auditindex.MaxLimit:
		fmt.Fprintf(stderr, "postern audit search: -limit %d: want 1 to %d\n", q.Limit, auditindex.MaxLimit)
		return searchTrouble
	case q.Offset < 0:
		fmt.Fprintln(stderr, "postern audit search: -offset must not be negative")
		return searchTrouble
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	_, ix, err := openConfiguredIndex(ctx, *configPath)
	if err != nil {
		reportConfigError(stderr, err)
		return searchTrouble
	}
	defer ix.Close()
	if *count {
		n, err := ix.Count(ctx, q)
		if err != nil {
			fmt.Fprintf(stderr, "postern audit search: %v\n", err)
			return searchTrouble
		}
		fmt.Fprintln(stdout, n)
		if n == 0 {
			return searchNone
		}
		return searchFound
	}
	rows, err := ix.Search(ctx, q)
	if err != nil {
		fmt.Fprintf(stderr, "postern audit search: %v\n", err)
		return searchTrouble
	}
	switch *format {
	case "json":
		err = writeJSONRows(stdout, rows)
	case "csv":
		err = writeCSVRows(stdout, rows)
	default:
		err = writeTableRows(stdout, rows)
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern audit search: %v\n", err)
		return searchTrouble
	}
	if len(rows) == 0 {
		return searchNone
	}
	return searchFound
}

// jsonRow is one line of -format json: the record exactly as the log has it, with its node and outcome.
type jsonRow struct {
	Node    string          `json:"node"`
	Seq     uint64          `json:"seq"`
	Record  json.RawMessage `json:"record"`
	Outcome *audit.Reply    `json:"outcome,omitempty"`
}

func writeJSONRows(w io.Writer, rows []auditindex.Row) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, r := range rows {
		if err := enc.Encode(jsonRow{Node: r.Node, Seq: r.Seq, Record: r.Line, Outcome: r.Outcome}); err != nil {
			return err
		}
	}
	return nil
}

var csvHeader = []string{"time", "node", "seq", "event", "listener", "protocol", "client_ip", "action", "score",
	"sender", "recipients", "user", "mailbox", "message_id", "sha256_in", "policies", "reply", "withheld"}

func writeCSVRows(w io.Writer, rows []auditindex.Row) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, r := range rows {
		rec := &r.Record
		if err := cw.Write([]string{
			rec.Time.UTC().Format(time.RFC3339Nano), cell(r.Node), strconv.FormatUint(r.Seq, 10), string(rec.Event),
			cell(rec.Listener), rec.Protocol, rec.ClientIP, rec.Action, strconv.FormatFloat(rec.Score, 'g', -1, 64),
			cell(senderOf(rec)), cell(strings.Join(rcptsOf(rec), " ")), cell(userOf(rec)), cell(rec.Mailbox),
			cell(rec.MessageID), rec.SHA256In, cell(policiesOf(rec)), cell(replyOf(r)), cell(rec.Withheld),
		}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// cell keeps a value a client chose from being read as a formula by a spreadsheet (=, +, -, @ first), the way
// OWASP advises for CSV exports: with a leading apostrophe.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func writeTableRows(w io.Writer, rows []auditindex.Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tNODE\tSEQ\tLISTENER\tACTION\tSCORE\tFROM/USER\tTO/MAILBOX\tMESSAGE-ID\tREPLY")
	for _, r := range rows {
		rec := &r.Record
		who, where := senderOf(rec), strings.Join(rcptsOf(rec), ",")
		if rec.MailboxUser != "" || rec.Mailbox != "" {
			who, where = userOf(rec), rec.Mailbox
		} else if who == "" && rec.AuthUser != "" {
			who = rec.AuthUser
		}
		action := rec.Action
		if action == "" {
			action = string(rec.Event)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rec.Time.UTC().Format("2006-01-02 15:04:05"),
			plain(r.Node), r.Seq, plain(rec.Listener), plain(action), strconv.FormatFloat(rec.Score, 'g', -1, 64),
			plain(clipText(who, 40)), plain(clipText(where, 40)), plain(clipText(rec.MessageID, 50)), plain(clipText(replyOf(r), 40)))
	}
	return tw.Flush()
}

// plain makes a value safe for a terminal: control characters (an escape sequence a client put in an address)
// are shown as \x.. instead of being sent to the terminal; "-" stands for nothing.
func plain(s string) string {
	if s == "" {
		return "-"
	}
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '\t' || c == ' ':
			b.WriteByte(' ')
		case unicode.IsControl(c) || unicode.Is(unicode.Bidi_Control, c):
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

func clipText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func senderOf(rec *audit.Record) string {
	if rec.MailFrom == nil {
		return ""
	}
	if *rec.MailFrom == "" {
		return "<>"
	}
	return *rec.MailFrom
}

func rcptsOf(rec *audit.Record) []string {
	out := append([]string(nil), rec.Rcpts...)
	if rec.Rcpt != "" {
		out = append(out, rec.Rcpt)
	}
	return out
}

func userOf(rec *audit.Record) string {
	if rec.MailboxUser != "" {
		return rec.MailboxUser
	}
	return rec.AuthUser
}

func policiesOf(rec *audit.Record) string {
	var names []string
	for _, p := range rec.Policies {
		if p.Matched {
			names = append(names, p.Name)
		}
	}
	return strings.Join(names, " ")
}

// replyOf is what the client was told: the record's reply, or for a pending record its outcome's.
func replyOf(r auditindex.Row) string {
	reply := r.Record.Reply
	if reply == nil {
		reply = r.Outcome
	}
	if reply == nil {
		return ""
	}
	var parts []string
	if reply.Code != 0 {
		parts = append(parts, strconv.Itoa(reply.Code))
	}
	for _, s := range []string{reply.Status, reply.Enhanced, reply.Text} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " ")
}

func runAuditReindex(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern audit reindex", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "the configuration `FILE`: its audit log is read into its audit index")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: postern audit reindex -config FILE

Rebuilds this node's records in the audit index from the audit log, the source of
truth: every record of the log (its rotated files, then the active one) is indexed
again, and records of other nodes in a shared database are left alone. The chain is
checked as it is read; at a broken record the index stops there and the command
fails (postern audit verify says more). Postern may run meanwhile.

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
	if fs.NArg() > 0 || *configPath == "" {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg, ix, err := openConfiguredIndex(ctx, *configPath)
	if err != nil {
		return reportConfigError(stderr, err)
	}
	defer ix.Close()
	node := auditNode(cfg.Audit.Index)
	start := time.Now()
	n, err := auditindex.Reindex(ctx, ix, node, cfg.Audit.Path)
	if err != nil {
		fmt.Fprintf(stderr, "postern audit reindex: %d records indexed, then: %v\n", n, err)
		return 1
	}
	fmt.Fprintf(stdout, "reindexed: %s of %s into the %s index as node %s (%v)\n", plural(n, "record"),
		cfg.Audit.Path, ix.Driver(), node, time.Since(start).Round(time.Millisecond))
	return 0
}

// indexToVerify is the configuration's audit index, for `postern audit verify -config`; nil when there is none
// (or the configuration does not load, which the file check reports).
func indexToVerify(configPath string) *config.Config {
	if configPath == "" {
		return nil
	}
	cfg, err := config.Load(configPath)
	if err != nil || cfg.Audit == nil || cfg.Audit.Index == nil {
		return nil
	}
	return cfg
}

// worseVerify combines two exit statuses of verify: a broken chain is the finding, whatever else failed.
func worseVerify(a, b int) int {
	if a == verifyBroken || b == verifyBroken {
		return verifyBroken
	}
	return max(a, b)
}

// verifyIndexChains checks every chain in the configuration's audit index, for `postern audit verify -config`,
// and returns the exit status.
func verifyIndexChains(cfg *config.Config, stdout, stderr io.Writer) int {
	ctx := context.Background()
	ix, err := auditindex.Open(ctx, auditIndexOptions(cfg.Audit.Index, slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Fprintf(stderr, "postern audit verify: the audit index: %v\n", err)
		return verifyFailed
	}
	defer ix.Close()
	results, err := ix.VerifyChains(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "postern audit verify: the audit index: %v\n", err)
		return verifyFailed
	}
	status := verifyIntact
	for _, r := range results {
		if ce, ok := errors.AsType[*audit.ChainError](r.Err); ok {
			fmt.Fprintf(stderr, "broken: index node %s: seq %d: %s: %s\n", r.Node, ce.Seq, ce.Problem, ce.Detail)
			if r.Records > 0 {
				fmt.Fprintf(stderr, "the %d records before it are intact (seq %d-%d, last hash %s)\n",
					r.Records, r.FirstSeq, r.LastSeq, r.LastHash)
			}
			status = verifyBroken
			continue
		}
		if r.Err != nil {
			fmt.Fprintf(stderr, "postern audit verify: index node %s: %v\n", r.Node, r.Err)
			if status == verifyIntact {
				status = verifyFailed
			}
			continue
		}
		from := ""
		if r.Partial {
			from = ", starting after records not in the index"
		}
		fmt.Fprintf(stdout, "ok: index node %s: %s, chain intact (seq %d-%d%s), last hash %s\n", r.Node,
			plural(r.Records, "record"), r.FirstSeq, r.LastSeq, from, r.LastHash)
	}
	if len(results) == 0 {
		fmt.Fprintf(stdout, "ok: no records in the %s index\n", ix.Driver())
	}
	return status
}
