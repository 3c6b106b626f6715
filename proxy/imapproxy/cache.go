package imapproxy

import (
	"bytes"
	"container/list"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"

	"github.com/emersion/go-imap/v2"

	"github.com/postern/postern/proxy/resultcache"
)

// cacheKey names one filtered message: the same UID means the same message only under the same upstream, user,
// mailbox and UIDVALIDITY, and a filtered result holds only under the configuration that produced it.
type cacheKey struct {
	upstream, user, mailbox string
	uidValidity             uint32
	uid                     imap.UID
	configVersion           string
}

// Owner is the user whose share of the cache the entry counts in.
func (k cacheKey) Owner() string { return k.user }

func (k cacheKey) String() string {
	return k.upstream + "\x00" + k.user + "\x00" + k.mailbox + "\x00" + strconv.FormatUint(uint64(k.uidValidity), 10) +
		"\x00" + strconv.FormatUint(uint64(k.uid), 10) + "\x00" + k.configVersion
}

// result is what the client is served for one message: the filtered message, or the notice of a withheld one.
// IMAP message content is immutable under a UID, so every FETCH item of it is derived from these bytes, in every
// command and every session, until the configuration changes.
type result struct {
	size     int64
	sha256   string // of the served bytes
	withheld string // the notice's reference, "" when the message itself is served
	entry    string // the quarantine entry that keeps a withheld message's original
	content  []byte // the bytes in memory, or
	file     string // the bytes on disk

	// header is the header block of the served bytes (the blank line included); metaOnly marks a result whose
	// bytes the cache no longer holds: it answers the size, envelope, structure and header sections (a folder
	// listed again) without the message being fetched and filtered again.
	header   []byte
	metaOnly bool

	mu       sync.Mutex // guards what is derived from the bytes once
	envelope *imap.Envelope
	bs       imap.BodyStructure
}

// maxHeaderBlock bounds the header block the metadata keeps.
const maxHeaderBlock = 64 << 10

// headerBlock returns the header block of a message (through its blank line), nil when there is none within
// maxHeaderBlock.
func headerBlock(body io.ReaderAt, size int64) []byte {
	buf := make([]byte, min(size, maxHeaderBlock))
	n, _ := body.ReadAt(buf, 0)
	buf = buf[:n]
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		return bytes.Clone(buf[:i+4])
	}
	if int64(n) == size {
		return bytes.Clone(buf) // a message without a body
	}
	return nil
}

// metadata is the metadata-only copy of r, nil when r has no header block.
func (r *result) metadata() *result {
	if r.header == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return &result{size: r.size, sha256: r.sha256, withheld: r.withheld, entry: r.entry, header: r.header, metaOnly: true,
		envelope: r.envelope, bs: r.bs}
}

// open returns the bytes, and a function to call when done with them; ok is false when a file was evicted
// meanwhile.
func (r *result) open() (io.ReaderAt, func(), bool) {
	if r.content != nil || r.file == "" {
		return bytes.NewReader(r.content), func() {}, true
	}
	f, err := os.Open(r.file)
	if err != nil {
		return nil, nil, false
	}
	return f, func() { f.Close() }, true
}

// entryOverhead approximates what an entry costs beyond its content: the key, the list element, the map slot,
// the derived envelope and structure.
const entryOverhead = 1024

// resultCache is the listener's cache of filtered messages (package resultcache: bounded in total and per user,
// in memory and on disk, never shared between users), with the metadata of the results whose bytes it let go in
// an LRU of its own, within MetaBytes: what a folder listed again asks.
type resultCache struct {
	*resultcache.Cache[cacheKey, *result]

	metaMu              sync.Mutex
	metaBytes, metaUsed int64
	metaLL              *list.List // of *metaEntry, most recent first
	metaM               map[cacheKey]*list.Element
}

type metaEntry struct {
	key  cacheKey
	r    *result
	cost int64
}

func newResultCache(c Cache, log *slog.Logger) (*resultCache, error) {
	rc := &resultCache{metaBytes: c.MetaBytes, metaLL: list.New(), metaM: map[cacheKey]*list.Element{}}
	var err error
	rc.Cache, err = resultcache.New(resultcache.Bounds{MemoryBytes: c.MemoryBytes, UserBytes: c.UserBytes,
		EntryBytes: c.EntryBytes, Dir: c.Dir, DiskBytes: c.DiskBytes}, log,
		func(k cacheKey, r *result) { rc.putMeta(k, r.metadata()) })
	if err != nil {
		return nil, err
	}
	return rc, nil
}

func (c *resultCache) get(k cacheKey) (*result, bool) { return c.Get(k) }

// getMeta returns the metadata of a result whose bytes were evicted.
func (c *resultCache) getMeta(k cacheKey) (*result, bool) {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	e, ok := c.metaM[k]
	if !ok {
		return nil, false
	}
	c.metaLL.MoveToFront(e)
	return e.Value.(*metaEntry).r, true
}

// putMeta keeps the metadata of an evicted result, evicting the least recently used metadata to stay within
// metaBytes.
func (c *resultCache) putMeta(k cacheKey, r *result) {
	if r == nil || c.metaBytes <= 0 {
		return
	}
	cost := int64(len(r.header)) + entryOverhead
	if cost > c.metaBytes {
		return
	}
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	c.dropMetaLocked(k)
	c.metaM[k] = c.metaLL.PushFront(&metaEntry{key: k, r: r, cost: cost})
	c.metaUsed += cost
	for c.metaUsed > c.metaBytes {
		c.dropMetaLocked(c.metaLL.Back().Value.(*metaEntry).key)
	}
}

func (c *resultCache) dropMetaLocked(k cacheKey) {
	if e, ok := c.metaM[k]; ok {
		c.metaUsed -= e.Value.(*metaEntry).cost
		c.metaLL.Remove(e)
		delete(c.metaM, k)
	}
}

// put keeps r with body (r.size bytes) in memory or on disk, within the bounds, and returns the result as kept
// (nil when not kept).
func (c *resultCache) put(k cacheKey, r *result, body io.ReaderAt) *result {
	content, ok := c.Store(body, r.size)
	if !ok {
		return nil
	}
	r.content, r.file = content.Bytes, content.File
	r.header = headerBlock(body, r.size)
	// What a listing asks is computed now, once, so that it outlives the bytes in the metadata.
	r.envelopeOf(func() io.Reader { return io.NewSectionReader(body, 0, r.size) })
	r.structureOf(func() io.Reader { return io.NewSectionReader(body, 0, r.size) })
	cost := int64(len(r.content)+len(r.header)+len(k.upstream)+len(k.user)+len(k.mailbox)+len(k.configVersion)) + entryOverhead
	if !c.Add(k, r, content, cost) {
		return nil
	}
	c.metaMu.Lock()
	c.dropMetaLocked(k)
	c.metaMu.Unlock()
	return r
}
