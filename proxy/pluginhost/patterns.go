package pluginhost

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/bits"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Bounds of patterns_compile. Past them the call is aborted (a resource limit, ABI §3.1).
const (
	maxPatternText     = 256 << 10 // bytes of one pattern set's text
	maxPatternsPerSet  = 256       // patterns in one set
	maxSetsPerInstance = 64        // distinct sets one instance may hold
	maxCachedSets      = 1024      // sets the host keeps compiled; past it new sets are compiled but not kept
)

// Fast-path bounds: see pattern.
const (
	maxFastLen    = 4096 // longest match (bytes) a pattern may have to be scanned by windows
	maxPrefix     = 16   // bytes of prefix filter
	maxFastPerSet = 64   // patterns of one set taken by the fast scan (candidate lists: no other limit)
	maxShared     = 32   // of them, without a literal: the shared automaton's (two bits of a uint64 each)
)

// patternCache is the host-wide cache of compiled pattern sets, keyed by their text (ABI §3.4: one compilation
// per distinct configuration, not per instance).
type patternCache struct {
	mu   sync.Mutex
	sets map[string]*patternSet
}

func (c *patternCache) compile(text string) (*patternSet, error) {
	c.mu.Lock()
	ps := c.sets[text]
	c.mu.Unlock()
	if ps != nil {
		return ps, nil
	}
	ps, err := compilePatternSet(text)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.sets[text]; old != nil {
		return old, nil // compiled concurrently: keep one, so that handles compare equal
	}
	if c.sets == nil {
		c.sets = make(map[string]*patternSet)
	}
	if len(c.sets) < maxCachedSets {
		c.sets[text] = ps
	}
	return ps, nil
}

// patternSet is a compiled patterns_compile text.
type patternSet struct {
	patterns []*pattern
	fast     []*pattern
	// The shared pass finds the candidates of the fast patterns without a literal (see pattern.lit) with one
	// shift-and automaton: every such pattern has pt.auto consecutive bits of the state, one per prefix set, and
	// one more that is always clear (see sharedCandidates). Bit b of step[c] is set when byte c is in the set of
	// bit b; starts holds each pattern's first bit, ends its last, endOf[e] the index in fast of the pattern
	// that ends at bit e. Bit b of the state is set after a byte when the prefix sets up to b's passed on the
	// bytes up to it: a candidate is an end bit set. Unlike a first-byte table, which passes about one byte of
	// text in eight (capitals, digits, a common letter), this costs no branch per position that merely begins
	// like a match.
	step   [256]uint64
	starts uint64
	ends   uint64
	endOf  [64]uint8
}

// pattern is one regular expression with what its fast scan needs.
//
// The fast scan keeps Go regexp's exact leftmost-first semantics while running the regexp only near candidate
// positions. It applies to patterns that cannot match the empty string, whose matches are at most maxFastLen bytes
// long, and whose first byte cannot be a UTF-8 continuation byte. A match can start only where the prefix filter
// (the bytes every match starts with, as byte sets) passes. Candidates closer than maxLen are merged into regions;
// each region is searched with ctx, `(?s:.)(?:P)`, over a window starting one rune before the region, so that
// \b, ^ and the like see the real previous character, and ending a rune after the longest possible match, so
// that they see the real next one. Every other pattern is scanned whole.
type pattern struct {
	index  int
	re     *regexp.Regexp // the pattern as written
	ctx    *regexp.Regexp // (?s:.)(?:P): P preceded by exactly one rune of context
	fast   bool
	maxLen int
	prefix [maxPrefix]byteSet // prefix[j] holds the bytes allowed at offset j from a match's start
	nPre   int
	// lit is the longest run of the prefix whose sets hold one byte each, at offset litOff, when it is at least
	// minLit bytes long: bytes.Index (vectorised) then finds the candidates, much faster than any byte loop.
	lit    []byte
	litOff int
	auto   int // without a literal: how many prefix sets the shared automaton checks
}

// minLit is the shortest literal worth a pass of its own: one byte (a single IndexByte per occurrence) may be
// common enough for the calls to cost more than the shared pass.
const minLit = 2

// byteSet is a set of bytes, a bit each.
type byteSet [4]uint64

func (s *byteSet) has(b byte) bool { return s[b>>6]&(1<<(b&63)) != 0 }

