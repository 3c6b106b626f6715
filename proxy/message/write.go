package message

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"strings"
)

// WriteTo writes the message with changes applied. With nil changes, or only add_recipient changes, it writes
// exactly the input bytes. Otherwise every byte no change touches is copied from the source unchanged.
//
// Everything is checked before the first byte is written: a change that refers to a part that does not exist
// or cannot take it (removing part 0, replacing a multipart, changing a part whose end a limit left unknown) is
// an error wrapping ErrInvalid, and a part that must be re-encoded for a banner but cannot be decoded is an error
// wrapping ErrDecode. After that only writing to w (or reading the source) can fail.
func (m *Message) WriteTo(w io.Writer, c *Changes) (int64, error) {
	if !c.modifies() {
		n, err := io.Copy(w, m.Raw())
		if err != nil {
			return n, fmt.Errorf("message: writing: %w", err)
		}
		return n, nil
	}
	pl := &planner{m: m, eol: m.eol, state: make([]partEdit, len(m.parts)), hdrs: map[int]*hdrModel{}}
	if err := pl.plan(c); err != nil {
		return 0, err
	}
	return pl.write(w)
}

// Validate reports the error WriteTo would return for c before writing anything (ErrInvalid, ErrDecode), without
// writing. Hosts call it when a change is made, so that the maker hears of a change that cannot be applied
// (a banner for a part that cannot be decoded) while it can still do without it. It reads the content of any
// part a banner must be re-encoded for.
func (m *Message) Validate(c *Changes) error {
	if !c.modifies() {
		return nil
	}
	pl := &planner{m: m, eol: m.eol, state: make([]partEdit, len(m.parts)), hdrs: map[int]*hdrModel{}}
	return pl.plan(c)
}

// edit replaces the source range [start, end) with data, or with what fn writes.
type edit struct {
	start, end int64
	data       []byte
	fn         func(io.Writer) error
}

// partEdit is what the changes do to one part.
type partEdit struct {
	removed     bool
	placeholder bool // removed, but written as an empty text part because its multipart would be left empty
	repl        *Change
	banners     []string // text or HTML banners, in order (a part is text/plain or text/html, not both)
}

type planner struct {
	m     *Message
	eol   string
	state []partEdit
	hdrs  map[int]*hdrModel
	edits []edit
}

