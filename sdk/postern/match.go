package postern

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Patterns is a compiled set of RE2 regular expressions (Go regexp syntax), held by the host. Matching runs in
// the host at native speed; a loop over the bytes in the plugin would be about ten times slower.
type Patterns struct {
	handle int32
	n      int
}

// Len returns the number of patterns in the set.
func (p *Patterns) Len() int { return p.n }

// Compile compiles a pattern set; Match reports each match with the index of its pattern in patterns. Call it in
// OnInit: the host caches sets by their text, so every instance shares one compilation. A pattern may not be
// empty or contain a newline (the ABI sends one pattern per line). A pattern the host rejects is ErrInvalid,
// and the host's log names it and the reason.
func Compile(patterns ...string) (*Patterns, error) {
	if len(patterns) == 0 {
		return nil, fmt.Errorf("postern: no patterns: %w", ErrInvalid)
	}
	for i, p := range patterns {
		// The host ignores empty lines, which would shift the index of every later pattern.
		if p == "" {
			return nil, fmt.Errorf("postern: pattern %d is empty: %w", i, ErrInvalid)
		}
		if strings.ContainsAny(p, "\n") {
			return nil, fmt.Errorf("postern: pattern %d (%q) contains a newline: %w", i, p, ErrInvalid)
		}
	}
	h := hostPatternsCompile(strings.Join(patterns, "\n"))
	if h < 0 {
		return nil, fmt.Errorf("postern: compiling %d patterns (the host log names the bad one): %w",
			len(patterns), errno(h))
	}
	return &Patterns{handle: h, n: len(patterns)}, nil
}

// Match is one match of a pattern set: content bytes [Start, End) of the part, in the mode it was searched in.
type Match struct {
	Pattern    int // index in the set given to Compile
	Start, End int
	part       int
	mode       Mode
}

// Text fetches the matched bytes from the host.
func (m Match) Text() (string, error) {
	if m.End < m.Start {
		return "", ErrInvalid
	}
	buf := make([]byte, m.End-m.Start)
	total, err := readPartAt(m.part, m.mode, m.Start, buf)
	if err != nil {
		return "", err
	}
	if total < m.End {
		return "", fmt.Errorf("postern: match [%d,%d) is past the end of part %d (%d bytes)", m.Start, m.End,
			m.part, total)
	}
	return ownString(buf), nil
}

// Match searches the content of part in mode (ModeText for text scanners) for every pattern of p: leftmost-first
// and non-overlapping per pattern, ordered by Start and then by pattern. It returns at most maxMatches; 0 means
// the host's limit (1000). The error is ErrInvalid for a bad part, mode (Decoded or Text on a multipart part) or
// pattern set, and ErrDecode when the content cannot be decoded in that mode.
func (*Message) Match(part int, mode Mode, p *Patterns, maxMatches int) ([]Match, error) {
	// The zero Patterns (n == 0) was never compiled; Compile refuses empty sets.
	if p == nil || p.n == 0 || maxMatches < 0 || maxMatches > math.MaxUint32 {
		return nil, ErrInvalid
	}
	return matchHandle(part, mode, p.handle, maxMatches)
}

func matchHandle(part int, mode Mode, handle int32, maxMatches int) ([]Match, error) {
	b, _, err := fetch(func(buf *byte, limit uint32) int32 {
		return hostPartMatch(i32(part), uint32(mode), handle, uint32(maxMatches), buf, limit)
	})
	if err != nil {
		return nil, err
	}
	return parseMatches(b, part, mode)
}

var errMatchSyntax = errors.New("postern: part_match result is malformed")

// parseMatches parses part_match's result: one "pattern SP start SP end LF" line per match.
func parseMatches(b []byte, part int, mode Mode) ([]Match, error) {
	if len(b) == 0 {
		return nil, nil
	}
	ms := make([]Match, 0, countByte(b, '\n'))
	for len(b) > 0 {
		var m Match
		var ok bool
		if m.Pattern, b, ok = number(b, ' '); !ok {
			return nil, errMatchSyntax
		}
		if m.Start, b, ok = number(b, ' '); !ok {
			return nil, errMatchSyntax
		}
		if m.End, b, ok = number(b, '\n'); !ok || m.End < m.Start {
			return nil, errMatchSyntax
		}
		m.part, m.mode = part, mode
		ms = append(ms, m)
	}
	return ms, nil
}

// number parses the decimal digits at the start of b, which must be followed by sep, and returns the rest after
// sep.
func number(b []byte, sep byte) (int, []byte, bool) {
	v, i := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if v > (math.MaxInt32-9)/10 {
			return 0, nil, false
		}
		v = v*10 + int(b[i]-'0')
	}
	if i == 0 || i >= len(b) || b[i] != sep {
		return 0, nil, false
	}
	return v, b[i+1:], true
}

func countByte(b []byte, c byte) int {
	n := 0
	for _, x := range b {
		if x == c {
			n++
		}
	}
	return n
}
