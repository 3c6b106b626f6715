package message

import (
	"fmt"
	"mime"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Op names a kind of change.
type Op string

// The change operations.
const (
	OpAddHeader     Op = "add_header"
	OpSetHeader     Op = "set_header"
	OpRemoveHeader  Op = "remove_header"
	OpPrefixSubject Op = "prefix_subject"
	OpAppendBanner  Op = "append_banner"
	OpRemovePart    Op = "remove_part"
	OpReplacePart   Op = "replace_part"
	OpAddRecipient  Op = "add_recipient"
)

// Change is one recorded change. Which fields are used depends on Op: Name and Value for header changes, Value
// for prefix_subject (the prefix) and add_recipient (the address), Value and HTML for append_banner (the text
// and HTML banners), Part for remove_part, Part, ContentType and Content for replace_part.
type Change struct {
	Op          Op     `json:"op"`
	Name        string `json:"name,omitempty"`
	Value       string `json:"value,omitempty"`
	HTML        string `json:"html,omitempty"`
	Part        int    `json:"part,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Content     []byte `json:"-"`
	Size        int    `json:"size,omitempty"` // len(Content), for reports
}

// Changes is an ordered list of changes to one message, validated as they are recorded. The zero value is an
// empty list. Changes are applied in order by Message.WriteTo; what cannot be checked without the message (part
// ids) is checked there.
type Changes struct {
	list  []Change
	rcpts []string
}

// Bounds on what a change may carry. The plugin host applies its own, smaller per-call budgets on top.
const (
	maxHeaderValue = 64 << 10 // one header value
	maxBanner      = 64 << 10 // one banner, text or HTML
	maxLine        = 998      // RFC 5322 §2.1.1: a line of a banner we splice into a body
	maxAddress     = 254      // RFC 5321 §4.5.3.1.3 path, without the angle brackets
)

// protectedField reports whether a header field describes the MIME structure the index and the splicer rely on.
// Header changes may not touch these: a plugin changes content with ReplacePart.
func protectedField(name string) bool {
	return strings.EqualFold(name, "Content-Type") || strings.EqualFold(name, "Content-Transfer-Encoding") ||
		strings.EqualFold(name, "MIME-Version")
}

// ValidHeaderName checks an RFC 5322 field name: 1 to 76 printable US-ASCII characters other than ':'.
func ValidHeaderName(name string) error {
	if name == "" {
		return fmt.Errorf("message: %w header name: empty", ErrInvalid)
	}
	if len(name) > 76 {
		return fmt.Errorf("message: %w header name %q: longer than 76 characters", ErrInvalid, clip(name))
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return fmt.Errorf("message: %w header name %q: byte %#02x at %d is not printable US-ASCII other than ':'", ErrInvalid, clip(name), c, i)
		}
	}
	return nil
}

// ValidHeaderValue checks a header value from a plugin: valid UTF-8, at most 64 KiB, and no CR, LF or NUL (a
// line break would let the value inject fields or end the header; the splicer folds long values itself).
func ValidHeaderValue(value string) error {
	if len(value) > maxHeaderValue {
		return fmt.Errorf("message: %w header value: %d bytes, more than %d", ErrInvalid, len(value), maxHeaderValue)
	}
	if i := strings.IndexAny(value, "\r\n\x00"); i >= 0 {
		return fmt.Errorf("message: %w header value: %q at byte %d (CR, LF and NUL are not allowed)", ErrInvalid, value[i], i)
	}
	if !utf8.ValidString(value) {
		return fmt.Errorf("message: %w header value: not valid UTF-8", ErrInvalid)
	}
	return nil
}

func validChangeName(name string) error {
	if err := ValidHeaderName(name); err != nil {
		return err
	}
	if protectedField(name) {
		return fmt.Errorf("message: %w header name %s: the MIME structure fields cannot be changed (replace the part instead)", ErrInvalid, name)
	}
	return nil
}

func (c *Changes) add(ch Change) { c.list = append(c.list, ch) }

// AddHeader adds a field at the top of the message header.
func (c *Changes) AddHeader(name, value string) error {
	if err := validChangeName(name); err != nil {
		return err
	}
	if err := ValidHeaderValue(value); err != nil {
		return err
	}
	c.add(Change{Op: OpAddHeader, Name: name, Value: value})
	return nil
}

// SetHeader replaces the first field called name (case-insensitive) in place and removes the others; it adds
// the field at the top when there is none.
func (c *Changes) SetHeader(name, value string) error {
	if err := validChangeName(name); err != nil {
		return err
	}
	if err := ValidHeaderValue(value); err != nil {
		return err
	}
	c.add(Change{Op: OpSetHeader, Name: name, Value: value})
	return nil
}

// RemoveHeader removes every field called name (case-insensitive) from the message header.
func (c *Changes) RemoveHeader(name string) error {
	if err := validChangeName(name); err != nil {
		return err
	}
	c.add(Change{Op: OpRemoveHeader, Name: name})
	return nil
}

// PrefixSubject puts prefix in front of the Subject (separated by a space unless the prefix ends with one). It is
// not applied when the subject, decoded, already starts with the prefix, so a message that passes twice is not
// tagged twice. A message without a Subject gets one.
func (c *Changes) PrefixSubject(prefix string) error {
	if strings.TrimSpace(prefix) == "" {
		return fmt.Errorf("message: %w subject prefix: empty", ErrInvalid)
	}
	if err := ValidHeaderValue(prefix); err != nil {
		return err
	}
	c.add(Change{Op: OpPrefixSubject, Value: prefix})
	return nil
}

// AppendBanner appends text to the first text/plain part and html to the first text/html part that are shown
// as the message's body: not attachments (by disposition or file name), not inside an attached message, not
// inside a multipart/signed or multipart/encrypted (that would break the signature). Either may be empty, not
// both. Line breaks may be LF or CRLF; they are written in the message's style. The HTML banner goes before
// </body> when the part has one. A part that is transfer-encoded or not in a UTF-8 compatible charset is
// decoded, extended and re-encoded, and labelled charset=utf-8; any other gets the banner spliced in. A message
// with no such part is left as it is.
func (c *Changes) AppendBanner(text, html string) error {
	if text == "" && html == "" {
		return fmt.Errorf("message: %w banner: both text and HTML are empty", ErrInvalid)
	}
	for _, b := range []struct{ kind, v string }{{"text", text}, {"HTML", html}} {
		if len(b.v) > maxBanner {
			return fmt.Errorf("message: %w %s banner: %d bytes, more than %d", ErrInvalid, b.kind, len(b.v), maxBanner)
		}
		if !utf8.ValidString(b.v) {
			return fmt.Errorf("message: %w %s banner: not valid UTF-8", ErrInvalid, b.kind)
		}
		if i := strings.IndexByte(b.v, 0); i >= 0 {
			return fmt.Errorf("message: %w %s banner: NUL at byte %d", ErrInvalid, b.kind, i)
		}
		for i, line := range strings.Split(b.v, "\n") {
			if len(line) > maxLine {
				return fmt.Errorf("message: %w %s banner: line %d is %d bytes, more than %d", ErrInvalid, b.kind, i+1, len(line), maxLine)
			}
		}
	}
	c.add(Change{Op: OpAppendBanner, Value: text, HTML: html})
	return nil
}

// RemovePart removes a part with its boundary line; the multipart around it stays valid. Part 0 cannot be
// removed (reject or discard the message instead).
func (c *Changes) RemovePart(id int) error {
	if id <= 0 {
		return fmt.Errorf("message: %w part %d: only parts 1 and above can be removed", ErrInvalid, id)
	}
	c.add(Change{Op: OpRemovePart, Part: id})
	return nil
}

// ReplacePart replaces the content of a part that is not a multipart. contentType is a media type with optional
// parameters (not multipart/* or message/*); the splicer writes a new header for the part with that Content-Type
// and a transfer encoding it chooses (7bit or quoted-printable for text, base64 otherwise). For part 0 the other
// header fields are kept. content is not copied and must not be modified afterwards.
func (c *Changes) ReplacePart(id int, contentType string, content []byte) error {
	if id < 0 {
		return fmt.Errorf("message: %w part %d: no such part", ErrInvalid, id)
	}
	if strings.ContainsAny(contentType, "\r\n\x00") {
		return fmt.Errorf("message: %w content type %q: CR, LF and NUL are not allowed", ErrInvalid, clip(contentType))
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.Contains(mt, "/") {
		return fmt.Errorf("message: %w content type %q: not a media type", ErrInvalid, clip(contentType))
	}
	if strings.HasPrefix(mt, "multipart/") || strings.HasPrefix(mt, "message/") {
		return fmt.Errorf("message: %w content type %s: a replacement cannot be a multipart or a message", ErrInvalid, mt)
	}
	ct := mime.FormatMediaType(mt, params)
	if ct == "" {
		return fmt.Errorf("message: %w content type %q: cannot be written back", ErrInvalid, clip(contentType))
	}
	c.add(Change{Op: OpReplacePart, Part: id, ContentType: ct, Content: content, Size: len(content)})
	return nil
}

// AddRecipient adds an envelope recipient (SMTP only; it does not change the message). addr is local@domain,
// without angle brackets, spaces or control characters. Adding the same address twice records it once.
func (c *Changes) AddRecipient(addr string) error {
	if err := validAddress(addr); err != nil {
		return err
	}
	for _, r := range c.rcpts {
		if r == addr {
			return nil
		}
	}
	c.rcpts = append(c.rcpts, addr)
	c.add(Change{Op: OpAddRecipient, Value: addr})
	return nil
}

func validAddress(addr string) error {
	bad := func(why string) error {
		return fmt.Errorf("message: %w recipient %q: %s", ErrInvalid, clip(addr), why)
	}
	if len(addr) > maxAddress {
		return bad(fmt.Sprintf("longer than %d bytes", maxAddress))
	}
	if !utf8.ValidString(addr) {
		return bad("not valid UTF-8")
	}
	for _, r := range addr {
		if r <= ' ' || unicode.IsControl(r) || unicode.IsSpace(r) || strings.ContainsRune(`<>,;"`, r) {
			return bad(fmt.Sprintf("%q is not allowed", r))
		}
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return bad("not local@domain")
	}
	local, domain := addr[:at], addr[at+1:]
	if len(local) > 64 {
		return bad("local part longer than 64 bytes")
	}
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		return nil // an address literal
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return bad("malformed domain")
		}
		for _, r := range label {
			if r < utf8.RuneSelf && !(r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
				return bad(fmt.Sprintf("%q is not allowed in a domain", r))
			}
		}
	}
	return nil
}

