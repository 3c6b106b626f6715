package pluginhost

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// diffPatterns mixes patterns the fast scan takes with ones it must leave to the whole-text scan, and the
// constructs where windows could go wrong: word boundaries, line anchors, case folding to multi-byte runes,
// alternations, adjacent matches, empty matches and invalid UTF-8.
var diffPatterns = []string{
	`swordfish`,
	`(?i)swordfish`,
	`(?i)password`,
	`(?i)sk`,
	`(?i)k`,
	`\bpass\b`,
	`\b(?:\d[ -]?){12,18}\d\b`,
	`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b`,
	`[A-Z]{2}\d{2}`,
	`(?m)^abc$`,
	`(?m)^ab`,
	`\Aab`,
	`ab\z`,
	`a|b|ab`,
	`(?:ab|cd)ef`,
	`(?:foo|)bar`,
	`\B\d\d\B`,
	`K[öo]ln`,
	`é{1,3}`,
	`\x{FFFD}a`,
	`(?s)a.b`,
	`a{2,4}`,
	`aa`,
	`\d+`,
	`x*`,
	`[^a-z]{3}`,
	`.{2}x`,
	`(?i)ǆ`,
	`ab(?:c|\b)`,
	`[Pp]assword`,         // a literal after the first byte
	`\d{2}-abc-\d{2}\b`,   // a literal in the middle
	`(?i:s)wordfish\d{2}`, // a literal after a set with a multi-byte rune (ſ)
}

var diffTokens = []string{"a", "b", "ab", "abc", "aa", "aaaa", "x", "cd", "ef", "foo", "bar", "pass", "password",
	"PassWord", "swordfish", "SWORDFISH", "sk", "SK", "ſk", "K", "\u212a", "k", "Köln", "Koln", "é", "éé", "ǅ", "ǆ",
	"4111 1111 1111 1111", "4111-1111-1111-1111", "1234", "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432",
	"\xff", "\xc3", "\xe2\x82", "\x80", " ", " ", "\n", "\r\n", "-", "_", "9", "12", "\ufffd"}

func diffText(r *rand.Rand, n int) []byte {
	var b []byte
	for len(b) < n {
		b = append(b, diffTokens[r.Intn(len(diffTokens))]...)
	}
	return b
}

// reference is part_match by definition: FindAllIndex per pattern, merged by start then pattern, cut at limit.
func reference(patterns []string, data []byte, limit int) []match {
	var out []match
	for i, p := range patterns {
		for _, loc := range regexp.MustCompile(p).FindAllIndex(data, -1) {
			out = append(out, match{pattern: i, start: loc[0], end: loc[1]})
		}
	}
	slices.SortStableFunc(out, func(a, b match) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return a.pattern - b.pattern
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func checkSearch(t *testing.T, patterns []string, data []byte, limit int) {
	t.Helper()
	ps, err := compilePatternSet(strings.Join(patterns, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ps.search(context.Background(), data, limit)
	if err != nil {
		t.Fatal(err)
	}
	want := reference(patterns, data, limit)
	if !slices.Equal(got, want) {
		for i := range max(len(got), len(want)) {
			var g, w match
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Fatalf("patterns %q on %q (limit %d): match %d is %+v, want %+v (%d vs %d matches)",
					patterns, data, limit, i, g, w, len(got), len(want))
			}
		}
	}
}

func TestSearchMatchesRegexp(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, p := range diffPatterns {
		for range 40 {
			checkSearch(t, []string{p}, diffText(r, r.Intn(300)), maxMatches)
		}
	}
	// Whole sets, with cuts.
	for range 100 {
		set := make([]string, 1+r.Intn(6))
		for i := range set {
			set[i] = diffPatterns[r.Intn(len(diffPatterns))]
		}
		checkSearch(t, set, diffText(r, 2000), 1+r.Intn(50))
	}
	// Dense candidates (the fast scan gives up on them and scans whole) and a big text.
	checkSearch(t, []string{`\d\d`, `1{3}`}, []byte(strings.Repeat("1", 5000)), maxMatches)
	checkSearch(t, []string{`(?i)password`, `\b(?:\d[ -]?){12,18}\d\b`}, diffText(r, 200000), maxMatches)
}

func FuzzSearch(f *testing.F) {
	f.Add([]byte("my password is 4111 1111 1111 1111, PASSWORD"), uint8(2))
	f.Add([]byte("ſk K \xff\xc3 abc\nabc"), uint8(3))
	f.Add([]byte("aaab abab abcef cdef foobar bar"), uint8(13))
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		p := diffPatterns[int(which)%len(diffPatterns)]
		checkSearch(t, []string{p, `(?i)sk`, `\d\d`}, data, maxMatches)
	})
}

func TestFastPathChosen(t *testing.T) {
	for p, fast := range map[string]bool{
		`swordfish`:                true,
		`(?i)password`:             true,
		`\b(?:\d[ -]?){12,18}\d\b`: true,
		`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b`: true,
		`K[öo]ln`:   true,
		`(?i)k`:     true,  // K, k, or the lead byte of U+212A
		`\d+`:       false, // unbounded
		`x*`:        false, // matches empty
		`.{2}x`:     false, // no fixed first byte
		`[^a-z]{3}`: false, // may start on a continuation byte
		`\x{FFFD}a`: false, // an invalid byte may start it
	} {
		pt, err := compilePattern(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		if pt.fast != fast {
			t.Errorf("%s: fast = %v, want %v", p, pt.fast, fast)
		}
	}
}

func TestSearchStopsWhenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Sparse candidates that pass the prefix filter but never match: many regions for the fast scan.
	data := []byte(strings.Repeat("a1 a1 a1 a1 a1 a1 zz"+strings.Repeat(".", 60), 20000))
	for _, p := range []string{`\d+x`, `a1 a1 a1 a1 a1 a1x`} { // whole-text scan, fast scan
		ps, err := compilePatternSet(p)
		if err != nil {
			t.Fatal(err)
		}
		fast := p != `\d+x`
		if ps.patterns[0].fast != fast || fast && len(ps.candidates(data)[0]) == 0 {
			t.Fatalf("%s: fast = %v", p, ps.patterns[0].fast)
		}
		if _, err := ps.search(ctx, data, maxMatches); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: search on a canceled context: %v", p, err)
		}
	}
}

