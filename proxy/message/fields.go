package message

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/unicode/norm"
)

// analyze fills in what a part's header says about its content, recording what is wrong with it and where
// mail clients would read it differently.
func (s *scanner) analyze(id int) {
	m := s.m
	p := &m.parts[id]
	h := &p.Fields
	meta := &m.meta[id]
	var names []string // candidate file names, in order of preference
	addNames := func(vs []string) {
		for _, v := range vs {
			if n := NormalizeFilename(v); n != "" && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	ambig := func(as []ambiguity) {
		for _, a := range as {
			s.ambiguity(id, a.kind, fmt.Sprintf("part %d: %s", id, a.detail))
		}
	}

	p.ContentType = "text/plain"
	if p.Parent >= 0 && m.parts[p.Parent].ContentType == "multipart/digest" {
		p.ContentType = "message/rfc822" // RFC 2046 §5.1.5
	}
	cts := h.Values("Content-Type")
	if len(cts) > 1 {
		s.defect(id, KindBadContentType, fmt.Sprintf("part %d has %d Content-Type fields; the first is used", id, len(cts)))
	}
	var ctReadings map[string][]string
	var literal []string // names with RFC 2047 words left encoded, as readers that do not decode them show them
	if len(cts) > 0 {
		mv := parseMediaValue(cts[0], true)
		if mv.value != "" {
			p.ContentType = mv.value
		}
		p.Params = mv.params
		ctReadings = mv.readings
		literal = append(literal, mv.literal["name"]...)
		if len(mv.problems) > 0 {
			s.defect(id, KindBadContentType, fmt.Sprintf("part %d: Content-Type %q: %s", id, clip(cts[0]), strings.Join(mv.problems, "; ")))
		}
		for _, cs := range mv.charsets {
			s.defect(id, KindUnknownCharset, fmt.Sprintf("part %d: Content-Type parameter in unknown charset %q", id, cs))
		}
		ambig(mv.ambig)
		for _, b := range mv.readings["boundary"] {
			if b != "" && b != p.Params["boundary"] {
				meta.altBoundaries = append(meta.altBoundaries, b)
			}
		}
		for _, v := range cts[1:] {
			alt := parseMediaValue(v, true)
			if v != cts[0] {
				s.ambiguity(id, AmbiguousField, fmt.Sprintf("part %d has Content-Type fields %q and %q; clients differ in which they use", id, clip(cts[0]), clip(v)))
			}
			if strings.HasPrefix(alt.value, "multipart/") {
				for _, b := range alt.readings["boundary"] {
					if b != "" && b != p.Params["boundary"] && !slices.Contains(meta.altBoundaries, b) {
						meta.altBoundaries = append(meta.altBoundaries, b)
					}
				}
			} else if alt.value != "" && alt.value != mv.value && !slices.Contains(meta.altTypes, alt.value) {
				meta.altTypes = append(meta.altTypes, alt.value)
			}
			ctReadings = mergeReadings(ctReadings, alt.readings)
			literal = append(literal, alt.literal["name"]...)
		}
	}
	p.Multipart = strings.HasPrefix(p.ContentType, "multipart/")
	if !p.Multipart {
		p.Charset = strings.ToLower(strings.TrimSpace(p.Params["charset"]))
	}
	if len(meta.altBoundaries) > 0 {
		s.ambiguity(id, AmbiguousBoundary, fmt.Sprintf("part %d has %d boundaries; every structure they yield is indexed", id, len(meta.altBoundaries)+1))
	}

	p.Encoding = "7bit"
	ctes := h.Values("Content-Transfer-Encoding")
	if len(ctes) > 1 {
		s.defect(id, KindBadHeader, fmt.Sprintf("part %d has %d Content-Transfer-Encoding fields; the first is used", id, len(ctes)))
	}
	if len(ctes) > 0 {
		if e := normalizeEncoding(ctes[0]); e != "" {
			p.Encoding = e
		}
		for _, v := range ctes[1:] {
			if e := normalizeEncoding(v); e != "" && e != p.Encoding && !slices.Contains(meta.altEncodings, e) {
				meta.altEncodings = append(meta.altEncodings, e)
				s.ambiguity(id, AmbiguousField, fmt.Sprintf("part %d has Content-Transfer-Encoding %q and %q; both decodings are indexed", id, clip(p.Encoding), clip(e)))
			}
		}
	}
	identity := false
	switch p.Encoding {
	case "7bit", "8bit", "binary":
		identity = true
	case "base64", "quoted-printable":
	default:
		if lenientEncoding(p.Encoding) == "" {
			s.defect(id, KindUnknownEncoding, fmt.Sprintf("part %d: unknown Content-Transfer-Encoding %q", id, clip(p.Encoding)))
		} else {
			s.defect(id, KindBadEncoding, fmt.Sprintf("part %d: Content-Transfer-Encoding %q is not standard MIME; it is decoded as mail clients do", id, clip(p.Encoding)))
		}
	}

	switch {
	case p.Multipart:
		if !identity {
			// go-message and most readers ignore it, and so do we (the boundary scan works on the raw bytes).
			s.defect(id, KindBadEncoding, fmt.Sprintf("part %d is a multipart with Content-Transfer-Encoding %q, which RFC 2045 §6.4 forbids; it is ignored", id, clip(p.Encoding)))
		}
		if p.Params["boundary"] == "" {
			s.defect(id, KindMissingBoundary, fmt.Sprintf("part %d is %s without a boundary parameter; its parts cannot be found", id, p.ContentType))
		}
	case p.ContentType == "message/rfc822" || p.ContentType == "message/global":
		if identity {
			meta.container = true
		} else {
			s.defect(id, KindBadEncoding, fmt.Sprintf("part %d is %s with Content-Transfer-Encoding %q, which RFC 2046 §5.2.1 forbids; the message inside is decoded and indexed as clients do", id, p.ContentType, clip(p.Encoding)))
			s.ambiguity(id, AmbiguousEncapsulated, fmt.Sprintf("part %d: %s in %q", id, p.ContentType, clip(p.Encoding)))
		}
	}
	if p.Charset != "" {
		if err := charsetKnown(p.Charset); err != nil {
			s.defect(id, KindUnknownCharset, fmt.Sprintf("part %d: unknown charset %q", id, clip(p.Charset)))
		}
	}

	var dReadings map[string][]string
	cds := h.Values("Content-Disposition")
	if len(cds) > 1 {
		s.defect(id, KindBadHeader, fmt.Sprintf("part %d has %d Content-Disposition fields; the first is used", id, len(cds)))
	}
	for i, v := range cds {
		mv := parseMediaValue(v, false)
		literal = append(literal, mv.literal["filename"]...)
		literal = append(literal, mv.literal["name"]...)
		if i == 0 {
			switch mv.value {
			case "inline", "attachment", "":
				p.Disposition = mv.value
			default:
				p.Disposition = "attachment" // RFC 2183 §2.8: unknown types are treated as attachment
			}
			if len(mv.problems) > 0 {
				s.defect(id, KindBadHeader, fmt.Sprintf("part %d: Content-Disposition %q: %s", id, clip(v), strings.Join(mv.problems, "; ")))
			}
			for _, cs := range mv.charsets {
				s.defect(id, KindUnknownCharset, fmt.Sprintf("part %d: Content-Disposition parameter in unknown charset %q", id, cs))
			}
			ambig(mv.ambig)
			dReadings = mv.readings
			continue
		}
		if v != cds[0] {
			s.ambiguity(id, AmbiguousField, fmt.Sprintf("part %d has Content-Disposition fields %q and %q; clients differ in which they use", id, clip(cds[0]), clip(v)))
		}
		dReadings = mergeReadings(dReadings, mv.readings)
	}

	// The disposition's filename is the standard one; Content-Type name is older and still common; a "name" on
	// the disposition is non-standard but seen. A part naming itself twice differently is suspicious either way.
	addNames(dReadings["filename"])
	addNames(ctReadings["name"])
	addNames(dReadings["name"])
	if len(names) > 0 {
		p.Filename = names[0]
		p.Filenames = names
		// Two fields or parameters naming the file differently is malformed; one value that clients read two
		// ways (quoting, RFC 2231 against plain) is only ambiguous.
		var first []string
		for _, rs := range [][]string{dReadings["filename"], ctReadings["name"], dReadings["name"]} {
			if len(rs) > 0 {
				if n := NormalizeFilename(rs[0]); n != "" && !slices.Contains(first, n) {
					first = append(first, n)
				}
			}
		}
		if len(first) > 1 {
			s.defect(id, KindBadHeader, fmt.Sprintf("part %d names its file both %q and %q; %q is used", id, first[0], first[1], first[0]))
		}
		if len(names) > 1 {
			s.ambiguity(id, AmbiguousNames, fmt.Sprintf("part %d names its file %s", id, clip(quoteAll(names))))
		}
		for _, l := range literal {
			if n := NormalizeFilename(l); n != "" && !slices.Contains(p.Filenames, n) {
				p.Filenames = append(p.Filenames, n)
			}
		}
	}
}

// mergeReadings adds the readings of b to a.
func mergeReadings(a, b map[string][]string) map[string][]string {
	if a == nil {
		a = map[string][]string{}
	}
	for k, vs := range b {
		for _, v := range vs {
			if len(a[k]) < maxReadings && !slices.Contains(a[k], v) {
				a[k] = append(a[k], v)
			}
		}
	}
	return a
}

// normalizeEncoding is a Content-Transfer-Encoding value as the scanner compares it: lower-case, without white
// space or quotes around it (clients accept "Base64", " base64 " and "\"base64\"").
func normalizeEncoding(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	v = strings.Trim(v, "\"' \t")
	if i := strings.IndexAny(v, " \t;("); i >= 0 {
		v = v[:i]
	}
	return v
}

// lenientEncoding maps a non-standard transfer encoding that mail clients decode to the decoder's name
// ("uuencode" or "yenc"), or "".
func lenientEncoding(e string) string {
	switch e {
	case "x-uuencode", "x-uue", "uuencode", "uue", "x-uu":
		return "uuencode"
	case "x-yencode", "yencode", "yenc", "x-yenc":
		return "yenc"
	}
	return ""
}

// clip shortens a value quoted in a defect so that a hostile header cannot make defects huge.
func clip(v string) string {
	const max = 200
	if len(v) <= max {
		return v
	}
	return strings.ToValidUTF8(v[:max], "") + "..."
}

// NormalizeFilename turns a file name from a header into the name a mail client would save: Unicode NFC,
// without control characters, without any directory part (both / and \ separate), without trailing dots and
// white space (Windows ignores them, so "evil.exe." is "evil.exe"), without leading white space.
func NormalizeFilename(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, name)
	name = norm.NFC.String(name)
	trailing := func(r rune) bool { return r == '.' || r == '/' || r == '\\' || unicode.IsSpace(r) }
	name = strings.TrimRightFunc(name, trailing)
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return strings.TrimLeftFunc(name, unicode.IsSpace)
}

// mediaValue is a parsed Content-Type or Content-Disposition value.
type mediaValue struct {
	value    string              // lower-case type/subtype (or disposition type); "" if unusable
	params   map[string]string   // lower-case names, decoded values (boundary kept raw): the reading RFC 2231 prefers
	readings map[string][]string // every distinct reading of each parameter, params' first (see parseParams)
	literal  map[string][]string // readings with RFC 2047 words left encoded
	problems []string            // what is malformed, one sentence each
	charsets []string            // unknown charsets named by RFC 2231 parameters
	ambig    []ambiguity         // where mail clients read the parameters differently
}

// ambiguity is a kind and a detail, before it is attached to a part.
type ambiguity struct{ kind, detail string }

// parseMediaValue parses a Content-Type (ctype) or Content-Disposition value. mime.ParseMediaType is the judge of
// what is well-formed; the parameters come from our own parser, which also reads what ParseMediaType rejects or
// silently drops (RFC 2231 values in charsets other than UTF-8, continuations with a gap): a file name that
// one parser misses and a mail client shows is an evasion.
func parseMediaValue(v string, ctype bool) mediaValue {
	var mv mediaValue
	base, rest, _ := strings.Cut(v, ";")
	mt, _, err := mime.ParseMediaType(v)
	switch {
	case err == nil:
		mv.value = mt
	default:
		mv.problems = append(mv.problems, strings.TrimPrefix(err.Error(), "mime: "))
		tb := strings.TrimSpace(base)
		mv.value = leadingType(strings.ToLower(tb), ctype)
		if mv.value == "" && ctype {
			mv.problems = append(mv.problems, "treated as text/plain (RFC 2045 §5.2)")
		}
		if tail := tb[len(mv.value):]; mv.value != "" && strings.Contains(tail, "=") && strings.TrimLeft(tail, " \t\r\n") != tail {
			// "multipart/mixed boundary=x": the ';' is missing, and mail clients read the parameter anyway.
			mv.problems = append(mv.problems, "no ';' before the first parameter")
			rest = tail + ";" + rest
		}
	}
	ps := parseParams(rest, mv.problems)
	mv.params, mv.readings, mv.literal, mv.problems, mv.charsets, mv.ambig = ps.params, ps.readings, ps.literal, ps.problems, ps.charsets, ps.ambig
	return mv
}

// leadingType returns the type/subtype (or, for a disposition, the token) that v starts with, or "".
func leadingType(v string, ctype bool) string {
	i := 0
	for i < len(v) && isTokenChar(v[i]) {
		i++
	}
	if i == 0 {
		return ""
	}
	if !ctype {
		return v[:i]
	}
	if i >= len(v) || v[i] != '/' {
		return ""
	}
	j := i + 1
	for j < len(v) && isTokenChar(v[j]) {
		j++
	}
	if j == i+1 {
		return ""
	}
	return v[:j]
}

func isTokenChar(c byte) bool {
	return c > 0x20 && c < 0x7f && !isTSpecial(c)
}

func isTSpecial(c byte) bool { return strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 }

type section struct {
	v   string
	enc bool // name*N*: percent-encoded
}

type extParam struct {
	star     []string // name*=charset'lang'value, each occurrence
	sections map[int]section
	dupSec   bool // a section number appeared twice
}

// paramSet is what parseParams found.
type paramSet struct {
	params   map[string]string
	readings map[string][]string
	literal  map[string][]string // encoded words left as they are
	problems []string
	charsets []string
	ambig    []ambiguity
}

// Ambiguity kinds: where widely used mail clients read the same bytes differently. The index keeps every
// reading (Part.Filenames, derived parts) and records the place as a Part.Ambiguities entry.
const (
	AmbiguousParameter    = "duplicate-parameter"  // a parameter given twice with different values
	AmbiguousContinuation = "rfc2231-continuation" // RFC 2231 sections with gaps or repeats, or next to a plain value that differs
	AmbiguousCharset      = "parameter-charset"    // an RFC 2231 value in a charset other than UTF-8, US-ASCII or Latin-1
	AmbiguousNames        = "conflicting-names"    // the part names its file differently in different places
	AmbiguousField        = "duplicate-field"      // Content-Type, Content-Transfer-Encoding or Content-Disposition given twice, differently
	AmbiguousBoundary     = "boundary-choice"      // more than one boundary: each yields a part structure
	AmbiguousBase64       = "base64-padding"       // base64 content goes on after padding: some decoders stop there
	AmbiguousEmbedded     = "embedded-encoding"    // a uuencoded or yEnc block inside a part: some clients show it as a file
	AmbiguousEncapsulated = "encoded-message"      // a message/rfc822 part with a transfer encoding RFC 2046 forbids: clients still decode it
)

// plainCharset reports whether an RFC 2231 charset is one that every client reads the same way.
func plainCharset(cs string) bool {
	switch cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1", "iso_8859-1", "l1":
		return true
	}
	return false
}

