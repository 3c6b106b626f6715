package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/quarantine"
	"github.com/postern/postern/proxy/upstream"
)

// quarantineRouter chooses how an entry is released, from the configuration current when the release runs:
// the listener's release route if it has one; else, for an SMTP-time entry, the listener's upstream (its
// embedded upstream included); else, for a pop3 listener reading the embedded maildrop, that maildrop (through
// the embedded SMTP upstream whose files it serves).
type quarantineRouter struct {
	config   func() *config.Config
	embedded func(listener string) func(ctx context.Context) (net.Conn, error) // nil when none
	hostname string
}

func (qr *quarantineRouter) Route(m *quarantine.Meta) (quarantine.Route, error) {
	cfg := qr.config()
	if cfg == nil {
		return nil, errors.New("no configuration")
	}
	l := cfg.Listener(m.Listener)
	if r := cfg.Quarantine.Release(m.Listener); r != nil {
		return buildRoute(r, qr.hostname)
	}
	if l == nil {
		return nil, fmt.Errorf("%w: listener %q is not in the configuration; add quarantine { release %q { ... } }",
			quarantine.ErrNoRoute, m.Listener, m.Listener)
	}
	if m.Stage == quarantine.StageSMTP && (l.Protocol == config.ProtocolSMTP || l.Protocol == config.ProtocolSubmission) {
		rt := &quarantine.SMTPRoute{Address: l.Upstream, Hostname: qr.hostname,
			TLS: upstream.TLSMode(l.UpstreamTLS.Mode)}
		if l.Upstream == config.UpstreamEmbedded {
			rt.Address = ""
			if rt.Dial = qr.embedded(l.Name); rt.Dial == nil {
				return nil, fmt.Errorf("%w: the embedded upstream of listener %q is not running", quarantine.ErrNoRoute, l.Name)
			}
		}
		if err := routeTLS(rt.TLS, l.UpstreamTLS, rt.Address, &rt.TLSConfig); err != nil {
			return nil, err
		}
		return rt, nil
	}
	if l.Upstream == config.UpstreamEmbedded {
		if dial := qr.embedded(""); dial != nil {
			return &quarantine.SMTPRoute{Dial: dial, Hostname: qr.hostname}, nil
		}
	}
	return nil, fmt.Errorf("%w for listener %q: a message withheld at %s goes back to the mailbox through "+
		"quarantine { release %q { via = \"lmtp\" | \"smtp\" | \"imap\" ... } }", quarantine.ErrNoRoute, m.Listener,
		m.Stage, m.Listener)
}

// buildRoute makes the route a release block describes.
func buildRoute(r *config.Release, hostname string) (quarantine.Route, error) {
	var password string
	if r.PasswordFile != "" {
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("release route of %s: %w", r.Listener, err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	mode := upstream.TLSMode(r.TLS.Mode)
	switch r.Via {
	case "imap":
		rt := &quarantine.IMAPRoute{Address: r.Address, TLS: mode, Login: r.Login, Password: password, Mailbox: r.Mailbox}
		return rt, routeTLS(mode, r.TLS, r.Address, &rt.TLSConfig)
	default:
		rt := &quarantine.SMTPRoute{Address: r.Address, LMTP: r.Via == "lmtp", TLS: mode, Username: r.Username,
			Password: password, Recipient: r.Recipient, Hostname: hostname}
		return rt, routeTLS(mode, r.TLS, r.Address, &rt.TLSConfig)
	}
}

func routeTLS(mode upstream.TLSMode, u config.UpstreamTLS, addr string, dst **tls.Config) error {
	if mode == "" || mode == upstream.TLSNone {
		return nil
	}
	cfg, err := upstream.TLSConfig(addr, upstream.TLSOptions{Mode: mode, CAFile: u.CAFile, ServerName: u.ServerName,
		SkipVerify: !u.Verify})
	if err != nil {
		return err
	}
	*dst = cfg
	return nil
}

// openQuarantine opens the configuration's shared store with its retention, the audit log and the routes.
func openQuarantine(cfg *config.Config, a *audit.Log, router quarantine.Router, hostname string, logger *slog.Logger) (*quarantine.Store, error) {
	q := cfg.Quarantine
	opts := quarantine.Options{Dir: q.Dir, Routes: router, Hostname: hostname, Logger: logger,
		Retention: quarantine.Retention{MaxAge: q.MaxAge, MaxBytes: q.MaxBytes, Interval: q.Interval}}
	if a != nil {
		opts.Audit = a
	}
	return quarantine.Open(opts)
}

// The control socket's quarantine command: `quarantine release QUERY` and `quarantine delete QUERY`, QUERY being
// the URL-encoded id, by, via and reason (a control command is one line of words). The reply is the entry's
// metadata as JSON.
const controlQuarantine = "quarantine"

func quarantineCommand(action, id string, who quarantine.Actor, reason string) string {
	v := url.Values{"id": {id}, "by": {who.Name}, "via": {who.Via}, "reason": {reason}}
	return controlQuarantine + " " + action + " " + v.Encode()
}

// quarantineHandler serves the quarantine command for a running proxy, so that the command line's releases and
// deletions go through the proxy's own store and audit log (one writer keeps the chain).
func quarantineHandler(q *quarantine.Store) func(ctx context.Context, args []string) (string, error) {
	return func(ctx context.Context, args []string) (string, error) {
		if len(args) != 2 {
			return "", errors.New("usage: quarantine release|delete QUERY")
		}
		v, err := url.ParseQuery(args[1])
		if err != nil {
			return "", err
		}
		id, who, reason := v.Get("id"), quarantine.Actor{Name: v.Get("by"), Via: v.Get("via")}, v.Get("reason")
		if who.Name == "" {
			return "", errors.New("no actor given")
		}
		var m *quarantine.Meta
		switch args[0] {
		case "release":
			m, err = q.Release(ctx, id, who, reason)
		case "delete":
			if m, err = q.Get(id); err == nil {
				err = q.Delete(id, who, reason)
			}
		default:
			return "", fmt.Errorf("unknown quarantine action %q", args[0])
		}
		if err != nil {
			return "", err
		}
		b, err := json.Marshal(m)
		return string(b), err
	}
}
