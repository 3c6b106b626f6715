package postern

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Message is the message of an OnMessage call, read on demand: nothing is copied into the plugin until a
// method asks for it. Parts are numbered in depth-first document order; part 0 is the message itself. It embeds
// Envelope for the client, the envelope and the verdict. It is valid only during the handler it was given to.
//
// Changes (AddHeader, AddBanner, ...) are recorded by the host and applied after every plugin ran; reads always
// see the message as received. Every byte no change touches is delivered unchanged.
type Message struct {
	Envelope
}

// Mode selects how part content is presented.
type Mode uint32

// Content modes (ABI §3.3).
const (
	ModeRaw     Mode = 0 // the body bytes as received, still transfer-encoded
	ModeDecoded Mode = 1 // base64 and quoted-printable undone
	ModeText    Mode = 2 // decoded and converted from the part's charset to UTF-8: what text scanners want
)

const headerDecoded = 0x1

// Size is the size in bytes of the message as received.
func (*Message) Size() int {
	n, _ := strconv.Atoi(field("message.size"))
	return n
}

// Malformed returns the message's defects, one "kind: detail" per value (for example "depth-limit: MIME nesting
// deeper than 32"); none when it is well formed.
func (*Message) Malformed() []string {
	v, _ := Fields("message.malformed")
	return v
}

// Ambiguous returns the places where widely used mail clients read the message differently, one "kind: detail"
// per value; none when they all read it one way. A plugin that cannot be sure what the reader will see blocks.
func (*Message) Ambiguous() []string {
	v, _ := Fields("message.ambiguous")
	return v
}

// LimitExceeded names the bound that kept the message from being indexed completely ("part-limit",
// "decode-limit", ...), or "" when every part was indexed: parts past it were not inspected.
func (*Message) LimitExceeded() string {
	return field("message.limit_exceeded")
}

// Header returns the first field called name (case-insensitive) of the message header, unfolded and trimmed,
// with RFC 2047 encoded words left as they are; "" when there is none.
func (*Message) Header(name string) string {
	v, _ := header(0, name, 0, 0)
	return v
}

// HeaderDecoded is Header with RFC 2047 encoded words decoded to UTF-8.
func (*Message) HeaderDecoded(name string) string {
	v, _ := header(0, name, 0, headerDecoded)
	return v
}

// Headers returns every field called name in the message header, top to bottom, unfolded and trimmed.
func (*Message) Headers(name string) []string {
	var vals []string
	for i := 0; ; i++ {
		v, err := header(0, name, i, 0)
		if err != nil {
			return vals
		}
		vals = append(vals, v)
	}
}

// PartHeader returns the index-th (from 0) field called name in the header of part, decoding RFC 2047 words when
// decoded is set. The error is ErrNotFound when there is no such field and ErrInvalid for a bad name or part.
func (*Message) PartHeader(part int, name string, index int, decoded bool) (string, error) {
	var flags uint32
	if decoded {
		flags = headerDecoded
	}
	return header(part, name, index, flags)
}

func header(part int, name string, index int, flags uint32) (string, error) {
	if index < 0 || index > math.MaxUint32 {
		return "", ErrNotFound
	}
	return fetchString(func(buf *byte, limit uint32) int32 {
		return hostHeaderGet(i32(part), name, uint32(index), flags, buf, limit)
	})
}

// HeaderBlock returns the header of part exactly as received: its field lines with their line endings, without
// the blank line that ends it.
func (*Message) HeaderBlock(part int) ([]byte, error) {
	b, owned, err := fetch(func(buf *byte, limit uint32) int32 { return hostHeaderAll(i32(part), buf, limit) })
	if err != nil {
		return nil, err
	}
	if !owned {
		b = bytes.Clone(b)
	}
	return b, nil
}

