package message

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
)

// The decoders in this file read transfer-encoded content the way mail clients do, not the way the RFCs would
// like senders to write it: whatever a client shows the user, a filter must see. They never fail on the content
// itself; what they had to tolerate is found by the scanner and recorded as defects (see scanner.bodyLine).

// base64Value maps a byte to its base64 value, or 0xff for bytes outside the alphabet (incl. '=').
var base64Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// base64Bad is 1 for bytes outside the base64 alphabet, 0 for the 64 letters: eight lookups OR-ed test eight
// bytes at once.
var base64Bad = func() (t [256]byte) {
	for i := range t {
		if base64Value[i] == 0xff {
			t[i] = 1
		}
	}
	return t
}()

// cleanBase64Prefix returns the length of b's longest prefix of base64 letters, in steps of eight (the caller
// looks at the rest one byte at a time).
func cleanBase64Prefix(b []byte) int {
	i := 0
	for ; len(b)-i >= 8; i += 8 {
		c := b[i : i+8 : i+8]
		if base64Bad[c[0]]|base64Bad[c[1]]|base64Bad[c[2]]|base64Bad[c[3]]|base64Bad[c[4]]|base64Bad[c[5]]|base64Bad[c[6]]|base64Bad[c[7]] != 0 {
			break
		}
	}
	return i
}

// base64Reader decodes base64 leniently. Characters outside the alphabet are ignored (RFC 2045 §6.8: decoders
// must ignore them). A '=' where padding may stand (after two or three characters of a group) ends the group,
// and decoding goes on after it: Python's email package stops there, other readers (Thunderbird, uudeview)
// carry on, and a filter must see the longer reading. A stray '=' elsewhere is ignored. Missing padding is
// tolerated; one dangling character at the very end (6 bits, no byte) is dropped.
//
// It works a chunk at a time: the letters of a chunk are gathered and decoded in one call to the standard
// library's decoder, so well-formed base64 costs little more than with encoding/base64 alone.
type base64Reader struct {
	r   io.Reader
	in  []byte // the chunk read
	q   []byte // letters gathered, not yet decoded (fewer than 4 between chunks)
	out []byte // decoded, not yet returned: out[oi:]
	oi  int
	err error
}

// newBase64Reader decodes r, reading chunks of at most chunk bytes (at least 64, at most 32 KiB).
func newBase64Reader(r io.Reader, chunk int) *base64Reader {
	chunk = min(max(chunk, 64), 32<<10)
	return &base64Reader{r: r, in: make([]byte, chunk), q: make([]byte, 0, chunk+4), out: make([]byte, 0, chunk*3/4+3)}
}

func (d *base64Reader) Read(p []byte) (int, error) {
	for d.oi >= len(d.out) {
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
	}
	n := copy(p, d.out[d.oi:])
	d.oi += n
	return n, nil
}

func (d *base64Reader) fill() {
	d.out, d.oi = d.out[:0], 0
	n, err := d.r.Read(d.in)
	in := d.in[:n]
	q := d.q
	for i := 0; i < len(in); {
		if k := cleanBase64Prefix(in[i:]); k > 0 {
			q = append(q, in[i:i+k]...)
			i += k
			continue
		}
		c := in[i]
		i++
		if base64Bad[c] == 0 {
			q = append(q, c)
		} else if c == '=' && len(q)%4 >= 2 {
			d.q = q
			d.decode(true)
			q = d.q
		}
	}
	d.q = q
	d.decode(err != nil)
	if err != nil {
		d.err = err
	}
}

// decode decodes the complete groups gathered, and with final the partial one too.
func (d *base64Reader) decode(final bool) {
	full := len(d.q) / 4 * 4
	rest := d.q[full:]
	if final && len(rest) >= 2 {
		full = len(d.q)
		rest = nil
	}
	if full > 0 {
		need := len(d.out) + base64.RawStdEncoding.DecodedLen(full)
		if cap(d.out) < need {
			d.out = append(d.out[:cap(d.out)], make([]byte, need-cap(d.out))...)[:len(d.out)]
		}
		// Non-strict decoding: the unused bits of a partial group need not be zero, as for every client.
		n, _ := base64.RawStdEncoding.Decode(d.out[len(d.out):need], d.q[:full])
		d.out = d.out[:len(d.out)+n]
	}
	if final {
		rest = nil // a single dangling letter has no byte
	}
	d.q = append(d.q[:0], rest...)
}

// qpReader decodes quoted-printable as mail clients do (and as Python's quopri and Thunderbird agree): "=XX"
// with hex digits in either case is a byte, "=" at the end of a line (before optional white space) is a soft
// line break, and any other "=" is kept as it is. White space at the end of a line is removed (RFC 2045 §6.7
// rule 3). Line endings are kept as written.
type qpReader struct{ blockReader }

func newQPReader(r io.Reader) *qpReader {
	d := &qpReader{newBlockReader(r)}
	d.decodeLine = d.decode
	return d
}

// decode decodes one input line into d.line. Lines longer than the reader's buffer are decoded in pieces (not
// complete); a piece boundary can only split a "=XX" escape of a line already longer than the line limit Parse
// allows.
func (d *qpReader) decode(raw []byte, complete bool) {
	content, eol := raw, []byte(nil)
	if complete {
		content = trimEOL(raw)
		eol = raw[len(content):]
		content = bytes.TrimRight(content, " \t")
	}
	for i := 0; i < len(content); i++ {
		c := content[i]
		if c != '=' {
			d.line = append(d.line, c)
			continue
		}
		if i+2 < len(content) && isHex(content[i+1]) && isHex(content[i+2]) {
			d.line = append(d.line, unhex(content[i+1])<<4|unhex(content[i+2]))
			i += 2
			continue
		}
		if i == len(content)-1 && eol != nil {
			eol = nil // soft line break
			continue
		}
		d.line = append(d.line, c)
	}
	d.line = append(d.line, eol...)
}