// only returns the byte of a one-byte set.
func (s *byteSet) only() (byte, bool) {
	n := bits.OnesCount64(s[0]) + bits.OnesCount64(s[1]) + bits.OnesCount64(s[2]) + bits.OnesCount64(s[3])
	if n != 1 {
		return 0, false
	}
	for w, x := range s {
		if x != 0 {
			return byte(w<<6 | bits.TrailingZeros64(x)), true
		}
	}
	return 0, false
}

func compilePatternSet(text string) (*patternSet, error) {
	ps := &patternSet{}
	shared := 0
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		if len(ps.patterns) == maxPatternsPerSet {
			return nil, fmt.Errorf("more than %d patterns", maxPatternsPerSet)
		}
		pt, err := compilePattern(line, len(ps.patterns))
		if err != nil {
			return nil, fmt.Errorf("line %d: pattern %q: %w", i+1, truncate(line, 200), err)
		}
		ps.patterns = append(ps.patterns, pt)
		if pt.fast && len(ps.fast) < maxFastPerSet && (pt.lit != nil || shared < maxShared) {
			if pt.lit == nil {
				shared++
			}
			ps.fast = append(ps.fast, pt)
		} else {
			pt.fast = false
		}
	}
	if len(ps.patterns) == 0 {
		return nil, fmt.Errorf("no pattern (the text is empty)")
	}
	ps.buildAutomaton()
	return ps, nil
}

// buildAutomaton lays out the shared automaton (see patternSet). Each pattern gets its first n prefix sets, n as
// large as fits in 64 bits; prefixAt checks the rest of a candidate's.
func (ps *patternSet) buildAutomaton() {
	n := maxPrefix
	for ; n > 1; n-- {
		total := 0
		for _, pt := range ps.fast {
			if pt.lit == nil {
				total += min(pt.nPre, n) + 1
			}
		}
		if total <= 64 {
			break
		}
	}
	bit := 0
	for k, pt := range ps.fast {
		if pt.lit != nil {
			continue
		}
		pt.auto = min(pt.nPre, n)
		ps.starts |= 1 << bit
		for j := range pt.auto {
			for c := range 256 {
				if pt.prefix[j].has(byte(c)) {
					ps.step[c] |= 1 << (bit + j)
				}
			}
		}
		end := bit + pt.auto - 1
		ps.ends |= 1 << end
		ps.endOf[end] = uint8(k)
		bit = end + 2 // end+1 stays clear
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func compilePattern(expr string, index int) (*pattern, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	// expr compiled alone, so its parentheses balance and wrapping it cannot change its meaning; flags it sets
	// end at the closing parenthesis, as they would at the end of the text.
	ctxRe, err := regexp.Compile(`(?s:.)(?:` + expr + `)`)
	if err != nil {
		return nil, err
	}
	pt := &pattern{index: index, re: re, ctx: ctxRe}
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, err
	}
	maxLen, bounded := maxMatchLen(tree)
	if !bounded || maxLen > maxFastLen || minMatchLen(tree) == 0 {
		return pt, nil
	}
	prog, err := syntax.Compile(tree.Simplify())
	if err != nil {
		return nil, err
	}
	pt.nPre = prefixSets(prog, &pt.prefix)
	if pt.nPre == 0 {
		return pt, nil
	}
	// A candidate must be where the scan of the whole text would try a match: never on a continuation byte.
	for b := 0x80; b < 0xC0; b++ {
		if pt.prefix[0].has(byte(b)) {
			return pt, nil
		}
	}
	pt.fast, pt.maxLen = true, maxLen
	for j := 0; j < pt.nPre; {
		k := j
		var run []byte
		for ; k < pt.nPre; k++ {
			b, ok := pt.prefix[k].only()
			if !ok {
				break
			}
			run = append(run, b)
		}
		if len(run) >= max(minLit, len(pt.lit)+1) {
			pt.lit, pt.litOff = run, j
		}
		j = k + 1
	}
	return pt, nil
}

// maxMatchLen returns the most bytes a match of re can span, or false when it is unbounded.
func maxMatchLen(re *syntax.Regexp) (int, bool) {
	const inf = 1 << 30
	switch re.Op {
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			n += maxRuneLen(r, re.Flags&syntax.FoldCase != 0)
		}
		return n, true
	case syntax.OpCharClass:
		if len(re.Rune) == 0 {
			return 0, true
		}
		return runeLen(re.Rune[len(re.Rune)-1]), true
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax, true
	case syntax.OpCapture, syntax.OpQuest:
		return maxMatchLen(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		return 0, false
	case syntax.OpRepeat:
		if re.Max < 0 {
			return 0, false
		}
		n, ok := maxMatchLen(re.Sub[0])
		if !ok || n*re.Max > inf {
			return 0, false
		}
		return n * re.Max, true
	case syntax.OpConcat:
		sum := 0
		for _, s := range re.Sub {
			n, ok := maxMatchLen(s)
			if !ok || sum+n > inf {
				return 0, false
			}
			sum += n
		}
		return sum, true
	case syntax.OpAlternate:
		m := 0
		for _, s := range re.Sub {
			n, ok := maxMatchLen(s)
			if !ok {
				return 0, false
			}
			m = max(m, n)
		}
		return m, true
	}
	return 0, true // empty-width operators
}

// minMatchLen returns the fewest bytes a match of re can span.
func minMatchLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune) // every rune takes at least one byte
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpNoMatch:
		return 1 << 30
	case syntax.OpCapture, syntax.OpPlus:
		return minMatchLen(re.Sub[0])
	case syntax.OpRepeat:
		return min(re.Min*minMatchLen(re.Sub[0]), 1<<30)
	case syntax.OpConcat:
		sum := 0
		for _, s := range re.Sub {
			sum = min(sum+minMatchLen(s), 1<<30)
		}
		return sum
	case syntax.OpAlternate:
		m := 1 << 30
		for _, s := range re.Sub {
			m = min(m, minMatchLen(s))
		}
		return m
	}
	return 0 // star, quest, empty-width
}

