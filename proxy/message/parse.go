package message

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
)

// Parse indexes the message of size bytes read from src. It returns an error only when src cannot be read (or
// holds fewer than size bytes); everything wrong with the message itself is a Defect, and passing a limit stops
// indexing (see Message.LimitExceeded). Parse reads src once, sequentially, and keeps no copy of it: src must
// stay readable, unchanged, for as long as the Message is used.
func Parse(src io.ReaderAt, size int64, lim Limits) (*Message, error) {
	if size < 0 {
		return nil, fmt.Errorf("message: %w size %d", ErrInvalid, size)
	}
	lim = lim.withDefaults()
	budget := lim.MaxDecodedBytes
	return parse(src, size, lim, &budget, nil)
}

// parse is Parse with limits already resolved. budget is what is left of Limits.MaxDecodedBytes, shared by the
// derived readings at every level; root, when not nil, is a multipart whose header is not in src (src is its
// body): the structure another boundary yields.
func parse(src io.ReaderAt, size int64, lim Limits, budget *int64, root *Part) (*Message, error) {
	m := &Message{src: src, size: size, eol: "\r\n"}
	s := &scanner{m: m, lim: lim, seen: map[defectKey]int{}, budget: budget, root: root}
	if err := s.run(); err != nil {
		return nil, err
	}
	if err := s.derive(); err != nil {
		return nil, err
	}
	return m, nil
}

// frame is one open multipart on the scanner's stack.
type frame struct {
	part  int
	delim []byte // "--" + boundary
	seen  bool   // the first delimiter line was found
}

type defectKey struct {
	part int
	kind string
}

// scanner reads the message line by line and builds the index. It is a state machine: each line belongs either
// to the header of the current part (inHeader) or to the current part's body, where it may be the delimiter of
// any open multipart.
type scanner struct {
	m    *Message
	lim  Limits
	br   *bufio.Reader
	hr   *bufio.Reader // reused for textproto.ReadHeader
	off  int64         // offset of the next unread byte
	line int           // number of the last line read, from 1
	// prevEOL is the length of the line ending of the line before the one being handled: the body of a part
	// ends before it when the next line is a delimiter (RFC 2046 §5.1.1: that line ending belongs to the
	// delimiter).
	prevEOL  int64
	stack    []frame
	cur      int
	inHeader bool
	hdr      []byte // the current header's bytes read so far
	stopped  bool
	seen     map[defectKey]int // index in m.defects of the first defect of a kind per part
	repeats  map[int]int       // further occurrences of that defect, reported as a count
	ambSeen  map[defectKey]bool
	budget   *int64 // bytes left for decoding content to index what is inside it
	root     *Part  // see parse
	// What the body lines of leaf parts showed: base64 oddities, uuencoded and yEnc blocks.
	lines     map[int]*lineState
	blocks    []block
	overflow  bool // more blocks than MaxParts: the rest were not kept
	lastID    int
	lastState *lineState
}

// lineState is what the scanner learnt from the body lines of one part.
type lineState struct {
	quad             int  // base64 characters in the current group
	padded           bool // a "=" ended a base64 group
	badChar, dataPad bool // reported already
	open             int  // 1 + index in scanner.blocks of the block still open, or 0
}

// block is a uuencoded or yEnc block found in a part's body.
type block struct {
	part       int
	kind       string // DerivedUUEncode or DerivedYEnc
	name       string
	start, end int64 // end is -1 while open
}