// uuValue decodes one uuencoded character ('`' is 0, like ' ').
func uuValue(c byte) byte { return (c - ' ') & 0x3f }

// blockReader is the frame of the line decoders (quoted-printable, uuencode, yEnc): it reads its input a line at
// a time and serves what decodeLine made of each line (in line), until decodeLine says the block is done or the
// input ends.
type blockReader struct {
	r          *bufio.Reader
	begun      bool
	done       bool
	line       []byte
	pos        int
	err        error
	decodeLine func(raw []byte, complete bool) // complete: raw ends with its line's LF
}

func newBlockReader(r io.Reader) blockReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	return blockReader{r: br}
}

func (d *blockReader) Read(p []byte) (int, error) {
	for d.pos >= len(d.line) {
		if d.done {
			return 0, io.EOF
		}
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
	}
	n := copy(p, d.line[d.pos:])
	d.pos += n
	return n, nil
}

func (d *blockReader) fill() {
	raw, err := d.r.ReadSlice('\n')
	if err != nil && err != bufio.ErrBufferFull {
		d.err = err
		if len(raw) == 0 {
			return
		}
	}
	d.line, d.pos = d.line[:0], 0
	d.decodeLine(raw, err == nil)
}

// uuReader decodes the first uuencoded block ("begin mode name" ... "end") of its input. Lines before the
// begin line are skipped; without one, the whole input is taken as encoded lines. Line lengths are taken from
// each line's length character, as uudecode does; a line shorter than it says is padded with zero bits.
type uuReader struct{ blockReader }

func newUUReader(r io.Reader) *uuReader {
	d := &uuReader{newBlockReader(r)}
	d.decodeLine = d.decode
	return d
}

func (d *uuReader) decode(raw []byte, _ bool) {
	l := bytes.TrimRight(raw, " \t\r\n")
	if !d.begun {
		if _, ok := uuBegin(l); ok {
			d.begun = true
			return
		}
		if len(l) == 0 || !uuDataLine(l) {
			return
		}
		d.begun = true // no begin line: a bare x-uuencode body
	}
	if bytes.Equal(l, []byte("end")) {
		d.done = true
		return
	}
	d.line = uuDecodeLine(d.line, l)
}

// uuDecodeLine appends the bytes of one uuencoded line to dst.
func uuDecodeLine(dst, l []byte) []byte {
	if len(l) == 0 {
		return dst
	}
	n := int(uuValue(l[0]))
	data := l[1:]
	for i := 0; n > 0; i += 4 {
		var q [4]byte
		for j := 0; j < 4; j++ {
			if i+j < len(data) {
				q[j] = uuValue(data[i+j])
			}
		}
		b := [3]byte{q[0]<<2 | q[1]>>4, q[1]<<4 | q[2]>>2, q[2]<<6 | q[3]}
		k := min(n, 3)
		dst = append(dst, b[:k]...)
		n -= k
	}
	return dst
}

// uuDataLine reports whether l (without its line ending) looks like a uuencoded data line: a length character
// and about as many characters as that length needs.
func uuDataLine(l []byte) bool {
	if len(l) == 0 || l[0] < ' ' || l[0] > '`' {
		return false
	}
	for _, c := range l {
		if c < ' ' || c > '`' {
			return false
		}
	}
	n := int(uuValue(l[0]))
	want := (n + 2) / 3 * 4
	return len(l)-1 >= want-1 && len(l)-1 <= want+2
}

// uuBegin parses a uuencode begin line, "begin" SP octal-mode SP name, and returns the name.
func uuBegin(l []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(l, []byte("begin "))
	if !ok {
		return "", false
	}
	mode, name, ok := bytes.Cut(bytes.TrimLeft(rest, " "), []byte(" "))
	if !ok || len(mode) < 3 || len(mode) > 4 {
		return "", false
	}
	for _, c := range mode {
		if c < '0' || c > '7' {
			return "", false
		}
	}
	n := string(bytes.TrimSpace(name))
	return n, n != ""
}

// yEnc (a Usenet encoding some mail clients also decode): "=ybegin ... name=file" ... "=yend". Every byte is
// the value plus 42; "=" escapes a byte that is the value plus 106.

// yBegin parses a yEnc begin line and returns the file name (the rest of the line after "name=").
func yBegin(l []byte) (string, bool) {
	if !bytes.HasPrefix(l, []byte("=ybegin ")) {
		return "", false
	}
	i := bytes.Index(l, []byte(" name="))
	if i < 0 {
		return "", false
	}
	n := string(bytes.TrimSpace(l[i+len(" name="):]))
	return n, n != ""
}

// yencReader decodes the first yEnc block of its input.
type yencReader struct{ blockReader }

func newYEncReader(r io.Reader) *yencReader {
	d := &yencReader{newBlockReader(r)}
	d.decodeLine = d.decode
	return d
}

func (d *yencReader) decode(raw []byte, _ bool) {
	l := bytes.TrimRight(raw, "\r\n")
	switch {
	case !d.begun:
		_, d.begun = yBegin(l)
		return
	case bytes.HasPrefix(l, []byte("=ypart ")):
		return
	case bytes.HasPrefix(l, []byte("=yend")):
		d.done = true
		return
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c == '=' && i+1 < len(l) {
			i++
			d.line = append(d.line, l[i]-64-42)
			continue
		}
		d.line = append(d.line, c-42)
	}
}
