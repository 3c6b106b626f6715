package imapproxy

import (
	"container/list"
	"sync"
)

// cacheKey names one filtered message: the same UID means the same message only under the same upstream, user,
// mailbox and UIDVALIDITY, and a filtered result holds only under the configuration that produced it.
type cacheKey struct {
	upstream, user, mailbox string
	uidValidity, uid        uint32
	configVersion           string
}

// filteredCache keeps the filtered bytes of recently fetched messages so that a client fetching a message part by
// part (headers, then BODYSTRUCTURE, then sections) runs the plugins once. It is bounded in total bytes; the least
// recently used entries go first, and a message larger than the whole bound is not kept.
type filteredCache struct {
	mu       sync.Mutex
	maxBytes int
	bytes    int
	order    *list.List // of *cacheEntry, most recent at the front
	entries  map[cacheKey]*list.Element
}

type cacheEntry struct {
	key      cacheKey
	filtered []byte
}

func newFilteredCache(maxBytes int) *filteredCache {
	return &filteredCache{maxBytes: maxBytes, order: list.New(), entries: make(map[cacheKey]*list.Element)}
}

func (c *filteredCache) get(k cacheKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).filtered, true
}

func (c *filteredCache) put(k cacheKey, filtered []byte) {
	if len(filtered) > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		c.bytes -= len(e.Value.(*cacheEntry).filtered)
		c.order.Remove(e)
		delete(c.entries, k)
	}
	for c.bytes+len(filtered) > c.maxBytes {
		oldest := c.order.Back()
		ent := oldest.Value.(*cacheEntry)
		c.bytes -= len(ent.filtered)
		c.order.Remove(oldest)
		delete(c.entries, ent.key)
	}
	c.entries[k] = c.order.PushFront(&cacheEntry{key: k, filtered: filtered})
	c.bytes += len(filtered)
}
