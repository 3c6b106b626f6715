package message

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// derive indexes, after the scan, the other readings of the message that mail clients take (see Part.Derived):
// uuencoded and yEnc blocks inside parts, the message inside a transfer-encoded message/rfc822 part, the
// structure of a multipart under each of its other boundaries, and a part read with its second Content-Type or
// Content-Transfer-Encoding. Every derived part counts against Limits.MaxParts and MaxDepth, and decoded content
// against MaxDecodedBytes; a reading that passes a bound is flagged with that bound like the scan itself.
func (s *scanner) derive() error {
	m := s.m
	if s.stopped && s.m.bound == KindSizeLimit {
		return nil // only the top header was read
	}
	for _, b := range s.blocks {
		if !s.deriveBlock(b) {
			break
		}
	}
	if s.overflow {
		s.limit(KindPartLimit, -1, fmt.Sprintf("more than %d uuencoded or yEnc blocks", s.lim.MaxParts))
	}
	n := len(m.parts) // the parts of the structure and their blocks; derived parts are appended after them
	for id := 0; id < n; id++ {
		if !m.meta[id].bodyDone || m.parts[id].Derived != "" {
			continue
		}
		p := &m.parts[id]
		if !p.Multipart && !m.meta[id].container && (p.ContentType == "message/rfc822" || p.ContentType == "message/global") {
			if err := s.deriveDecoded(id); err != nil {
				return err
			}
		}
		if p.ContentType == "text/plain" && (p.Encoding == "base64" || p.Encoding == "quoted-printable") {
			if err := s.deriveEncodedBlocks(id); err != nil {
				return err
			}
		}
		for _, b := range m.meta[id].altBoundaries {
			if err := s.deriveBoundary(id, b); err != nil {
				return err
			}
		}
		for _, t := range m.meta[id].altTypes {
			s.deriveField(id, t, "")
		}
		for _, e := range m.meta[id].altEncodings {
			if !m.parts[id].Multipart {
				s.deriveField(id, "", e)
			}
		}
	}
	return nil
}

// limit records, after the scan, that a derived reading passed a bound: the message is incomplete like one
// whose scan stopped (LimitExceeded), and so is the part the reading was of.
func (s *scanner) limit(kind string, part int, detail string) {
	if s.m.bound == "" {
		s.m.bound = kind
	}
	s.defect(part, kind, detail)
	if part >= 0 && s.m.parts[part].Incomplete == "" {
		s.m.parts[part].Incomplete = kind
	}
	if s.m.parts[0].Incomplete == "" {
		s.m.parts[0].Incomplete = kind
	}
}

// addDerived appends an empty derived part inside parent, or flags the bound it would pass and returns -1.
func (s *scanner) addDerived(parent int, kind string) int {
	m := s.m
	if len(m.parts) >= s.lim.MaxParts {
		s.limit(KindPartLimit, parent, fmt.Sprintf("more than %d MIME parts with the readings inside part %d", s.lim.MaxParts, parent))
		return -1
	}
	depth := m.parts[parent].Depth + 1
	if depth > s.lim.MaxDepth {
		s.limit(KindDepthLimit, parent, fmt.Sprintf("MIME nesting deeper than %d with the readings inside part %d", s.lim.MaxDepth, parent))
		return -1
	}
	id := len(m.parts)
	m.parts = append(m.parts, Part{ID: id, Parent: parent, Depth: depth, Derived: kind})
	m.meta = append(m.meta, partMeta{src: m.meta[parent].src, hdrDone: true, bodyDone: true})
	m.parts[parent].Children = append(m.parts[parent].Children, id)
	return id
}