func runeLen(r rune) int {
	if n := utf8.RuneLen(r); n > 0 {
		return n
	}
	return 3 // a surrogate in a class range: matched as U+FFFD at most
}

func maxRuneLen(r rune, fold bool) int {
	n := runeLen(r)
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			n = max(n, runeLen(f))
		}
	}
	return n
}

// prefixSets computes, for byte offsets 0, 1, ... from a match's start, the set of bytes a match can have there,
// by walking prog with sets of states instead of text: the states reachable after j runes give the runes possible
// at rune offset j (assertions are assumed to pass, so the sets are supersets). It stops where a match could end
// (shorter matches have no byte there), after a set that holds a multi-byte rune (its lead bytes are the last
// fixed offset), or at maxPrefix. It returns the number of sets.
func prefixSets(prog *syntax.Prog, sets *[maxPrefix]byteSet) int {
	set := func(j, b int) { sets[j][b>>6] |= 1 << (b & 63) }
	seen := make([]bool, len(prog.Inst))
	var closure func(pc uint32, out []uint32) []uint32
	closure = func(pc uint32, out []uint32) []uint32 {
		if seen[pc] {
			return out
		}
		seen[pc] = true
		inst := &prog.Inst[pc]
		switch inst.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			out = closure(inst.Out, out)
			return closure(inst.Arg, out)
		case syntax.InstCapture, syntax.InstNop, syntax.InstEmptyWidth:
			return closure(inst.Out, out)
		case syntax.InstFail:
			return out
		}
		return append(out, pc) // rune instructions and InstMatch
	}
	states := closure(uint32(prog.Start), nil)
	for j := 0; j < maxPrefix; j++ {
		multi := false
		for _, pc := range states {
			inst := &prog.Inst[pc]
			switch inst.Op {
			case syntax.InstMatch:
				return j
			case syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
				return j // any rune: no filter from here on
			}
			ranges := inst.Rune
			if len(ranges) == 1 {
				r := ranges[0]
				ranges = []rune{r, r}
				if syntax.Flags(inst.Arg)&syntax.FoldCase != 0 {
					for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
						ranges = append(ranges, f, f)
					}
				}
			}
			for k := 0; k+1 < len(ranges); k += 2 {
				lo, hi := ranges[k], ranges[k+1]
				for r := lo; r <= min(hi, utf8.RuneSelf-1); r++ {
					set(j, int(r))
				}
				if hi < utf8.RuneSelf {
					continue
				}
				multi = true
				lo = max(lo, utf8.RuneSelf)
				if lo <= utf8.RuneError && utf8.RuneError <= hi {
					// Invalid bytes match as U+FFFD, one byte each: any byte from 0x80 up.
					for b := 0x80; b < 0x100; b++ {
						set(j, b)
					}
					continue
				}
				for b := leadByte(lo); b <= leadByte(hi); b++ {
					set(j, b)
				}
			}
		}
		if multi {
			return j + 1
		}
		clear(seen)
		var next []uint32
		for _, pc := range states {
			next = closure(prog.Inst[pc].Out, next)
		}
		states = next
	}
	return maxPrefix
}

