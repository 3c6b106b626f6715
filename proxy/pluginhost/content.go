package pluginhost

import (
	"context"
	"crypto/sha256"
	"io"
	"slices"
	"sync"
	"unicode/utf8"
)

// How the content of a part is served: part_read, part_match and part_sha256 in every mode, except raw part_read,
// which reads the message directly.
//
// Why not just read it: a part is bounded only by the message size limit (tens of MiB), the proxy relays many
// messages at once, and a chain of plugins asks for the same part in several modes. Reading each whole content
// into memory made one 100 MiB message cost the proxy 439 MiB. Everything is bounded: a big message must be slow,
// never an out-of-memory. The ABI lets a guest read any window in any order and promises the content's full length
// on every read, so per (part, mode) the Input keeps:
//
//   - what one pass over the content learns, for good: its length, and whether it decodes at all. ERR_DECODE is
//     about the whole content: a guest must not act on the first half of a part whose second half turns out to be
//     unreadable;
//   - the bytes themselves only when there are few of them (maxMaterialise) and they are costly to make again
//     (transfer decoding or charset conversion), within decodeBudget for the whole Input. That is the common case,
//     a text body that every plugin of the chain reads or scans: it is decoded once and served from memory;
//   - nothing for identity content (raw bytes; a 7bit, 8bit or binary body in a UTF-8-compatible charset): the
//     message's own reader knows its length and reads any window in place;
//   - for other content, one decoding stream with a cursor for part_read: a guest that reads forward (window after
//     window, or the matches part_match returned, in order) continues the stream; a read behind the cursor starts
//     a new stream and skips to it. At most maxOpenStreams streams are open at once per Input.
//
// part_match and part_sha256 pass over content that is not in memory once, window by window through one fixed
// buffer. So whatever the size of a part, an Input holds at most decodeBudget bytes of content, plus, during a
// call, one window buffer and maxOpenStreams decoders (each a few tens of KiB).

// Content modes of part_read, part_match and part_sha256 (ABI §3.3).
const (
	modeRaw     = 0
	modeDecoded = 1
	modeText    = 2
)

// Bounds of content handling; see above.
const (
	maxMaterialise = 1 << 20  // content at most this long (in its mode) may be kept in memory whole
	decodeBudget   = 32 << 20 // bytes of content one Input keeps in memory
	maxOpenStreams = 4        // part_read streams one Input keeps open

	// part_match searches content that is not in memory in windows of scanWindow bytes, each extended by
	// scanOverlap bytes of the next, so that a match that starts in a window and is at most scanOverlap long is
	// seen whole (ABI §3.4 documents the bound). Such windows cost about 6% of rescanning.
	scanWindow  = 1 << 20
	scanOverlap = 64 << 10
)

// windowBuffers holds the buffers of passes over content: one per call in flight, never one per part.
var windowBuffers = sync.Pool{New: func() any {
	b := make([]byte, scanWindow+scanOverlap)
	return &b
}}

type contentKey struct {
	part int
	mode int
}

// content is what an Input knows of the content of one part in one mode.
type content struct {
	key   contentKey
	known bool  // size and code are settled: a pass reached the end, or the content is identity
	code  int32 // 0, or errDecode: the content cannot be had (its raw bytes still can)
	size  int
	data  []byte             // the whole content, when kept in memory (non-nil then, even if empty)
	src   io.ReaderAt        // identity content: its bytes are src's [0, size)
	sum   *[sha256.Size]byte // part_sha256, once computed

	// part_read's stream (content neither in memory nor identity), positioned at cursor; nil when none is open.
	r      io.Reader
	cursor int
}

// entry returns the content entry of (part, mode), making it on first use. The caller holds in.mu and has checked
// the arguments (the part exists; a decoding mode is not asked of a multipart).
func (in *Input) entry(part, mode int) *content {
	key := contentKey{part, mode}
	c := in.contents[key]
	if c == nil {
		if in.contents == nil {
			in.contents = make(map[contentKey]*content)
		}
		c = &content{key: key}
		in.contents[key] = c
	}
	return c
}

// open starts a reader of c's content at its first byte. Identity content (a *io.SectionReader: the message's
// bytes, undecoded) is settled on the spot, since its reader knows its size.
func (in *Input) open(c *content) (io.Reader, error) {
	var r io.Reader
	var err error
	switch c.key.mode {
	case modeRaw:
		r, err = in.Msg.RawBody(c.key.part)
	case modeDecoded:
		r, err = in.Msg.Decoded(c.key.part)
	default:
		r, err = in.Msg.Text(c.key.part)
	}
	if err != nil {
		return nil, err
	}
	if sr, ok := r.(*io.SectionReader); ok && !c.known {
		c.src, c.size, c.known = sr, int(sr.Size()), true
	}
	return r, nil
}

// fail settles c as undecodable (an unknown encoding or charset: ABI ERR_DECODE; or the spooled
// message could not be read, which the guest cannot tell apart and need not).
func (in *Input) fail(c *content) int32 {
	in.closeStream(c)
	c.known, c.code, c.data, c.src = true, errDecode, nil, nil
	return errDecode
}

