package mailflow

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/postern/postern/proxy/message"
)

// Withheld says why a message is withheld at retrieval: what the client is served in its place names it.
type Withheld struct {
	// Policy is the name of the policy that decided, "" when none did (a plugin failure's on_error outcome).
	Policy string
	// Action is the decision's action: reject, discard or quarantine (tempfail is a protocol error, not a
	// notice).
	Action string
	// Reason is the plugin's reply text or quarantine reason, "" for none.
	Reason string
	// Reference identifies the decision for the administrator: the key of the original in the quarantine store,
	// which the audit record names too.
	Reference string
	// Hostname is the right-hand side of the notice's Message-ID; "" is "postern.invalid".
	Hostname string
	// Date is the notice's Date when the original has none that parses: the message's internal date, or the
	// time of the decision.
	Date time.Time
	// Kept says where the original is and what the reader can do, in the notice's body (lines of at most 72
	// characters, "\n" between them); "" is the usual case: the original is in the quarantine and the
	// administrator can release it.
	Kept string
}

// keptInQuarantine is Withheld.Kept's default.
const keptInQuarantine = "The original is kept in quarantine. To have it released, ask your mail\n" +
	"administrator and quote the reference above."

// Bounds of the notice: every value taken from the original or the decision is cut to these many bytes (at a
// character boundary), so a notice is a few KiB whatever it is built from.
const (
	noticeValueMax     = 256 // a subject, a reason, a policy name, a reference
	noticeAddressesMax = 5   // addresses kept from From and To
	noticeIDsMax       = 20  // message IDs kept from References
	noticeIDMax        = 250 // bytes of one message ID
)

