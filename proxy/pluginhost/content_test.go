package pluginhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"mime/quotedprintable"
	"regexp/syntax"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/postern/postern/proxy/message"
	"golang.org/x/text/encoding/charmap"
)

// mimePart is one leaf of a test message: its header lines and its body as it goes on the wire.
type mimePart struct {
	header string
	body   string
}

func base64Part(ctype string, content []byte) mimePart {
	enc := base64.StdEncoding.EncodeToString(content)
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	return mimePart{"Content-Type: " + ctype + "\r\nContent-Transfer-Encoding: base64\r\n", b.String()}
}

func quotedPrintablePart(ctype string, content []byte) mimePart {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write(content)
	w.Close()
	return mimePart{"Content-Type: " + ctype + "\r\nContent-Transfer-Encoding: quoted-printable\r\n", b.String()}
}

// multipartMessage is a multipart/mixed message with parts 1, 2, ... as given.
func multipartMessage(parts ...mimePart) string {
	var b strings.Builder
	b.WriteString("From: a@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n")
	for _, p := range parts {
		b.WriteString("--b\r\n" + p.header + "\r\n" + p.body + "\r\n")
	}
	b.WriteString("--b--\r\n")
	return b.String()
}

// binaryContent is n bytes of text, multi-byte runes and invalid UTF-8 (never an 'M'), with marks written over
// it at the given offsets.
func binaryContent(seed int64, n int, marks map[int]string) []byte {
	r := rand.New(rand.NewSource(seed))
	alphabet := []string{"a", "b", " ", "é", "\xff", "\xc3", "ü", "\r\n", "x", "1", "ǅ", "\u212a"}
	b := make([]byte, 0, n+8)
	for len(b) < n {
		b = append(b, alphabet[r.Intn(len(alphabet))]...)
	}
	b = b[:n]
	for off, m := range marks {
		copy(b[off:], m)
	}
	return b
}