// settle makes sure that c's length and decodability are known, with one pass over the content if need be (which
// also keeps it in memory when it is small; see walk).
func (in *Input) settle(ctx context.Context, c *content) {
	if c.known {
		return
	}
	r, err := in.open(c)
	if err != nil {
		in.fail(c)
		return
	}
	if c.known {
		return // identity
	}
	in.walk(ctx, c, r, nil, func(b []byte, _ int, _ bool) (int, bool) { return len(b), true })
}

// walk passes c's content, from its first byte, through fn, window by window in buf (nil: a pooled window
// buffer). r is a reader open at the content's start, or nil for walk to open one. fn gets the content's bytes
// [base, base+len(b)) and whether they run to its end; it returns how many leading bytes of b it is done with
// (at least one unless at the end: the rest begin the next window) and whether it wants more.
//
// A pass that reaches the end settles c: its length and, when the whole content fitted in the first window, is
// at most maxMaterialise bytes and the budget allows, its bytes. When fn wants no more of a content that is not
// yet settled, walk reads the rest anyway, counting it, because a decode error anywhere makes the whole content
// ERR_DECODE: a guest must not get matches for a part that part_read then refuses. walk returns 0 or errDecode.
// Between windows it watches ctx and aborts the call past its deadline.
func (in *Input) walk(ctx context.Context, c *content, r io.Reader, buf []byte, fn func(b []byte, base int, end bool) (int, bool)) int32 {
	if buf == nil {
		bp := windowBuffers.Get().(*[]byte)
		defer windowBuffers.Put(bp)
		buf = *bp
	}
	if r == nil {
		var err error
		if r, err = in.open(c); err != nil {
			return in.fail(c)
		}
	}
	n, base := 0, 0
	for {
		in.checkDeadline(ctx, c)
		k, err := io.ReadFull(r, buf[n:])
		n += k
		end := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !end {
			return in.fail(c)
		}
		if end && !c.known {
			in.settled(c, buf[:n], base)
		}
		done, more := fn(buf[:n], base, end)
		if end {
			return 0
		}
		if !more {
			if c.known {
				return 0
			}
			return in.count(ctx, c, r, buf, base+n)
		}
		n = copy(buf, buf[done:n])
		base += done
	}
}

// count reads the rest of a content, keeping nothing, to settle its length (ABI: part_read returns the total).
func (in *Input) count(ctx context.Context, c *content, r io.Reader, buf []byte, total int) int32 {
	for {
		in.checkDeadline(ctx, c)
		k, err := r.Read(buf)
		total += k
		if err == io.EOF {
			c.known, c.size = true, total
			return 0
		}
		if err != nil {
			return in.fail(c)
		}
	}
}

func (in *Input) checkDeadline(ctx context.Context, c *content) {
	if ctx.Err() != nil {
		// wazero has closed the module: the call fails with a timeout as soon as we return. Aborting says so
		// without reading on.
		abort(ErrTimeout, "timeout while reading part %d", c.key.part)
	}
}

// settled records the end of a first pass over c, whose last bytes are b at offset base: the length and, for a
// small content that fitted in one window, the bytes, if the budget allows. (Identity content never gets here: it
// is settled when opened and read in place.)
func (in *Input) settled(c *content, b []byte, base int) {
	c.known, c.size = true, base+len(b)
	if base == 0 && len(b) <= maxMaterialise && in.cached+int64(len(b)) <= decodeBudget {
		c.data = make([]byte, len(b)) // the size is known: one allocation, no growth copies
		copy(c.data, b)
		in.cached += int64(len(b))
	}
}

// read serves part_read: it copies the content of (part, mode) from off into dst, as much as fits, and returns the
// content's full length or an ABI error code.
func (in *Input) read(ctx context.Context, part, mode, off int, dst []byte) int32 {
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.entry(part, mode)
	in.settle(ctx, c)
	if c.code != 0 {
		return c.code
	}
	total := length(c.size)
	if off >= c.size || len(dst) == 0 {
		return total // the guest asked for the length, or read past the end: nothing to write
	}
	dst = dst[:min(len(dst), c.size-off)]
	switch {
	case c.data != nil:
		copy(dst, c.data[off:])
	case c.src != nil:
		if _, err := c.src.ReadAt(dst, int64(off)); err != nil && err != io.EOF {
			return in.fail(c)
		}
	default:
		if err := in.readStream(c, dst, off); err != nil {
			return in.fail(c)
		}
	}
	return total
}