// Notice returns the message a client is served in place of a withheld one: a short RFC 5322 message in 7-bit
// ASCII whose Date, From, To and Subject come from the original (so clients sort it where the original would have
// been), whose In-Reply-To and References are the original's (so clients thread it), with a Message-ID of its own,
// and a text/plain body saying that the message was withheld, by which policy, why, and the decision's
// reference. It is the same bytes for the same original and decision, as IMAP needs when a client fetches
// it again.
//
// Nothing from the original or the decision reaches the header unchecked: values are decoded, stripped of
// control characters (CR and LF included), cut to a bound, and written as encoded words or re-rendered
// addresses, so a hostile header cannot add fields to the notice.
func Notice(orig *message.Message, w Withheld) []byte {
	host := w.Hostname
	if host == "" || !validDomain(host) {
		host = "postern.invalid"
	}
	first := func(name string, decoded bool) string {
		if orig == nil {
			return ""
		}
		if vs := orig.HeaderValues(0, name, decoded); len(vs) > 0 {
			return vs[0]
		}
		return ""
	}

	var h bytes.Buffer
	date := w.Date
	if d, err := mail.ParseDate(first("Date", false)); err == nil {
		date = d
	}
	if date.IsZero() {
		date = time.Unix(0, 0)
	}
	writeField(&h, "Date", date.Format(time.RFC1123Z))
	from := addresses(first("From", false))
	if from == "" {
		from = "Postern <postmaster@" + host + ">"
	}
	writeField(&h, "From", from)
	if to := addresses(first("To", false)); to != "" {
		writeField(&h, "To", to)
	}
	subject := clean(first("Subject", true), noticeValueMax)
	writeField(&h, "Subject", encodeWords("[withheld] "+strings.TrimPrefix(subject, "[withheld] ")))
	origID := msgIDs(first("Message-ID", false), 1)
	writeField(&h, "Message-ID", noticeID(w, origID, host))
	if irt := msgIDs(first("In-Reply-To", false), 1); irt != "" {
		writeField(&h, "In-Reply-To", irt)
	}
	if refs := msgIDs(first("References", false), noticeIDsMax); refs != "" {
		writeField(&h, "References", refs)
	}
	// RFC 3834: no vacation reply to a notice.
	writeField(&h, "Auto-Submitted", "auto-generated")
	writeField(&h, "X-Postern-Withheld", encodeWords(clean(w.Reference, noticeValueMax)))
	writeField(&h, "MIME-Version", "1.0")
	writeField(&h, "Content-Type", "text/plain; charset=utf-8")
	writeField(&h, "Content-Transfer-Encoding", "quoted-printable")
	h.WriteString("\r\n")

	policy := clean(w.Policy, noticeValueMax)
	if policy == "" {
		policy = "(a plugin failure)"
	}
	var b strings.Builder
	b.WriteString("This message was withheld by the mail filter of your mailbox.\n\n")
	b.WriteString("Policy:     " + policy + "\n")
	b.WriteString("Action:     " + orNone(clean(w.Action, noticeValueMax)) + "\n")
	b.WriteString("Reason:     " + orNone(clean(w.Reason, noticeValueMax)) + "\n")
	b.WriteString("Reference:  " + orNone(clean(w.Reference, noticeValueMax)) + "\n\n")
	kept := w.Kept
	if kept == "" {
		kept = keptInQuarantine
	}
	b.WriteString(kept + "\n\n")
	b.WriteString("The original message:\n")
	b.WriteString("  From:       " + orNone(clean(first("From", true), noticeValueMax)) + "\n")
	b.WriteString("  Subject:    " + orNone(subject) + "\n")
	b.WriteString("  Date:       " + orNone(clean(first("Date", false), noticeValueMax)) + "\n")
	b.WriteString("  Message-ID: " + orNone(origID) + "\n")

	qp := quotedprintable.NewWriter(&h) // writes its line ends as CRLF
	_, _ = qp.Write([]byte(b.String()))
	_ = qp.Close()
	return h.Bytes()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// clean makes a value safe and short for the notice: valid UTF-8, no control characters (each run of them,
// CR and LF included, becomes one space), trimmed, at most limit bytes, cut at a character boundary.
func clean(s string, limit int) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Cf, r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		if b.Len()+utf8.RuneLen(r) > limit {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// encodeWords writes a cleaned value for a header: as is when it is printable ASCII, else as RFC 2047 encoded
// words (which mime keeps under 76 characters each, so the field can be folded between them).
func encodeWords(s string) string {
	return mime.QEncoding.Encode("utf-8", s)
}

// addresses re-renders an address list from the original (at most noticeAddressesMax addresses), or "" when it
// does not parse: a name is written as encoded words when it needs them, so nothing of the original's bytes is
// copied into the notice unchecked.
func addresses(v string) string {
	list, err := mail.ParseAddressList(v)
	if err != nil || len(list) == 0 {
		return ""
	}
	var out []string
	for _, a := range list[:min(len(list), noticeAddressesMax)] {
		if len(a.Address) > noticeIDMax || !printableASCII(a.Address) {
			continue
		}
		a.Name = clean(a.Name, noticeValueMax)
		out = append(out, a.String())
	}
	return strings.Join(out, ", ")
}

// msgIDs keeps up to n message IDs (`<...>` of printable ASCII without spaces) from a field value, the last n
// when there are more (References lists the nearest ancestors last), joined by spaces.
func msgIDs(v string, n int) string {
	var ids []string
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			break
		}
		id := v[i : i+j+1]
		v = v[i+j+1:]
		if len(id) > 2 && len(id) <= noticeIDMax && printableASCII(id[1:len(id)-1]) && !strings.ContainsAny(id[1:len(id)-1], " <>") {
			ids = append(ids, id)
		}
	}
	if len(ids) > n {
		ids = ids[len(ids)-n:]
	}
	return strings.Join(ids, " ")
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func validDomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// noticeID is the notice's own Message-ID: a hash of the decision's reference and the original's Message-ID,
// so the same withheld message always gets the same notice, and a different one never the same ID.
func noticeID(w Withheld, origID, host string) string {
	sum := sha256.Sum256([]byte(w.Reference + "\x00" + origID + "\x00" + w.Policy))
	return "<withheld." + hex.EncodeToString(sum[:12]) + "@" + host + ">"
}

// writeField writes one header field, folded at spaces so that lines stay within 78 characters where the value
// allows (every part written here is at most noticeIDMax bytes without a space, under RFC 5322's 998).
func writeField(b *bytes.Buffer, name, value string) {
	line := len(name) + 1
	b.WriteString(name)
	b.WriteByte(':')
	for i, word := range strings.Fields(value) {
		if (i > 0 || len(word) > 40) && line+1+len(word) > 78 {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteByte(' ')
		b.WriteString(word)
		line += 1 + len(word)
	}
	b.WriteString("\r\n")
}
