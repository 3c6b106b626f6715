package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/control"
	"github.com/postern/postern/proxy/embedsmtp"
	"github.com/postern/postern/proxy/quarantine"
)

func init() {
	register(command{name: "quarantine list", summary: "list quarantined messages", run: runQuarantineList})
	register(command{name: "quarantine show", summary: "show a quarantined message's record (and the message)",
		run: runQuarantineShow})
	register(command{name: "quarantine release", summary: "deliver a quarantined message, on record",
		run: runQuarantineRelease})
	register(command{name: "quarantine delete", summary: "delete a quarantined message, on record",
		run: runQuarantineDelete})
}

// maxReason bounds -reason: it goes into one control command line (1 KiB, URL-encoded) and one audit record.
const maxReason = 300

// quarantineConfig loads the configuration and its quarantine; a message for stderr on failure.
func quarantineConfig(path string, stderr io.Writer) (*config.Config, int) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, reportConfigError(stderr, err)
	}
	if cfg.Quarantine == nil {
		fmt.Fprintf(stderr, "postern quarantine: %s has no quarantine (set state_dir, or a quarantine block with dir)\n", path)
		return nil, 1
	}
	return cfg, 0
}

// readStore opens the store for reading: nothing is changed, so no lock and no audit log are needed.
func readStore(cfg *config.Config) (*quarantine.Store, error) {
	if _, err := os.Stat(cfg.Quarantine.Dir); err != nil {
		return nil, fmt.Errorf("quarantine %s: %w", cfg.Quarantine.Dir, err)
	}
	return quarantine.Open(quarantine.Options{Dir: cfg.Quarantine.Dir, Logger: slog.New(slog.DiscardHandler)})
}