// Part describes one MIME part. Filename is already normalised by the host (RFC 2231 continuations and
// charsets and RFC 2047 words decoded, Unicode NFC, path components removed), so checks on it cannot be evaded
// by encoding tricks.
type Part struct {
	ID          int
	Parent      int    // -1 for part 0
	Depth       int    // 0 for part 0
	ContentType string // lower-case type/subtype; text/plain when absent
	Charset     string // lower-case, or ""
	Encoding    string // lower-case Content-Transfer-Encoding; 7bit when absent
	Disposition string // "inline", "attachment" or ""
	Filename    string
	// Filenames is every name a mail client may give the part's file, Filename first: each filename and name
	// parameter, each reading of a parameter clients read differently, the name on a uuencode begin line. A
	// check on file names must check them all.
	Filenames []string
	Size      int      // raw (still transfer-encoded) body bytes
	Multipart bool     // its body holds the child parts
	Defects   []string // "kind: detail", one per defect
	// Ambiguities are the places where mail clients read this part differently, "kind: detail" each.
	Ambiguities []string
	// Derived is "" for a part of the message's MIME structure, else how the host found this other reading of
	// its parent: "decoded", "uuencode", "yenc", "boundary" or "field" (ABI §3.3). Derived parts can be read,
	// not changed.
	Derived string
	// Incomplete is "" or the bound ("depth-limit", "part-limit", "decode-limit", ...) that kept this part's
	// content or the parts inside it from being indexed completely.
	Incomplete string
}

// The part list is cached for the duration of one call (resetCall clears it).
var (
	parts      []Part
	partsValid bool
)

// Parts returns the message's parts in depth-first document order, followed by the derived parts (other
// readings of the same bytes that mail clients take; see Part.Derived); Parts()[i].ID == i. The slice is shared
// within the call: do not modify it.
func (*Message) Parts() ([]Part, error) {
	if partsValid {
		return parts, nil
	}
	// One host call for every attribute of every part (ABI parts_get), decoded into strings that share one
	// buffer: the list costs a handful of allocations, not one host call and one string per attribute.
	b, owned, err := fetch(hostPartsGet)
	if err != nil {
		return nil, err
	}
	if !owned {
		b = bytes.Clone(b)
	}
	list, err := decodeParts(ownString(b), parts[:0])
	if err != nil {
		return nil, fmt.Errorf("postern: parts_get: %w", err)
	}
	parts, partsValid = list, true
	return parts, nil
}

// The part attributes this SDK reads, by their position in attrNames; the first ten (requiredAttrs) are those of
// ABI 1.0, which every host gives.
const (
	attrParent = iota
	attrDepth
	attrContentType
	attrCharset
	attrEncoding
	attrDisposition
	attrFilename
	attrSize
	attrMultipart
	attrDefects
	attrFilenames
	attrAmbiguities
	attrDerived
	attrIncomplete
	attrUnknown
)

var attrNames = [...]string{"parent", "depth", "content_type", "charset", "encoding", "disposition", "filename",
	"size", "multipart", "defects", "filenames", "ambiguities", "derived", "incomplete"}

var requiredAttrs = attrNames[:attrFilenames]

// hostOrder is the order in which the host of this SDK's revision lists the attributes (ABI §3.3): names are
// matched against it first, and against every known name only when it differs.
var hostOrder = [...]int{attrParent, attrDepth, attrContentType, attrCharset, attrEncoding, attrDisposition,
	attrFilename, attrFilenames, attrAmbiguities, attrDerived, attrIncomplete, attrSize, attrMultipart, attrDefects}

// errPartList is a parts_get answer that does not follow ABI §3.3.
var errPartList = errors.New("malformed part list from the host")

