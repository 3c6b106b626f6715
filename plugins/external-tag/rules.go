package main

import (
	"fmt"
	"html"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/postern/postern/sdk/postern"
)

// config is the plugin's JSON configuration; README.md documents every key.
type config struct {
	InternalDomains []string `json:"internal_domains"`
	SubjectPrefix   *string  `json:"subject_prefix"`
	BannerText      *string  `json:"banner_text"`
	BannerHTML      *string  `json:"banner_html"`
	Header          *string  `json:"header"`
	TagOutbound     bool     `json:"tag_outbound"`
	Score           float64  `json:"score"`
}

const (
	defaultSubjectPrefix = "[EXTERNAL] "
	defaultHeader        = "X-Postern-External"
	defaultBannerText    = "\r\nCAUTION: This message came from outside the organisation ({domain}). " +
		"Do not open attachments or follow links unless you know the sender and expected it.\r\n"
	defaultBannerHTML = `<div style="margin-top:1em;padding:0.5em;border:1px solid #c00;background:#fee;` +
		`color:#000;font-family:sans-serif;font-size:small">` +
		`<strong>CAUTION:</strong> This message came from outside the organisation ({domain}). ` +
		`Do not open attachments or follow links unless you know the sender and expected it.</div>`
)

// settings is a parsed, validated configuration.
type settings struct {
	internal      []string // lower-case, no trailing dot; empty means "use the recipients' domains"
	subjectPrefix string
	bannerText    string
	bannerHTML    string
	textPieces    []string // bannerText and bannerHTML split at {domain}
	htmlPieces    []string
	header        string
	tagOutbound   bool
	score         float64
}

// parseConfig reads and validates the JSON configuration. Unknown keys and bad values are errors, so the plugin
// fails to load instead of quietly doing something its administrator did not ask for.
func parseConfig(data []byte) (settings, error) {
	var cfg config
	if err := postern.DecodeConfig(data, &cfg); err != nil {
		return settings{}, fmt.Errorf("external-tag configuration: %w", err)
	}
	s := settings{
		subjectPrefix: orDefault(cfg.SubjectPrefix, defaultSubjectPrefix),
		bannerText:    orDefault(cfg.BannerText, defaultBannerText),
		bannerHTML:    orDefault(cfg.BannerHTML, defaultBannerHTML),
		header:        orDefault(cfg.Header, defaultHeader),
		tagOutbound:   cfg.TagOutbound,
		score:         cfg.Score,
	}
	s.textPieces = strings.Split(s.bannerText, "{domain}")
	s.htmlPieces = strings.Split(s.bannerHTML, "{domain}")
	for _, d := range cfg.InternalDomains {
		n := domainOf("postmaster@" + d)
		if n == "" || strings.ContainsAny(d, "@<>") {
			return settings{}, fmt.Errorf("external-tag configuration: internal_domains: %q is not a domain", d)
		}
		s.internal = append(s.internal, n)
	}
	if strings.ContainsAny(s.subjectPrefix, "\r\n\x00") || !utf8.ValidString(s.subjectPrefix) {
		return settings{}, fmt.Errorf("external-tag configuration: subject_prefix: must be one line of UTF-8")
	}
	if s.header != "" {
		if err := validHeaderName(s.header); err != nil {
			return settings{}, fmt.Errorf("external-tag configuration: header: %w", err)
		}
	}
	for _, b := range []struct{ key, v string }{{"banner_text", s.bannerText}, {"banner_html", s.bannerHTML}} {
		if !utf8.ValidString(b.v) || strings.ContainsRune(b.v, 0) {
			return settings{}, fmt.Errorf("external-tag configuration: %s must be UTF-8 text", b.key)
		}
		if n := longestExpandedLine(b.v); n > maxBannerLine {
			return settings{}, fmt.Errorf("external-tag configuration: %s: a line can reach %d bytes with {domain} "+
				"filled in, more than the %d a mail line may have; break it into lines", b.key, n, maxBannerLine)
		}
	}
	return s, nil
}