// deriveBlock indexes a uuencoded or yEnc block as a part inside the part it was found in.
func (s *scanner) deriveBlock(b block) bool {
	m := s.m
	host := &m.parts[b.part]
	end := b.end
	if end < 0 || end > host.Body.End {
		if end < 0 {
			s.defect(b.part, KindBadEncoding, fmt.Sprintf("part %d: a %s block (offset %d) has no end line; it is read to the end of the part", b.part, b.kind, b.start))
		}
		end = host.Body.End
	}
	if b.start < host.Body.Start || b.start > end {
		return true
	}
	s.ambiguity(b.part, AmbiguousEmbedded, fmt.Sprintf("part %d holds a %s block (offset %d) that mail clients show as a file", b.part, b.kind, b.start))
	id := s.addDerived(b.part, b.kind)
	if id < 0 {
		return false
	}
	p := &m.parts[id]
	p.Header, p.Body = Range{b.start, b.start}, Range{b.start, end}
	p.ContentType, p.Disposition = "application/octet-stream", "attachment"
	p.Encoding = "x-uuencode"
	if b.kind == DerivedYEnc {
		p.Encoding = "x-yencode"
	}
	if n := NormalizeFilename(b.name); n != "" {
		p.Filename, p.Filenames = n, []string{n}
	}
	return true
}

// deriveEncodedBlocks finds uuencoded and yEnc blocks in the decoded content of a base64 or quoted-printable
// text part, as Thunderbird does. The content is scanned as it is decoded; only the blocks are kept, against
// the decoded-bytes bound.
func (s *scanner) deriveEncodedBlocks(id int) error {
	m := s.m
	r, err := m.Decoded(id)
	if err != nil {
		return nil
	}
	br := bufio.NewReaderSize(r, int(min(4096, m.parts[id].Body.Len()+16)))
	var blk *bytes.Buffer
	var kind, name string
	over := func() {
		s.limit(KindDecodeLimit, id, fmt.Sprintf("the %s block in part %d passes the %d-byte limit on decoded content", kind, id, s.lim.MaxDecodedBytes))
	}
	// flush indexes the block read; false when a bound leaves no room for more.
	flush := func() bool {
		defer func() { blk = nil }()
		if int64(blk.Len()) > *s.budget {
			over()
			return false
		}
		*s.budget -= int64(blk.Len())
		s.ambiguity(id, AmbiguousEmbedded, fmt.Sprintf("part %d holds a %s block that mail clients show as a file", id, kind))
		d := s.addDerived(id, kind)
		if d < 0 {
			return false
		}
		data := blk.Bytes()
		q := &m.parts[d]
		q.Header, q.Body = Range{0, 0}, Range{0, int64(len(data))}
		q.ContentType, q.Disposition, q.Encoding = "application/octet-stream", "attachment", "x-uuencode"
		if kind == DerivedYEnc {
			q.Encoding = "x-yencode"
		}
		if n := NormalizeFilename(name); n != "" {
			q.Filename, q.Filenames = n, []string{n}
		}
		m.meta[d].src = bytes.NewReader(data)
		return true
	}
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Longer than any block line: not a begin or end line. Keep it if a block is open.
			if blk != nil {
				blk.Write(line)
			}
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				if blk != nil {
					blk.Write(line)
				}
			}
			line = nil
		}
		content := bytes.TrimRight(line, "\r\n")
		switch {
		case blk != nil:
			blk.Write(line)
			if int64(blk.Len()) > *s.budget {
				over()
				return nil
			}
			if kind == DerivedUUEncode && bytes.Equal(bytes.TrimRight(content, " \t"), []byte("end")) ||
				kind == DerivedYEnc && bytes.HasPrefix(content, []byte("=yend")) {
				if !flush() {
					return nil
				}
			}
		case len(content) > 6 && content[0] == 'b':
			if n, ok := uuBegin(content); ok {
				blk, kind, name = &bytes.Buffer{}, DerivedUUEncode, n
				blk.Write(line)
			}
		case len(content) > 8 && content[0] == '=':
			if n, ok := yBegin(content); ok {
				blk, kind, name = &bytes.Buffer{}, DerivedYEnc, n
				blk.Write(line)
			}
		}
		if err != nil {
			if err != io.EOF {
				return fmt.Errorf("message: decoding part %d: %w", id, err)
			}
			if blk != nil {
				s.defect(id, KindBadEncoding, fmt.Sprintf("part %d: a %s block has no end line; it is read to the end of the part", id, kind))
				flush()
			}
			return nil
		}
	}
}