func leadByte(r rune) int {
	var buf [utf8.UTFMax]byte
	utf8.EncodeRune(buf[:], r)
	return int(buf[0])
}

// match is one match of one pattern: [start, end) in the content.
type match struct {
	pattern    int
	start, end int
}

// cancelCheckEvery is how many regions or runes the scan handles between looks at the call's context.
const cancelCheckEvery = 1 << 12

// scan is the progress of one part_match search. The content is searched in one piece when it is in memory, or
// window by window as it streams past (see Input.match); a scan carries what each pattern's leftmost-first,
// non-overlapping iteration needs from one window to the next, so that matching per window gives what matching
// the whole content would. Offsets are in the whole content.
type scan struct {
	limit   int
	next    []int // per pattern: where its search resumes (its last match's end, or the previous window's end)
	prevEnd []int // per pattern: where its last match ended, -1 before the first (no empty match right there)
	found   []int // per pattern: matches accepted; at limit the pattern is done
	out     []match
}

func (ps *patternSet) newScan(limit int) *scan {
	n := len(ps.patterns)
	ints := make([]int, 3*n)
	sc := &scan{limit: limit, next: ints[:n:n], prevEnd: ints[n : 2*n : 2*n], found: ints[2*n:]}
	for i := range sc.prevEnd {
		sc.prevEnd[i] = -1
	}
	return sc
}

// full reports whether later windows cannot change the result: limit matches are in (later windows only find
// matches that start further on), or every pattern has its limit.
func (sc *scan) full() bool {
	if len(sc.out) >= sc.limit {
		return true
	}
	for _, n := range sc.found {
		if n < sc.limit {
			return false
		}
	}
	return true
}

// result returns the matches in ABI order, at most limit.
func (sc *scan) result() []match {
	if len(sc.out) > sc.limit {
		return sc.out[:sc.limit]
	}
	return sc.out
}

// search finds the matches of every pattern of ps in data, in ABI order (by start, then pattern), at most limit.
// It stops early, with an error, when ctx is done (the call timed out: the guest is already gone).
func (ps *patternSet) search(ctx context.Context, data []byte, limit int) ([]match, error) {
	sc := ps.newScan(limit)
	if err := ps.searchWindow(ctx, sc, data, 0, len(data)+1); err != nil {
		return nil, err
	}
	return sc.result(), nil
}

// searchWindow continues sc over data, the content's bytes [base, base+len(data)): every pattern resumes at its
// sc.next, and only matches that start before data[owned] are taken; a pattern's first match at or past owned is
// left to the next window, which resumes there. owned > len(data) means data runs to the end of the content.
//
// The caller keeps at least utf8.UTFMax bytes of the previous window in front of every resume position (so that
// \b and the like see the real previous rune) and puts owned on a rune boundary of the whole content (so that no
// search starts inside a rune that a whole-content search would have stepped over).
func (ps *patternSet) searchWindow(ctx context.Context, sc *scan, data []byte, base, owned int) error {
	first := len(sc.out)
	scanned := make([]bool, len(ps.patterns))
	w := window{data: data, base: base, owned: owned}
	if len(ps.fast) > 0 {
		cands := ps.candidates(data)
		for k, pt := range ps.fast {
			if cands[k] == nil {
				continue // too dense: scanned whole below
			}
			if err := pt.searchFast(ctx, &w, sc, cands[k]); err != nil {
				return err
			}
			scanned[pt.index] = true
		}
	}
	for _, pt := range ps.patterns {
		if scanned[pt.index] {
			continue
		}
		if err := pt.searchAll(ctx, &w, sc); err != nil {
			return err
		}
	}
	// Every match of this window starts after those of the windows before: sorting the window's own is enough.
	slices.SortStableFunc(sc.out[first:], func(a, b match) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return a.pattern - b.pattern
	})
	return nil
}

// window is the part of the content one searchWindow sees (window-relative offsets, but for base).
type window struct {
	data  []byte
	base  int // content offset of data[0]
	owned int // matches must start before data[owned]
}

// resume records where pattern i continues in the next window: where this one stopped, but not before owned.
func (w *window) resume(sc *scan, i, pos int) {
	sc.next[i] = w.base + max(pos, w.owned)
}