// maxBannerLine is the longest line the host splices into a body (RFC 5322 §2.1.1), and maxDomain the longest
// domain domainOf returns.
const (
	maxBannerLine = 998
	maxDomain     = 253
)

// longestExpandedLine returns the length of the longest line of a banner once {domain} is filled in with a
// domain of the maximum length.
func longestExpandedLine(tmpl string) int {
	longest := 0
	for _, line := range strings.Split(tmpl, "\n") {
		longest = max(longest, len(line)+strings.Count(line, "{domain}")*(maxDomain-len("{domain}")))
	}
	return longest
}

// orDefault returns *p, or def when the key was absent (an explicit "" is kept: it switches the feature off).
func orDefault(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

// validHeaderName checks an RFC 5322 field name the way the host will (1-76 printable ASCII, no colon), so a
// bad name fails at load time.
func validHeaderName(name string) error {
	if len(name) < 1 || len(name) > 76 {
		return fmt.Errorf("%q: a header name has 1 to 76 characters", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return fmt.Errorf("%q: character %q not allowed in a header name", name, c)
		}
	}
	return nil
}

// normalizeDomain lower-cases a domain and drops a trailing dot (the root label), so "Example.COM." and
// "example.com" compare equal.
func normalizeDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// domainOf returns the normalized domain of an address (local@domain, with or without angle brackets), or ""
// when there is none or it is not a plausible domain name (letters, digits, dots, hyphens, underscores; at most
// 253 bytes). An implausible domain is never internal, and it never reaches a banner.
func domainOf(addr string) string {
	addr = strings.TrimSpace(addr)
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	d := normalizeDomain(addr[i+1:])
	if d == "" || len(d) > maxDomain || strings.HasPrefix(d, ".") || strings.Contains(d, "..") {
		return ""
	}
	for _, r := range d {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '.' && r != '-' && r != '_' {
			return ""
		}
	}
	return d
}

// fromDomains returns the domains of every mailbox in a From header value. The addr-spec decides, never the
// display name: `"ceo@example.com" <x@attacker.test>` is from attacker.test. A value net/mail cannot parse
// still yields the domain of its last <...> or, failing that, of its last word with an @, because a From
// header that is broken on purpose must not escape the check. It returns nil if no domain can be found.
func fromDomains(value string) []string {
	if d, ok := simpleMailbox(value); ok {
		if d = domainOf(d); d != "" {
			return []string{d}
		}
		return nil
	}
	if list, err := mail.ParseAddressList(value); err == nil {
		var out []string
		for _, a := range list {
			if d := domainOf(a.Address); d != "" {
				out = append(out, d)
			}
		}
		return out
	}
	if i := strings.LastIndexByte(value, '<'); i >= 0 {
		if j := strings.IndexByte(value[i:], '>'); j > 0 {
			if d := domainOf(value[i+1 : i+j]); d != "" {
				return []string{d}
			}
		}
	}
	words := strings.Fields(value)
	for k := len(words) - 1; k >= 0; k-- {
		if d := domainOf(strings.Trim(words[k], `"',;()`)); d != "" {
			return []string{d}
		}
	}
	return nil
}

// simpleMailbox returns the addr-spec of a From value in the two forms nearly all mail uses, "local@domain" and
// "Display Name <local@domain>", when the value is so plain that net/mail could only read it one way: a display
// name of letters, digits and spaces, an addr-spec of dot-atoms without quotes, comments or escapes. Anything
// else (quotes, commas, comments, encoded words, group syntax) is left to net/mail. It saves parsing most From
// headers with net/mail, which is most of what the plugin costs per message.
func simpleMailbox(v string) (string, bool) {
	v = strings.TrimSpace(v)
	addr := v
	if strings.HasSuffix(v, ">") {
		i := strings.IndexByte(v, '<')
		if i < 0 || i != strings.LastIndexByte(v, '<') {
			return "", false
		}
		for j := 0; j < i; j++ {
			c := v[j]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ' ') {
				return "", false
			}
		}
		if i > 0 && v[i-1] != ' ' {
			return "", false // "Name<a@b>": net/mail reads it too, but be plain
		}
		addr = v[i+1 : len(v)-1]
	}
	at := strings.IndexByte(addr, '@')
	if at <= 0 || at != strings.LastIndexByte(addr, '@') || !dotAtom(addr[:at]) || !dotAtom(addr[at+1:]) {
		return "", false
	}
	return addr, true
}

