package resultcache

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

type key struct{ user, id string }

func (k key) Owner() string { return k.user }

func newCache(t *testing.T, b Bounds, evicted func(key, string)) *Cache[key, string] {
	t.Helper()
	c, err := New(b, slog.New(slog.DiscardHandler), evicted)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// add stores n bytes for k and enters them at their size.
func add(t *testing.T, c *Cache[key, string], k key, n int) (Content, bool) {
	t.Helper()
	content, ok := c.Store(bytes.NewReader(bytes.Repeat([]byte{'x'}, n)), int64(n))
	if !ok {
		return content, false
	}
	return content, c.Add(k, k.id, content, int64(len(content.Bytes))+10)
}

func TestBoundsEvictLeastRecentlyUsed(t *testing.T) {
	var evicted []string
	c := newCache(t, Bounds{MemoryBytes: 400, UserBytes: 250, EntryBytes: 100}, func(k key, v string) {
		evicted = append(evicted, v)
	})
	a1, a2, a3 := key{"alice", "a1"}, key{"alice", "a2"}, key{"alice", "a3"}
	add(t, c, a1, 100)
	add(t, c, a2, 100)
	c.Get(a1)          // a1 is now the more recent of alice's
	add(t, c, a3, 100) // alice's share holds two: a2 goes
	if _, ok := c.Get(a2); ok {
		t.Error("the least recently used entry stayed past the user's share")
	}
	if v, ok := c.Get(a1); !ok || v != "a1" {
		t.Error("a recently used entry was evicted")
	}
	if got := c.UserBytes("alice"); got != 220 {
		t.Errorf("alice counts %d bytes, want 220", got)
	}
	// Other users' entries fill the cache: the least recently used go, whoever's they are.
	for _, id := range []string{"b1", "b2"} {
		add(t, c, key{"bob", id}, 100)
	}
	if n, bytes := c.Len(); n != 3 || bytes > 400 {
		t.Errorf("%d entries, %d bytes; want 3 within 400", n, bytes)
	}
	if !slices.Equal(evicted, []string{"a2", "a3"}) {
		t.Errorf("evicted %q, want a2 (alice's share), then a3 (the least recently used)", evicted)
	}
	if _, ok := add(t, c, key{"bob", "big"}, 101); ok {
		t.Error("a content over the entry bound was kept without a disk")
	}
	if c.Add(key{"carol", "c"}, "c", Content{}, 251) {
		t.Error("an entry over the user share was entered")
	}
}

func TestDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "stale"), []byte("from an earlier run"), 0o600)
	c := newCache(t, Bounds{MemoryBytes: 1 << 20, UserBytes: 1 << 20, EntryBytes: 10, Dir: dir, DiskBytes: 100}, nil)
	if _, err := os.Stat(filepath.Join(dir, "stale")); !os.IsNotExist(err) {
		t.Fatal("the disk directory kept an earlier run's file")
	}
	k1, k2 := key{"alice", "1"}, key{"alice", "2"}
	first, ok := add(t, c, k1, 60)
	if !ok || first.File == "" || first.Bytes != nil {
		t.Fatalf("60 bytes over the entry bound: %+v, want a file", first)
	}
	if b, _ := os.ReadFile(first.File); len(b) != 60 {
		t.Fatalf("the file holds %d bytes", len(b))
	}
	// The same key again: the new file replaces the old, which goes.
	again, _ := add(t, c, k1, 60)
	if _, err := os.Stat(again.File); err != nil {
		t.Fatalf("the replacing entry's file is gone: %v", err)
	}
	if _, err := os.Stat(first.File); !os.IsNotExist(err) && first.File != again.File {
		t.Error("the replaced entry's file stayed")
	}
	add(t, c, k2, 60) // 120 > 100 on disk: k1 goes
	if _, ok := c.Get(k1); ok {
		t.Error("the disk bound was not kept")
	}
	if _, err := os.Stat(again.File); !os.IsNotExist(err) {
		t.Error("an evicted entry's file stayed")
	}
	if _, ok := add(t, c, key{"alice", "3"}, 101); ok {
		t.Error("a content over the disk bound was kept")
	}
	if des, _ := os.ReadDir(dir); len(des) != 1 {
		t.Errorf("%d files on disk, want 1 (k2's)", len(des))
	}
	// An entry refused for its cost leaves no file.
	content, _ := c.Store(bytes.NewReader(make([]byte, 50)), 50)
	if c.Add(key{"alice", "4"}, "4", content, 2<<20) {
		t.Fatal("an entry over the memory bound was entered")
	}
	if _, err := os.Stat(content.File); !os.IsNotExist(err) {
		t.Error("a refused entry's file stayed")
	}
}