func (pl *planner) plan(c *Changes) error {
	m := pl.m
	for i := range c.list {
		ch := &c.list[i]
		switch ch.Op {
		case OpAddHeader, OpSetHeader, OpRemoveHeader, OpPrefixSubject:
			if !m.meta[0].hdrDone {
				return fmt.Errorf("message: %w %s: the message header was not indexed to its end (%s)", ErrInvalid, ch.Op, m.bound)
			}
			h := pl.header(0)
			switch ch.Op {
			case OpAddHeader:
				h.add(ch.Name, ch.Value)
			case OpSetHeader:
				h.set(ch.Name, ch.Value, false)
			case OpRemoveHeader:
				h.remove(ch.Name)
			case OpPrefixSubject:
				if err := h.prefixSubject(pl, ch.Value); err != nil {
					return err
				}
			}
		case OpRemovePart:
			if err := pl.check(ch.Part, "remove"); err != nil {
				return err
			}
			if !pl.gone(ch.Part) {
				pl.state[ch.Part].removed = true
			}
		case OpReplacePart:
			if err := pl.check(ch.Part, "replace"); err != nil {
				return err
			}
			if m.parts[ch.Part].Multipart {
				return fmt.Errorf("message: %w replace_part: part %d is a multipart; replace or remove its parts", ErrInvalid, ch.Part)
			}
			if !pl.gone(ch.Part) {
				st := &pl.state[ch.Part]
				st.repl, st.banners = ch, nil
			}
		case OpAppendBanner:
			pl.banner(ch.Value, "text/plain")
			pl.banner(ch.HTML, "text/html")
		case OpAddRecipient:
			// The envelope, not the message.
		default:
			return fmt.Errorf("message: %w change %q", ErrInvalid, ch.Op)
		}
	}
	pl.keepMultipartsValid()
	if err := pl.emitParts(); err != nil {
		return err
	}
	for _, id := range sortedKeys(pl.hdrs) {
		pl.hdrs[id].emit(pl)
	}
	// Insertions come before a replaced range that starts at the same offset; otherwise plan order is kept.
	slices.SortStableFunc(pl.edits, func(a, b edit) int {
		if a.start != b.start {
			return cmpInt64(a.start, b.start)
		}
		return cmpInt64(a.end-a.start, b.end-b.start)
	})
	pos := int64(0)
	for _, e := range pl.edits {
		if e.start < pos || e.end < e.start || e.end > m.size {
			// A planner bug, not bad input; refuse rather than write a corrupt message.
			return fmt.Errorf("message: internal error: overlapping edits at offset %d", e.start)
		}
		pos = e.end
	}
	return nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// check validates the part a remove or replace change names.
func (pl *planner) check(id int, verb string) error {
	m := pl.m
	if id < 0 || id >= len(m.parts) {
		return fmt.Errorf("message: %w %s_part: part %d does not exist (the message has %d parts)", ErrInvalid, verb, id, len(m.parts))
	}
	if id == 0 && verb == "remove" {
		return fmt.Errorf("message: %w remove_part: part 0 is the message itself", ErrInvalid)
	}
	if d := m.parts[id].Derived; d != "" {
		p := m.parts[id].Parent
		for m.parts[p].Derived != "" {
			p = m.parts[p].Parent
		}
		return fmt.Errorf("message: %w %s_part: part %d is a %s reading found inside part %d; %s part %d instead", ErrInvalid, verb, id, d, p, verb, p)
	}
	if m.meta[id].embedded {
		p := m.parts[id].Parent
		return fmt.Errorf("message: %w %s_part: part %d is the message inside part %d; %s part %d instead", ErrInvalid, verb, id, p, verb, p)
	}
	if !m.meta[id].bodyDone || !m.meta[id].hdrDone {
		return fmt.Errorf("message: %w %s_part: part %d was not completely indexed (%s)", ErrInvalid, verb, id, m.bound)
	}
	return nil
}

// gone reports whether a part has been removed, or lies inside a part that was removed or replaced.
func (pl *planner) gone(id int) bool {
	return pl.state[id].removed || pl.covered(id)
}

// covered reports whether a part lies inside a part that was removed or replaced.
func (pl *planner) covered(id int) bool {
	for p := pl.m.parts[id].Parent; p >= 0; p = pl.m.parts[p].Parent {
		if pl.state[p].removed || pl.state[p].repl != nil {
			return true
		}
	}
	return false
}

// banner adds a banner to the first leaf part of type ct that is shown as the message's body: not an
// attachment (by disposition or because it names a file), not inside an attached message, not inside a signed or encrypted multipart (the signature would
// break), not removed or replaced.
func (pl *planner) banner(text, ct string) {
	if text == "" {
		return
	}
	m := pl.m
	for id := range m.parts {
		p := &m.parts[id]
		if p.Derived != "" || p.ContentType != ct || p.Multipart || m.structural(id) > 0 || p.Disposition == "attachment" || p.Filename != "" ||
			!m.meta[id].bodyDone || !m.meta[id].hdrDone || pl.gone(id) || pl.state[id].repl != nil || pl.sealed(id) {
			continue
		}
		pl.state[id].banners = append(pl.state[id].banners, text)
		return
	}
}

// sealed reports whether a part is inside an attached message or a signed or encrypted multipart.
func (pl *planner) sealed(id int) bool {
	m := pl.m
	for p := m.parts[id].Parent; p >= 0; p = m.parts[p].Parent {
		ct := m.parts[p].ContentType
		if m.meta[p].container || ct == "multipart/signed" || ct == "multipart/encrypted" {
			return true
		}
	}
	return false
}

// structural returns the number of a part's children that are not derived readings.
func (m *Message) structural(id int) int {
	n := 0
	for _, c := range m.parts[id].Children {
		if m.parts[c].Derived == "" {
			n++
		}
	}
	return n
}

// keepMultipartsValid turns the removal of the last remaining part of a multipart into an empty text part:
// RFC 2046 requires at least one body part.
func (pl *planner) keepMultipartsValid() {
	m := pl.m
	for id := range m.parts {
		p := &m.parts[id]
		if !p.Multipart || m.structural(id) == 0 || pl.gone(id) {
			continue
		}
		first := -1
		for _, c := range p.Children {
			if m.parts[c].Derived != "" {
				continue
			}
			if !pl.state[c].removed {
				first = -1
				break
			}
			if first < 0 {
				first = c
			}
		}
		if first >= 0 {
			pl.state[first].placeholder = true
		}
	}
}

func (pl *planner) header(id int) *hdrModel {
	h := pl.hdrs[id]
	if h == nil {
		h = newHdrModel(pl.m, id)
		pl.hdrs[id] = h
	}
	return h
}

func (pl *planner) emitParts() error {
	m := pl.m
	for id := range m.parts {
		st := &pl.state[id]
		p := &m.parts[id]
		if pl.covered(id) {
			continue
		}
		switch {
		case st.placeholder:
			ph := string(formatField("Content-Type", "text/plain; charset=us-ascii", pl.eol)) + pl.eol
			pl.edits = append(pl.edits, edit{start: p.Header.Start, end: p.Body.End, data: []byte(ph)})
		case st.removed:
			pl.edits = append(pl.edits, edit{start: m.meta[id].delim, end: p.Body.End})
		case st.repl != nil:
			pl.emitReplacement(id, st.repl)
		case len(st.banners) > 0:
			if err := pl.emitBanner(id, st.banners); err != nil {
				return err
			}
		}
	}
	return nil
}

// emitReplacement writes a replaced part: for a child part a new header and body in the old one's place; for
// part 0 the body, with the header's Content-* fields replaced and the others kept.
func (pl *planner) emitReplacement(id int, ch *Change) {
	m := pl.m
	p := &m.parts[id]
	ct, cte := replacementEncoding(ch.ContentType, ch.Content)
	content := ch.Content
	eol := pl.eol
	last := p.Body.End == m.size
	body := func(w io.Writer) error {
		var out bytes.Buffer
		switch cte {
		case "7bit":
			out.WriteString(normalizeEOL(string(content), eol))
		default:
			enc := encoder(&out, cte, eol)
			if _, err := enc.Write(content); err != nil {
				return err
			}
			if err := enc.Close(); err != nil {
				return err
			}
		}
		if last && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
			out.WriteString(eol)
		}
		_, err := w.Write(out.Bytes())
		return err
	}
	if id > 0 {
		var hdr bytes.Buffer
		hdr.Write(formatField("Content-Type", ct, eol))
		hdr.Write(formatField("Content-Transfer-Encoding", cte, eol))
		hdr.WriteString(eol)
		pl.edits = append(pl.edits, edit{start: p.Header.Start, end: p.Body.End, fn: func(w io.Writer) error {
			if _, err := w.Write(hdr.Bytes()); err != nil {
				return err
			}
			return body(w)
		}})
		return
	}
	h := pl.header(0)
	h.setContent(ct, cte, true)
	pl.edits = append(pl.edits, edit{start: p.Body.Start, end: p.Body.End, fn: body})
}

