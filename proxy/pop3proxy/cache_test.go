package pop3proxy

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func testCache(t *testing.T, c Cache) *resultCache {
	t.Helper()
	rc, err := newResultCache(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func changed(n int) (*result, *bytes.Reader) {
	return &result{size: int64(n)}, bytes.NewReader(make([]byte, n))
}

func TestCacheBounds(t *testing.T) {
	c := testCache(t, Cache{MemoryBytes: 10 * (entryOverhead + 1100), EntryBytes: 1000, UserBytes: 4 * (entryOverhead + 1100)})
	key := func(user string, i int) cacheKey { return cacheKey{"up", user, fmt.Sprint(i), "v1"} }
	r, body := changed(2000)
	c.put(key("a", 0), r, body)
	if r, ok := c.get(key("a", 0)); !ok || r.content != nil || r.file != "" || r.size != 2000 {
		t.Fatalf("an entry over the entry bound keeps its size without content: %+v %v", r, ok)
	}
	for i := 1; i <= 10; i++ {
		r, body := changed(900)
		c.put(key("a", i), r, body)
	}
	if _, ok := c.get(key("a", 1)); ok {
		t.Fatal("user a went over its share and its oldest entry stayed")
	}
	if r, ok := c.get(key("a", 10)); !ok || len(r.content) != 900 {
		t.Fatal("the newest entry was evicted")
	}
	for i := 0; i < 40; i++ {
		r, body := changed(900)
		c.put(key(fmt.Sprint("u", i), 0), r, body)
	}
	if _, bytes := c.Len(); bytes > c.Bounds().MemoryBytes {
		t.Fatalf("cache holds %d bytes, bound %d", bytes, c.Bounds().MemoryBytes)
	}
	if _, ok := c.get(key("a", 10)); ok {
		t.Fatal("the least recently used entry survived")
	}
	// A different configuration version is a different entry.
	c.put(cacheKey{"up", "b", "1", "v1"}, &result{size: 1, unchanged: true}, nil)
	if _, ok := c.get(cacheKey{"up", "b", "1", "v2"}); ok {
		t.Fatal("an entry of another configuration version was found")
	}
}

func TestCacheOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "stale"), []byte("from an earlier run"), 0o600)
	c := testCache(t, Cache{MemoryBytes: 1 << 20, EntryBytes: 100, UserBytes: 1 << 20, Dir: dir, DiskBytes: 5000})
	if _, err := os.Stat(filepath.Join(dir, "stale")); !os.IsNotExist(err) {
		t.Fatal("the disk cache kept an earlier run's file")
	}
	key := func(i int) cacheKey { return cacheKey{"up", "a", fmt.Sprint(i), "v1"} }
	content := bytes.Repeat([]byte("y"), 2000)
	c.put(key(1), &result{size: 2000}, bytes.NewReader(content))
	r, ok := c.get(key(1))
	if !ok || r.file == "" || r.content != nil {
		t.Fatalf("a content over the memory entry bound is not on disk: %+v", r)
	}
	if b, _ := os.ReadFile(r.file); !bytes.Equal(b, content) {
		t.Fatal("the file holds other bytes")
	}
	first := r.file
	c.put(key(2), &result{size: 2000}, bytes.NewReader(content))
	c.put(key(3), &result{size: 2000}, bytes.NewReader(content)) // 6000 > 5000: the oldest goes
	if _, ok := c.get(key(1)); ok {
		t.Fatal("the disk bound was not kept")
	}
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Fatal("an evicted entry's file stayed")
	}
	c.put(key(4), &result{size: 6000}, bytes.NewReader(make([]byte, 6000)))
	if r, _ := c.get(key(4)); r == nil || r.file != "" {
		t.Fatalf("a content over the disk bound was stored: %+v", r)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 2 {
		t.Fatalf("%d files on disk, want 2", len(files))
	}
}