func runQuarantineList(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern quarantine list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern quarantine list -config FILE.hcl [filters] [-json]")
		fs.PrintDefaults()
	}
	var f quarantine.Filter
	configPath := fs.String("config", "", "the configuration `FILE` (required)")
	since := fs.String("since", "", "entries stored at or after `TIME` (RFC 3339, 2006-01-02, or an age such as 24h or 7d)")
	until := fs.String("until", "", "entries stored before `TIME` (as -since)")
	fs.StringVar(&f.Listener, "listener", "", "entries of the listener `NAME`")
	fs.StringVar(&f.Stage, "stage", "", "entries withheld at `STAGE`: smtp, retrieval or append")
	fs.StringVar(&f.Policy, "policy", "", "entries the policy `NAME` withheld")
	fs.StringVar(&f.Sender, "sender", "", "entries whose envelope sender contains `TEXT`")
	fs.StringVar(&f.Recipient, "rcpt", "", "entries with a recipient containing `TEXT`")
	fs.StringVar(&f.User, "user", "", "entries of the mailbox or authenticated user containing `TEXT`")
	fs.StringVar(&f.MessageID, "message-id", "", "entries of the Message-ID `ID` (with or without <>)")
	fs.StringVar(&f.Subject, "subject", "", "entries whose Subject contains `TEXT`")
	state := fs.String("state", "all", "`STATE`: held (not released), released or all")
	fs.IntVar(&f.Limit, "limit", 0, "at most `N` entries, newest first (0: all)")
	asJSON := fs.Bool("json", false, "print JSON lines, one entry's metadata each")
	quiet := fs.Bool("q", false, "print only the IDs, one a line (for release and delete in scripts)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" || fs.NArg() != 0 || (*quiet && *asJSON) {
		fs.Usage()
		return 2
	}
	var err error
	now := time.Now()
	if f.Since, err = parseWhen(*since, now); err != nil {
		fmt.Fprintf(stderr, "postern quarantine list: -since: %v\n", err)
		return 2
	}
	if f.Until, err = parseWhen(*until, now); err != nil {
		fmt.Fprintf(stderr, "postern quarantine list: -until: %v\n", err)
		return 2
	}
	switch *state {
	case "all":
	case "held", "released":
		v := *state == "released"
		f.Released = &v
	default:
		fmt.Fprintf(stderr, "postern quarantine list: -state: %q is not held, released or all\n", *state)
		return 2
	}
	if f.Stage != "" && f.Stage != quarantine.StageSMTP && f.Stage != quarantine.StageRetrieval && f.Stage != quarantine.StageAppend {
		fmt.Fprintf(stderr, "postern quarantine list: -stage: %q is not smtp, retrieval or append\n", f.Stage)
		return 2
	}
	cfg, code := quarantineConfig(*configPath, stderr)
	if cfg == nil {
		return code
	}
	q, err := readStore(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "postern quarantine list: %v\n", err)
		return 1
	}
	list, err := q.List(f)
	if err != nil {
		fmt.Fprintf(stderr, "postern quarantine list: %v\n", err)
		return 1
	}
	if *quiet {
		for _, m := range list {
			fmt.Fprintln(stdout, m.ID)
		}
		return 0
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, m := range list {
			if err := enc.Encode(m); err != nil {
				return 1
			}
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTORED\tSTAGE\tLISTENER\tPOLICY\tFROM/USER\tTO\tSUBJECT\tSTATE")
	for _, m := range list {
		who, to := m.MailFrom, strings.Join(m.Rcpts, ",")
		if m.Stage != quarantine.StageSMTP {
			who, to = m.MailboxUser, m.Mailbox
		}
		if who == "" && m.Stage == quarantine.StageSMTP {
			who = "<>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Time.Local().Format("2006-01-02 15:04:05"),
			m.Stage, safe(m.Listener, 20), safe(m.Policy, 20), safe(who, 32), safe(to, 32), safe(m.Subject, 40),
			entryState(m))
	}
	tw.Flush()
	if len(list) == 1 {
		fmt.Fprintln(stdout, "1 entry")
	} else {
		fmt.Fprintf(stdout, "%d entries\n", len(list))
	}
	return 0
}

func entryState(m *quarantine.Meta) string {
	switch {
	case m.Released != nil:
		return "released"
	case m.Orphan:
		return "no-metadata"
	}
	return "held"
}

// safe makes text from a message fit for a terminal: control characters and invalid UTF-8 are escaped (a
// Subject can carry escape sequences), and it is cut to n runes (0: not cut).
func safe(s string, n int) string {
	var b strings.Builder
	for runes := 0; len(s) > 0; runes++ {
		if n > 0 && runes == n {
			b.WriteString("…")
			break
		}
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 ||
			(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
			// Controls, and the bidirectional overrides that make a terminal show text in another order.
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

func runQuarantineShow(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern quarantine show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern quarantine show -config FILE.hcl [-json | -message] ID")
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "the configuration `FILE` (required)")
	asJSON := fs.Bool("json", false, "print the entry's metadata as JSON")
	raw := fs.Bool("message", false, "print the message itself, byte for byte as it was received")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" || fs.NArg() != 1 || (*asJSON && *raw) {
		fs.Usage()
		return 2
	}
	cfg, code := quarantineConfig(*configPath, stderr)
	if cfg == nil {
		return code
	}
	q, err := readStore(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "postern quarantine show: %v\n", err)
		return 1
	}
	id, err := q.Resolve(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "postern quarantine show: %v\n", err)
		return 1
	}
	m, err := q.Get(id)
	if err != nil {
		fmt.Fprintf(stderr, "postern quarantine show: %v\n", err)
		return 1
	}
	switch {
	case *raw:
		f, err := q.Message(id)
		if err != nil {
			fmt.Fprintf(stderr, "postern quarantine show: %v\n", err)
			return 1
		}
		defer f.Close()
		if _, err := io.Copy(stdout, f); err != nil {
			fmt.Fprintf(stderr, "postern quarantine show: %v\n", err)
			return 1
		}
		return 0
	case *asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(m); err != nil {
			return 1
		}
		return 0
	}
	printEntry(stdout, m)
	return 0
}