// replacementEncoding picks the transfer encoding of replacement content: 7bit for text that allows it,
// quoted-printable for other text (labelled UTF-8 when it does not say), base64 for everything else.
func replacementEncoding(ct string, content []byte) (string, string) {
	mt, params, _ := mime.ParseMediaType(ct)
	if !strings.HasPrefix(mt, "text/") {
		return ct, "base64"
	}
	if safe7bit(content) {
		return ct, "7bit"
	}
	if _, ok := params["charset"]; !ok {
		params["charset"] = "utf-8"
		if f := mime.FormatMediaType(mt, params); f != "" {
			ct = f
		}
	}
	return ct, "quoted-printable"
}

// emitBanner appends banners to a text/plain or text/html part. A part whose raw bytes are UTF-8 compatible and
// not transfer-encoded gets the banner spliced in; any other is decoded, extended and re-encoded (and labelled
// UTF-8), keeping its other header fields.
func (pl *planner) emitBanner(id int, banners []string) error {
	m := pl.m
	p := &m.parts[id]
	eol := pl.eol
	banner := strings.TrimRight(normalizeEOL(strings.Join(banners, "\n"), eol), "\r\n")
	html := p.ContentType == "text/html"
	ascii := isASCII(banner)
	identity := p.Encoding == "7bit" || p.Encoding == "8bit" || p.Encoding == "binary"
	// An empty body inside a multipart has no line break of its own before the next delimiter (the header's blank
	// line took it), so whatever is inserted must end with one, or the delimiter would be glued to the banner.
	openEnded := p.Body.Start == p.Body.End && p.Body.End < m.size
	if identity && isUTF8Compatible(p.Charset) && (ascii || p.Encoding != "7bit") {
		raw, _ := m.RawBody(id)
		sc, err := scanText(raw, html)
		if err != nil {
			return fmt.Errorf("message: reading part %d: %w", id, err)
		}
		at, ins := sc.insertion(banner, eol)
		if openEnded && !strings.HasSuffix(ins, "\n") {
			ins += eol
		}
		pl.edits = append(pl.edits, edit{start: p.Body.Start + at, end: p.Body.Start + at, data: []byte(ins)})
		if !ascii && p.Charset != "utf-8" && p.Charset != "utf8" {
			pl.header(id).setContent(contentTypeUTF8(p), "", false)
		}
		return nil
	}
	r, err := m.Text(id)
	if err != nil {
		return fmt.Errorf("message: append_banner: part %d: %w", id, err)
	}
	sc, err := scanText(r, html)
	if err != nil {
		return fmt.Errorf("message: append_banner: part %d: %w", id, err)
	}
	enc := p.Encoding
	if enc == "7bit" {
		enc = "quoted-printable"
	}
	at, ins := sc.insertion(banner, eol)
	last := p.Body.End == m.size || openEnded
	pl.edits = append(pl.edits, edit{start: p.Body.Start, end: p.Body.End, fn: func(w io.Writer) error {
		r, err := m.Text(id)
		if err != nil {
			return err
		}
		tw := &tailWriter{w: w}
		e := encoder(tw, enc, eol)
		if _, err := io.CopyN(e, r, at); err != nil {
			return err
		}
		if _, err := io.WriteString(e, ins); err != nil {
			return err
		}
		if _, err := io.Copy(e, r); err != nil {
			return err
		}
		if err := e.Close(); err != nil {
			return err
		}
		if last && tw.last != '\n' {
			_, err = io.WriteString(w, eol)
		}
		return err
	}})
	cte := ""
	if enc != p.Encoding {
		cte = enc
	}
	pl.header(id).setContent(contentTypeUTF8(p), cte, false)
	return nil
}

