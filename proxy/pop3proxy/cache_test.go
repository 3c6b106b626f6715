package pop3proxy

import (
	"fmt"
	"testing"
)

func TestCacheBounds(t *testing.T) {
	c := newResultCache(Cache{MemoryBytes: 10 * (entryOverhead + 1100), EntryBytes: 1000, UserBytes: 4 * (entryOverhead + 1100)})
	key := func(user string, i int) cacheKey { return cacheKey{"up", user, fmt.Sprint(i), "v1"} }
	big := make([]byte, 2000)
	c.put(key("a", 0), &result{size: 2000, content: big})
	if r, ok := c.get(key("a", 0)); !ok || r.content != nil || r.size != 2000 {
		t.Fatalf("an entry over the entry bound keeps its size without content: %+v %v", r, ok)
	}
	for i := 1; i <= 10; i++ {
		c.put(key("a", i), &result{content: make([]byte, 900)})
	}
	if _, ok := c.get(key("a", 1)); ok {
		t.Fatal("user a went over its share and its oldest entry stayed")
	}
	if _, ok := c.get(key("a", 10)); !ok {
		t.Fatal("the newest entry was evicted")
	}
	for i := 0; i < 40; i++ {
		c.put(key(fmt.Sprint("u", i), 0), &result{content: make([]byte, 900)})
	}
	if _, bytes := c.stats(); bytes > c.maxBytes {
		t.Fatalf("cache holds %d bytes, bound %d", bytes, c.maxBytes)
	}
	if _, ok := c.get(key("a", 10)); ok {
		t.Fatal("the least recently used entry survived")
	}
	// A different configuration version is a different entry.
	c.put(cacheKey{"up", "b", "1", "v1"}, &result{size: 1})
	if _, ok := c.get(cacheKey{"up", "b", "1", "v2"}); ok {
		t.Fatal("an entry of another configuration version was found")
	}
}