// printEntry prints an entry's metadata for a person.
func printEntry(w io.Writer, m *quarantine.Meta) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, safe(v, 0))
		}
	}
	row("ID", m.ID)
	row("Stored", m.Time.Local().Format(time.RFC3339))
	row("State", entryState(m))
	row("Stage", m.Stage)
	row("Listener", m.Listener)
	row("Protocol", m.Protocol)
	row("Session", m.Session)
	row("Client", m.ClientIP)
	row("HELO", m.HELO)
	row("TLS", m.TLS)
	row("Auth user", m.AuthUser)
	if m.Stage == quarantine.StageSMTP && !m.Orphan {
		from := m.MailFrom
		if from == "" {
			from = "<>"
		}
		row("Sender", from)
		row("Recipients", strings.Join(m.Rcpts, ", "))
	}
	row("Mailbox user", m.MailboxUser)
	row("Mailbox", m.Mailbox)
	if m.UID != 0 {
		row("UID", fmt.Sprintf("%d (UIDVALIDITY %d)", m.UID, m.UIDValidity))
	}
	row("UIDL", m.UIDL)
	row("Message-ID", m.MessageID)
	row("Subject", m.Subject)
	row("Size", fmt.Sprintf("%d bytes", m.Size))
	row("SHA-256", m.SHA256)
	row("Action", m.Action)
	row("Policy", m.Policy)
	row("Plugin", m.Plugin)
	row("Reason", m.Verdict)
	if m.Decision != nil {
		row("Score", fmt.Sprintf("%g", m.Decision.Score))
	}
	if m.AuditSeq != 0 {
		row("Audit record", fmt.Sprintf("seq %d, hash %s", m.AuditSeq, m.AuditHash))
	}
	if r := m.Released; r != nil {
		row("Released", fmt.Sprintf("%s by %s", r.Time.Local().Format(time.RFC3339), quarantine.Actor{Name: r.Actor, Via: r.Via}))
		row("Release reason", r.Reason)
		row("Release route", r.Route)
		row("Release reply", r.Reply)
	}
	tw.Flush()
}

// actor is who acts: -by, else $USER, else the login of the process's user.
func actor(by string) (quarantine.Actor, error) {
	name := by
	if name == "" {
		name = os.Getenv("USER")
	}
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		return quarantine.Actor{}, errors.New("who is acting? give -by NAME")
	}
	if len(name) > 100 || strings.ContainsAny(name, "\r\n\x00") {
		return quarantine.Actor{}, errors.New("-by: not a name")
	}
	return quarantine.Actor{Name: name, Via: "cli"}, nil
}

func runQuarantineRelease(args []string, stdout, stderr io.Writer) int {
	return runQuarantineAction("release", args, stdout, stderr)
}

func runQuarantineDelete(args []string, stdout, stderr io.Writer) int {
	return runQuarantineAction("delete", args, stdout, stderr)
}

// runQuarantineAction releases or deletes an entry. With `postern run` running, the proxy does it (through its
// control socket), so that its audit log stays the one writer of the chain; otherwise this process opens the
// audit log (its lock keeps a proxy from starting on it meanwhile) and acts on the store itself.
func runQuarantineAction(action string, args []string, stdout, stderr io.Writer) int {
	name := "postern quarantine " + action
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s -config FILE.hcl -reason TEXT [-by NAME] [-json] ID\n", name)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "the configuration `FILE` (required)")
	reason := fs.String("reason", "", "why, for the audit log (required)")
	by := fs.String("by", "", "who is acting, for the audit log and the trace field (default $USER)")
	asJSON := fs.Bool("json", false, "print the entry's metadata as JSON")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long the "+action+" may take")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	if strings.TrimSpace(*reason) == "" {
		fmt.Fprintf(stderr, "%s: give -reason: every %s is on record with its reason\n", name, action)
		return 2
	}
	if len(*reason) > maxReason || strings.ContainsAny(*reason, "\x00") || !utf8.ValidString(*reason) {
		fmt.Fprintf(stderr, "%s: -reason: at most %d bytes of text\n", name, maxReason)
		return 2
	}
	who, err := actor(*by)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	id := fs.Arg(0)
	if !quarantine.ValidID(id) {
		fmt.Fprintf(stderr, "%s: %q is not a quarantine entry ID\n", name, id)
		return 1
	}
	cfg, code := quarantineConfig(*configPath, stderr)
	if cfg == nil {
		return code
	}
	if q, err := readStore(cfg); err == nil { // the reference a notice quotes names its entry
		if id, err = q.Resolve(id); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	m, err := quarantineAct(ctx, cfg, action, id, who, *reason)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(m)
		return 0
	}
	switch action {
	case "release":
		r := m.Released
		fmt.Fprintf(stdout, "released %s through %s: %s\n", m.ID, r.Route, safe(r.Reply, 200))
	case "delete":
		fmt.Fprintf(stdout, "deleted %s\n", m.ID)
	}
	return 0
}

