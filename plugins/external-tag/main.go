// Command external-tag is a Postern plugin that marks mail from outside the organisation: it prefixes the
// Subject, appends a warning banner to the text and HTML bodies and sets a header, so readers (and their mail
// rules) can tell a message from a partner or an impostor apart from one sent by a colleague.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o external-tag.wasm . (see README.md).
package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/postern/postern/sdk/postern"
)

// Set once per instance by setup; never holds message data.
var cfg settings

func init() {
	postern.OnInit(setup)
	postern.OnMessage(tag)
}

func main() {}

// setup runs once per instance: it reads and checks the configuration.
func setup() error {
	raw, err := postern.ConfigJSON()
	if err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	cfg, err = parseConfig(raw)
	return err
}

// tag is the message hook: it decides whether the message is external and marks it.
func tag(m *postern.Message) error {
	if m.Direction() == "outbound" && !cfg.tagOutbound {
		// The warning is for readers inside the organisation; mail leaving it is not marked (nor cleaned).
		return nil
	}
	mailFrom, err := postern.Field("mail_from")
	hasMailFrom := err == nil
	if err != nil && !errors.Is(err, postern.ErrUnavailable) && !errors.Is(err, postern.ErrNotFound) {
		return fmt.Errorf("reading mail_from: %w", err)
	}
	if !hasMailFrom {
		// Retrieval (POP3, IMAP) has no envelope; the delivering server recorded the envelope sender in
		// Return-Path.
		if rp := m.Header("Return-Path"); rp != "" {
			// "<>" is the null sender of a bounce: judged by its From alone, as in SMTP.
			mailFrom, hasMailFrom = strings.Trim(rp, "<> \t"), true
		}
	}
	var from []string
	for _, v := range m.Headers("From") {
		from = append(from, fromDomains(v)...)
	}
	rcpts := m.Rcpts()
	if owner, ok := m.MailboxUser(); ok && len(rcpts) == 0 {
		// Retrieval has no recipients: the mailbox's owner is the one reading.
		rcpts = []string{owner}
	}
	v := decide(cfg.internal, mailFrom, hasMailFrom, from, rcpts)
	// Past one of its limits the host has not indexed the whole message and refuses changes to it.
	limit := limitExceeded()

	if err := m.Tag("external", yesNo(v.External)); err != nil {
		return fmt.Errorf("tag external: %w", err)
	}
	if !v.External {
		postern.Log(postern.LevelDebug, "internal: "+v.Why)
		// A sender may have set our header itself to look trusted or to trigger rules; only this plugin says
		// what it means.
		if cfg.header != "" && limit == "" && len(m.Headers(cfg.header)) > 0 {
			if err := m.RemoveHeader(cfg.header); err != nil {
				return fmt.Errorf("removing a forged %s header: %w", cfg.header, err)
			}
		}
		return nil
	}
	postern.Log(postern.LevelInfo, "external: "+v.Why)
	if v.Domain != "" {
		if err := m.Tag("external.domain", v.Domain); err != nil {
			return fmt.Errorf("tag external.domain: %w", err)
		}
	}
	if cfg.score != 0 {
		if err := m.Score(cfg.score); err != nil {
			return fmt.Errorf("scoring: %w", err)
		}
	}
	if limit != "" {
		// The tag still tells policies the mail is external; refusing such messages is their job.
		postern.Logf(postern.LevelWarn, "the message is past the host's %s; it is tagged but not marked", limit)
		if err := m.Tag("external.unmarked", limit); err != nil {
			return fmt.Errorf("tag external.unmarked: %w", err)
		}
		return nil
	}
	if cfg.header != "" {
		if err := m.SetHeader(cfg.header, "yes"); err != nil {
			return fmt.Errorf("setting %s: %w", cfg.header, err)
		}
	}
	if cfg.subjectPrefix != "" {
		if err := m.PrefixSubject(cfg.subjectPrefix); err != nil {
			return fmt.Errorf("prefixing the subject: %w", err)
		}
	}
	if cfg.bannerText == "" && cfg.bannerHTML == "" {
		return nil
	}
	// A body part the host cannot decode to extend (unknown encoding or charset) goes without its banner; the
	// configuration was checked at load time, so a refusal is unexpected. Either way the subject and the header
	// mark the message, which beats failing the call over a banner.
	err = m.AddBannerEach(expandSplit(cfg.textPieces, v.Domain, false), expandSplit(cfg.htmlPieces, v.Domain, true))
	switch {
	case errors.Is(err, postern.ErrDecode):
		postern.Logf(postern.LevelInfo, "a body part cannot be decoded; no banner in it")
	case errors.Is(err, postern.ErrInvalid):
		postern.Logf(postern.LevelWarn, "the host refused the banner: %v", err)
	case err != nil:
		return fmt.Errorf("adding the banner: %w", err)
	}
	return nil
}

// limitExceeded returns the kind of the host limit that stopped indexing the message ("header-limit",
// "line-limit", ...), or "" when the message was indexed completely.
func limitExceeded() string {
	defects, err := postern.Fields("message.malformed")
	if err != nil {
		return ""
	}
	for _, d := range defects {
		if kind, _, _ := strings.Cut(d, ":"); strings.HasSuffix(kind, "-limit") {
			return kind
		}
	}
	return ""
}

// yesNo is the value of the "external" tag.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
