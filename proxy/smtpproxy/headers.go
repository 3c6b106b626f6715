package smtpproxy

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/policy"
)

// The result header fields. Their names are fixed so that downstream filters (Sieve rules, mail clients) can
// rely on them.
const (
	HeaderVerdict = "X-Postern-Verdict"
	HeaderScore   = "X-Postern-Score"
	HeaderTags    = "X-Postern-Tags"
)

// outgoingChanges combines the policy's changes with the trace fields the listener adds. It returns nil when the
// message goes out as it came in (recipient additions do not change the bytes).
func (s *session) outgoingChanges(msg *message.Message, d *policy.Decision) (*message.Changes, error) {
	o := &s.cs.srv.opts
	var c message.Changes
	if o.ResultHeaders {
		// Remove first: a sender must not be able to forge a verdict further hops trust.
		for _, name := range []string{HeaderVerdict, HeaderScore, HeaderTags} {
			if err := c.RemoveHeader(name); err != nil {
				return nil, err
			}
		}
		verdict, score, tags := "accept", 0.0, map[string]string(nil)
		if d != nil {
			verdict, score, tags = d.Action.String(), d.Score, d.Tags
		}
		if err := c.AddHeader(HeaderVerdict, verdict); err != nil {
			return nil, err
		}
		if err := c.AddHeader(HeaderScore, strconv.FormatFloat(score, 'f', -1, 64)); err != nil {
			return nil, err
		}
		if len(tags) > 0 {
			if err := c.AddHeader(HeaderTags, formatTags(tags)); err != nil {
				return nil, err
			}
		}
	}
	if d != nil && d.Changes != nil {
		c.Merge(d.Changes)
	}
	if o.ReceivedHeader {
		if err := c.AddHeader("Received", s.received(time.Now())); err != nil {
			return nil, err
		}
	}
	for _, ch := range c.List() {
		if ch.Op != message.OpAddRecipient {
			return &c, nil
		}
	}
	return nil, nil
}

// formatTags renders tags as "key=value; key=value", sorted by key, each value cut to keep the field readable.
func formatTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString("; ")
		}
		v := cleanText(tags[k])
		if len(v) > 200 {
			v = cleanText(v[:200]) + "..."
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strings.ReplaceAll(v, ";", ","))
	}
	return b.String()
}

// received builds the value of the Received: trace field (RFC 5321 §4.4, with the RFC 3848 protocol keywords).
func (s *session) received(now time.Time) string {
	cs := s.cs
	env := cs.envelope()
	helo := cleanToken(env.HELO)
	if helo == "" {
		helo = "unknown"
	}
	proto := "ESMTP"
	if env.TLSVersion != "" {
		proto += "S"
	}
	if env.AuthUser != "" {
		proto += "A"
	}
	var b strings.Builder
	b.WriteString("from ")
	b.WriteString(helo)
	if env.ClientIP != "" {
		b.WriteString(" ([")
		b.WriteString(env.ClientIP)
		b.WriteString("])")
	}
	b.WriteString(" by ")
	b.WriteString(cs.srv.opts.Hostname)
	b.WriteString(" (Postern) with ")
	b.WriteString(proto)
	b.WriteString(" id ")
	b.WriteString(s.txn.id)
	if env.TLSVersion != "" {
		b.WriteString(" (using ")
		b.WriteString(env.TLSVersion)
		b.WriteString(" with cipher ")
		b.WriteString(env.TLSCipher)
		b.WriteString(")")
	}
	if len(s.txn.rcpts) == 1 {
		// Only for a single recipient: listing several would disclose Bcc recipients to each other.
		if r := cleanToken(s.txn.rcpts[0]); r != "" {
			b.WriteString(" for <")
			b.WriteString(r)
			b.WriteString(">")
		}
	}
	b.WriteString("; ")
	b.WriteString(now.Format(time.RFC1123Z))
	return b.String()
}

// cleanToken keeps a client-supplied name printable and free of the characters that would change the structure
// of the Received: field.
func cleanToken(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r <= ' ' || r == 0x7f || r == '(' || r == ')' || r == ';' || r == '<' || r == '>' || r == '[' || r == ']':
			return '_'
		case r == 0xfffd:
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}
