package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// AnyPrev, passed as the previous hash to Verify or VerifyFiles, accepts whatever the first record names as its
// predecessor. Use it to check a part of a chain whose beginning is gone (older files deleted by retention);
// everything from the first record on is still checked.
const AnyPrev = "any"

// Problem says how a chain is broken.
type Problem string

const (
	// ProblemIncomplete: the last line has no newline; a write was interrupted or the file was cut.
	ProblemIncomplete Problem = "incomplete"
	// ProblemMalformed: the line is not a record (bad JSON, wrong layout, too long, unknown version).
	ProblemMalformed Problem = "malformed"
	// ProblemEdited: the record's hash does not match its contents; it was changed after it was written.
	ProblemEdited Problem = "hash mismatch"
	// ProblemMissing: the sequence number jumps forward; records before this one were deleted.
	ProblemMissing Problem = "missing records"
	// ProblemReordered: the sequence number goes back; records were moved or duplicated.
	ProblemReordered Problem = "reordered"
	// ProblemLink: prev is not the previous record's hash although seq follows on; a record was replaced or
	// inserted, or the chain does not continue from the given hash.
	ProblemLink Problem = "prev mismatch"
	// ProblemAnchor: a hash kept outside the log (an anchor) is not in the chain: records were cut off its end,
	// or the anchor belongs to another log.
	ProblemAnchor Problem = "anchor missing"
	// ProblemTruncated: the chain ends before the chain head kept outside the log (Options.HeadPath): records
	// were cut off its end, or a file was truncated, replaced or deleted.
	ProblemTruncated Problem = "truncated"
	// ProblemStart: the first record is not the start of a chain (seq 1 after 64 zeros); older records are not
	// in the files checked.
	ProblemStart Problem = "not the chain's start"
)

// ChainError names the first broken record and what is wrong with it.
type ChainError struct {
	File    string // as given to VerifyFiles; "" for Verify
	Line    int    // 1-based; 0 for the end of the chain
	Seq     uint64 // the record's seq as written, 0 if unreadable
	Problem Problem
	Detail  string
}

func (e *ChainError) Error() string {
	where := fmt.Sprintf("line %d", e.Line)
	if e.Line == 0 {
		where = "end of chain"
	}
	if e.File != "" {
		where = e.File + ":" + strings.TrimPrefix(where, "line ")
	}
	if e.Seq != 0 {
		where += fmt.Sprintf(" (seq %d)", e.Seq)
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Problem, e.Detail)
}

// Summary describes a verified chain.
type Summary struct {
	Files    int
	Records  int
	FirstSeq uint64 // 0 when there are no records
	LastSeq  uint64
	// FirstPrev is what the first record names as its predecessor: 64 zeros at the start of a chain.
	FirstPrev string
	// LastHash is the hash of the last record: keep it, and a later Verify from it (or an external copy) shows
	// that nothing before it was rewritten.
	LastHash string
	// Recoveries lists the recovery records met: the writer's notes of interrupted writes it cleaned up.
	Recoveries []Recovered
	// Truncations lists the truncation records met: losses an operator accepted (postern audit accept-truncation).
	Truncations []Accepted
	// Unfinished lists pending records that no outcome record completes: Postern stopped between writing the
	// decision and learning the reply, so the message may or may not have been delivered. At most maxUnfinished
	// pending records are tracked at once; pending records beyond that are not checked.
	Unfinished []uint64
}

// maxUnfinished bounds Summary.Unfinished (and the pending records Verify keeps in mind).
const maxUnfinished = 10000

// Accepted locates a truncation record.
type Accepted struct {
	File       string // as given to VerifyFiles; "" for Verify
	Line       int
	Seq        uint64
	Truncation Truncation
}

// Recovered locates a recovery record.
type Recovered struct {
	File     string // as given to VerifyFiles; "" for Verify
	Line     int
	Seq      uint64
	Recovery Recovery
}

// Verify checks the records read from r as a chain following prevHash: "" (or 64 zeros) for the start of a
// chain, a record's hash to continue after it, or AnyPrev. It returns the hash of the last good record (with no
// good record: the hash the chain was to follow, "" for AnyPrev) and the number of good records; the error, a
// *ChainError when the chain is broken, names the first bad record.
func Verify(r io.Reader, prevHash string) (lastHash string, n int, err error) {
	c, err := newChecker(prevHash)
	if err != nil {
		return "", 0, err
	}
	err = c.check("", r)
	if c.anyPrev && c.sum.Records == 0 {
		return "", 0, err
	}
	return c.prev, c.sum.Records, err
}

