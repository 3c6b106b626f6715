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

// analyze fills in what a part's header says about its content, recording what is wrong with it.
func (s *scanner) analyze(id int) {
	m := s.m
	p := &m.parts[id]
	h := &p.Fields

	p.ContentType = "text/plain"
	if p.Parent >= 0 && m.parts[p.Parent].ContentType == "multipart/digest" {
		p.ContentType = "message/rfc822" // RFC 2046 §5.1.5
	}
	cts := h.Values("Content-Type")
	if len(cts) > 1 {
		s.defect(id, KindBadContentType, fmt.Sprintf("part %d has %d Content-Type fields; the first is used", id, len(cts)))
	}
	if len(cts) > 0 {
		mv := parseMediaValue(cts[0], true)
		if mv.value != "" {
			p.ContentType = mv.value
		}
		p.Params = mv.params
		if len(mv.problems) > 0 {
			s.defect(id, KindBadContentType, fmt.Sprintf("part %d: Content-Type %q: %s", id, clip(cts[0]), strings.Join(mv.problems, "; ")))
		}
		for _, cs := range mv.charsets {
			s.defect(id, KindUnknownCharset, fmt.Sprintf("part %d: Content-Type parameter in unknown charset %q", id, cs))
		}
	}
	p.Multipart = strings.HasPrefix(p.ContentType, "multipart/")
	if !p.Multipart {
		p.Charset = strings.ToLower(strings.TrimSpace(p.Params["charset"]))
	}

	p.Encoding = "7bit"
	ctes := h.Values("Content-Transfer-Encoding")
	if len(ctes) > 1 {
		s.defect(id, KindBadHeader, fmt.Sprintf("part %d has %d Content-Transfer-Encoding fields; the first is used", id, len(ctes)))
	}
	if len(ctes) > 0 {
		if e := strings.ToLower(strings.TrimSpace(ctes[0])); e != "" {
			p.Encoding = e
		}
	}
	identity := false
	switch p.Encoding {
	case "7bit", "8bit", "binary":
		identity = true
	case "base64", "quoted-printable":
	default:
		s.defect(id, KindUnknownEncoding, fmt.Sprintf("part %d: unknown Content-Transfer-Encoding %q", id, clip(p.Encoding)))
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
			m.meta[id].container = true
		} else {
			s.defect(id, KindBadEncoding, fmt.Sprintf("part %d is %s with Content-Transfer-Encoding %q, which RFC 2046 §5.2.1 forbids; the message inside is not indexed", id, p.ContentType, clip(p.Encoding)))
		}
	}
	if p.Charset != "" {
		if err := charsetKnown(p.Charset); err != nil {
			s.defect(id, KindUnknownCharset, fmt.Sprintf("part %d: unknown charset %q", id, clip(p.Charset)))
		}
	}

	var dparams map[string]string
	cds := h.Values("Content-Disposition")
	if len(cds) > 1 {
		s.defect(id, KindBadHeader, fmt.Sprintf("part %d has %d Content-Disposition fields; the first is used", id, len(cds)))
	}
	if len(cds) > 0 {
		mv := parseMediaValue(cds[0], false)
		switch mv.value {
		case "inline", "attachment", "":
			p.Disposition = mv.value
		default:
			p.Disposition = "attachment" // RFC 2183 §2.8: unknown types are treated as attachment
		}
		dparams = mv.params
		if len(mv.problems) > 0 {
			s.defect(id, KindBadHeader, fmt.Sprintf("part %d: Content-Disposition %q: %s", id, clip(cds[0]), strings.Join(mv.problems, "; ")))
		}
		for _, cs := range mv.charsets {
			s.defect(id, KindUnknownCharset, fmt.Sprintf("part %d: Content-Disposition parameter in unknown charset %q", id, cs))
		}
	}

	// The disposition's filename is the standard one; Content-Type name is older and still common; a "name" on
	// the disposition is non-standard but seen. A part naming itself twice differently is suspicious either way.
	var names []string
	for _, v := range []string{dparams["filename"], p.Params["name"], dparams["name"]} {
		if n := NormalizeFilename(v); n != "" {
			names = append(names, n)
		}
	}
	if len(names) > 0 {
		p.Filename = names[0]
		for _, n := range names[1:] {
			if n != names[0] {
				s.defect(id, KindBadHeader, fmt.Sprintf("part %d names its file both %q and %q; %q is used", id, names[0], n, names[0]))
				break
			}
		}
	}
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
	value    string            // lower-case type/subtype (or disposition type); "" if unusable
	params   map[string]string // lower-case names, decoded values (boundary kept raw)
	problems []string          // what is malformed, one sentence each
	charsets []string          // unknown charsets named by RFC 2231 parameters
}

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
		mv.value = leadingType(strings.ToLower(strings.TrimSpace(base)), ctype)
		if mv.value == "" && ctype {
			mv.problems = append(mv.problems, "treated as text/plain (RFC 2045 §5.2)")
		}
	}
	mv.params, mv.problems, mv.charsets = parseParams(rest, mv.problems)
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
	star     string // name*=charset'lang'value
	hasStar  bool
	sections map[int]section
}

