package pop3proxy

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// cacheKey names one filtered result: the same message (UIDL) of the same user on the same upstream, filtered
// by the same configuration. A reload changes the version, so nothing an older configuration decided is served
// after it; the old entries age out.
type cacheKey struct {
	upstream, user, uidl, version string
}

// result is what filtering a message gave, as the cache keeps it.
type result struct {
	// size is the size of what RETR serves; sha256 its digest (of the served bytes).
	size   int64
	sha256 string
	// in is the digest of the message as the upstream served it: a cached "unchanged" result is used only for
	// the same bytes.
	in string
	// unchanged: the message is served as the upstream has it, and content is nil.
	unchanged bool
	// content is what is served when it differs from the upstream's message (a changed message, a notice), when
	// it is small enough to be kept in memory; file holds it on disk when it is not. With neither (too large for
	// both) the message is filtered again when it is read.
	content []byte
	file    string
	// withheld is the notice's reference when the message was withheld.
	withheld string
}

// entryOverhead approximates what an entry costs beyond its content: the key, the list element, the map slot.
const entryOverhead = 256

func (r *result) cost(k cacheKey) int64 {
	return int64(len(r.content)+len(k.upstream)+len(k.user)+len(k.uidl)+len(k.version)) + entryOverhead
}

// resultCache is a bounded LRU of filtered results shared by a listener's sessions, bounded in total and per
// user, in memory and on disk.
type resultCache struct {
	maxBytes, userBytes, entryBytes int64
	diskDir                         string // "" keeps nothing on disk
	diskBytes                       int64
	log                             *slog.Logger
	diskUsed                        int64 // under mu

	mu    sync.Mutex
	ll    *list.List // of *cacheEntry, most recent first
	m     map[cacheKey]*list.Element
	bytes int64
	users map[string]int64 // user → bytes
}

type cacheEntry struct {
	key  cacheKey
	r    *result
	cost int64
	disk int64 // bytes of r.file
}

// newResultCache makes the cache. Its disk directory is emptied first: what an earlier process kept may have been
// decided by another configuration, and nothing names it any more.
func newResultCache(c Cache, log *slog.Logger) (*resultCache, error) {
	rc := &resultCache{maxBytes: c.MemoryBytes, userBytes: c.UserBytes, entryBytes: c.EntryBytes, diskDir: c.Dir,
		diskBytes: c.DiskBytes, log: log, ll: list.New(), m: map[cacheKey]*list.Element{}, users: map[string]int64{}}
	if rc.diskDir != "" && rc.diskBytes > 0 {
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

// put keeps r, with body (r.size bytes) as its content when it differs from the upstream's message: in memory up
// to the entry bound, else on disk within the disk bound, else not at all. It evicts the least recently used
// entries (of the same user first when that user is over its share) to stay within the bounds.
func (c *resultCache) put(k cacheKey, r *result, body io.ReaderAt) {
	cp := *r
	r = &cp
	r.content, r.file = nil, ""
	var disk int64
	if !r.unchanged && body != nil {
		switch {
		case r.size <= c.entryBytes:
			b := make([]byte, r.size)
			if _, err := body.ReadAt(b, 0); err != nil && err != io.EOF {
				return
			}
			r.content = b
		case c.diskDir != "" && r.size <= c.diskBytes:
			if path, err := c.write(k, body, r.size); err == nil {
				r.file, disk = path, r.size
			} else {
				c.log.Warn("filtered message not cached on disk", "err", err)
			}
		}
	}
	cost := r.cost(k)
	if cost > c.userBytes || cost > c.maxBytes {
		if r.file != "" {
			os.Remove(r.file)
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.remove(e)
	}
	e := c.ll.PushFront(&cacheEntry{key: k, r: r, cost: cost, disk: disk})
	c.m[k] = e
	c.bytes += cost
	c.diskUsed += disk
	c.users[k.user] += cost
	for el := c.ll.Back(); el != nil && c.diskUsed > c.diskBytes && c.diskDir != ""; {
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
}

func (c *resultCache) remove(e *list.Element) {
	ce := e.Value.(*cacheEntry)
	c.ll.Remove(e)
	delete(c.m, ce.key)
	c.bytes -= ce.cost
	if ce.disk > 0 {
		c.diskUsed -= ce.disk
		// A session serving the file keeps reading it: it is open.
		os.Remove(ce.r.file)
	}
	if c.users[ce.key.user] -= ce.cost; c.users[ce.key.user] <= 0 {
		delete(c.users, ce.key.user)
	}
}

// stats reports the entries and bytes held.
func (c *resultCache) stats() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len(), c.bytes
}

// write stores a content in the disk directory, under a name derived from its key, through a temporary name.
func (c *resultCache) write(k cacheKey, body io.ReaderAt, size int64) (string, error) {
	sum := sha256.Sum256([]byte(k.upstream + "\x00" + k.user + "\x00" + k.uidl + "\x00" + k.version))
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