// readStream fills dst from the content's offset off through c's stream: onward from the cursor when off is at or
// past it (the guest reads forward), or from a new stream when it is behind.
func (in *Input) readStream(c *content, dst []byte, off int) error {
	if c.r == nil || off < c.cursor {
		r, err := in.open(c)
		if err != nil {
			return err
		}
		c.r, c.cursor = r, 0
		in.opened++
	}
	in.useStream(c)
	if skip := off - c.cursor; skip > 0 {
		k, err := io.CopyN(io.Discard, c.r, int64(skip))
		c.cursor += int(k)
		if err != nil {
			return err // shorter than the settled length: cannot happen with an immutable message
		}
	}
	k, err := io.ReadFull(c.r, dst)
	c.cursor += k
	return err
}

// useStream marks c's stream as the most recently used, closing the least recently used one past
// maxOpenStreams: a guest that jumps between many parts pays a restart, not memory.
func (in *Input) useStream(c *content) {
	if i := slices.Index(in.streams, c); i >= 0 {
		in.streams = slices.Delete(in.streams, i, i+1)
	} else if len(in.streams) >= maxOpenStreams {
		in.streams[0].r = nil
		in.streams = slices.Delete(in.streams, 0, 1)
	}
	in.streams = append(in.streams, c)
}

func (in *Input) closeStream(c *content) {
	c.r = nil
	if i := slices.Index(in.streams, c); i >= 0 {
		in.streams = slices.Delete(in.streams, i, i+1)
	}
}

// digest serves part_sha256: the hash of the content of (part, mode) into sum, or an ABI error code. The hash is
// kept: plugins of a chain that look a file up by its hash ask for the same one.
func (in *Input) digest(ctx context.Context, part, mode int, sum *[sha256.Size]byte) int32 {
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.entry(part, mode)
	if c.sum == nil {
		if c.code != 0 {
			return c.code
		}
		var s [sha256.Size]byte
		if c.data != nil {
			s = sha256.Sum256(c.data)
		} else {
			h := sha256.New()
			code := in.walk(ctx, c, nil, nil, func(b []byte, _ int, _ bool) (int, bool) {
				h.Write(b)
				return len(b), true
			})
			if code != 0 {
				return code
			}
			h.Sum(s[:0])
		}
		c.sum = &s
	}
	*sum = *c.sum
	return 0
}

// match serves part_match: the matches of ps in the content of (part, mode), at most limit, or an ABI error code.
func (in *Input) match(ctx context.Context, part, mode int, ps *patternSet, limit int) ([]match, int32) {
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.entry(part, mode)
	if c.code != 0 {
		return nil, c.code
	}
	if c.data != nil {
		ms, err := ps.search(ctx, c.data, limit)
		if err != nil {
			abortMatchTimeout()
		}
		return ms, 0
	}
	sc := ps.newScan(limit)
	if code := in.walk(ctx, c, nil, nil, windowScan(ctx, ps, sc, scanOverlap)); code != 0 {
		return nil, code
	}
	return sc.result(), 0
}

// abortMatchTimeout ends a call whose deadline passed during a scan: wazero has closed the module, so the call
// fails with a timeout as soon as we return. Aborting here says so without waiting.
func abortMatchTimeout() {
	abort(ErrTimeout, "timeout during part_match")
}

// windowScan is walk's function for part_match over content that is not in memory. Each window is searched for
// matches that start in its first part (about len(b) - overlap bytes); the last overlap bytes are only there so
// that such a match, when it is at most overlap bytes long, is seen whole, with the character after it. The next
// window starts utf8.UTFMax bytes before where this one's part ended, so that the scan resuming there sees the
// real previous character (for \b, (?m)^ and the like). The scan carries each pattern's position across windows,
// so a match in the overlap is found once, by the window it starts in, and leftmost-first, non-overlapping
// matching per pattern goes on exactly as over the whole content.
//
// The bound (ABI §3.4): a match longer than overlap, or a pattern that at some position could match across more
// than overlap bytes, may be cut at a window's end, missed, or (with an assertion such as \b or $ at its end) be
// reported where the whole content has none, and may change that pattern's later matches. Patterns whose
// matches are never that long give exactly the whole content's result.
func windowScan(ctx context.Context, ps *patternSet, sc *scan, overlap int) func(b []byte, base int, end bool) (int, bool) {
	return func(b []byte, base int, end bool) (int, bool) {
		owned := len(b) + 1 // at the end, every match left belongs to this window
		if !end {
			owned = runeBoundary(b, len(b)-overlap)
		}
		if err := ps.searchWindow(ctx, sc, b, base, owned); err != nil {
			abortMatchTimeout()
		}
		if end || sc.full() {
			return len(b), false
		}
		return owned - utf8.UTFMax, true
	}
}

// runeBoundary returns o, or, when o falls inside a valid multi-byte UTF-8 sequence of b, the end of that
// sequence. A search of the whole content steps over such a sequence rune by rune and never starts a match
// inside it (the positions it visits do not depend on where it started), so neither may a window.
func runeBoundary(b []byte, o int) int {
	for q := max(0, o-(utf8.UTFMax-1)); q < o; q++ {
		if _, size := utf8.DecodeRune(b[q:]); size > 1 && q+size > o {
			return q + size
		}
	}
	return o
}