// decodeParts decodes parts_get's answer (ABI §3.3): u32 part count, u32 attribute count k, k attribute names,
// then k values per part, each a u32 length and its bytes. Attributes this SDK does not know are skipped;
// those the host does not send stay empty. The strings are substrings of s.
func decodeParts(s string, list []Part) ([]Part, error) {
	u32 := func() (int, bool) {
		if len(s) < 4 {
			return 0, false
		}
		v := int(uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24)
		s = s[4:]
		return v, true
	}
	str := func() (string, bool) {
		n, ok := u32()
		if !ok || n > len(s) {
			return "", false
		}
		v := s[:n]
		s = s[n:]
		return v, true
	}
	n, ok1 := u32()
	k, ok2 := u32()
	if !ok1 || !ok2 || k == 0 || k > len(s)/4 {
		return nil, errPartList
	}
	// Each name is matched once; the values are then assigned by position.
	var slots [32]int
	attrs := slots[:0]
	var have uint16
	for range k {
		name, ok := str()
		if !ok {
			return nil, errPartList
		}
		a := attrUnknown
		if guess := len(attrs); guess < len(hostOrder) && name == attrNames[hostOrder[guess]] {
			a = hostOrder[guess] // the order this SDK's host sends
		} else {
			for i, known := range attrNames {
				if name == known {
					a = i
					break
				}
			}
		}
		if a < len(requiredAttrs) {
			have |= 1 << a
		}
		attrs = append(attrs, a)
	}
	for i, req := range requiredAttrs {
		if have&(1<<i) == 0 {
			// Attributes of ABI 1.0: every host has them. Newer ones (filenames, derived, ...) may be absent.
			return nil, fmt.Errorf("attribute %s: %w", req, ErrNotFound)
		}
	}
	if n > len(s)/(4*k) { // every value takes at least its length
		return nil, errPartList
	}
	for id := range n {
		p := Part{ID: id}
		for _, a := range attrs {
			v, ok := str()
			if !ok {
				return nil, errPartList
			}
			var err error
			switch a {
			case attrParent:
				p.Parent, err = strconv.Atoi(v)
			case attrDepth:
				p.Depth, err = strconv.Atoi(v)
			case attrContentType:
				p.ContentType = v
			case attrCharset:
				p.Charset = v
			case attrEncoding:
				p.Encoding = v
			case attrDisposition:
				p.Disposition = v
			case attrFilename:
				p.Filename = v
			case attrSize:
				p.Size, err = strconv.Atoi(v)
			case attrMultipart:
				p.Multipart = v == "1"
			case attrDefects:
				if v != "" {
					p.Defects = strings.Split(strings.TrimSuffix(v, "\n"), "\n")
				}
			case attrFilenames:
				if v != "" {
					p.Filenames = strings.Split(v, "\n")
				}
			case attrAmbiguities:
				if v != "" {
					p.Ambiguities = strings.Split(v, "\n")
				}
			case attrDerived:
				p.Derived = v
			case attrIncomplete:
				p.Incomplete = v
			}
			if err != nil {
				return nil, fmt.Errorf("part %d: attribute %s: host sent %q, not a number", id, attrNames[a], v)
			}
		}
		if p.Filenames == nil && p.Filename != "" {
			p.Filenames = []string{p.Filename}
		}
		list = append(list, p)
	}
	if len(s) != 0 {
		return nil, errPartList
	}
	return list, nil
}

// PartField returns one attribute of a part as the host gives it (ABI §3.3 part_field), including attributes
// newer than this SDK. The error is ErrNotFound for an unknown attribute and ErrInvalid for a bad part id.
func (*Message) PartField(part int, name string) (string, error) { return partField(part, name) }

func partField(part int, name string) (string, error) {
	return fetchString(func(buf *byte, limit uint32) int32 { return hostPartField(i32(part), name, buf, limit) })
}

// ReadPart copies the content of part in mode, starting at byte off, into buf, and returns the total length of
// that content; the number of bytes written is min(len(buf), total-off), none when off is at or past the end.
// A len(buf) of 0 asks for the length only. The error is ErrInvalid for a bad part or mode (mode Decoded or Text
// on a multipart part) and ErrDecode when the content cannot be decoded in that mode.
func (*Message) ReadPart(part int, mode Mode, off int, buf []byte) (total int, err error) {
	return readPartAt(part, mode, off, buf)
}

func readPartAt(part int, mode Mode, off int, buf []byte) (int, error) {
	if off < 0 || off > math.MaxUint32 {
		return 0, ErrInvalid
	}
	n := hostPartRead(i32(part), uint32(mode), uint32(off), bufPtr(buf), limit(buf))
	if n < 0 {
		return 0, errno(n)
	}
	return int(n), nil
}

// Text returns the whole content of part as UTF-8 text (ModeText). It holds the part in the plugin's memory
// once; for large parts prefer Match, SHA256 or a Reader.
func (*Message) Text(part int) (string, error) {
	b, owned, err := fetch(func(buf *byte, limit uint32) int32 {
		return hostPartRead(i32(part), uint32(ModeText), 0, buf, limit)
	})
	if err != nil {
		return "", err
	}
	if owned {
		return ownString(b), nil
	}
	return string(b), nil
}

// Reader returns a reader over the content of part in mode. Each Read asks the host for exactly len(p) bytes at
// the current offset, so memory use is the caller's buffer, whatever the part's size. Errors are the ReadPart
// errors, returned by the first Read.
func (*Message) Reader(part int, mode Mode) io.Reader {
	return &contentReader{read: func(off int, p []byte) (int, error) { return readPartAt(part, mode, off, p) }}
}