// contentTypeUTF8 returns the part's Content-Type value with charset=utf-8.
func contentTypeUTF8(p *Part) string {
	params := map[string]string{}
	for k, v := range p.Params {
		params[k] = v
	}
	params["charset"] = "utf-8"
	if f := mime.FormatMediaType(p.ContentType, params); f != "" {
		return f
	}
	return mime.FormatMediaType(p.ContentType, map[string]string{"charset": "utf-8"})
}

// tailWriter remembers the last byte written.
type tailWriter struct {
	w    io.Writer
	last byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		t.last = p[len(p)-1]
	}
	return t.w.Write(p)
}

// textScan is what a banner insertion needs to know about a body.
type textScan struct {
	size    int64
	endBody int64 // offset of the last "</body" (any case), or -1
	lastEOL bool  // the content ends with a line break
}

// insertion returns where a banner goes and the bytes to insert: an HTML banner before </body> if there is
// one, otherwise at the end on a line of its own (the content's final line break, if any, is kept last).
func (s textScan) insertion(banner, eol string) (int64, string) {
	if s.endBody >= 0 {
		return s.endBody, banner
	}
	var b strings.Builder
	if s.size > 0 && !s.lastEOL {
		b.WriteString(eol)
	}
	b.WriteString(banner)
	if s.lastEOL {
		b.WriteString(eol)
	}
	return s.size, b.String()
}

// scanText reads r to its end, finding (for HTML) the last "</body" without regard to case.
func scanText(r io.Reader, html bool) (textScan, error) {
	const needle = "</body"
	sc := textScan{endBody: -1}
	buf := make([]byte, 32<<10)
	var window []byte // the previous chunk's last len(needle)-1 bytes, then the new chunk
	var last byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			last = chunk[n-1]
			if html {
				keep := len(window)
				window = append(window, chunk...)
				lower := bytes.ToLower(window)
				if i := bytes.LastIndex(lower, []byte(needle)); i >= 0 {
					sc.endBody = sc.size - int64(keep) + int64(i)
				}
				if len(window) > len(needle)-1 {
					window = append(window[:0], window[len(window)-(len(needle)-1):]...)
				}
			}
			sc.size += int64(n)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return sc, err
		}
	}
	sc.lastEOL = last == '\n'
	return sc, nil
}

// hdrModel is the planned state of one part's header: fields added at the top, the original fields (kept,
// replaced or deleted) and fields added at the end.
type hdrModel struct {
	m      *Message
	part   int
	top    []*hslot // output order
	fields []*hslot // parallel to the part's partMeta.fields
	bottom []*hslot
}

