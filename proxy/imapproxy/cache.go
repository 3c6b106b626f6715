package imapproxy

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/emersion/go-imap/v2"
)

// cacheKey names one filtered message: the same UID means the same message only under the same upstream, user,
// mailbox and UIDVALIDITY, and a filtered result holds only under the configuration that produced it.
type cacheKey struct {
	upstream, user, mailbox string
	uidValidity             uint32
	uid                     imap.UID
	configVersion           string
}

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

// resultCache is a bounded LRU of filtered messages shared by a listener's sessions, bounded in total and per
// user, in memory and on disk. Entries are per user: a key names the user, and nothing is shared between users
// even for the same upstream message.
type resultCache struct {
	maxBytes, userBytes, entryBytes int64
	diskDir                         string
	diskBytes                       int64
	log                             *slog.Logger

	mu       sync.Mutex
	ll       *list.List
	m        map[cacheKey]*list.Element
	bytes    int64
	diskUsed int64
	users    map[string]int64

	// The metadata of results whose bytes were evicted, in an LRU of its own within metaBytes.
	metaBytes, metaUsed int64
	metaLL              *list.List
	metaM               map[cacheKey]*list.Element
}

type cacheEntry struct {
	key  cacheKey
	r    *result
	cost int64
	disk int64
}

func newResultCache(c Cache, log *slog.Logger) (*resultCache, error) {
	rc := &resultCache{maxBytes: c.MemoryBytes, userBytes: c.UserBytes, entryBytes: c.EntryBytes, diskDir: c.Dir,
		diskBytes: c.DiskBytes, log: log, ll: list.New(), m: map[cacheKey]*list.Element{}, users: map[string]int64{},
		metaBytes: c.MetaBytes, metaLL: list.New(), metaM: map[cacheKey]*list.Element{}}
	if rc.diskDir != "" && rc.diskBytes > 0 {
		// What an earlier process kept may have been decided by another configuration: start empty.
		if err := os.RemoveAll(rc.diskDir); err != nil {
			return nil, fmt.Errorf("cache dir: %w", err)
		}
		if err := os.MkdirAll(rc.diskDir, 0o700); err != nil {
			return nil, fmt.Errorf("cache dir: %w", err)
		}
	} else {
		rc.diskDir = ""
	}
	return rc, nil
}

func (c *resultCache) get(k cacheKey) (*result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*cacheEntry).r, true
}

// getMeta returns the metadata of a result whose bytes were evicted.
func (c *resultCache) getMeta(k cacheKey) (*result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.metaM[k]
	if !ok {
		return nil, false
	}
	c.metaLL.MoveToFront(e)
	return e.Value.(*cacheEntry).r, true
}

// putMeta keeps the metadata of an evicted result, evicting the least recently used metadata to stay within
// metaBytes. Called with mu held.
func (c *resultCache) putMeta(k cacheKey, r *result) {
	if r == nil || c.metaBytes <= 0 {
		return
	}
	cost := int64(len(r.header)) + entryOverhead
	if cost > c.metaBytes {
		return
	}
	if e, ok := c.metaM[k]; ok {
		c.metaUsed -= e.Value.(*cacheEntry).cost
		c.metaLL.Remove(e)
	}
	c.metaM[k] = c.metaLL.PushFront(&cacheEntry{key: k, r: r, cost: cost})
	c.metaUsed += cost
	for c.metaUsed > c.metaBytes {
		el := c.metaLL.Back()
		ce := el.Value.(*cacheEntry)
		c.metaLL.Remove(el)
		delete(c.metaM, ce.key)
		c.metaUsed -= ce.cost
	}
}

// put keeps r with body (r.size bytes): in memory up to the entry bound, else on disk within the disk bound,
// else not at all. It evicts the least recently used entries (the same user's first when that user is over its
// share) to stay within the bounds, and returns the result as kept (nil when not kept).
func (c *resultCache) put(k cacheKey, r *result, body io.ReaderAt) *result {
	r.content, r.file = nil, ""
	var disk int64
	switch {
	case r.size <= c.entryBytes:
		b := make([]byte, r.size)
		if _, err := body.ReadAt(b, 0); err != nil && err != io.EOF {
			return nil
		}
		r.content = b
	case c.diskDir != "" && r.size <= c.diskBytes:
		path, err := c.write(k, body, r.size)
		if err != nil {
			c.log.Warn("filtered message not cached on disk", "err", err)
			return nil
		}
		r.file, disk = path, r.size
	default:
		return nil
	}
	r.header = headerBlock(body, r.size)
	// What a listing asks is computed now, once, so that it outlives the bytes in the metadata.
	r.envelopeOf(func() io.Reader { return io.NewSectionReader(body, 0, r.size) })
	r.structureOf(func() io.Reader { return io.NewSectionReader(body, 0, r.size) })
	cost := int64(len(r.content)+len(r.header)+len(k.upstream)+len(k.user)+len(k.mailbox)+len(k.configVersion)) + entryOverhead
	if cost > c.userBytes || cost > c.maxBytes {
		if r.file != "" {
			os.Remove(r.file)
		}
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.remove(e)
	}
	e := c.ll.PushFront(&cacheEntry{key: k, r: r, cost: cost, disk: disk})
	c.m[k] = e
	if me, ok := c.metaM[k]; ok {
		c.metaUsed -= me.Value.(*cacheEntry).cost
		c.metaLL.Remove(me)
		delete(c.metaM, k)
	}
	c.bytes += cost
	c.diskUsed += disk
	c.users[k.user] += cost
	for el := c.ll.Back(); el != nil && c.diskDir != "" && c.diskUsed > c.diskBytes; {
		prev := el.Prev()
		if el.Value.(*cacheEntry).disk > 0 && el != e {
			c.remove(el)
		}
		el = prev
	}
	for el := c.ll.Back(); el != nil && c.users[k.user] > c.userBytes; {
		prev := el.Prev()
		if el.Value.(*cacheEntry).key.user == k.user && el != e {
			c.remove(el)
		}
		el = prev
	}
	for c.bytes > c.maxBytes {
		el := c.ll.Back()
		if el == e {
			break
		}
		c.remove(el)
	}
	return r
}

func (c *resultCache) remove(e *list.Element) {
	ce := e.Value.(*cacheEntry)
	c.ll.Remove(e)
	delete(c.m, ce.key)
	c.bytes -= ce.cost
	if ce.disk > 0 {
		c.diskUsed -= ce.disk
		os.Remove(ce.r.file) // a session serving it has it open
	}
	if c.users[ce.key.user] -= ce.cost; c.users[ce.key.user] <= 0 {
		delete(c.users, ce.key.user)
	}
	c.putMeta(ce.key, ce.r.metadata())
}

func (c *resultCache) write(k cacheKey, body io.ReaderAt, size int64) (string, error) {
	sum := sha256.Sum256([]byte(k.String()))
	path := filepath.Join(c.diskDir, hex.EncodeToString(sum[:16]))
	f, err := os.CreateTemp(c.diskDir, ".tmp-*")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, io.NewSectionReader(body, 0, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return path, nil
}
