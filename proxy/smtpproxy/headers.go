package smtpproxy

import (
	"net/netip"
	"strings"
	"time"
)

// received builds the value of the Received: trace field (RFC 5321 §4.4, with the RFC 3848 protocol keywords).
func (s *session) received(now time.Time) string {
	cs := s.cs
	env := cs.envelope()
	helo := addressLiteral(env.HELO)
	if helo == "" {
		helo = cleanToken(env.HELO)
	}
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

// addressLiteral returns an RFC 5321 address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]") as it is, and ""
// for anything else: cleanToken would turn its brackets into underscores.
func addressLiteral(s string) string {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return ""
	}
	inner := s[1 : len(s)-1]
	v6, isV6 := cutPrefixFold(inner, "IPv6:")
	a, err := netip.ParseAddr(v6)
	if err != nil || a.Zone() != "" || isV6 != a.Is6() {
		return ""
	}
	return s
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
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
