package config

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Quarantine is the `quarantine` block: the one store every listener keeps withheld messages in, its retention,
// and the routes that release retrieval-time entries.
type Quarantine struct {
	// Dir is the store's directory: dir, or state_dir/quarantine by default.
	Dir string
	// MaxAge and MaxBytes bound the store (0: no bound; MaxAge is DefaultQuarantineMaxAge unless max_age says
	// otherwise); the proxy applies them at start and every Interval.
	MaxAge   time.Duration
	MaxBytes int64
	Interval time.Duration
	// Releases are the `release "<listener>"` blocks, in file order.
	Releases  []*Release
	DeclRange hcl.Range // the block; zero when the store exists by default
}

// Release says how entries of one listener are released: `release "<listener>" { via = ... }`.
type Release struct {
	Listener string
	// Via is "smtp", "lmtp" or "imap".
	Via     string
	Address string
	// TLS protects the connection (mode none, starttls or tls; the same attributes as upstream_tls).
	TLS UpstreamTLS
	// Recipient (smtp, lmtp) makes the recipient of a retrieval-time entry from its mailbox user ("%u").
	Recipient string
	// Username and PasswordFile authenticate (smtp: AUTH PLAIN; imap: LOGIN). Login (imap) makes the login
	// name from the mailbox user: "%u*postern" for a Dovecot master user named postern; master_user sets that.
	Username     string
	PasswordFile string
	Login        string
	// Mailbox (imap) is where released messages go; "" keeps an APPEND-time entry's own mailbox, and INBOX else.
	Mailbox   string
	DeclRange hcl.Range
}

// Release returns the release route of a listener, nil when none is configured.
func (q *Quarantine) Release(listener string) *Release {
	if q == nil {
		return nil
	}
	for _, r := range q.Releases {
		if r.Listener == listener {
			return r
		}
	}
	return nil
}

// DefaultQuarantineInterval is how often the retention is applied when interval is not set.
const DefaultQuarantineInterval = 10 * time.Minute

// DefaultQuarantineMaxAge is how long entries are kept when max_age is not set: a month, within the week to
// month that amavisd and Proxmox sites keep quarantined mail, so that a store nobody tends does not fill the disk.
const DefaultQuarantineMaxAge = 30 * 24 * time.Hour

var quarantineSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "dir"}, {Name: "max_age"}, {Name: "max_bytes"}, {Name: "interval"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "release", LabelNames: []string{"listener"}}},
}

var releaseSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "via", Required: true}, {Name: "address", Required: true}, {Name: "recipient"},
		{Name: "username"}, {Name: "password_file"}, {Name: "login"}, {Name: "master_user"}, {Name: "mailbox"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "tls"}},
}

func (l *loader) quarantine(b *hcl.Block) *Quarantine {
	c, diags := b.Body.Content(quarantineSchema)
	l.add(diags...)
	q := &Quarantine{DeclRange: b.DefRange, Interval: DefaultQuarantineInterval, MaxAge: DefaultQuarantineMaxAge}
	if a := c.Attributes["dir"]; a != nil {
		q.Dir = l.path(a)
	}
	if a := c.Attributes["max_age"]; a != nil {
		// "0s" keeps entries until someone deletes them.
		if q.MaxAge = l.days(a, 0, 100*365*24*time.Hour); q.MaxAge > 0 && q.MaxAge < time.Minute {
			l.add(errorf(a.Expr.Range(), "Invalid max_age", "max_age must be at least 1m, or \"0s\" to keep entries until they are deleted."))
		}
	}
	if a := c.Attributes["max_bytes"]; a != nil {
		q.MaxBytes = l.size(a, 1<<20, 1<<50)
	}
	if a := c.Attributes["interval"]; a != nil {
		q.Interval = l.duration(a, time.Second, 24*time.Hour)
	}
	seen := map[string]hcl.Range{}
	for _, rb := range c.Blocks {
		r := l.release(rb)
		if prev, dup := seen[r.Listener]; dup {
			l.add(errorf(rb.LabelRanges[0], "Duplicate release route", "Listener %q already has a release route "+
				"at %s.", r.Listener, position(&prev)))
			continue
		}
		seen[r.Listener] = rb.DefRange
		q.Releases = append(q.Releases, r)
	}
	return q
}