type hslot struct {
	name    string
	value   string // for a new or replaced field
	raw     []byte // exact bytes of an original field we edited in place (prefix_subject); nil otherwise
	orig    int    // index in partMeta.fields, or -1
	deleted bool
	changed bool
}

func newHdrModel(m *Message, id int) *hdrModel {
	h := &hdrModel{m: m, part: id}
	for i, f := range m.meta[id].fields {
		h.fields = append(h.fields, &hslot{name: f.name, orig: i})
	}
	return h
}

// slots returns every slot in output order.
func (h *hdrModel) slots() []*hslot {
	out := make([]*hslot, 0, len(h.top)+len(h.fields)+len(h.bottom))
	out = append(out, h.top...)
	out = append(out, h.fields...)
	return append(out, h.bottom...)
}

func (h *hdrModel) add(name, value string) {
	h.top = append([]*hslot{{name: name, value: value, orig: -1}}, h.top...)
}

// set replaces the first field called name in place and deletes the others; when there is none it adds the
// field at the top, or with atBottom at the end of the header.
func (h *hdrModel) set(name, value string, atBottom bool) {
	found := false
	for _, s := range h.slots() {
		if s.deleted || !strings.EqualFold(s.name, name) {
			continue
		}
		if found {
			s.deleted = true
			continue
		}
		found = true
		s.name, s.value, s.raw, s.changed = name, value, nil, true
	}
	switch {
	case found:
	case atBottom:
		h.bottom = append(h.bottom, &hslot{name: name, value: value, orig: -1})
	default:
		h.add(name, value)
	}
}

func (h *hdrModel) remove(name string) {
	for _, s := range h.slots() {
		if strings.EqualFold(s.name, name) {
			s.deleted = true
		}
	}
}

// setContent sets a part's Content-Type (and Content-Transfer-Encoding, if cte is not ""). For a replaced part
// (replacing) the part's other original Content-* fields go too, since they described the old content, and
// part 0 gets a MIME-Version if it has none.
func (h *hdrModel) setContent(ct, cte string, replacing bool) {
	if replacing {
		for _, s := range h.fields {
			n := strings.ToLower(s.name)
			if strings.HasPrefix(n, "content-") && n != "content-type" && n != "content-transfer-encoding" {
				s.deleted = true
			}
		}
	}
	h.set("Content-Type", ct, true)
	if cte != "" {
		h.set("Content-Transfer-Encoding", cte, true)
	}
	if replacing && h.part == 0 {
		for _, s := range h.slots() {
			if !s.deleted && strings.EqualFold(s.name, "MIME-Version") {
				return
			}
		}
		h.bottom = append(h.bottom, &hslot{name: "MIME-Version", value: "1.0", orig: -1})
	}
}

// prefixSubject puts prefix in front of the first Subject. An original field is edited in place: the prefix is
// inserted after the colon and the rest of the field's bytes (encoded words, folding) are kept.
func (h *hdrModel) prefixSubject(pl *planner, prefix string) error {
	pt := strings.Trim(prefix, " \t")
	var subj *hslot
	for _, s := range h.slots() {
		if !s.deleted && strings.EqualFold(s.name, "Subject") {
			subj = s
			break
		}
	}
	if subj == nil {
		h.add("Subject", pt)
		return nil
	}
	if subj.orig < 0 || (subj.changed && subj.raw == nil) {
		v := strings.Trim(subj.value, " \t")
		if strings.HasPrefix(decodeWords(v), pt) {
			return nil
		}
		if v != "" {
			pt += " "
		}
		subj.value = pt + v
		subj.changed = true
		return nil
	}
	raw := subj.raw
	if raw == nil {
		loc := pl.m.meta[h.part].fields[subj.orig].r
		raw = make([]byte, loc.Len())
		if _, err := pl.m.src.ReadAt(raw, loc.Start); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("message: reading the Subject at offset %d: %w", loc.Start, err)
		}
	}
	value := fieldValue(raw)
	if strings.HasPrefix(strings.TrimLeft(decodeWords(value), " \t"), pt) {
		return nil
	}
	if value == "" {
		subj.name, subj.value, subj.raw, subj.changed = "Subject", pt, nil, true
		return nil
	}
	colon := bytes.IndexByte(raw, ':')
	rest := bytes.TrimLeft(raw[colon+1:], " \t")
	firstIsWord := bytes.HasPrefix(bytes.TrimLeft(rest, " \t\r\n"), []byte("=?"))
	ins := pt
	if !isASCII(pt) {
		if firstIsWord {
			// White space between two encoded words is not displayed: the separator goes inside the word.
			ins = encodeWord(pt + " ")
		} else {
			ins = encodeWord(pt)
		}
	}
	var b bytes.Buffer
	b.Write(raw[:colon+1])
	b.WriteByte(' ')
	b.WriteString(ins)
	if !bytes.HasPrefix(rest, []byte("\r\n")) && !bytes.HasPrefix(rest, []byte("\n")) {
		b.WriteByte(' ') // otherwise the folding white space on the next line separates them
	}
	b.Write(rest)
	firstLine, _, _ := bytes.Cut(b.Bytes(), []byte("\n"))
	if len(firstLine) > maxLine {
		subj.name, subj.value, subj.raw, subj.changed = "Subject", pt+" "+value, nil, true
		return nil
	}
	subj.raw, subj.changed = b.Bytes(), true
	return nil
}