// parseParams parses "; name=value" parameters (RFC 2045 §5.1) with RFC 2231 extensions, tolerantly: an
// unquoted value may hold anything up to the next ";", an unterminated quoted string ends at the next ";",
// continuation sections are joined in numeric order even with gaps, and any charset go-message knows is
// converted. What it had to tolerate is appended to problems.
func parseParams(s string, problems []string) (map[string]string, []string, []string) {
	params := map[string]string{}
	var exts map[string]*extParam
	var charsets []string
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
			problems = append(problems, fmt.Sprintf("parameter %q has no value", clip(strings.TrimSpace(s[:end]))))
			s = s[end:]
			continue
		}
		name := strings.ToLower(strings.TrimSpace(s[:i]))
		s = strings.TrimLeft(s[i+1:], " \t\r\n")
		var val string
		if strings.HasPrefix(s, `"`) {
			var ok bool
			val, s, ok = quotedString(s)
			if !ok {
				problems = append(problems, fmt.Sprintf("parameter %s: missing closing quote", clip(name)))
			}
		} else {
			end := strings.IndexByte(s, ';')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimSpace(s[:end]), s[end:]
		}
		if name == "" {
			problems = append(problems, "parameter without a name")
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
			}
			if tail == "" {
				e.star, e.hasStar = val, true
				continue
			}
			num, enc := strings.CutSuffix(tail, "*")
			n, err := strconv.Atoi(num)
			if err != nil || n < 0 || n > 9999 {
				problems = append(problems, fmt.Sprintf("parameter %s: bad RFC 2231 section number", clip(name)))
				continue
			}
			if _, dup := e.sections[n]; dup {
				problems = append(problems, fmt.Sprintf("parameter %s appears twice; the first is used", clip(name)))
				continue
			}
			e.sections[n] = section{val, enc}
			continue
		}
		if old, dup := params[name]; dup {
			if old != val {
				problems = append(problems, fmt.Sprintf("parameter %s appears twice (%q and %q); the first is used", clip(name), clip(old), clip(val)))
			}
			continue
		}
		params[name] = val
	}
	for _, baseName := range sortedKeys(exts) {
		e := exts[baseName]
		var raw []byte
		cs := ""
		if e.hasStar {
			cs, raw = split2231(e.star)
		} else {
			nums := sortedKeys(e.sections)
			for i, n := range nums {
				if n != i {
					problems = append(problems, fmt.Sprintf("parameter %s: RFC 2231 sections are not numbered 0, 1, 2...; joined in order", clip(baseName)))
					break
				}
			}
			for i, n := range nums {
				sec := e.sections[n]
				switch {
				case sec.enc && i == 0:
					var b []byte
					cs, b = split2231(sec.v)
					raw = append(raw, b...)
				case sec.enc:
					raw = append(raw, percentDecode(sec.v)...)
				default:
					raw = append(raw, sec.v...)
				}
			}
		}
		val, err := convertCharset(cs, raw)
		if err != nil {
			charsets = append(charsets, clip(cs))
		}
		if old, dup := params[baseName]; dup && old != val {
			problems = append(problems, fmt.Sprintf("parameters %s (%q) and %s* (%q) differ; %s* is used (RFC 2231)", clip(baseName), clip(old), clip(baseName), clip(val), clip(baseName)))
		}
		params[baseName] = val
	}
	for k, v := range params {
		if k != "boundary" {
			// Encoded words are not allowed in parameters, but mail clients write (and read) them in names.
			params[k] = decodeWords(v)
		}
	}
	return params, problems, charsets
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