// candidates returns, per fast pattern, the positions in data where its prefix filter passes, in order: patterns
// with a literal by bytes.Index, the others by one shared pass. A pattern whose candidates get dense (more than
// one per 16 bytes) gets nil: windows would cost more than a plain scan.
func (ps *patternSet) candidates(data []byte) [][]int32 {
	cands := make([][]int32, len(ps.fast))
	maxCands := len(data)/16 + 64
	for k, pt := range ps.fast {
		if pt.lit != nil {
			cands[k] = pt.literalCandidates(data, maxCands)
		}
	}
	if ps.ends != 0 {
		ps.sharedCandidates(data, cands, maxCands)
	}
	return cands
}

func (pt *pattern) literalCandidates(data []byte, maxCands int) []int32 {
	cands := []int32{} // no candidate: no match, and nothing to scan
	for from := pt.litOff; from < len(data); {
		q := bytes.Index(data[from:], pt.lit)
		if q < 0 {
			break
		}
		i := from + q - pt.litOff
		from += q + 1
		if !pt.prefixAt(data, i, 0) {
			continue
		}
		if len(cands) >= maxCands {
			return nil
		}
		cands = append(cands, int32(i))
	}
	return cands
}

// sharedCandidates fills cands for the fast patterns without a literal with one pass of the shared automaton
// over data.
func (ps *patternSet) sharedCandidates(data []byte, cands [][]int32, maxCands int) {
	for k, pt := range ps.fast {
		if pt.lit == nil {
			cands[k] = []int32{} // no candidate: no match, and nothing to scan
		}
	}
	a := automatonRun{ps: ps, data: data, cands: cands, maxCands: maxCands, starts: ps.starts, ends: ps.ends}
	// The bit after each pattern's last is never set in step, so never in a state: d*2 + starts is d<<1 | starts,
	// computed by one LEA, and the chain from one byte's state to the next is two instructions. Four bytes per
	// iteration share the loop's test and branch, which a text seldom takes.
	step := &ps.step
	var d uint64
	i := 0
	for ; i+4 <= len(data) && a.ends != 0; i += 4 {
		d0 := (d*2 + a.starts) & step[data[i]]
		d1 := (d0*2 + a.starts) & step[data[i+1]]
		d2 := (d1*2 + a.starts) & step[data[i+2]]
		d3 := (d2*2 + a.starts) & step[data[i+3]]
		d = d3
		if (d0|d1|d2|d3)&a.ends != 0 {
			a.found(i, d0)
			a.found(i+1, d1)
			a.found(i+2, d2)
			a.found(i+3, d3)
		}
	}
	for ; i < len(data); i++ {
		d = (d*2 + a.starts) & step[data[i]]
		a.found(i, d)
	}
}

// automatonRun is one pass of the shared automaton.
type automatonRun struct {
	ps           *patternSet
	data         []byte
	cands        [][]int32
	maxCands     int
	starts, ends uint64 // the automaton's, but for patterns whose candidates got dense
}

// found takes the candidates whose prefix the automaton's state d passes after data[i].
func (a *automatonRun) found(i int, d uint64) {
	for m := d & a.ends; m != 0; m &= m - 1 {
		e := bits.TrailingZeros64(m)
		k := a.ps.endOf[e]
		pt := a.ps.fast[k]
		at := i + 1 - pt.auto
		if !pt.prefixAt(a.data, at, pt.auto) {
			continue
		}
		if len(a.cands[k]) >= a.maxCands {
			a.starts &^= 1 << (e + 1 - pt.auto)
			a.ends &^= 1 << e
			a.cands[k] = nil
			continue
		}
		a.cands[k] = append(a.cands[k], int32(at))
	}
}

// prefixAt reports whether the prefix filter of pt passes at data[i], checking the sets from offset j0 on.
func (pt *pattern) prefixAt(data []byte, i, j0 int) bool {
	if i+pt.nPre > len(data) {
		return false
	}
	for j := j0; j < pt.nPre; j++ {
		if !pt.prefix[j].has(data[i+j]) {
			return false
		}
	}
	return true
}

