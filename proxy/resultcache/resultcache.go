// Package resultcache keeps what a retrieval front end served for a message (the filtered bytes and what was
// derived from them) for the listener's sessions to serve again: the cache POP3 and IMAP need because their
// clients read a message more than once. It is an LRU bounded in total, per user, and per entry in memory, with
// larger entries on disk within a bound of their own. Every entry belongs to one user, named by its key:
// nothing is shared between users, even for the same upstream message.
package resultcache

import (
	"container/list"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
)

// Bounds bound a cache. Zero DiskBytes or an empty Dir keeps nothing on disk.
type Bounds struct {
	// MemoryBytes bounds the memory of all entries; UserBytes one user's share of it.
	MemoryBytes, UserBytes int64
	// EntryBytes is the largest content kept in memory; a larger one goes to Dir.
	EntryBytes int64
	// Dir and DiskBytes keep contents larger than EntryBytes on disk. The directory is the cache's own: New
	// empties it.
	Dir       string
	DiskBytes int64
}

// Key names an entry: comparable, with the user whose share it counts in.
type Key interface {
	comparable
	Owner() string
}

// Content is where an entry's bytes are: in memory, in a file, or (both zero) nowhere.
type Content struct {
	Bytes []byte
	File  string
	disk  int64 // the file's size
}

// Cache is the LRU. V is what the front end keeps per entry.
type Cache[K Key, V any] struct {
	b       Bounds
	log     *slog.Logger
	evicted func(K, V)

	mu       sync.Mutex
	ll       *list.List // of *entry, most recent first
	m        map[K]*list.Element
	bytes    int64
	diskUsed int64
	users    map[string]int64 // owner → bytes
}

type entry[K Key, V any] struct {
	key  K
	v    V
	cost int64
	file string // the content's file, when on disk
	disk int64
}

// New makes a cache within b. evicted, when not nil, is called with each entry that leaves the cache (its file,
// if any, removed), under the cache's lock: it must not call the cache. The disk directory is emptied first:
// what an earlier process kept may have been decided by another configuration, and nothing names it any more.
func New[K Key, V any](b Bounds, log *slog.Logger, evicted func(K, V)) (*Cache[K, V], error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Cache[K, V]{b: b, log: log, evicted: evicted, ll: list.New(), m: map[K]*list.Element{},
		users: map[string]int64{}}
	if b.Dir == "" || b.DiskBytes <= 0 {
		c.b.Dir, c.b.DiskBytes = "", 0
		return c, nil
	}
	if err := os.RemoveAll(b.Dir); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	if err := os.MkdirAll(b.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	return c, nil
}

// Bounds returns the bounds in effect (Dir is "" when nothing is kept on disk).
func (c *Cache[K, V]) Bounds() Bounds { return c.b }

// Get returns the entry of k and makes it the most recently used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*entry[K, V]).v, true
}

// Store keeps the size bytes of body for an entry where the bounds allow: in memory up to EntryBytes, else in
// a file within DiskBytes. It reports false when neither may hold them or they could not be read or written
// (logged). The content counts in the bounds once Add enters it.
func (c *Cache[K, V]) Store(body io.ReaderAt, size int64) (Content, bool) {
	if !c.Fits(size) {
		return Content{}, false
	}
	switch {
	case size <= c.b.EntryBytes:
		b := make([]byte, size)
		if _, err := body.ReadAt(b, 0); err != nil && err != io.EOF {
			return Content{}, false
		}
		return Content{Bytes: b}, true
	default:
		path, err := c.write(body, size)
		if err != nil {
			c.log.Warn("filtered message not cached on disk", "err", err)
			return Content{}, false
		}
		return Content{File: path, disk: size}, true
	}
}

// Fits reports whether a content of size bytes can be kept: in memory, or on disk.
func (c *Cache[K, V]) Fits(size int64) bool {
	return size <= c.b.EntryBytes || c.b.Dir != "" && size <= c.b.DiskBytes
}

// Add enters v for k, with its content from Store (or none), at cost bytes of memory: what v holds in memory,
// its content's bytes included. It replaces an entry of k, and evicts the least recently used entries (the
// same user's first, when that user is over its share; entries on disk first, when the disk is over its bound)
// to stay within the bounds. An entry over a bound by itself is not entered, its file removed: Add reports
// false.
func (c *Cache[K, V]) Add(k K, v V, content Content, cost int64) bool {
	if cost > c.b.UserBytes || cost > c.b.MemoryBytes {
		if content.File != "" {
			os.Remove(content.File)
		}
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.remove(e)
	}
	e := c.ll.PushFront(&entry[K, V]{key: k, v: v, cost: cost, file: content.File, disk: content.disk})
	c.m[k] = e
	c.bytes += cost
	c.diskUsed += content.disk
	owner := k.Owner()
	c.users[owner] += cost
	for el := c.ll.Back(); el != nil && c.b.Dir != "" && c.diskUsed > c.b.DiskBytes; {
		prev := el.Prev()
		if el.Value.(*entry[K, V]).disk > 0 && el != e {
			c.remove(el)
		}
		el = prev
	}
	for el := c.ll.Back(); el != nil && c.users[owner] > c.b.UserBytes; {
		prev := el.Prev()
		if el.Value.(*entry[K, V]).key.Owner() == owner && el != e {
			c.remove(el)
		}
		el = prev
	}
	for c.bytes > c.b.MemoryBytes {
		el := c.ll.Back()
		if el == e {
			break
		}
		c.remove(el)
	}
	return true
}

// Len reports the entries and the bytes of memory they count.
func (c *Cache[K, V]) Len() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len(), c.bytes
}

// UserBytes reports the bytes one user's entries count.
func (c *Cache[K, V]) UserBytes(owner string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.users[owner]
}

func (c *Cache[K, V]) remove(el *list.Element) {
	e := el.Value.(*entry[K, V])
	c.ll.Remove(el)
	delete(c.m, e.key)
	c.bytes -= e.cost
	if e.file != "" {
		c.diskUsed -= e.disk
		os.Remove(e.file) // a session serving it has it open
	}
	owner := e.key.Owner()
	if c.users[owner] -= e.cost; c.users[owner] <= 0 {
		delete(c.users, owner)
	}
	if c.evicted != nil {
		c.evicted(e.key, e.v)
	}
}

// write stores a content in a file of its own in the disk directory: nothing looks a file up by name, and an
// entry that replaces another of the same key has its own.
func (c *Cache[K, V]) write(body io.ReaderAt, size int64) (string, error) {
	f, err := os.CreateTemp(c.b.Dir, "entry-*")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, io.NewSectionReader(body, 0, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
