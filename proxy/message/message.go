package message

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"strings"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
)

// Limits bound what Parse will index. Zero (or negative) fields take the defaults of [DefaultLimits].
type Limits struct {
	MaxSize        int64 // whole message bytes; default 64 MiB
	MaxHeaderBytes int   // one header block (any part); default 256 KiB
	MaxDepth       int   // MIME nesting; default 32 (part 0 has depth 0)
	MaxParts       int   // parts indexed; default 1000
	MaxLineLength  int   // bytes per line incl. CRLF; default 64 KiB (RFC says 1000; real mail is worse)
	// MaxDecodedBytes bounds the content decoded or read again while indexing other readings, at every level
	// together: a message/rfc822 part in base64 or quoted-printable is decoded to index the message inside it, a
	// uuencoded block in an encoded text part is kept, a multipart with a second boundary is scanned again.
	// Default 32 MiB.
	MaxDecodedBytes int64
}

// DefaultLimits returns the limits Parse uses for zero fields.
func DefaultLimits() Limits {
	return Limits{
		MaxSize:         64 << 20,
		MaxHeaderBytes:  256 << 10,
		MaxDepth:        32,
		MaxParts:        1000,
		MaxLineLength:   64 << 10,
		MaxDecodedBytes: 32 << 20,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxSize <= 0 {
		l.MaxSize = d.MaxSize
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxParts <= 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxLineLength <= 0 {
		l.MaxLineLength = d.MaxLineLength
	}
	if l.MaxDecodedBytes <= 0 {
		l.MaxDecodedBytes = d.MaxDecodedBytes
	}
	return l
}

// Range is the half-open byte range [Start, End) of the message.
type Range struct{ Start, End int64 }

// Len returns End - Start.
func (r Range) Len() int64 { return r.End - r.Start }

// Defect kinds. A kind is a stable token that policies and plugins may match on; the detail is for humans.
const (
	// The first six are limits: indexing stopped there, or a reading inside a part was not indexed (see
	// Message.LimitExceeded and Part.Incomplete).
	KindSizeLimit   = "size-limit"   // the message is larger than Limits.MaxSize
	KindDepthLimit  = "depth-limit"  // MIME nesting deeper than Limits.MaxDepth
	KindPartLimit   = "part-limit"   // more parts than Limits.MaxParts
	KindHeaderLimit = "header-limit" // a header block larger than Limits.MaxHeaderBytes
	KindLineLimit   = "line-limit"   // a line longer than Limits.MaxLineLength
	KindDecodeLimit = "decode-limit" // more content to decode for indexing than Limits.MaxDecodedBytes

	KindUnclosedBoundary = "unclosed-boundary" // a multipart without its closing delimiter
	KindMissingBoundary  = "missing-boundary"  // a multipart without a boundary parameter, or with no delimiter line
	KindBadHeader        = "bad-header"        // a header line or field that is not RFC 5322
	KindBadContentType   = "bad-content-type"  // an unparsable or duplicated Content-Type
	KindUnknownEncoding  = "unknown-encoding"  // a Content-Transfer-Encoding we cannot decode
	KindUnknownCharset   = "unknown-charset"   // a charset we cannot convert to UTF-8
	KindBadEncoding      = "bad-encoding"      // content that does not decode, or an encoding MIME forbids here
)

// Defect is one thing wrong with the message.
type Defect struct {
	Part   int    // part id, or -1 for the message as a whole
	Kind   string // one of the Kind constants
	Detail string // a sentence for humans
}

// DefectKinds returns the distinct kinds of ds, in order.
func DefectKinds(ds []Defect) []string {
	var kinds []string
	for _, d := range ds {
		if !slices.Contains(kinds, d.Kind) {
			kinds = append(kinds, d.Kind)
		}
	}
	return kinds
}

// String returns "kind: detail".
func (d Defect) String() string { return d.Kind + ": " + d.Detail }

// Part is one MIME entity of the message. Part 0 is the message itself.
type Part struct {
	ID, Parent, Depth int   // 0, -1, 0 for the root; ids are in depth-first document order
	Header, Body      Range // Header excludes the blank separator line; Body is the raw body (for a multipart: all of it incl. boundaries)
	// Fields holds the header's fields; textproto keeps each field's raw bytes (line endings normalised to CRLF).
	Fields      textproto.Header
	ContentType string            // lower-case type/subtype; "text/plain" when absent (RFC 2045 default)
	Params      map[string]string // Content-Type parameters (nil without a Content-Type): lower-case keys, values decoded (RFC 2231, RFC 2047), boundary raw
	Charset     string            // lower-case charset parameter, or ""
	Encoding    string            // lower-case Content-Transfer-Encoding; "7bit" when absent
	Disposition string            // "inline", "attachment" or "" (unknown dispositions are "attachment", RFC 2183 §2.8)
	// Filename comes from Content-Disposition filename (RFC 2231 continuations and charsets decoded), else from
	// Content-Type name (RFC 2047 words decoded), normalised: Unicode NFC, no path, no control characters, no
	// trailing dots or spaces. A defect records conflicting or malformed names.
	Filename string
	// Filenames is every name a mail client may give the part's file, Filename first, each normalised like it
	// and given once: each filename and name parameter of every Content-Disposition and Content-Type field, each
	// reading of a parameter that clients read differently (repeated, RFC 2231 with gaps, in an unusual
	// charset), and the name on a uuencode or yEnc begin line. Nil when the part names no file.
	Filenames []string
	Multipart bool // the Content-Type is multipart/*
	// Children are, for a multipart: its parts; for a message/rfc822 part: the encapsulated message; and for any
	// part, the derived parts found inside it (see Derived).
	Children []int
	Defects  []Defect
	// Ambiguities are the places where widely used mail clients read this part differently (kinds
	// Ambiguous*). Every reading is in the index: in Filenames, or as derived parts.
	Ambiguities []Defect
	// Derived is "" for a part of the message's structure as RFC 2045/2046 read it. Otherwise the part is
	// another reading of the same bytes that some mail client takes, indexed so that filters see it too:
	//   DerivedDecoded  the message inside a message/rfc822 part with a base64 or quoted-printable encoding
	//   DerivedUUEncode a uuencoded block ("begin 644 name" ... "end") inside a part
	//   DerivedYEnc     a yEnc block ("=ybegin ... name=" ... "=yend") inside a part
	//   DerivedBoundary a part of the structure another boundary parameter of its multipart yields
	//   DerivedField    the part read with its second Content-Type or Content-Transfer-Encoding
	// Derived parts (and the parts inside them) come after every part of the structure, so their ids do not
	// change the ids of the others. They can be read like any part but not changed (ErrInvalid): change the
	// part they were found in.
	Derived string
	// Incomplete is "" or the kind of the bound (a *-limit defect kind) that kept this part's content or the
	// parts inside it from being indexed completely.
	Incomplete string
}

// Derived part kinds, see Part.Derived.
const (
	DerivedDecoded  = "decoded"
	DerivedUUEncode = "uuencode"
	DerivedYEnc     = "yenc"
	DerivedBoundary = "boundary"
	DerivedField    = "field"
)

// Message is an indexed message. See the package documentation.
type Message struct {
	src     io.ReaderAt
	size    int64
	parts   []Part
	meta    []partMeta
	defects []Defect
	ambig   []Defect
	bound   string // kind of the limit that stopped indexing
	eol     string // line ending of the first line, used for text we write
}

// partMeta is what WriteTo needs about a part beyond Part.
type partMeta struct {
	fields    []fieldLoc // the header's fields, in order, with their byte ranges
	delim     int64      // multipart children: start of the line ending that precedes the part's delimiter line
	sep       bool       // the header ends with a blank line
	hdrDone   bool       // the header was read to its end
	bodyDone  bool       // the body's end is known (false for parts still open when a limit stopped indexing)
	container bool       // a message/rfc822 part whose child is the encapsulated message
	embedded  bool       // the message encapsulated by a message/rfc822 part
	// src is where a derived part's ranges point (decoded content), nil for the message itself.
	src io.ReaderAt
	// Other readings the header allows, indexed as derived parts after the scan.
	altBoundaries []string
	altTypes      []string
	altEncodings  []string
}

type fieldLoc struct {
	name string // as written
	r    Range  // the whole field including continuation lines and the final line ending
}

// Size returns the message's size in bytes.
func (m *Message) Size() int64 { return m.size }

// Parts returns every indexed part in depth-first document order; Parts()[i].ID == i. The slice and the parts
// are shared and must not be modified.
func (m *Message) Parts() []Part { return m.parts }

// Part returns the part with the given id.
func (m *Message) Part(id int) (*Part, bool) {
	if id < 0 || id >= len(m.parts) {
		return nil, false
	}
	return &m.parts[id], true
}

// Defects returns every defect found, message-level and per part, in the order found. The slice is shared and
// must not be modified.
func (m *Message) Defects() []Defect { return m.defects }

// Malformed reports whether any defect was found.
func (m *Message) Malformed() bool { return len(m.defects) > 0 }

// Ambiguities returns every place where mail clients would read the message differently, per part, in the
// order found. The slice is shared and must not be modified.
func (m *Message) Ambiguities() []Defect { return m.ambig }

// Ambiguous reports whether mail clients may read the message differently (see Part.Ambiguities).
func (m *Message) Ambiguous() bool { return len(m.ambig) > 0 }

// Attachments counts the parts a mail client shows as files, every reading included: leaf parts that name a file,
// have an attachment disposition, are a uuencoded or yEnc block, or are neither text nor a message (an
// unnamed application/octet-stream is still a file to save).
func (m *Message) Attachments() int {
	n := 0
	for i := range m.parts {
		p := &m.parts[i]
		if p.Multipart || m.meta[i].container {
			continue
		}
		if p.Filename != "" || p.Disposition == "attachment" || p.Derived == DerivedUUEncode || p.Derived == DerivedYEnc ||
			!strings.HasPrefix(p.ContentType, "text/") && !strings.HasPrefix(p.ContentType, "message/") && !strings.HasPrefix(p.ContentType, "multipart/") {
			n++
		}
	}
	return n
}

// source returns the reader a part's ranges point into.
func (m *Message) source(id int) io.ReaderAt {
	if s := m.meta[id].src; s != nil {
		return s
	}
	return m.src
}

// RawHeader returns a part's header as received (for a derived part: as found in the decoded content), without
// the blank separator line.
func (m *Message) RawHeader(id int) (*io.SectionReader, error) {
	p, ok := m.Part(id)
	if !ok {
		return nil, noPart(id)
	}
	return io.NewSectionReader(m.source(id), p.Header.Start, p.Header.Len()), nil
}

// LimitExceeded returns "" or the kind of the bound that stopped indexing, for example "depth-limit".
func (m *Message) LimitExceeded() string { return m.bound }

// Raw returns the whole message.
func (m *Message) Raw() *io.SectionReader { return io.NewSectionReader(m.src, 0, m.size) }

// RawBody returns the raw (still transfer-encoded) body of a part. For a multipart it includes every boundary
// line and child. A derived part's raw body is in the content it was found in (for DerivedDecoded parts: the
// decoded content of the message/rfc822 part).
func (m *Message) RawBody(id int) (*io.SectionReader, error) {
	p, ok := m.Part(id)
	if !ok {
		return nil, noPart(id)
	}
	return io.NewSectionReader(m.source(id), p.Body.Start, p.Body.Len()), nil
}

// ErrInvalid is wrapped by every error about an unacceptable argument: a bad header name or value, a part id
// that does not exist, a change that cannot apply to this message, decoding a multipart.
var ErrInvalid = errors.New("invalid")

// ErrDecode is wrapped by every error about content that cannot be decoded: unknown transfer encoding, unknown
// charset, a source that cannot be read. The raw bytes are still readable with RawBody.
var ErrDecode = errors.New("cannot decode")

// DecodeError says why a part's content cannot be decoded. It wraps ErrDecode.
type DecodeError struct {
	Part int
	Kind string // KindUnknownEncoding, KindUnknownCharset or KindBadEncoding
	Err  error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("message: part %d: %s: %v", e.Part, e.Kind, e.Err)
}

// Unwrap returns ErrDecode and the underlying error.
func (e *DecodeError) Unwrap() []error { return []error{ErrDecode, e.Err} }

func noPart(id int) error { return fmt.Errorf("message: %w part id %d: no such part", ErrInvalid, id) }

// Decoded returns a part's content with its transfer encoding (base64, quoted-printable, and the x-uuencode and
// yEnc that mail clients also decode) undone, as leniently as mail clients decode it: base64 ignores characters
// outside its alphabet and tolerates missing or stray padding, quoted-printable keeps a "=" that starts no
// escape. Errors found while reading (the source cannot be read) are *DecodeError of kind bad-encoding. It is an error (ErrInvalid) to decode a multipart, and a
// *DecodeError to decode an unknown transfer encoding.
func (m *Message) Decoded(id int) (io.Reader, error) {
	p, ok := m.Part(id)
	if !ok {
		return nil, noPart(id)
	}
	if p.Multipart {
		return nil, fmt.Errorf("message: %w: part %d is a multipart; decode its parts instead", ErrInvalid, id)
	}
	n := p.Body.Len()
	raw := io.NewSectionReader(m.source(id), p.Body.Start, n)
	// Decoders read in small pieces; a buffer keeps that from becoming one pread per kilobyte on a file.
	bufSize := 32 << 10
	if n+16 < int64(bufSize) {
		bufSize = int(n) + 16
	}
	switch p.Encoding {
	case "7bit", "8bit", "binary":
		return raw, nil
	case "base64":
		return &decodeReader{part: id, r: newBase64Reader(raw, bufSize)}, nil // reads in chunks of its own
	case "quoted-printable":
		return &decodeReader{part: id, r: newQPReader(bufio.NewReaderSize(raw, max(bufSize, 4096)))}, nil
	}
	switch lenientEncoding(p.Encoding) {
	case "uuencode":
		return &decodeReader{part: id, r: newUUReader(bufio.NewReaderSize(raw, max(bufSize, 4096)))}, nil
	case "yenc":
		return &decodeReader{part: id, r: newYEncReader(bufio.NewReaderSize(raw, max(bufSize, 4096)))}, nil
	}
	return nil, &DecodeError{Part: id, Kind: KindUnknownEncoding, Err: fmt.Errorf("Content-Transfer-Encoding %q", p.Encoding)}
}

// Text returns a part's content transfer-decoded and converted from its charset to UTF-8. A part with no charset,
// us-ascii or utf-8 is passed through as is (bytes that are not UTF-8 included). An unknown charset is a
// *DecodeError of kind unknown-charset.
func (m *Message) Text(id int) (io.Reader, error) {
	r, err := m.Decoded(id)
	if err != nil {
		return nil, err
	}
	cs := m.parts[id].Charset
	if isUTF8Compatible(cs) {
		return r, nil
	}
	cr, err := charset.Reader(cs, r)
	if err != nil {
		return nil, &DecodeError{Part: id, Kind: KindUnknownCharset, Err: err}
	}
	return cr, nil
}

// isUTF8Compatible reports whether a charset's bytes may be passed as UTF-8 without conversion.
func isUTF8Compatible(cs string) bool {
	switch cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return true
	}
	return false
}

// charsetKnown reports whether Text can convert cs.
func charsetKnown(cs string) error {
	if isUTF8Compatible(cs) {
		return nil
	}
	_, err := charset.Reader(cs, strings.NewReader(""))
	return err
}

// decodeReader turns decoder errors into *DecodeError.
type decodeReader struct {
	part int
	r    io.Reader
	n    int64
	err  error
}

func (d *decodeReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.r.Read(p)
	d.n += int64(n)
	if err != nil && err != io.EOF {
		err = &DecodeError{Part: d.part, Kind: KindBadEncoding, Err: fmt.Errorf("after %d decoded bytes: %w", d.n, err)}
		d.err = err
	}
	return n, err
}

// HeaderValues returns the values of every field called name (case-insensitive) in a part's header, top to
// bottom, unfolded (line breaks inside the field removed) and trimmed of surrounding white space. With decoded,
// RFC 2047 encoded words are decoded to UTF-8 (a word in an unknown charset is left as is). It returns nil for
// an unknown part or field.
func (m *Message) HeaderValues(id int, name string, decoded bool) []string {
	p, ok := m.Part(id)
	if !ok {
		return nil
	}
	var out []string
	fs := p.Fields.Fields()
	for fs.Next() {
		if !strings.EqualFold(fs.Key(), name) {
			continue
		}
		raw, err := fs.Raw()
		if err != nil {
			continue
		}
		v := fieldValue(raw)
		if decoded {
			v = decodeWords(v)
		}
		out = append(out, v)
	}
	return out
}

// fieldValue returns the unfolded, trimmed value of a raw field ("Name: value CRLF").
func fieldValue(raw []byte) string {
	if i := bytes.IndexByte(raw, ':'); i >= 0 {
		raw = raw[i+1:]
	}
	return unfold(raw)
}

// unfold removes the line breaks of a folded value (RFC 5322 §2.2.3) and trims white space around it.
func unfold(v []byte) string {
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\n' || (c == '\r' && i+1 < len(v) && v[i+1] == '\n') {
			continue
		}
		b.WriteByte(c)
	}
	return strings.Trim(b.String(), " \t")
}

var wordDecoder = mime.WordDecoder{CharsetReader: func(cs string, r io.Reader) (io.Reader, error) {
	if isUTF8Compatible(strings.ToLower(cs)) {
		return r, nil
	}
	return charset.Reader(cs, r)
}}

// decodeWords decodes RFC 2047 encoded words; on failure it returns s unchanged.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	d, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}