func (l *loader) release(b *hcl.Block) *Release {
	c, diags := b.Body.Content(releaseSchema)
	l.add(diags...)
	r := &Release{Listener: b.Labels[0], DeclRange: b.DefRange, TLS: UpstreamTLS{Mode: "none", Verify: true}}
	if a := c.Attributes["via"]; a != nil {
		r.Via = l.oneOf(a, "smtp", "lmtp", "imap")
	}
	if a := c.Attributes["address"]; a != nil {
		r.Address = l.hostPort(a)
	}
	str := func(name string, dst *string) *hcl.Attribute {
		a := c.Attributes[name]
		if a != nil {
			*dst, _ = l.str(a)
		}
		return a
	}
	only := func(a *hcl.Attribute, vias ...string) {
		if a == nil || r.Via == "" {
			return
		}
		for _, v := range vias {
			if v == r.Via {
				return
			}
		}
		l.add(errorf(a.Expr.Range(), "Not a "+r.Via+" setting", "%s is a setting of %s routes only.", a.Name,
			strings.Join(vias, " and ")))
	}
	only(str("recipient", &r.Recipient), "smtp", "lmtp")
	only(str("username", &r.Username), "smtp", "lmtp")
	login := str("login", &r.Login)
	only(login, "imap")
	only(str("mailbox", &r.Mailbox), "imap")
	var master string
	if a := str("master_user", &master); a != nil {
		only(a, "imap")
		if login != nil {
			l.add(errorf(a.Expr.Range(), "Login given twice", "Set login or master_user, not both."))
		} else if master == "" || strings.ContainsAny(master, "*\r\n\x00 ") {
			l.add(errorf(a.Expr.Range(), "Invalid master_user", "%q is not a user name.", master))
		} else {
			// Dovecot's master user login: the user, auth_master_user_separator (default "*"), the master.
			r.Login = "%u*" + master
		}
	}
	if a := c.Attributes["password_file"]; a != nil {
		r.PasswordFile = l.path(a)
		if r.PasswordFile != "" {
			if _, err := readBounded(r.PasswordFile, 4096); err != nil {
				l.add(errorf(a.Expr.Range(), "Cannot read password file", "%v.", err))
			}
		}
	}
	if r.Via == "imap" && r.Login != "" && r.PasswordFile == "" {
		l.add(errorf(b.DefRange, "No password", "An imap route logs in: set password_file (the master user's "+
			"password for master_user)."))
	}
	if r.Username != "" && r.PasswordFile == "" {
		l.add(errorf(b.DefRange, "No password", "username needs password_file."))
	}
	if tb := l.oneBlock(c, "tls"); tb != nil {
		l.routeTLS(tb, &r.TLS)
	}
	return r
}

// routeTLS reads a release route's tls block: the attributes of upstream_tls.
func (l *loader) routeTLS(b *hcl.Block, u *UpstreamTLS) {
	c, diags := b.Body.Content(upstreamTLSSchema)
	l.add(diags...)
	u.Mode = "starttls"
	if a := c.Attributes["mode"]; a != nil {
		u.Mode = l.oneOf(a, "starttls", "tls", "none")
	}
	if a := c.Attributes["server_name"]; a != nil {
		u.ServerName, _ = l.str(a)
	}
	l.boolean(c.Attributes["verify"], &u.Verify)
	if a := c.Attributes["ca_file"]; a != nil {
		u.CAFile = l.path(a)
		if u.CAFile != "" {
			pem, err := readBounded(u.CAFile, maxFileBytes)
			if err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
				err = fmt.Errorf("%s holds no PEM certificate", u.CAFile)
			}
			if err != nil {
				l.add(errorf(a.Expr.Range(), "Unusable CA file", "%v.", err))
			}
		}
	}
}

// days is duration that also takes whole days ("30d"), the unit retention is thought in.
func (l *loader) days(a *hcl.Attribute, lo, hi time.Duration) time.Duration {
	s, ok := l.str(a)
	if !ok {
		return 0
	}
	if n, found := strings.CutSuffix(strings.TrimSpace(s), "d"); found {
		if d, err := strconv.Atoi(n); err == nil && d >= 0 {
			v := time.Duration(d) * 24 * time.Hour
			if v < lo || v > hi {
				l.add(errorf(a.Expr.Range(), "Invalid "+a.Name, "%s must be from %v to %v; this is %s.", a.Name, lo, hi, s))
				return 0
			}
			return v
		}
	}
	return l.duration(a, lo, hi)
}

// finishQuarantine settles the one store: the quarantine block's dir, else the listeners' older quarantine_dir,
// else state_dir/quarantine; every listener then names it. Listeners naming other directories are refused (one
// store is what list, release and retention act on), and release routes must name listeners.
func (l *loader) finishQuarantine() {
	cfg := l.cfg
	q := cfg.Quarantine
	var legacy *Listener
	for _, ln := range cfg.Listeners {
		if ln.QuarantineDir != "" && !l.isQuarantineDefault(ln) {
			legacy = ln
			break
		}
	}
	if q == nil {
		q = &Quarantine{Interval: DefaultQuarantineInterval, MaxAge: DefaultQuarantineMaxAge}
	}
	switch {
	case q.Dir != "":
	case legacy != nil:
		q.Dir = legacy.QuarantineDir
	case cfg.StateDir != "":
		q.Dir = filepath.Join(cfg.StateDir, "quarantine")
	}
	for _, ln := range cfg.Listeners {
		if ln.QuarantineDir != "" && !l.isQuarantineDefault(ln) && ln.QuarantineDir != q.Dir {
			l.add(errorf(ln.DeclRange, "Second quarantine directory", "Listener %q keeps its quarantine in %s, "+
				"but the quarantine is %s: every listener shares one store. Remove quarantine_dir from the "+
				"listener (set quarantine { dir = ... } instead).", ln.Name, ln.QuarantineDir, q.Dir))
		}
		ln.QuarantineDir = q.Dir
	}
	for _, r := range q.Releases {
		if cfg.Listener(r.Listener) == nil {
			detail := fmt.Sprintf("No listener is named %q.", r.Listener)
			if s := suggest(r.Listener, keys(l.names["listener"])); s != "" {
				detail += fmt.Sprintf(" Did you mean %q?", s)
			}
			l.add(errorf(r.DeclRange, "Unknown listener", "%s", detail))
		}
	}
	if q.Dir == "" {
		if cfg.Quarantine != nil {
			l.add(errorf(q.DeclRange, "No quarantine directory", "Set dir, or state_dir for the default "+
				"state_dir/quarantine."))
		}
		cfg.Quarantine = nil
		return
	}
	cfg.Quarantine = q
}

func (l *loader) isQuarantineDefault(ln *Listener) bool {
	for _, d := range l.quarantineDefault {
		if d == ln {
			return true
		}
	}
	return false
}