// parseParams parses "; name=value" parameters (RFC 2045 §5.1) with RFC 2231 extensions, tolerantly: an
// unquoted value may hold anything up to the next ";", an unterminated quoted string ends at the next ";",
// continuation sections are joined in numeric order even with gaps, and any charset go-message knows is
// converted. What it had to tolerate is appended to problems.
//
// params holds one reading per parameter: the first plain value, replaced by the RFC 2231 value when there is
// one. readings holds every reading some mail client may take: each value of a repeated parameter, the plain
// and the extended value, continuations joined with and without the sections after a gap, and a value in an
// unusual charset both converted and as its raw bytes.
func parseParams(s string, problems []string) paramSet {
	ps := paramSet{params: map[string]string{}, readings: map[string][]string{}, problems: problems}
	var exts map[string]*extParam
	var extOrder []string
	read := func(name, v string) {
		// Past maxReadings distinct values the parameter is ambiguous enough; more would only cost time.
		if rs := ps.readings[name]; len(rs) < maxReadings && !slices.Contains(rs, v) {
			ps.readings[name] = append(rs, v)
		}
	}
	for {
		s = strings.TrimLeft(s, " \t\r\n;")
		if s == "" {
			break
		}
		i := strings.IndexAny(s, "=;")
		if i < 0 || s[i] == ';' {
			end := len(s)
			if i >= 0 {
				end = i
			}
			ps.problems = append(ps.problems, fmt.Sprintf("parameter %q has no value", clip(strings.TrimSpace(s[:end]))))
			s = s[end:]
			continue
		}
		name := strings.ToLower(strings.TrimSpace(s[:i]))
		s = strings.TrimLeft(s[i+1:], " \t\r\n")
		var val string
		var other []string // readings other clients take of the same value
		if strings.HasPrefix(s, `"`) {
			var ok bool
			whole := s
			val, s, ok = quotedString(s)
			if !ok {
				ps.problems = append(ps.problems, fmt.Sprintf("parameter %s: missing closing quote", clip(name)))
				// Python's email runs the value to the end of the field, with or without the quote.
				rest := strings.TrimRight(whole, " \t\r\n")
				other = append(other, rest[1:], rest)
			} else if q := whole[:len(whole)-len(s)]; strings.Contains(q, `\`) {
				// RFC 822 quoted-pairs: every backslash escapes the next character (Python), where MSIE
				// and mime.ParseMediaType keep a backslash before an ordinary one (Windows paths).
				other = append(other, strictUnquote(q))
			}
		} else {
			end := strings.IndexByte(s, ';')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimSpace(s[:end]), s[end:]
			if i := strings.IndexAny(val, " \t"); i > 0 {
				// A token ends at white space for strict readers (Python, ripmime, munpack).
				other = append(other, val[:i])
			}
		}
		if name == "" {
			ps.problems = append(ps.problems, "parameter without a name")
			continue
		}
		if baseName, tail, isExt := strings.Cut(name, "*"); isExt {
			if exts == nil {
				exts = map[string]*extParam{}
			}
			e := exts[baseName]
			if e == nil {
				e = &extParam{sections: map[int]section{}}
				exts[baseName] = e
				extOrder = append(extOrder, baseName)
			}
			if tail == "" {
				e.star = append(e.star, val)
				continue
			}
			num, enc := strings.CutSuffix(tail, "*")
			n, err := strconv.Atoi(num)
			if err != nil || n < 0 || n > 9999 {
				ps.problems = append(ps.problems, fmt.Sprintf("parameter %s: bad RFC 2231 section number", clip(name)))
				continue
			}
			if _, dup := e.sections[n]; dup {
				ps.problems = append(ps.problems, fmt.Sprintf("parameter %s appears twice; the first is used", clip(name)))
				e.dupSec = true
				continue
			}
			e.sections[n] = section{val, enc}
			continue
		}
		if old, dup := ps.params[name]; dup {
			if old != val {
				ps.problems = append(ps.problems, fmt.Sprintf("parameter %s appears twice (%q and %q); the first is used", clip(name), clip(old), clip(val)))
			}
			read(name, val)
			continue
		}
		ps.params[name] = val
		read(name, val)
		for _, v := range other {
			read(name, v)
		}
	}
	slices.Sort(extOrder)
	for _, baseName := range extOrder {
		e := exts[baseName]
		type reading struct {
			cs  string
			raw []byte
		}
		var rs []reading
		for _, v := range e.star {
			cs, raw := split2231(v)
			rs = append(rs, reading{cs, raw})
		}
		if len(e.sections) > 0 {
			nums := sortedKeys(e.sections)
			gap := -1
			for i, n := range nums {
				if n != i {
					ps.problems = append(ps.problems, fmt.Sprintf("parameter %s: RFC 2231 sections are not numbered 0, 1, 2...; joined in order", clip(baseName)))
					gap = i
					break
				}
			}
			join := func(nums []int) reading {
				var r reading
				for i, n := range nums {
					sec := e.sections[n]
					switch {
					case sec.enc && i == 0:
						var b []byte
						r.cs, b = split2231(sec.v)
						r.raw = append(r.raw, b...)
					case sec.enc:
						r.raw = append(r.raw, percentDecode(sec.v)...)
					default:
						r.raw = append(r.raw, sec.v...)
					}
				}
				return r
			}
			rs = append(rs, join(nums))
			if gap > 0 {
				// A strict reader stops at the gap.
				rs = append(rs, join(nums[:gap]))
			}
			if gap >= 0 || e.dupSec {
				ps.ambig = append(ps.ambig, ambiguity{AmbiguousContinuation, fmt.Sprintf("parameter %s: RFC 2231 sections with a gap or a repeat", clip(baseName))})
			}
		}
		if len(e.star) > 1 || len(e.star) > 0 && len(e.sections) > 0 {
			ps.ambig = append(ps.ambig, ambiguity{AmbiguousParameter, fmt.Sprintf("parameter %s* is given more than once", clip(baseName))})
		}
		var vals []string
		for _, r := range rs {
			val, err := convertCharset(r.cs, r.raw)
			if err != nil && !slices.Contains(ps.charsets, clip(r.cs)) {
				ps.charsets = append(ps.charsets, clip(r.cs))
			}
			vals = append(vals, val)
			if !plainCharset(r.cs) {
				// Clients that do not know the charset show the bytes; UTF-16 read as bytes is the name
				// with NULs, which NormalizeFilename drops.
				vals = append(vals, strings.ToValidUTF8(string(r.raw), "\uFFFD"))
				ps.ambig = append(ps.ambig, ambiguity{AmbiguousCharset, fmt.Sprintf("parameter %s* is in charset %q, which mail clients read differently", clip(baseName), clip(r.cs))})
			}
		}
		if len(vals) == 0 {
			continue // only unusable sections
		}
		val := vals[0]
		if old, dup := ps.params[baseName]; dup && old != val {
			ps.problems = append(ps.problems, fmt.Sprintf("parameters %s (%q) and %s* (%q) differ; %s* is used (RFC 2231)", clip(baseName), clip(old), clip(baseName), clip(val), clip(baseName)))
			ps.ambig = append(ps.ambig, ambiguity{AmbiguousContinuation, fmt.Sprintf("parameters %s and %s* differ", clip(baseName), clip(baseName))})
		}
		ps.params[baseName] = val
		plain := ps.readings[baseName]
		ps.readings[baseName] = nil
		for _, v := range vals {
			read(baseName, v)
		}
		for _, v := range plain {
			read(baseName, v)
		}
	}
	for k, v := range ps.params {
		if k != "boundary" {
			// Encoded words are not allowed in parameters, but mail clients write (and read) them in names.
			ps.params[k] = decodeWords(v)
		}
	}
	for k, vs := range ps.readings {
		if k == "boundary" {
			continue
		}
		var out []string
		for _, v := range vs {
			d := decodeWords(v)
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
			if d != v && !slices.Contains(ps.literal[k], v) {
				// Readers that do not decode encoded words in parameters (Python's compat32, munpack) show
				// the word itself. Not an ambiguity: encoded words in names are what most clients write.
				if ps.literal == nil {
					ps.literal = map[string][]string{}
				}
				ps.literal[k] = append(ps.literal[k], v)
			}
		}
		ps.readings[k] = out
	}
	for _, k := range sortedKeys(ps.readings) {
		if len(ps.readings[k]) > 1 {
			ps.ambig = append(ps.ambig, ambiguity{AmbiguousParameter, fmt.Sprintf("parameter %s has %d readings: %s", clip(k), len(ps.readings[k]), clip(quoteAll(ps.readings[k])))})
		}
	}
	return ps
}

// maxReadings bounds the readings kept per parameter (and so the candidate names per part and field).
const maxReadings = 16

// quoteAll quotes and comma-separates values for a defect's detail.
func quoteAll(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

func sortedKeys[K int | string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// quotedString reads a quoted-string at the start of s. Like mime.ParseMediaType it keeps a backslash that
// escapes an ordinary character (MSIE writes Windows paths unescaped). Without a closing quote the value ends
// at the next ";" and ok is false.
// strictUnquote reads a complete quoted-string the RFC 822 way: a backslash escapes whatever follows.
func strictUnquote(q string) string {
	q = q[1 : len(q)-1]
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		if q[i] == '\\' && i+1 < len(q) {
			i++
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func quotedString(s string) (val, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), s[i+1:], true
		case c == '\\' && i+1 < len(s) && isTSpecial(s[i+1]):
			b.WriteByte(s[i+1])
			i++
		default:
			b.WriteByte(c)
		}
	}
	end := strings.IndexByte(s, ';')
	if end < 0 {
		return b.String(), "", false
	}
	v, _, _ := quotedString(s[:end] + `"`)
	return v, s[end:], false
}

// split2231 splits an RFC 2231 extended value charset'language'percent-encoded into its charset (lower-case)
// and decoded bytes. A value without the two quotes is taken as percent-encoded bytes.
func split2231(v string) (string, []byte) {
	cs, rest, ok := strings.Cut(v, "'")
	if !ok {
		return "", percentDecode(v)
	}
	_, rest, ok = strings.Cut(rest, "'")
	if !ok {
		return strings.ToLower(cs), percentDecode(rest)
	}
	return strings.ToLower(cs), percentDecode(rest)
}

// percentDecode decodes %XX escapes, keeping a malformed escape as it is.
func percentDecode(v string) []byte {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]) {
			out = append(out, unhex(v[i+1])<<4|unhex(v[i+2]))
			i += 2
			continue
		}
		out = append(out, v[i])
	}
	return out
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// convertCharset converts b from charset cs to UTF-8. With an unknown charset it returns b with invalid UTF-8
// replaced, and an error: the name stays readable (an extension is ASCII in every charset that matters).
func convertCharset(cs string, b []byte) (string, error) {
	if isUTF8Compatible(cs) {
		return strings.ToValidUTF8(string(b), "\uFFFD"), nil
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err == nil {
		var out []byte
		if out, err = io.ReadAll(r); err == nil {
			return strings.ToValidUTF8(string(out), "\uFFFD"), nil
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), err
}