func (s *scanner) run() error {
	m := s.m
	bufSize := int64(s.lim.MaxLineLength) + 1
	if m.size+1 < bufSize {
		// A line cannot be longer than the message, so a small message needs no large buffer.
		bufSize = m.size + 1
	}
	if bufSize < 16 {
		bufSize = 16
	}
	s.br = bufio.NewReaderSize(io.NewSectionReader(m.src, 0, m.size), int(bufSize))
	s.cur = s.newPart(-1, 0, -1)
	s.inHeader = true
	if r := s.root; r != nil {
		p := &m.parts[0]
		p.ContentType, p.Params, p.Multipart, p.Encoding = r.ContentType, r.Params, true, "7bit"
		m.meta[0].hdrDone = true
		s.inHeader = false
		s.stack = append(s.stack, frame{part: 0, delim: append([]byte("--"), r.Params["boundary"]...)})
	}
	for !s.stopped {
		start := s.off
		line, err := s.readLine()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if line == nil { // line limit
			break
		}
		if start == 0 && bytes.HasSuffix(line, []byte("\n")) && !bytes.HasSuffix(line, []byte("\r\n")) {
			m.eol = "\n"
		}
		s.handle(line, start)
		s.prevEOL = int64(eolLen(line))
	}
	if !s.stopped && s.off != m.size {
		return fmt.Errorf("message: source ended at offset %d, before the message's size %d: %w", s.off, m.size, io.ErrUnexpectedEOF)
	}
	s.finish()
	for i, n := range s.repeats {
		d := &m.defects[i]
		d.Detail += fmt.Sprintf(" (and %d more like this)", n)
		p := d.Part
		if p >= 0 {
			for j := range m.parts[p].Defects {
				if m.parts[p].Defects[j].Kind == d.Kind {
					m.parts[p].Defects[j].Detail = d.Detail
					break
				}
			}
		}
	}
	return nil
}

// readLine returns the next line with its line ending (a final line may have none). It returns nil, nil when
// the line is longer than MaxLineLength, after stopping the scan.
func (s *scanner) readLine() ([]byte, error) {
	line, err := s.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull) || len(line) > s.lim.MaxLineLength:
		s.stop(KindLineLimit, s.cur, fmt.Sprintf("line %d (offset %d) is longer than %d bytes", s.line+1, s.off, s.lim.MaxLineLength))
		return nil, nil
	case err == io.EOF:
		if len(line) == 0 {
			return nil, io.EOF
		}
	case err != nil:
		return nil, fmt.Errorf("message: reading at offset %d: %w", s.off, err)
	}
	s.off += int64(len(line))
	s.line++
	return line, nil
}

func eolLen(line []byte) int {
	switch {
	case bytes.HasSuffix(line, []byte("\r\n")):
		return 2
	case bytes.HasSuffix(line, []byte("\n")):
		return 1
	}
	return 0
}

func trimEOL(line []byte) []byte { return line[:len(line)-eolLen(line)] }

// defect records a defect once per part and kind; later ones of the same kind only add to a count.
func (s *scanner) defect(part int, kind, detail string) {
	k := defectKey{part, kind}
	if i, ok := s.seen[k]; ok {
		if s.repeats == nil {
			s.repeats = map[int]int{}
		}
		s.repeats[i]++
		return
	}
	d := Defect{Part: part, Kind: kind, Detail: detail}
	s.seen[k] = len(s.m.defects)
	s.m.defects = append(s.m.defects, d)
	if part >= 0 {
		s.m.parts[part].Defects = append(s.m.parts[part].Defects, d)
	}
}

// ambiguity records, once per part and kind, that mail clients read the part differently.
func (s *scanner) ambiguity(part int, kind, detail string) {
	k := defectKey{part, kind}
	if s.ambSeen[k] {
		return
	}
	if s.ambSeen == nil {
		s.ambSeen = map[defectKey]bool{}
	}
	s.ambSeen[k] = true
	d := Defect{Part: part, Kind: kind, Detail: detail}
	s.m.ambig = append(s.m.ambig, d)
	if part >= 0 {
		s.m.parts[part].Ambiguities = append(s.m.parts[part].Ambiguities, d)
	}
}

// stop ends indexing because a limit was passed.
func (s *scanner) stop(kind string, part int, detail string) {
	if s.stopped {
		return
	}
	s.stopped = true
	s.m.bound = kind
	s.defect(part, kind, detail)
}