// quarantineAct carries out a release or deletion: through the running proxy when one answers on the control
// socket, else here.
func quarantineAct(ctx context.Context, cfg *config.Config, action, id string, who quarantine.Actor, reason string) (*quarantine.Meta, error) {
	if cfg.ControlSocket != "" {
		cmd := quarantineCommand(action, id, who, reason)
		if len(cmd) >= 1000 {
			return nil, errors.New("-reason and -by are too long for the control socket once encoded: shorten them")
		}
		reply, err := control.Send(ctx, cfg.ControlSocket, cmd)
		var re *control.ReplyError
		switch {
		case err == nil:
			m := new(quarantine.Meta)
			if err := json.Unmarshal([]byte(reply), m); err != nil {
				return nil, fmt.Errorf("the proxy's reply: %w", err)
			}
			return m, nil
		case errors.As(err, &re):
			return nil, err // the proxy refused: its reason
		case !notRunning(err):
			return nil, err
		}
	}
	return quarantineActHere(ctx, cfg, action, id, who, reason)
}

// notRunning reports whether a control socket error means no proxy is listening.
func notRunning(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// quarantineActHere acts on the store from this process, with the audit log opened here.
func quarantineActHere(ctx context.Context, cfg *config.Config, action, id string, who quarantine.Actor, reason string) (*quarantine.Meta, error) {
	logger := slog.New(slog.DiscardHandler)
	var al *audit.Log
	if cfg.Audit != nil {
		var err error
		al, err = audit.Open(audit.Options{Path: cfg.Audit.Path, HeadPath: auditHeadPath(cfg),
			MaxBytes: cfg.Audit.MaxBytes, SyncInterval: cfg.Audit.SyncInterval, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("opening the audit log (is postern run starting or stopping? its control socket "+
				"%s does not answer): %w", cfg.ControlSocket, err)
		}
		defer al.Close()
	}
	hostname, _ := os.Hostname()
	var embeds []*embedsmtp.Server
	defer func() {
		for _, e := range embeds {
			e.Close()
		}
	}()
	router := &quarantineRouter{hostname: hostname, config: func() *config.Config { return cfg },
		embedded: func(listener string) func(ctx context.Context) (net.Conn, error) {
			// Without the proxy, its embedded upstream is started here on the same directory.
			if listener == "" {
				for _, l := range cfg.Listeners {
					if l.Upstream == config.UpstreamEmbedded && l.Protocol != config.ProtocolPOP3 {
						listener = l.Name
						break
					}
				}
			}
			l := cfg.Listener(listener)
			if l == nil || cfg.StateDir == "" {
				return nil
			}
			e, err := embedsmtp.New(embedsmtp.Options{Dir: filepath.Join(cfg.StateDir, "mail", l.Name),
				MaxMessageBytes: max(l.Limits.MessageSize, 64<<20), Users: embedsmtp.TestUsers, Logger: logger})
			if err != nil {
				return nil
			}
			embeds = append(embeds, e)
			return e.Dial
		}}
	q, err := openQuarantine(cfg, al, router, hostname, logger)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	switch action {
	case "release":
		return q.Release(ctx, id, who, reason)
	default:
		m, err := q.Get(id)
		if err != nil {
			return nil, err
		}
		return m, q.Delete(id, who, reason)
	}
}