// ReadMessage copies the whole message as received (header and body), starting at byte off, into buf and
// returns its total length, like ReadPart.
func (*Message) ReadMessage(off int, buf []byte) (total int, err error) {
	return readMessageAt(off, buf)
}

func readMessageAt(off int, buf []byte) (int, error) {
	if off < 0 || off > math.MaxUint32 {
		return 0, ErrInvalid
	}
	n := hostMessageRead(uint32(off), bufPtr(buf), limit(buf))
	if n < 0 {
		return 0, errno(n)
	}
	return int(n), nil
}

// Raw returns a reader over the whole message as received, with the memory behaviour of Reader.
func (*Message) Raw() io.Reader { return &contentReader{read: readMessageAt} }

// contentReader streams a host-side content through the caller's buffers.
type contentReader struct {
	read func(off int, p []byte) (total int, err error)
	off  int
	err  error
}

// Read asks the host for len(p) bytes at the current offset.
func (r *contentReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	total, err := r.read(r.off, p)
	if err != nil {
		r.err = err
		return 0, err
	}
	if r.off >= total {
		r.err = io.EOF
		return 0, io.EOF
	}
	n := min(len(p), total-r.off)
	r.off += n
	return n, nil
}

// The change methods record a change that the host applies after the chain ran, by splicing: bytes no change
// touches stay identical. Each returns ErrInvalid when the host refuses the change (nothing is recorded) and
// ErrUnavailable outside OnMessage. Header names are 1–76 printable ASCII characters without ':'; values must not
// contain CR, LF or NUL (the host folds and RFC 2047-encodes them itself), which is what stops header injection.

// AddHeader adds a field at the top of the message header.
func (*Message) AddHeader(name, value string) error { return status(hostHeaderAdd(name, value)) }

// SetHeader replaces the first field called name in place and removes the others; it adds the field when there
// is none.
func (*Message) SetHeader(name, value string) error { return status(hostHeaderSet(name, value)) }

// RemoveHeader removes every field called name.
func (*Message) RemoveHeader(name string) error { return status(hostHeaderRemove(name)) }

// PrefixSubject puts prefix before the Subject, unless the Subject already starts with it.
func (*Message) PrefixSubject(prefix string) error { return status(hostSubjectPrefix(prefix)) }

// AddBanner appends text to the first text/plain part and html to the first text/html part shown as the body;
// either may be "". It fails with ErrDecode, recording nothing, when one of those parts would have to be
// re-encoded but cannot be decoded; AddBannerEach adds whichever half can be placed.
func (*Message) AddBanner(text, html string) error { return status(hostBannerAdd(text, html)) }

// AddBannerEach adds the text and the HTML banner separately, so that a body part that cannot take its banner
// (ErrDecode) does not keep the other one out. The error joins the halves' errors: errors.Is(err, ErrDecode)
// says a half was left out, and the other half was added unless its own error says otherwise.
func (m *Message) AddBannerEach(text, html string) error {
	// One change when both halves fit, as usual; two tries only when one part could not take its banner.
	err := m.AddBanner(text, html)
	if !errors.Is(err, ErrDecode) || text == "" || html == "" {
		return err
	}
	return errors.Join(m.AddBanner(text, ""), m.AddBanner("", html))
}

// RemovePart removes a part (not part 0) and its boundary line; the multipart around it stays valid.
func (*Message) RemovePart(part int) error { return status(hostPartRemove(i32(part))) }

// ReplacePart replaces the content and Content-Type of a non-multipart part; the host picks the transfer
// encoding.
func (*Message) ReplacePart(part int, contentType string, data []byte) error {
	if len(data) > math.MaxUint32 {
		return ErrInvalid
	}
	return status(hostPartReplace(i32(part), contentType, bufPtr(data), limit(data)))
}

// SHA256 returns the SHA-256 of the content of part in mode, computed by the host without copying the content
// into the plugin.
func (*Message) SHA256(part int, mode Mode) ([32]byte, error) {
	var sum [32]byte
	if rc := hostPartSHA256(i32(part), uint32(mode), &sum[0]); rc < 0 {
		return [32]byte{}, errno(rc)
	} else if rc != 32 {
		return [32]byte{}, errors.New("postern: part_sha256 returned " + strconv.Itoa(int(rc)) + ", not 32")
	}
	return sum, nil
}