// newPart appends a part whose header starts at hdrStart, or stops the scan and returns -1 when that passes the
// part or depth limit.
func (s *scanner) newPart(parent int, hdrStart, delim int64) int {
	m := s.m
	if len(m.parts) >= s.lim.MaxParts {
		s.stop(KindPartLimit, -1, fmt.Sprintf("more than %d MIME parts (the next one starts at offset %d)", s.lim.MaxParts, hdrStart))
		return -1
	}
	depth := 0
	if parent >= 0 {
		depth = m.parts[parent].Depth + 1
	}
	if depth > s.lim.MaxDepth {
		s.stop(KindDepthLimit, parent, fmt.Sprintf("MIME nesting deeper than %d (a part at offset %d)", s.lim.MaxDepth, hdrStart))
		return -1
	}
	id := len(m.parts)
	m.parts = append(m.parts, Part{ID: id, Parent: parent, Depth: depth,
		Header: Range{hdrStart, hdrStart}, Body: Range{hdrStart, hdrStart}})
	m.meta = append(m.meta, partMeta{delim: delim})
	if parent >= 0 {
		m.parts[parent].Children = append(m.parts[parent].Children, id)
	}
	return id
}

func (s *scanner) handle(line []byte, start int64) {
	if s.inHeader {
		s.headerLine(line, start)
	} else {
		s.bodyLine(line, start)
	}
}

func (s *scanner) headerLine(line []byte, start int64) {
	content := trimEOL(line)
	p := s.cur
	switch {
	case len(content) == 0 && len(line) > 0:
		s.endHeader(start, start+int64(len(line)), true, true)
	case s.delimiterIndex(content) >= 0:
		s.defect(p, KindBadHeader, fmt.Sprintf("the header of part %d ends at a boundary line (offset %d) without a blank line", p, start))
		s.endHeader(start, start, false, false)
		if !s.stopped {
			s.handle(line, start)
		}
	case content[0] == ' ' || content[0] == '\t':
		if len(s.hdr) == 0 {
			s.defect(p, KindBadHeader, fmt.Sprintf("line %d (offset %d) continues a header field that does not exist", s.line, start))
		}
		s.appendHeader(line, start)
	case fieldName(content) != nil:
		s.appendHeader(line, start)
	case brokenFold(s.hdr, content):
		s.defect(p, KindBadHeader, fmt.Sprintf("line %d (offset %d) continues a field without being indented (the line before ends with ';'); read as a continuation, as mail clients do", s.line, start))
		s.appendHeader(line, start)
	case p == 0 && start == 0 && bytes.HasPrefix(content, []byte("From ")):
		s.defect(p, KindBadHeader, "line 1 is an mbox \"From \" line, not a header field")
		s.appendHeader(line, start)
	default:
		s.defect(p, KindBadHeader, fmt.Sprintf("line %d (offset %d) is not a header field; the body of part %d starts there without a blank line", s.line, start, p))
		s.endHeader(start, start, false, true)
		if !s.stopped {
			s.handle(line, start)
		}
	}
}

func (s *scanner) appendHeader(line []byte, start int64) {
	hs := s.m.parts[s.cur].Header.Start
	if start+int64(len(line))-hs > int64(s.lim.MaxHeaderBytes) {
		p := s.cur
		s.stop(KindHeaderLimit, p, fmt.Sprintf("the header of part %d (offset %d) is longer than %d bytes", p, hs, s.lim.MaxHeaderBytes))
		// Index what fits, so the fields read so far stay visible; the header is known to be incomplete.
		s.endHeader(start, start, false, false)
		s.m.meta[p].hdrDone = false
		return
	}
	s.hdr = append(s.hdr, line...)
}

// endHeader ends the current part's header at hdrEnd; its body starts at bodyStart. With descend, the scanner
// goes on into the part's body: a multipart's boundary is pushed, a message/rfc822 part's child is started.
func (s *scanner) endHeader(hdrEnd, bodyStart int64, sep, descend bool) {
	m := s.m
	id := s.cur
	m.parts[id].Header.End = hdrEnd
	m.parts[id].Body = Range{bodyStart, bodyStart}
	m.meta[id].sep = sep
	m.meta[id].hdrDone = true
	s.inHeader = false
	s.parseFields(id)
	s.hdr = s.hdr[:0]
	s.analyze(id)
	if id == 0 && m.size > s.lim.MaxSize {
		s.stop(KindSizeLimit, -1, fmt.Sprintf("the message is %d bytes, more than the %d-byte limit; only its top header was indexed", m.size, s.lim.MaxSize))
		return
	}
	if !descend {
		return
	}
	p := &m.parts[id]
	switch {
	case p.Multipart && p.Params["boundary"] != "":
		s.stack = append(s.stack, frame{part: id, delim: append([]byte("--"), p.Params["boundary"]...)})
	case m.meta[id].container:
		child := s.newPart(id, bodyStart, -1)
		if child < 0 {
			return
		}
		m.meta[child].embedded = true
		s.cur = child
		s.inHeader = true
	}
}

