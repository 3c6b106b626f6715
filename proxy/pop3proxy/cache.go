package pop3proxy

import (
	"container/list"
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
	// content is what is served when it differs from the upstream's message (a changed message, a notice); nil
	// when it was too large to keep, and the message is then filtered again when it is read.
	content []byte
	// withheld is the notice's reference when the message was withheld.
	withheld string
}

// entryOverhead approximates what an entry costs beyond its content: the key, the list element, the map slot.
const entryOverhead = 256

func (r *result) cost(k cacheKey) int64 {
	return int64(len(r.content)+len(k.upstream)+len(k.user)+len(k.uidl)+len(k.version)) + entryOverhead
}

// resultCache is a bounded LRU of filtered results shared by a listener's sessions, bounded in total and per
// user.
type resultCache struct {
	maxBytes, userBytes, entryBytes int64

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
}

func newResultCache(c Cache) *resultCache {
	return &resultCache{maxBytes: c.MemoryBytes, userBytes: c.UserBytes, entryBytes: c.EntryBytes, ll: list.New(),
		m: map[cacheKey]*list.Element{}, users: map[string]int64{}}
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

// put keeps r, dropping its content when it is over the entry bound, and evicts the least recently used entries
// (of the same user first when that user is over its share) to stay within the bounds.
func (c *resultCache) put(k cacheKey, r *result) {
	if int64(len(r.content)) > c.entryBytes {
		cp := *r
		cp.content = nil
		r = &cp
	}
	cost := r.cost(k)
	if cost > c.userBytes || cost > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.remove(e)
	}
	e := c.ll.PushFront(&cacheEntry{key: k, r: r, cost: cost})
	c.m[k] = e
	c.bytes += cost
	c.users[k.user] += cost
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
