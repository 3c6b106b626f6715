package mailflow

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/postern/postern/proxy/audit"
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

// outgoingChanges combines the policy's changes with the result headers and the front end's trace fields. It
// returns nil when the message goes out as it came in (recipient additions do not change the bytes).
func outgoingChanges(resultHeaders bool, d *policy.Decision, trace []HeaderField) (*message.Changes, error) {
	var c message.Changes
	if resultHeaders {
		// Remove first: a sender must not be able to forge a verdict further hops trust.
		for _, name := range []string{HeaderVerdict, HeaderScore, HeaderTags} {
			if err := c.RemoveHeader(name); err != nil {
				return nil, err
			}
		}
		verdict, score, tags := "accept", 0.0, map[string]string(nil)
		if d != nil {
			verdict, score, tags = d.Action.String(), audit.BoundScore(d.Score), d.Tags
		}
		if err := c.AddHeader(HeaderVerdict, verdict); err != nil {
			return nil, err
		}
		if err := c.AddHeader(HeaderScore, strconv.FormatFloat(score, 'f', -1, 64)); err != nil {
			return nil, err
		}
		if len(tags) > 0 {
			if err := c.AddHeader(HeaderTags, FormatTags(tags)); err != nil {
				return nil, err
			}
		}
	}
	if d != nil && d.Changes != nil {
		c.Merge(d.Changes)
	}
	for _, f := range trace {
		if err := c.AddHeader(f.Name, f.Value); err != nil {
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

// FormatTags renders tags as "key=value; key=value", sorted by key, each value cut to keep the field readable.
func FormatTags(tags map[string]string) string {
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
		v := ReplyText(tags[k])
		if len(v) > 200 {
			v = ReplyText(v[:200]) + "..."
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strings.ReplaceAll(v, ";", ","))
	}
	return b.String()
}

// ReplyText makes a text from a policy or a plugin safe for one protocol reply line (an SMTP reply, a POP3 -ERR,
// an IMAP NO): printable, valid UTF-8, without leading or trailing space, at most 512 bytes.
func ReplyText(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 512 {
		cut := 512
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// BoundScores bounds every score of a decision with audit.BoundScore, in place: the summed score, each policy's
// and each plugin's. The verdict was already reached with the scores as they were (a threshold an infinite score
// crossed has fired); what is bounded is what headers, the audit log and the quarantine record say.
func BoundScores(d *policy.Decision) {
	if d == nil {
		return
	}
	d.Score = audit.BoundScore(d.Score)
	for i := range d.Policies {
		p := &d.Policies[i]
		p.Score = audit.BoundScore(p.Score)
		for j := range p.Plugins {
			p.Plugins[j].Score = audit.BoundScore(p.Plugins[j].Score)
		}
	}
}