// delimiterIndex returns the index in the stack of the innermost multipart whose delimiter (or close delimiter)
// line is content, or -1.
func (s *scanner) delimiterIndex(content []byte) int {
	if len(s.stack) == 0 || len(content) < 2 || content[0] != '-' || content[1] != '-' {
		return -1
	}
	for i := len(s.stack) - 1; i >= 0; i-- {
		if _, ok := matchDelimiter(content, s.stack[i].delim); ok {
			return i
		}
	}
	return -1
}

// matchDelimiter reports whether content (a line without its line ending) is the delimiter line delim, or the
// close delimiter delim + "--", followed only by transport padding (RFC 2046 §5.1.1).
func matchDelimiter(content, delim []byte) (closing, ok bool) {
	if !bytes.HasPrefix(content, delim) {
		return false, false
	}
	rest := content[len(delim):]
	if bytes.HasPrefix(rest, []byte("--")) {
		closing = true
		rest = rest[2:]
	}
	for _, c := range rest {
		if c != ' ' && c != '\t' {
			return false, false
		}
	}
	return closing, true
}

func (s *scanner) bodyLine(line []byte, start int64) {
	content := trimEOL(line)
	i := s.delimiterIndex(content)
	if i < 0 {
		s.inspect(content, start, int64(len(line)))
		return
	}
	closing, _ := matchDelimiter(content, s.stack[i].delim)
	end := start - s.prevEOL
	for j := len(s.stack) - 1; j > i; j-- {
		s.unclosed(s.stack[j], fmt.Sprintf("before a boundary line of part %d at offset %d", s.stack[i].part, start))
	}
	s.stack = s.stack[:i+1]
	f := &s.stack[i]
	floor := s.endChain(s.cur, f.part, end)
	s.cur = f.part
	if closing {
		if !f.seen {
			s.defect(f.part, KindMissingBoundary, fmt.Sprintf("the multipart closes (offset %d) before its first part", start))
		}
		s.stack = s.stack[:i]
		return
	}
	f.seen = true
	delim := max(end, floor)
	child := s.newPart(f.part, start+int64(len(line)), delim)
	if child < 0 {
		return
	}
	s.cur = child
	s.inHeader = true
}

// inspect looks at one body line (content, without its line ending, of n bytes with it) of the current part:
// base64 that a strict decoder would refuse or that goes on after padding, and the begin and end lines of
// uuencoded and yEnc blocks, which mail clients show as attachments.
func (s *scanner) inspect(content []byte, start, n int64) {
	id := s.cur
	p := &s.m.parts[id]
	if p.Encoding == "base64" && !p.Multipart {
		s.inspectBase64(id, content)
		return
	}
	if len(content) < 3 {
		return
	}
	identity := p.Encoding == "7bit" || p.Encoding == "8bit" || p.Encoding == "binary"
	uu := lenientEncoding(p.Encoding)
	if !identity && uu == "" {
		return
	}
	st := s.lines[id]
	if st != nil && st.open > 0 {
		b := &s.blocks[st.open-1]
		if b.kind == DerivedUUEncode && bytes.Equal(bytes.TrimRight(content, " \t"), []byte("end")) ||
			b.kind == DerivedYEnc && bytes.HasPrefix(content, []byte("=yend")) {
			b.end = start + n
			st.open = 0
		}
		return
	}
	var name, kind string
	switch content[0] {
	case 'b':
		if nm, ok := uuBegin(content); ok {
			name, kind = nm, DerivedUUEncode
		}
	case '=':
		if nm, ok := yBegin(content); ok {
			name, kind = nm, DerivedYEnc
		}
	}
	if kind == "" {
		return
	}
	if uu != "" {
		// The part is the encoded file: its begin line names it.
		if n := NormalizeFilename(name); n != "" && !slices.Contains(p.Filenames, n) {
			p.Filenames = append(p.Filenames, n)
			if p.Filename == "" {
				p.Filename = n
			} else {
				s.ambiguity(id, AmbiguousNames, fmt.Sprintf("part %d names its file %s", id, clip(quoteAll(p.Filenames))))
			}
		}
		return
	}
	if len(s.blocks) >= s.lim.MaxParts {
		s.overflow = true
		return
	}
	st = s.lineStateOf(id)
	s.blocks = append(s.blocks, block{part: id, kind: kind, name: name, start: start, end: -1})
	st.open = len(s.blocks)
}