func (s *hslot) bytes(eol string) []byte {
	if s.raw != nil {
		return s.raw
	}
	return formatField(s.name, s.value, eol)
}

func (h *hdrModel) emit(pl *planner) {
	m := h.m
	p := &m.parts[h.part]
	meta := &m.meta[h.part]
	var top []byte
	for _, s := range h.top {
		if !s.deleted {
			top = append(top, s.bytes(pl.eol)...)
		}
	}
	if len(top) > 0 {
		// Above the first field, not above lines that are not fields (an mbox From line, a stray continuation):
		// a field added above a stray continuation line would absorb it.
		at := p.Header.End
		if len(meta.fields) > 0 {
			at = meta.fields[0].r.Start
		}
		pl.edits = append(pl.edits, edit{start: at, end: at, data: top})
	}
	for _, s := range h.fields {
		loc := meta.fields[s.orig].r
		switch {
		case s.deleted:
			pl.edits = append(pl.edits, edit{start: loc.Start, end: loc.End})
		case s.changed:
			pl.edits = append(pl.edits, edit{start: loc.Start, end: loc.End, data: s.bytes(pl.eol)})
		}
	}
	var bottom []byte
	for _, s := range h.bottom {
		if !s.deleted {
			bottom = append(bottom, s.bytes(pl.eol)...)
		}
	}
	if len(bottom) > 0 {
		if n := len(meta.fields); n > 0 && meta.fields[n-1].r.End == p.Header.End && !pl.endsWithLF(p.Header.End) {
			bottom = append([]byte(pl.eol), bottom...)
		}
	}
	// A header that did not end with a blank line needs one when the body is replaced, or when fields are added
	// to an empty header: otherwise the body would read as more header.
	replaced := pl.state[h.part].repl != nil
	if !meta.sep && (replaced || (p.Header.Len() == 0 && p.Body.Len() > 0 && len(top)+len(bottom) > 0)) {
		bottom = append(bottom, pl.eol...)
	}
	if len(bottom) > 0 {
		pl.edits = append(pl.edits, edit{start: p.Header.End, end: p.Header.End, data: bottom})
	}
}

// endsWithLF reports whether the byte before off is a line feed.
func (pl *planner) endsWithLF(off int64) bool {
	if off == 0 {
		return true
	}
	var b [1]byte
	_, err := pl.m.src.ReadAt(b[:], off-1)
	return err == nil && b[0] == '\n'
}

// write copies the source to w with the planned edits applied.
func (pl *planner) write(w io.Writer) (int64, error) {
	m := pl.m
	cw := &countWriter{w: w}
	buf := make([]byte, 32<<10)
	pos := int64(0)
	copyTo := func(end int64) error {
		if end <= pos {
			return nil
		}
		_, err := io.CopyBuffer(cw, io.NewSectionReader(m.src, pos, end-pos), buf)
		pos = end
		return err
	}
	for _, e := range pl.edits {
		if err := copyTo(e.start); err != nil {
			return cw.n, fmt.Errorf("message: writing: %w", err)
		}
		var err error
		if e.fn != nil {
			err = e.fn(cw)
		} else if len(e.data) > 0 {
			_, err = cw.Write(e.data)
		}
		if err != nil {
			return cw.n, fmt.Errorf("message: writing: %w", err)
		}
		pos = e.end
	}
	if err := copyTo(m.size); err != nil {
		return cw.n, fmt.Errorf("message: writing: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