// deriveDecoded decodes a message/rfc822 part that has a transfer encoding (RFC 2046 forbids it, clients decode
// it) and indexes the message inside it.
func (s *scanner) deriveDecoded(id int) error {
	m := s.m
	r, err := m.Decoded(id)
	if err != nil {
		return nil // an unknown encoding: nothing to read, and already a defect
	}
	buf, err := io.ReadAll(io.LimitReader(r, *s.budget+1))
	if err != nil {
		return fmt.Errorf("message: decoding part %d: %w", id, err)
	}
	if int64(len(buf)) > *s.budget {
		s.limit(KindDecodeLimit, id, fmt.Sprintf("decoding part %d to index the message inside it passes the %d-byte limit on decoded content", id, s.lim.MaxDecodedBytes))
		return nil
	}
	*s.budget -= int64(len(buf))
	lim, ok := s.subLimits(id, 1)
	if !ok {
		return nil
	}
	src := bytes.NewReader(buf)
	sub, err := parse(src, int64(len(buf)), lim, s.budget, nil)
	if err != nil {
		return err
	}
	s.graft(id, sub, DerivedDecoded, src, 0, true)
	return nil
}

// deriveBoundary indexes the structure that boundary b yields in the body of part id.
func (s *scanner) deriveBoundary(id int, b string) error {
	m := s.m
	p := &m.parts[id]
	ct := p.ContentType
	if !p.Multipart {
		ct = "multipart/mixed"
	}
	root := &Part{ContentType: ct, Params: map[string]string{"boundary": b}}
	start, size := p.Body.Start, p.Body.Len()
	// Each structure is another scan of the body: a header with a thousand boundary parameters must not buy a
	// thousand scans, so the bytes scanned count against the bound on decoded content.
	if size > *s.budget {
		s.limit(KindDecodeLimit, id, fmt.Sprintf("reading part %d with boundary %q passes the %d-byte limit on content read again for other readings", id, clip(b), s.lim.MaxDecodedBytes))
		return nil
	}
	*s.budget -= size
	lim, ok := s.subLimits(id, 0)
	if !ok {
		return nil
	}
	sub, err := parse(io.NewSectionReader(m.source(id), start, size), size, lim, s.budget, root)
	if err != nil {
		return err
	}
	s.graft(id, sub, DerivedBoundary, m.meta[id].src, start, false)
	return nil
}

// deriveField indexes part id read with another Content-Type (ct) or Content-Transfer-Encoding (cte).
func (s *scanner) deriveField(id int, ct, cte string) {
	m := s.m
	d := s.addDerived(id, DerivedField)
	if d < 0 {
		return
	}
	p, q := &m.parts[id], &m.parts[d]
	q.Header, q.Body, q.Fields = p.Header, p.Body, p.Fields
	q.ContentType, q.Params, q.Charset, q.Encoding = p.ContentType, p.Params, p.Charset, p.Encoding
	q.Disposition, q.Filename, q.Filenames = p.Disposition, p.Filename, p.Filenames
	if ct != "" {
		q.ContentType = ct
		q.Multipart = false
	}
	if cte != "" {
		q.Encoding = cte
	}
	m.meta[d].fields = m.meta[id].fields
}

