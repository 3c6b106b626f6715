package imapproxy

import (
	"mime"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// extractEnvelope is the ENVELOPE of a message header: the date, subject and message IDs as go-imap's
// ExtractEnvelope reads them, and the address lists parsed here, because go-imap's (net/mail's) parser flattens
// RFC 5322 groups to their members and drops a whole list at the first address it cannot read, where RFC 3501
// §7.4.2 has group markers and Dovecot keeps every address it can.
func extractEnvelope(h textproto.Header) *imap.Envelope {
	mh := mail.Header{Header: message.Header{Header: h}}
	date, _ := mh.Date()
	subject, _ := mh.Subject()
	inReplyTo, _ := mh.MsgIDList("In-Reply-To")
	messageID, _ := mh.MessageID()
	// RFC 3501 takes the first field of each name; a header without it is NIL.
	list := func(name string) []imap.Address { return parseAddressList(h.Get(name)) }
	return &imap.Envelope{Date: date, Subject: subject, InReplyTo: inReplyTo, MessageID: messageID,
		From: list("From"), Sender: list("Sender"), ReplyTo: list("Reply-To"),
		To: list("To"), Cc: list("Cc"), Bcc: list("Bcc")}
}

// missingDomain is the host of an address without one ("To: undisclosed"), as Dovecot writes it: a NIL host
// with a mailbox name would read as the start of a group.
const missingDomain = "MISSING_DOMAIN"

var wordDecoder = mime.WordDecoder{CharsetReader: charset.Reader}

// addrToken is one lexical item of an address header: a special character, or a word (atom, quoted string or
// domain literal) with its text.
type addrToken struct {
	special byte   // one of <>@,;:. or 0 for a word (comments are not tokens)
	text    string // the word; a quoted string unquoted, a domain literal with its brackets
}

// lexAddresses splits an address header value into tokens; comments are dropped, but the text of the last
// comment before a separator is kept for a display name ("user@host (Real Name)"), as clients show it.
func lexAddresses(s string) (toks []addrToken, comments map[int]string) {
	comments = map[int]string{}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			depth, j := 0, i
			var b strings.Builder
			for ; j < len(s); j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
					b.WriteByte(s[j])
					continue
				}
				if s[j] == '(' {
					depth++
					if depth == 1 {
						continue
					}
				}
				if s[j] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
				b.WriteByte(s[j])
			}
			comments[len(toks)] = strings.TrimSpace(b.String())
			i = j + 1
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			toks = append(toks, addrToken{text: b.String()})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				j = len(s) - i - 1
			}
			toks = append(toks, addrToken{text: s[i : i+j+1]})
			i += j + 1
		case strings.IndexByte("<>@,;:.", c) >= 0:
			toks = append(toks, addrToken{special: c})
			i++
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\r\n()<>@,;:.\"[", s[j]) < 0 {
				j++
			}
			toks = append(toks, addrToken{text: s[i:j]})
			i = j
		}
	}
	return toks, comments
}

// parseAddressList reads an RFC 5322 address list leniently: groups become the RFC 3501 markers (a start with the
// group's name as mailbox and NIL host, its members, an end with NIL mailbox and host), an address without a
// domain gets missingDomain, and what cannot be read as an address is skipped, not the whole list. Source routes
// (obsolete syntax) are read and dropped: go-imap's Address has no route.
func parseAddressList(value string) []imap.Address {
	toks, comments := lexAddresses(value)
	var out []imap.Address
	inGroup := false
	for i := 0; i < len(toks); {
		start := i
		// The phrase or local part: words and dots up to a special that says what they were.
		for i < len(toks) && (toks[i].special == 0 || toks[i].special == '.') {
			i++
		}
		words := toks[start:i]
		var next byte
		if i < len(toks) {
			next = toks[i].special
		}
		switch next {
		case ':':
			if inGroup {
				i++ // a group cannot nest: ignore the second start
				continue
			}
			inGroup = true
			out = append(out, imap.Address{Mailbox: phrase(words)})
			i++
			continue
		case '<':
			j := i + 1
			for j < len(toks) && toks[j].special != '>' {
				j++
			}
			name := phrase(words)
			if name == "" {
				name = comment(comments, start, j+1)
			}
			if a, ok := addrSpec(stripRoute(toks[i+1 : j])); ok {
				a.Name = name
				out = append(out, a)
			}
			i = j + 1
		case '@':
			j := i + 1
			for j < len(toks) && (toks[j].special == 0 || toks[j].special == '.') {
				j++
			}
			if a, ok := addrSpec(toks[start:j]); ok {
				a.Name = comment(comments, start, j)
				out = append(out, a)
			}
			i = j
		default: // ',', ';', end, or a stray special
			if len(words) > 0 {
				out = append(out, imap.Address{Name: comment(comments, start, i), Mailbox: joinWords(words),
					Host: missingDomain})
			}
		}
		// Up to the next separator; ';' ends a group.
		for i < len(toks) && toks[i].special != ',' && toks[i].special != ';' {
			i++
		}
		if i < len(toks) && toks[i].special == ';' && inGroup {
			out = append(out, imap.Address{})
			inGroup = false
		}
		i++
	}
	if inGroup {
		out = append(out, imap.Address{}) // an unterminated group is still closed
	}
	return out
}

// stripRoute drops an obsolete source route ("@a,@b:") from the inside of an angle address.
func stripRoute(toks []addrToken) []addrToken {
	if len(toks) > 0 && toks[0].special == '@' {
		for k, t := range toks {
			if t.special == ':' {
				return toks[k+1:]
			}
		}
	}
	return toks
}

// addrSpec reads local-part "@" domain; a missing domain is missingDomain.
func addrSpec(toks []addrToken) (imap.Address, bool) {
	at := -1
	for k, t := range toks {
		if t.special == '@' {
			at = k
		}
	}
	if at < 0 {
		local := joinWords(toks)
		if local == "" {
			return imap.Address{}, false
		}
		return imap.Address{Mailbox: local, Host: missingDomain}, true
	}
	local, domain := joinWords(toks[:at]), joinWords(toks[at+1:])
	if local == "" {
		return imap.Address{}, false
	}
	if domain == "" {
		domain = missingDomain
	}
	return imap.Address{Mailbox: local, Host: domain}, true
}

// joinWords writes words and dots as they were, without the white space between them (a local part or domain).
func joinWords(toks []addrToken) string {
	var b strings.Builder
	for _, t := range toks {
		if t.special != 0 {
			b.WriteByte(t.special)
		} else {
			b.WriteString(t.text)
		}
	}
	return b.String()
}

// phrase is a display name: the words separated by one space, encoded words decoded.
func phrase(toks []addrToken) string {
	var parts []string
	for _, t := range toks {
		if t.special == '.' {
			parts = append(parts, ".") // obs-phrase
			continue
		}
		parts = append(parts, t.text)
	}
	return decodeWords(strings.Join(parts, " "))
}

// comment is the last comment among tokens [from, to) (a display name in the old style), decoded.
func comment(comments map[int]string, from, to int) string {
	for k := to; k >= from; k-- {
		if c, ok := comments[k]; ok && c != "" {
			return decodeWords(c)
		}
	}
	return ""
}

func decodeWords(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}