// VerifyFiles checks the files, in the order given, as one chain following prevHash (see Verify). ChainFiles
// lists a log's files in chain order.
//
// Each anchor is a record hash kept outside the log (the writer logs the chain head at rotation and close; Summary
// has LastHash) and must be found in the chain. A hash chain by itself cannot show that its last records were
// cut off; an anchor can.
func VerifyFiles(paths []string, prevHash string, anchors ...string) (Summary, error) {
	c, err := newChecker(prevHash)
	if err != nil {
		return Summary{}, err
	}
	for _, a := range anchors {
		if len(a) != hexLen || !isHex([]byte(a)) {
			return Summary{}, fmt.Errorf("anchor %q is not 64 lower-case hex digits", a)
		}
		c.anchors[a] = false
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return c.summary(), err
		}
		err = c.check(p, f)
		f.Close()
		if err != nil {
			return c.summary(), err
		}
		c.sum.Files++
	}
	for _, a := range anchors {
		if !c.anchors[a] {
			last := ""
			if len(paths) > 0 {
				last = paths[len(paths)-1]
			}
			return c.summary(), &ChainError{File: last, Seq: c.seq, Problem: ProblemAnchor, Detail: fmt.Sprintf(
				"no record has the anchor hash %s: records were removed from the end of the chain (it ends at seq %d), "+
					"or the anchor is from another log", short(a), c.seq)}
		}
	}
	return c.summary(), nil
}

type checker struct {
	prev    string // hash of the last good record
	seq     uint64 // its seq; 0 before the first record
	anyPrev bool
	anchors map[string]bool // wanted hash → found
	pending map[uint64]bool // pending records not completed yet
	sum     Summary
	// each, if set, is called with every good record; its error stops check and is returned unchanged.
	each func(seq uint64, line []byte) error
}

func newChecker(prevHash string) (*checker, error) {
	c := &checker{prev: prevHash, anchors: map[string]bool{}, pending: map[uint64]bool{}}
	switch {
	case prevHash == "":
		c.prev = genesis
	case prevHash == AnyPrev:
		c.anyPrev = true
	case len(prevHash) != hexLen || !isHex([]byte(prevHash)):
		return nil, fmt.Errorf("previous hash %q is not 64 lower-case hex digits (or %q)", prevHash, AnyPrev)
	}
	return c, nil
}

func (c *checker) summary() Summary {
	s := c.sum
	s.Unfinished = slices.Sorted(maps.Keys(c.pending))
	s.LastSeq, s.LastHash = c.seq, c.prev
	if s.Records == 0 {
		s.LastHash = ""
	}
	return s
}

func (c *checker) check(file string, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for lineNo := 1; ; lineNo++ {
		fail := func(seq uint64, p Problem, format string, args ...any) error {
			return &ChainError{File: file, Line: lineNo, Seq: seq, Problem: p, Detail: fmt.Sprintf(format, args...)}
		}
		var err error
		line, err = readLine(br, line[:0])
		if err == io.EOF && len(line) == 0 {
			return nil
		}
		switch {
		case errors.Is(err, errLineTooLong):
			return fail(0, ProblemMalformed, "line longer than %d bytes", maxLine)
		case err == io.EOF:
			return fail(0, ProblemIncomplete, "the last line (%d bytes) has no newline: a write was interrupted or the file was cut", len(line))
		case err != nil:
			return fmt.Errorf("%s: reading line %d: %w", nameOr(file), lineNo, err)
		}
		line = line[:len(line)-1]
		h, err := parseLine(line)
		if err != nil {
			return fail(0, ProblemMalformed, "%v", err)
		}
		if h.calc != h.hash {
			return fail(h.seq, ProblemEdited, "the record was changed after it was written (hash %s, contents hash to %s)", short(h.hash), short(h.calc))
		}
		if le := c.link(h); le != nil {
			if le.p == ProblemMissing {
				// A gap followed by the missing record is a swap, not a deletion: look one line ahead to say so.
				if next, err := readLine(br, nil); err == nil {
					if nh, err := parseLine(next[:len(next)-1]); err == nil && nh.seq > c.seq && nh.seq < h.seq {
						le = &linkError{ProblemReordered, fmt.Sprintf("seq %d comes before seq %d: records swapped or moved", h.seq, nh.seq)}
					}
				}
			}
			return fail(h.seq, le.p, "%s", le.detail)
		}
		if _, ok := c.anchors[h.hash]; ok {
			c.anchors[h.hash] = true
		}
		if h.event == EventRecovery {
			var rec Record
			if err := json.Unmarshal(line, &rec); err != nil || rec.Recovery == nil {
				return fail(h.seq, ProblemMalformed, "a recovery record without its recovery member")
			}
			c.sum.Recoveries = append(c.sum.Recoveries, Recovered{File: file, Line: lineNo, Seq: h.seq, Recovery: *rec.Recovery})
		}
		switch h.event {
		case EventPending:
			if len(c.pending) < maxUnfinished {
				c.pending[h.seq] = true
			}
		case EventOutcome:
			var rec Record
			if err := json.Unmarshal(line, &rec); err != nil || rec.Pending == 0 || rec.Pending >= h.seq {
				return fail(h.seq, ProblemMalformed, "an outcome record without the seq of an earlier pending record")
			}
			delete(c.pending, rec.Pending)
		}
		if h.event == EventTruncation {
			var rec Record
			if err := json.Unmarshal(line, &rec); err != nil || rec.Truncation == nil {
				return fail(h.seq, ProblemMalformed, "a truncation record without its truncation member")
			}
			c.sum.Truncations = append(c.sum.Truncations, Accepted{File: file, Line: lineNo, Seq: h.seq, Truncation: *rec.Truncation})
		}
		if c.sum.Records == 0 {
			c.sum.FirstSeq, c.sum.FirstPrev = h.seq, h.prev
		}
		c.sum.Records++
		c.prev, c.seq = h.hash, h.seq
		if c.each != nil {
			if err := c.each(h.seq, line); err != nil {
				return err
			}
		}
	}
}