// subLimits returns the limits for parsing a reading inside part id whose root is extra levels below it (1 for
// an encapsulated message, 0 for another structure of the same multipart), or false after flagging the bound
// that leaves no room.
func (s *scanner) subLimits(id, extra int) (Limits, bool) {
	m := s.m
	lim := s.lim
	lim.MaxDepth = s.lim.MaxDepth - m.parts[id].Depth - extra
	lim.MaxParts = s.lim.MaxParts - len(m.parts) + 1 - extra
	switch {
	case lim.MaxDepth < 0:
		s.limit(KindDepthLimit, id, fmt.Sprintf("MIME nesting deeper than %d with the message inside part %d", s.lim.MaxDepth, id))
		return lim, false
	case lim.MaxParts < 1:
		s.limit(KindPartLimit, id, fmt.Sprintf("more than %d MIME parts with the readings inside part %d", s.lim.MaxParts, id))
		return lim, false
	}
	return lim, true
}

// graft appends the parts of sub, a reading of (part of) the content of part parent, to the index: sub's root
// becomes a child of parent (root), or stands for parent itself (!root). Ranges of sub's own parts point into
// src at offset base (src nil: the message).
func (s *scanner) graft(parent int, sub *Message, kind string, src io.ReaderAt, base int64, root bool) {
	m := s.m
	ids := make([]int, len(sub.parts))
	next := len(m.parts)
	for i := range sub.parts {
		if i == 0 && !root {
			ids[0] = parent
			continue
		}
		ids[i] = next
		next++
	}
	remap := func(ds []Defect) []Defect {
		out := make([]Defect, len(ds))
		for i, d := range ds {
			d.Part = ids[d.Part]
			out[i] = d
		}
		return out
	}
	for i := range sub.parts {
		if i == 0 && !root {
			for _, c := range sub.parts[0].Children {
				m.parts[parent].Children = append(m.parts[parent].Children, ids[c])
			}
			continue
		}
		q := sub.parts[i]
		meta := sub.meta[i]
		q.ID = ids[i]
		if i == 0 {
			q.Parent = parent
			m.parts[parent].Children = append(m.parts[parent].Children, q.ID)
		} else {
			q.Parent = ids[q.Parent]
		}
		q.Depth = m.parts[q.Parent].Depth + 1
		children := make([]int, len(q.Children))
		for j, c := range q.Children {
			children[j] = ids[c]
		}
		q.Children = children
		if q.Defects != nil {
			q.Defects = remap(q.Defects)
		}
		if q.Ambiguities != nil {
			q.Ambiguities = remap(q.Ambiguities)
		}
		if q.Derived == "" {
			q.Derived = kind
		}
		if meta.src == nil {
			meta.src = src
			q.Header.Start += base
			q.Header.End += base
			q.Body.Start += base
			q.Body.End += base
			meta.delim += base
			fields := make([]fieldLoc, len(meta.fields))
			for j, f := range meta.fields {
				f.r.Start += base
				f.r.End += base
				fields[j] = f
			}
			meta.fields = fields
		}
		meta.altBoundaries, meta.altTypes, meta.altEncodings = nil, nil, nil
		m.parts = append(m.parts, q)
		m.meta = append(m.meta, meta)
	}
	for _, d := range sub.defects {
		switch {
		case d.Part < 0 || (d.Part == 0 && !root):
			if d.Part < 0 || isLimit(d.Kind) {
				s.defect(parent, d.Kind, d.Detail)
			}
		default:
			d.Part = ids[d.Part]
			m.defects = append(m.defects, d)
		}
	}
	for _, d := range sub.ambig {
		if d.Part == 0 && !root {
			s.ambiguity(parent, d.Kind, d.Detail)
			continue
		}
		d.Part = ids[d.Part]
		m.ambig = append(m.ambig, d)
	}
	if sub.bound != "" {
		s.limit(sub.bound, parent, fmt.Sprintf("the %s reading of part %d passed the %s", kind, parent, sub.bound))
	}
}

// isLimit reports whether a defect kind is a bound.
func isLimit(kind string) bool {
	switch kind {
	case KindSizeLimit, KindDepthLimit, KindPartLimit, KindHeaderLimit, KindLineLimit, KindDecodeLimit:
		return true
	}
	return false
}