func TestPatternSetErrors(t *testing.T) {
	if _, err := compilePatternSet("\n\n"); err == nil {
		t.Error("empty set compiled")
	}
	if _, err := compilePatternSet("ok\n" + strings.Repeat("(", 300)); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad pattern: %v", err)
	}
	var c patternCache
	a, _ := c.compile("x\ny")
	b, _ := c.compile("x\ny")
	if a == nil || a != b {
		t.Error("the cache compiled the same text twice")
	}
}

// randPattern builds a random pattern from pieces that the fast scan takes (literals, classes, case folding,
// bounded repetitions, alternations, word boundaries) and some it must leave to the whole-text scan.
func randPattern(r *rand.Rand) string {
	pieces := []string{"a", "b", "ab", "K", "é", "ö", "-", " ", `\d`, `\d{2}`, `[a-c]`, `[A-Z]`, `[Kk]`, `(?i:k)`,
		`(?i:sk)`, `x`, "pass", "word", `\b`, `(?:ab|cd)`, `1{2,3}`, `[ -]?`, `\x{FFFD}`, `.`, `(?s:.)`, `\n`,
		`(?m:^)`, `(?m:$)`, "a?", `\d+`}
	var b strings.Builder
	for range 1 + r.Intn(6) {
		b.WriteString(pieces[r.Intn(len(pieces))])
	}
	if r.Intn(8) == 0 {
		return "(?i)" + b.String()
	}
	return b.String()
}

// TestSearchRandomSets compares search and windowed search with the reference on random pattern sets (up to
// twice as many patterns as the shared automaton holds, so that its prefixes get short and some patterns are left
// to the whole-text scan) over random text with multi-byte and invalid UTF-8.
func TestSearchRandomSets(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	rounds := 400
	if testing.Short() {
		rounds = 50
	}
	for round := range rounds {
		set := make([]string, 1+r.Intn(2*maxShared))
		for i := range set {
			if r.Intn(4) == 0 {
				set[i] = diffPatterns[r.Intn(len(diffPatterns))]
			} else {
				set[i] = randPattern(r)
			}
		}
		data := diffText(r, r.Intn(4000))
		limit := maxMatches
		if round%4 == 0 {
			limit = 1 + r.Intn(30)
		}
		checkSearch(t, set, data, limit)

		// Windows: exact as long as no pattern can match across more than the overlap.
		ps, err := compilePatternSet(strings.Join(set, "\n"))
		if err != nil {
			t.Fatal(err)
		}
		const overlap = 64
		if slices.ContainsFunc(ps.patterns, func(pt *pattern) bool {
			tree, err := syntax.Parse(pt.re.String(), syntax.Perl)
			n, bounded := maxMatchLen(tree)
			return err != nil || !bounded || n > overlap
		}) {
			continue
		}
		sc := ps.newScan(limit)
		buf := make([]byte, overlap+utf8.UTFMax+1+r.Intn(300))
		ctx := context.Background()
		if code := (&Input{}).walk(ctx, &content{known: true, size: len(data)}, bytes.NewReader(data), buf,
			windowScan(ctx, ps, sc, overlap)); code != 0 {
			t.Fatal(code)
		}
		if got, want := sc.result(), reference(set, data, limit); !slices.Equal(got, want) {
			t.Fatalf("patterns %q, windows of %d bytes, limit %d, on %q:\ngot  %v\nwant %v", set, len(buf), limit,
				data, got, want)
		}
	}
}