// lineStateOf returns the line state of part id, remembering the last one asked for: the lines of one part
// come one after the other.
func (s *scanner) lineStateOf(id int) *lineState {
	if s.lastState != nil && s.lastID == id {
		return s.lastState
	}
	st := s.lines[id]
	if st == nil {
		if s.lines == nil {
			s.lines = map[int]*lineState{}
		}
		st = &lineState{}
		s.lines[id] = st
	}
	s.lastID, s.lastState = id, st
	return st
}

// inspectBase64 records base64 characters outside the alphabet and data after padding.
func (s *scanner) inspectBase64(id int, content []byte) {
	st := s.lineStateOf(id)
	i := 0
	if !st.padded {
		// Fast path: eight letters at a time (a letter after padding is the case the slow path reports).
		i = cleanBase64Prefix(content)
		st.quad = (st.quad + i) & 3
	}
	for _, c := range content[i:] {
		if base64Value[c] != 0xff {
			if st.padded && !st.dataPad {
				st.dataPad = true
				s.defect(id, KindBadEncoding, fmt.Sprintf("part %d: base64 content goes on after padding; it is decoded to the end", id))
				s.ambiguity(id, AmbiguousBase64, fmt.Sprintf("part %d: base64 content goes on after padding, where some decoders stop", id))
			}
			st.padded = false
			st.quad = (st.quad + 1) & 3
			continue
		}
		switch c {
		case ' ', '\t', '\r':
		case '=':
			if st.quad >= 2 || st.padded {
				st.padded = true
				st.quad = 0
				continue
			}
			fallthrough
		default:
			if !st.badChar {
				st.badChar = true
				s.defect(id, KindBadEncoding, fmt.Sprintf("part %d: base64 content holds characters outside the alphabet; they are ignored (RFC 2045 §6.8)", id))
			}
		}
	}
}

// endChain ends, at end, the body of part from and of its ancestors up to (not including) part to, and returns
// where the last of them ended (or to's body start when from == to): the earliest offset the next delimiter of
// to may claim.
func (s *scanner) endChain(from, to int, end int64) int64 {
	m := s.m
	floor := int64(0)
	if to >= 0 {
		floor = m.parts[to].Body.Start
	}
	for p := from; p != to && p >= 0; p = m.parts[p].Parent {
		b := &m.parts[p].Body
		// A part whose body is empty may end after the line ending the delimiter claims (that line ending was
		// its blank separator line); its parents then end no earlier than it does.
		b.End = max(b.Start, end)
		end = b.End
		m.meta[p].bodyDone = true
		floor = b.End
	}
	return floor
}

func (s *scanner) unclosed(f frame, where string) {
	b := string(f.delim[2:])
	if !f.seen {
		s.defect(f.part, KindMissingBoundary, fmt.Sprintf("no delimiter line for boundary %q %s: the multipart has no parts", b, where))
		return
	}
	s.defect(f.part, KindUnclosedBoundary, fmt.Sprintf("boundary %q is not closed %s", b, where))
}

// finish closes everything still open at the end of the input, or where a limit stopped the scan.
func (s *scanner) finish() {
	m := s.m
	if s.inHeader {
		// The header runs to where reading stopped: the end of the message, or the line that passed a limit.
		s.endHeader(s.off, s.off, false, false)
		m.meta[s.cur].hdrDone = !s.stopped
	}
	if s.stopped {
		for p := s.cur; p >= 0; p = m.parts[p].Parent {
			m.parts[p].Body.End = m.size
			m.meta[p].bodyDone = false
			m.parts[p].Incomplete = m.bound
		}
		return
	}
	for j := len(s.stack) - 1; j >= 0; j-- {
		s.unclosed(s.stack[j], "by the end of the message")
	}
	s.stack = nil
	s.endChain(s.cur, -1, m.size)
}