// dotAtom reports whether s is an RFC 5322 dot-atom of letters, digits and "+-_" (a subset of atext).
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == '_') {
			return false
		}
	}
	return true
}

// isInternal reports whether domain is one of internal or a subdomain of one ("mail.example.com" is inside
// "example.com"; "badexample.com" and "example.com.attacker.test" are not).
func isInternal(domain string, internal []string) bool {
	if domain == "" {
		return false
	}
	for _, d := range internal {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	return false
}

// verdict is the outcome of the decision for one message.
type verdict struct {
	External bool
	// Domain is the first sender domain found outside, for the banner and the tag ("" when unknown).
	Domain string
	// Why says how the decision was made, for the log.
	Why string
}

// decide applies the rules documented in README.md:
//
//   - the internal domains are the configured ones, or else the domains of the envelope recipients;
//   - with neither (POP3/IMAP mailbox owners without a domain, say), every message is external;
//   - a message is external when the envelope sender's domain (if not the null sender) or any From domain is
//     not internal, or when there is no From domain at all.
func decide(internal []string, mailFrom string, hasMailFrom bool, from []string, rcpts []string) verdict {
	source := "internal_domains"
	if len(internal) == 0 {
		source = "recipient domains"
		for _, r := range rcpts {
			if d := domainOf(r); d != "" {
				internal = append(internal, d)
			}
		}
		if len(internal) == 0 {
			return verdict{External: true, Domain: firstOf(from, domainOf(mailFrom)),
				Why: "no internal_domains configured and no recipient domain known: every message is external"}
		}
	}
	if hasMailFrom && mailFrom != "" {
		d := domainOf(mailFrom)
		if !isInternal(d, internal) {
			return verdict{External: true, Domain: d, Why: "envelope sender domain " + strconv.Quote(d) + " is not in " + source}
		}
	}
	if len(from) == 0 {
		return verdict{External: true, Domain: domainOf(mailFrom), Why: "no From address"}
	}
	for _, d := range from {
		if !isInternal(d, internal) {
			return verdict{External: true, Domain: d, Why: "From domain " + strconv.Quote(d) + " is not in " + source}
		}
	}
	return verdict{External: false, Domain: from[0], Why: "sender domains are in " + source}
}

// firstOf returns the first element of list, or def for an empty list.
func firstOf(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}

// expand fills the {domain} placeholder of a banner. In HTML the domain is escaped: it comes from the sender.
func expand(tmpl, domain string, isHTML bool) string {
	return expandSplit(strings.Split(tmpl, "{domain}"), domain, isHTML)
}

// expandSplit is expand of a template already split at its placeholders (settings keeps them split, so a
// message costs one allocation per banner).
func expandSplit(pieces []string, domain string, isHTML bool) string {
	if len(pieces) == 1 {
		return pieces[0]
	}
	if domain == "" {
		domain = "unknown sender"
	}
	if isHTML {
		domain = html.EscapeString(domain)
	}
	n := len(domain) * (len(pieces) - 1)
	for _, p := range pieces {
		n += len(p)
	}
	var b strings.Builder
	b.Grow(n)
	for i, p := range pieces {
		if i > 0 {
			b.WriteString(domain)
		}
		b.WriteString(p)
	}
	return b.String()
}