type linkError struct {
	p      Problem
	detail string
}

// link checks that h follows the last good record.
func (c *checker) link(h header) *linkError {
	if c.seq == 0 { // first record checked
		switch {
		case c.anyPrev:
			return nil
		case c.prev == genesis && (h.seq != 1 || h.prev != genesis):
			return &linkError{ProblemStart, fmt.Sprintf("the chain starts before this record (its prev is %s): "+
				"check the older files too, or start from that hash (-prev %s, or -prev any)", short(h.prev), h.prev)}
		case h.prev != c.prev:
			return &linkError{ProblemLink, fmt.Sprintf("the record does not follow the given hash %s (its prev is %s)", short(c.prev), short(h.prev))}
		}
		return nil
	}
	want := c.seq + 1
	switch {
	case h.seq > want && h.prev != c.prev:
		n := h.seq - want
		return &linkError{ProblemMissing, fmt.Sprintf("seq %d follows seq %d: %d record(s) missing here (deleted, or moved elsewhere)", h.seq, c.seq, n)}
	case h.seq < want:
		return &linkError{ProblemReordered, fmt.Sprintf("seq %d comes after seq %d: records moved or duplicated", h.seq, c.seq)}
	case h.prev != c.prev:
		return &linkError{ProblemLink, fmt.Sprintf("prev %s is not the hash of the record before it (%s): a record was replaced or inserted", short(h.prev), short(c.prev))}
	case h.seq != want:
		// The links hold but the numbering does not: only a writer bug or a forged chain does this.
		return &linkError{ProblemMissing, fmt.Sprintf("seq %d follows seq %d although prev matches", h.seq, c.seq)}
	}
	return nil
}

var errLineTooLong = errors.New("line too long")

// readLine appends the next line including its newline to buf. At the end of input it returns io.EOF with
// whatever bytes came after the last newline.
func readLine(br *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > maxLine {
			return buf, errLineTooLong
		}
		buf = append(buf, chunk...)
		if err != bufio.ErrBufferFull {
			return buf, err
		}
	}
}

func nameOr(file string) string {
	if file == "" {
		return "audit log"
	}
	return file
}

// short abbreviates a hash for messages: enough to tell hashes apart, short enough to read.
func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

// lastLines finds the last complete line of the file content that ends at size: tail is what follows the last
// newline (an interrupted write), last the line before it (without newline) and lastOff where it starts. When no
// complete line exists last is nil. It reads at most 2*maxLine bytes.
func lastLines(f io.ReaderAt, size int64) (last []byte, lastOff int64, tail []byte, err error) {
	n := min(size, 2*maxLine+1)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil && err != io.EOF {
		return nil, 0, nil, err
	}
	base := size - n
	cut := bytes.LastIndexByte(buf, '\n')
	if cut < 0 {
		if base > 0 {
			return nil, 0, nil, fmt.Errorf("no newline in the last %d bytes", n)
		}
		return nil, 0, buf, nil
	}
	tail = buf[cut+1:]
	if len(tail) > maxLine {
		return nil, 0, nil, fmt.Errorf("last line longer than %d bytes", maxLine)
	}
	start := bytes.LastIndexByte(buf[:cut], '\n') + 1
	if start == 0 && base > 0 {
		return nil, 0, nil, fmt.Errorf("line at the end longer than %d bytes", maxLine)
	}
	return buf[start:cut], base + int64(start), tail, nil
}