// searchFast scans the regions around cands (see pattern) from pattern pt's resume position and records at most
// its remaining limit of matches in sc.
func (pt *pattern) searchFast(ctx context.Context, w *window, sc *scan, cands []int32) error {
	data, i0 := w.data, pt.index
	pos := sc.next[i0] - w.base
	for i, regions := 0, 0; i < len(cands) && sc.found[i0] < sc.limit; regions++ {
		c := int(cands[i])
		if c < pos {
			i++
			continue
		}
		if c >= w.owned {
			break // no match can start before owned any more: the next window's
		}
		if regions%cancelCheckEvery == cancelCheckEvery-1 && ctx.Err() != nil {
			return ctx.Err()
		}
		// The region: candidates whose possible matches overlap, and any candidate inside the window's tail.
		end := c + pt.maxLen
		j := i + 1
		for j < len(cands) && int(cands[j]) <= end+utf8.UTFMax {
			end = int(cands[j]) + pt.maxLen
			j++
		}
		winEnd := min(len(data), end+utf8.UTFMax)
		var s, e int
		if c == 0 {
			// Only at the content's start: a later window holds the bytes before its resume positions.
			loc := pt.re.FindIndex(data[:winEnd])
			if loc == nil {
				i = j
				continue
			}
			s, e = loc[0], loc[1]
		} else {
			_, rw := utf8.DecodeLastRune(data[:c])
			winStart := c - rw
			loc := pt.ctx.FindIndex(data[winStart:winEnd])
			if loc == nil {
				i = j
				continue
			}
			_, rw = utf8.DecodeRune(data[winStart+loc[0]:])
			s, e = winStart+loc[0]+rw, winStart+loc[1]
		}
		if s >= w.owned {
			break
		}
		sc.out = append(sc.out, match{pattern: i0, start: w.base + s, end: w.base + e})
		sc.found[i0]++
		pos = e // matches of one pattern don't overlap; a pattern that cannot match empty moves on
	}
	w.resume(sc, i0, pos)
	return nil
}

// searchAll finds pt's matches in the window with the semantics of regexp's FindAllIndex, reading through a
// RuneReader that watches ctx, so that a slow pattern over a big part cannot outlive the call's deadline.
func (pt *pattern) searchAll(ctx context.Context, w *window, sc *scan) error {
	data, i0 := w.data, pt.index
	rr := &ctxReader{ctx: ctx}
	pos, prevEnd := sc.next[i0]-w.base, sc.prevEnd[i0]-w.base
	for sc.found[i0] < sc.limit && pos <= len(data) {
		var s, e int
		if pos == 0 {
			// Only at the content's start: a later window holds the bytes before its resume positions.
			rr.reset(data, 0)
			loc := pt.re.FindReaderIndex(rr)
			if rr.err != nil {
				return rr.err
			}
			if loc == nil {
				break
			}
			s, e = loc[0], loc[1]
		} else {
			_, rw := utf8.DecodeLastRune(data[:pos])
			rr.reset(data, pos-rw)
			loc := pt.ctx.FindReaderIndex(rr)
			if rr.err != nil {
				return rr.err
			}
			if loc == nil {
				break
			}
			_, rw2 := utf8.DecodeRune(data[pos-rw+loc[0]:])
			s, e = pos-rw+loc[0]+rw2, pos-rw+loc[1]
		}
		if s >= w.owned {
			break
		}
		accept := true
		if e == pos {
			// An empty match: never right after the previous match, and the scan moves on by one rune.
			if s == prevEnd {
				accept = false
			}
			if pos < len(data) {
				_, rw := utf8.DecodeRune(data[pos:])
				pos += rw
			} else {
				pos++
			}
		} else {
			pos = e
		}
		prevEnd = e
		if accept {
			sc.out = append(sc.out, match{pattern: i0, start: w.base + s, end: w.base + e})
			sc.found[i0]++
		}
	}
	sc.prevEnd[i0] = w.base + prevEnd
	w.resume(sc, i0, pos)
	return nil
}

// ctxReader is an io.RuneReader over a byte slice that ends the read when its context is done.
type ctxReader struct {
	ctx  context.Context
	data []byte
	i, n int
	err  error
}

func (r *ctxReader) reset(data []byte, from int) { r.data, r.i, r.err = data, from, nil }

func (r *ctxReader) ReadRune() (rune, int, error) {
	if r.i >= len(r.data) {
		return 0, 0, io.EOF
	}
	r.n++
	if r.n%cancelCheckEvery == 0 {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			return 0, 0, io.EOF
		}
	}
	c := r.data[r.i]
	if c < utf8.RuneSelf {
		r.i++
		return rune(c), 1, nil
	}
	ru, size := utf8.DecodeRune(r.data[r.i:])
	r.i += size
	return ru, size, nil
}

// appendMatches formats matches as part_match's text: "pattern start end\n" each.
func appendMatches(b []byte, ms []match) []byte {
	for _, m := range ms {
		b = strconv.AppendInt(b, int64(m.pattern), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(m.start), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(m.end), 10)
		b = append(b, '\n')
	}
	return b
}