// latin1Text is about n bytes of ISO-8859-1 text with a few words that a UTF-8 pattern finds only after
// conversion, and "swordfish" every so often.
func latin1Text(t testing.TB, n int) []byte {
	r := rand.New(rand.NewSource(3))
	words := strings.Fields("Grüß aus Köln der Bär café naïve Straße über alles and some plain words here too")
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		switch {
		case i%9000 == 4500:
			b.WriteString("swordfish")
		case i%7000 == 10:
			b.WriteString("GRÜßE")
		default:
			b.WriteString(words[r.Intn(len(words))])
		}
		if r.Intn(10) == 0 {
			b.WriteString("\r\n")
		} else {
			b.WriteByte(' ')
		}
	}
	out, err := charmap.ISO8859_1.NewEncoder().Bytes([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// contentPatterns is the pattern set of the host tests: a mark, a word that only matches text converted to UTF-8,
// and a plain word.
var contentPatterns = []string{`MARK\d{3}`, `(?i)grüße`, `swordfish`}

// formatMatches is gocontent's report of part_match.
func formatMatches(ms []match) string {
	v := strings.ReplaceAll(string(appendMatches(nil, ms)), "\n", ";")
	if len(v) > 1024 {
		sum := sha256.Sum256([]byte(v))
		v = "sha256:" + hex.EncodeToString(sum[:]) + ":" + strconv.Itoa(len(v))
	}
	return v
}

// readWant is what gocontent's "read" reports for content at off with a buffer of limit bytes.
func readWant(content []byte, off, limit int) string {
	v := strconv.Itoa(len(content))
	if off < len(content) && limit > 0 {
		v += ":" + hex.EncodeToString(content[off:min(len(content), off+limit)])
	}
	return v
}

func shaWant(content []byte) string {
	s := sha256.Sum256(content)
	return hex.EncodeToString(s[:])
}

// readAll is the whole content as io.ReadAll of the message's reader gives it: the reference.
func readAll(t testing.TB, open func(int) (io.Reader, error), part int) []byte {
	t.Helper()
	r, err := open(part)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBigPartsThroughHost reads, hashes and searches parts larger than a window through a real guest, in every
// way content is served past maxMaterialise: a stream (base64 decoded), a charset-converting stream (ISO-8859-1
// quoted-printable as text), and identity content read in place (7bit). The expected values come from the whole
// content read at once and regexp's FindAllIndex.
func TestBigPartsThroughHost(t *testing.T) {
	const w, o = scanWindow, scanOverlap
	marks := map[int]string{
		100:       "MARK001",
		w - 3:     "MARK002", // starts in the first window, ends in its overlap: found once, by the first window
		w + o - 3: "MARK003", // starts in the overlap, ends past the first buffer: found once, by the second
		2*w - 6:   "MARK004", // about where the second window's own part ends
		w + 100:   "MARK005",
	}
	const size = 3<<20 + 12345
	marks[size-7] = "MARK006" // at the very end
	dec := binaryContent(1, size, marks)
	plain := binaryContent(2, 2<<20, map[int]string{w - 2: "MARK007", 5: "MARK008"})
	for i, c := range plain {
		if c >= 0x80 {
			plain[i] = 'z' // 7bit: ASCII only
		}
	}
	copy(plain[len(plain)-2:], "zz") // no line break at the end, which the boundary would claim
	raw := multipartMessage(
		quotedPrintablePart("text/plain; charset=iso-8859-1", latin1Text(t, 3<<20)),
		base64Part("application/octet-stream", dec),
		mimePart{"Content-Type: text/plain; charset=us-ascii\r\n", string(plain)},
		quotedPrintablePart("text/plain; charset=iso-8859-1", []byte("small: Gr\xfc\xdfe, swordfish")),
	)
	msg := parse(t, raw)
	text1 := readAll(t, msg.Text, 1)
	dec1 := readAll(t, msg.Decoded, 1)
	if got := readAll(t, msg.Decoded, 2); !bytes.Equal(got, dec) {
		t.Fatal("the test message does not decode to its content")
	}
	text4 := readAll(t, msg.Text, 4)
	mid := len(text1)/2 + 1 // likely inside a two-byte rune: windows are bytes, not characters

	type op struct{ script, want string }
	ops := []op{
		{"read 2 1 0 16", readWant(dec, 0, 16)},
		{"read 2 1 100 7", readWant(dec, 100, 7)},             // forward: the stream goes on
		{"read 2 1 2097150 300", readWant(dec, 2097150, 300)}, // far forward, across windows
		{"read 2 1 50 8", readWant(dec, 50, 8)},               // backward: a new stream
		{fmt.Sprintf("read 2 1 %d 16", size-4), readWant(dec, size-4, 16)},
		{fmt.Sprintf("read 2 1 %d 16", size), readWant(dec, size, 16)}, // past the end: the length only
		{"read 2 1 4000000 16", readWant(dec, 4000000, 16)},
		{"read 2 1 0 0", readWant(dec, 0, 0)},
		{"sha 2 1", shaWant(dec)},
		{"match 2 1 0", formatMatches(reference(contentPatterns, dec, maxMatches))},
		{"match 2 1 2", formatMatches(reference(contentPatterns, dec, 2))},
		{"read 1 2 0 32", readWant(text1, 0, 32)},
		{fmt.Sprintf("read 1 2 %d 32", mid), readWant(text1, mid, 32)},
		{"sha 1 2", shaWant(text1)},
		{"match 1 2 0", formatMatches(reference(contentPatterns, text1, maxMatches))},
		{"match 1 1 0", formatMatches(reference(contentPatterns, dec1, maxMatches))},
		{"read 3 2 0 8", readWant(plain, 0, 8)},
		{fmt.Sprintf("read 3 2 %d 8", w-2), readWant(plain, w-2, 8)},
		{"read 3 1 4 8", readWant(plain, 4, 8)},
		{"sha 3 2", shaWant(plain)},
		{"match 3 2 0", formatMatches(reference(contentPatterns, plain, maxMatches))},
		{"read 4 2 0 64", readWant(text4, 0, 64)}, // a small part, as before: decoded once, kept in memory
		{"match 4 2 0", formatMatches(reference(contentPatterns, text4, maxMatches))},
		{"sha 4 2", shaWant(text4)},
	}
	var script strings.Builder
	for _, p := range contentPatterns {
		script.WriteString("pattern " + p + "\n")
	}
	for _, op := range ops {
		script.WriteString(op.script + "\n")
	}
	h := newHost(t)
	p := load(t, h, "gocontent", func(c *Config) { c.Config = []byte(script.String()); c.Timeout = 60e9 })
	in := &Input{Env: testEnvelope(), Msg: msg}
	res := call(t, p, HookMessage, in)
	wantOK(t, res)
	for i, op := range ops {
		if got := res.Tags["r"+strconv.Itoa(i)]; got != op.want {
			t.Errorf("%s: got\n%.300s\nwant\n%.300s", op.script, got, op.want)
		}
	}
	for _, m := range []string{"MARK002", "MARK003", "MARK004", "MARK006"} {
		at := bytes.Index(dec, []byte(m))
		if n := strings.Count(res.Tags["r9"], fmt.Sprintf(" %d %d;", at, at+7)); n != 1 {
			t.Errorf("%s at %d found %d times", m, at, n)
		}
	}

	// Nothing big was kept: part 4 is the only content in memory.
	for key, c := range in.contents {
		if c.data != nil && key.part != 4 {
			t.Errorf("content %+v (%d bytes) kept in memory", key, c.size)
		}
	}
	if c := in.contents[contentKey{4, modeText}]; c == nil || c.data == nil || in.cached != int64(len(text4)) {
		t.Errorf("the small part was not kept in memory (%d bytes cached)", in.cached)
	}
	if c := in.contents[contentKey{3, modeText}]; c == nil || c.src == nil || c.r != nil {
		t.Error("7bit content is not read in place")
	}
	// Part 2 decoded: a stream for the first read, the same one forward, a new one for the backward read. Part
	// 1 text: one stream, read forward.
	if in.opened != 3 {
		t.Errorf("%d part_read streams opened, want 3", in.opened)
	}
}

// TestBigPartNotMaterialised would fail if the host read a big part whole: reading, hashing and searching 16 MiB
// of decoded content allocates far less than the content's size.
func TestBigPartNotMaterialised(t *testing.T) {
	const size = 16 << 20
	dec := binaryContent(4, size, map[int]string{size / 2: "MARK001"})
	msg := parse(t, multipartMessage(base64Part("application/octet-stream", dec)))
	script := "pattern MARK\\d{3}\nread 1 1 0 64\nread 1 1 9000000 64\nread 1 1 1000 64\nsha 1 1\nmatch 1 1 0\nmatch 1 2 0\n"
	h := newHost(t)
	p := load(t, h, "gocontent", func(c *Config) { c.Config = []byte(script); c.Timeout = 60e9 })
	wantOK(t, call(t, p, HookMessage, &Input{Msg: msg})) // warm: the guest's heap and the window buffers

	in := &Input{Msg: msg}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res := call(t, p, HookMessage, in)
	runtime.ReadMemStats(&after)
	wantOK(t, res)
	if want := fmt.Sprintf("0 %d %d;", size/2, size/2+7); res.Tags["r4"] != want || res.Tags["r5"] != want {
		t.Errorf("matches %q and %q, want %q", res.Tags["r4"], res.Tags["r5"], want)
	}
	if res.Tags["r3"] != shaWant(dec) || res.Tags["r1"] != readWant(dec, 9000000, 64) {
		t.Errorf("sha %s, read %s", res.Tags["r3"], res.Tags["r1"])
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("serving a %d MiB part allocated %d KiB", size>>20, alloc>>10)
	if alloc > 4<<20 {
		t.Errorf("serving a %d MiB part allocated %d KiB", size>>20, alloc>>10)
	}
	if in.cached != 0 {
		t.Errorf("%d bytes of content kept in memory", in.cached)
	}
}

// TestBigPartDecodeError: a decode error past the first windows (the spooled message cannot be read there) makes
// the whole content ERR_DECODE, for every function, even when part_match has its matches long before it.
func TestBigPartDecodeError(t *testing.T) {
	good := base64Part("application/octet-stream", binaryContent(5, 3<<20, map[int]string{10: "MARK001"}))
	raw := multipartMessage(good)
	for _, op := range []string{"match 1 1 1", "read 1 1 0 16", "sha 1 1", "read 1 2 5 5"} {
		src := &failingReader{r: strings.NewReader(raw)}
		msg, err := message.Parse(src, int64(len(raw)), message.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		src.failAfter = int64(len(raw)) - 100
		in := &Input{Msg: msg}
		h := newHarness(t, HookMessage, in)
		f := strings.Fields(op)
		var rc int32
		switch f[0] {
		case "match":
			pp, pl := h.str(`MARK\d{3}`)
			handle := h.call("patterns_compile", pp, pl)
			rc, _ = h.get("part_match", 1, modeDecoded, u(int(handle)), 1)
		case "read":
			m, _ := strconv.Atoi(f[2])
			rc, _ = h.getN("part_read", 16, 1, u(m), u(5))
		case "sha":
			rc = h.call("part_sha256", 1, modeDecoded, outBuf)
		}
		if rc != errDecode {
			t.Errorf("%s: %d, want ERR_DECODE", op, rc)
		}
		// The raw bytes before the failure are still readable.
		if rc, _ := h.getN("part_read", 16, 1, modeRaw, 0); rc <= 0 {
			t.Errorf("%s: raw part_read: %d", op, rc)
		}
	}
}

// TestStreamsBounded: an Input keeps at most maxOpenStreams part_read streams; a part whose stream was closed
// starts again.
func TestStreamsBounded(t *testing.T) {
	var parts []mimePart
	for i := range maxOpenStreams + 2 {
		parts = append(parts, base64Part("application/octet-stream", binaryContent(int64(i), 2000, nil)))
	}
	in := &Input{Msg: parse(t, multipartMessage(parts...))}
	in.cached = decodeBudget // nothing kept in memory: every read is served by a stream
	h := newHarness(t, HookMessage, in)
	for id := 1; id <= len(parts); id++ {
		if rc, _ := h.getN("part_read", 8, u(id), modeDecoded, 0); rc != 2000 {
			t.Fatalf("part %d: %d", id, rc)
		}
	}
	if n := len(in.streams); n != maxOpenStreams || in.opened != len(parts) {
		t.Errorf("%d streams open (%d opened), want %d", n, in.opened, maxOpenStreams)
	}
	h.getN("part_read", 8, u(len(parts)), modeDecoded, 8) // forward on an open stream
	h.getN("part_read", 8, 1, modeDecoded, 8)             // part 1's stream was closed
	if in.opened != len(parts)+1 {
		t.Errorf("%d streams opened, want %d", in.opened, len(parts)+1)
	}
}

// TestMatchTimeoutWhileStreaming: a call past its deadline stops reading a big part.
func TestMatchTimeoutWhileStreaming(t *testing.T) {
	msg := parse(t, multipartMessage(base64Part("application/octet-stream", binaryContent(6, 3<<20, nil))))
	ps, err := compilePatternSet(`MARK\d{3}`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	defer func() {
		if ab, ok := recover().(*abortError); !ok || !errors.Is(ab, ErrTimeout) {
			t.Errorf("want a timeout abort, got %v", ab)
		}
	}()
	(&Input{Msg: msg}).match(ctx, 1, modeDecoded, ps, maxMatches)
}

// TestWindowScanMatchesWhole checks windowed matching against regexp over the whole content with tiny windows,
// so that boundaries fall everywhere: inside runes, inside matches, between a \b and its character. The bound of
// ABI §3.4: exact for patterns that can never match more than the overlap; of the unbounded patterns here, \d+
// and x*, a path longer than the overlap exists only where the content has a match that long, so they are exact
// while it has none.
func TestWindowScanMatchesWhole(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	maxLen := map[string]int{}
	for _, p := range diffPatterns {
		re, err := syntax.Parse(p, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		n, bounded := maxMatchLen(re)
		if !bounded {
			n = -1
		}
		maxLen[p] = n
	}
	checked, long := 0, 0
	for round := range 1000 {
		set := make([]string, 1+r.Intn(4))
		for i := range set {
			set[i] = diffPatterns[r.Intn(len(diffPatterns))]
		}
		ps, err := compilePatternSet(strings.Join(set, "\n"))
		if err != nil {
			t.Fatal(err)
		}
		data := diffText(r, r.Intn(3000))
		overlap := 24 + r.Intn(60)
		buf := make([]byte, overlap+utf8.UTFMax+1+r.Intn(200))
		limit := maxMatches
		if round%3 == 0 {
			limit = 1 + r.Intn(20)
		}
		if slices.ContainsFunc(set, func(p string) bool { return maxLen[p] > overlap }) {
			continue // outside the bound
		}
		all := reference(set, data, 1<<30)
		if slices.ContainsFunc(all, func(m match) bool { return m.end-m.start > overlap }) {
			long++
			continue
		}
		checked++
		in := &Input{}
		c := &content{known: true, size: len(data)}
		sc := ps.newScan(limit)
		ctx := context.Background()
		if code := in.walk(ctx, c, bytes.NewReader(data), buf, windowScan(ctx, ps, sc, overlap)); code != 0 {
			t.Fatal(code)
		}
		got, want := sc.result(), reference(set, data, limit)
		if !slices.Equal(got, want) {
			t.Fatalf("patterns %q, windows of %d bytes with %d of overlap, limit %d, on %q:\ngot  %v\nwant %v",
				set, len(buf), overlap, limit, data, got, want)
		}
	}
	if checked < 500 {
		t.Errorf("only %d rounds checked (%d with a long match)", checked, long)
	}
}

func TestRuneBoundary(t *testing.T) {
	b := []byte("aé€😀\xff\xc3b")
	for o, want := range map[int]int{0: 0, 1: 1, 2: 3, 3: 3, 4: 6, 5: 6, 6: 6, 7: 10, 8: 10, 9: 10, 10: 10, 11: 11, 12: 12} {
		if got := runeBoundary(b, o); got != want {
			t.Errorf("runeBoundary(%q, %d) = %d, want %d", b, o, got, want)
		}
	}
}

// failingReader fails every read that reaches failAfter (when not 0).
type failingReader struct {
	r         io.ReaderAt
	failAfter int64
}

func (f *failingReader) ReadAt(p []byte, off int64) (int, error) {
	if f.failAfter > 0 && off+int64(len(p)) > f.failAfter {
		return 0, errors.New("spool disk failed")
	}
	return f.r.ReadAt(p, off)
}