// brokenFold reports whether content, a header line that is not a field, continues the last field of hdr
// although it is not indented: that field's last line ends with ';' and content is a parameter ("name=...").
func brokenFold(hdr, content []byte) bool {
	if len(hdr) == 0 || len(content) == 0 || !isTokenChar(content[0]) {
		return false
	}
	prev := bytes.TrimRight(hdr, " \t\r\n")
	if !bytes.HasSuffix(prev, []byte(";")) {
		return false
	}
	eq := bytes.IndexByte(content, '=')
	return eq > 0 && bytes.IndexByte(content[:eq], ':') < 0
}

// fieldName returns the name of a header field line ("Name:" with optional white space before the colon,
// RFC 5322 §4.5.3), or nil when the line is not a field.
func fieldName(line []byte) []byte {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil
	}
	name := bytes.TrimRight(line[:colon], " \t")
	if len(name) == 0 {
		return nil
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return nil
		}
	}
	return name
}

// parseFields splits the current header bytes into fields, records their ranges and parses them with
// textproto.ReadHeader. Lines that are not fields (an mbox From line, a continuation with nothing to continue)
// stay in the header's range but are not fields.
func (s *scanner) parseFields(id int) {
	m := s.m
	buf := s.hdr
	base := m.parts[id].Header.Start
	var locs []fieldLoc
	clean := true
	cur := -1
	reported8bit, reportedNUL := false, false
	var unindented []int // offsets in buf of continuation lines that lack their indentation
	for i := 0; i < len(buf); {
		end := len(buf)
		if j := bytes.IndexByte(buf[i:], '\n'); j >= 0 {
			end = i + j + 1
		}
		line := buf[i:end]
		switch {
		case line[0] == ' ' || line[0] == '\t':
			if cur >= 0 {
				locs[cur].r.End = base + int64(end)
			} else {
				clean = false
			}
		default:
			if name := fieldName(line); name != nil {
				locs = append(locs, fieldLoc{name: string(name), r: Range{base + int64(i), base + int64(end)}})
				cur = len(locs) - 1
			} else if cur >= 0 && brokenFold(buf[:i], trimEOL(line)) {
				locs[cur].r.End = base + int64(end)
				unindented = append(unindented, i)
				clean = false
			} else {
				clean = false
				cur = -1
			}
		}
		if cur >= 0 && !reportedNUL && bytes.IndexByte(line, 0) >= 0 {
			reportedNUL = true
			s.defect(id, KindBadHeader, fmt.Sprintf("field %s (offset %d) contains a NUL byte", locs[cur].name, base+int64(i)))
		}
		if cur >= 0 && !reported8bit && !utf8.Valid(line) {
			reported8bit = true
			s.defect(id, KindBadHeader, fmt.Sprintf("field %s (offset %d) contains 8-bit bytes that are not UTF-8", locs[cur].name, base+int64(i)))
		}
		i = end
	}
	m.meta[id].fields = locs
	if len(locs) == 0 {
		return
	}
	input := buf
	if !clean || buf[len(buf)-1] != '\n' {
		input = make([]byte, 0, len(buf)+2)
		for _, l := range locs {
			from, to := l.r.Start-base, l.r.End-base
			for _, u := range unindented {
				if int64(u) > from && int64(u) < to {
					input = append(append(input, buf[from:u]...), ' ')
					from = int64(u)
				}
			}
			input = append(input, buf[from:to]...)
			if input[len(input)-1] != '\n' {
				input = append(input, '\r', '\n')
			}
		}
	}
	if s.hr == nil {
		s.hr = bufio.NewReaderSize(bytes.NewReader(input), 4096)
	} else {
		s.hr.Reset(bytes.NewReader(input))
	}
	h, err := textproto.ReadHeader(s.hr)
	if err != nil {
		s.defect(id, KindBadHeader, fmt.Sprintf("header of part %d: %v", id, err))
	}
	m.parts[id].Fields = h
}