// List returns the changes in the order they were recorded.
func (c *Changes) List() []Change {
	if c == nil {
		return nil
	}
	return append([]Change(nil), c.list...)
}

// Len returns the number of changes.
func (c *Changes) Len() int {
	if c == nil {
		return 0
	}
	return len(c.list)
}

// Recipients returns the envelope recipients added, in order.
func (c *Changes) Recipients() []string {
	if c == nil {
		return nil
	}
	return append([]string(nil), c.rcpts...)
}

// Bytes returns how many bytes of header values, banners and replacement content the changes carry, for budget
// checks.
func (c *Changes) Bytes() int {
	if c == nil {
		return 0
	}
	n := 0
	for _, ch := range c.list {
		n += len(ch.Name) + len(ch.Value) + len(ch.HTML) + len(ch.ContentType) + len(ch.Content)
	}
	return n
}

// Merge appends other's changes, in order, after c's. A recipient c already has is not added again.
func (c *Changes) Merge(other *Changes) {
	if other == nil {
		return
	}
	for _, ch := range other.list {
		if ch.Op == OpAddRecipient {
			_ = c.AddRecipient(ch.Value) // already validated
			continue
		}
		c.list = append(c.list, ch)
	}
}

// modifies reports whether any change affects the message bytes (add_recipient does not).
func (c *Changes) modifies() bool {
	if c == nil {
		return false
	}
	for _, ch := range c.list {
		if ch.Op != OpAddRecipient {
			return true
		}
	}
	return false
}

// Filter returns a new list with the message changes for which keep returns true, and the same recipients.
func (c *Changes) Filter(keep func(Change) bool) *Changes {
	out := &Changes{rcpts: slices.Clone(c.rcpts)}
	for _, ch := range c.list {
		if ch.Op == OpAddRecipient || keep(ch) {
			out.list = append(out.list, ch)
		}
	}
	return out
}

// Truncate drops the message changes recorded after the first n (recipients are kept). A host uses it to take
// back a change that Message.Validate refused, so that the maker can do without it.
func (c *Changes) Truncate(n int) {
	if n >= 0 && n < len(c.list) {
		c.list = c.list[:n]
	}
}
