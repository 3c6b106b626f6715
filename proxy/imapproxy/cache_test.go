package imapproxy

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestResultCacheKeyAndBounds(t *testing.T) {
	c, err := newResultCache(Cache{MemoryBytes: 3*entryOverhead + 100, EntryBytes: 50, UserBytes: 2*entryOverhead + 100}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	put := func(k cacheKey, s string) *result {
		return c.put(k, &result{size: int64(len(s))}, bytes.NewReader([]byte(s)))
	}
	a := cacheKey{upstream: "u", user: "alice", mailbox: "INBOX", uidValidity: 1, uid: 7, configVersion: "v1"}
	put(a, "12345")
	if r, ok := c.get(a); !ok || string(r.content) != "12345" {
		t.Fatalf("get = %v, %v", r, ok)
	}
	for _, other := range []cacheKey{
		{upstream: "u", user: "alice", mailbox: "INBOX", uidValidity: 2, uid: 7, configVersion: "v1"},
		{upstream: "u", user: "alice", mailbox: "INBOX", uidValidity: 1, uid: 7, configVersion: "v2"},
		{upstream: "u", user: "bob", mailbox: "INBOX", uidValidity: 1, uid: 7, configVersion: "v1"},
		{upstream: "u", user: "alice", mailbox: "Sent", uidValidity: 1, uid: 7, configVersion: "v1"},
	} {
		if _, ok := c.get(other); ok {
			t.Errorf("hit for %+v, which names another message, user or configuration", other)
		}
	}
	b, d := a, a
	b.uid, d.uid = 8, 9
	put(b, "abcd")
	c.get(a)      // a is now the most recent
	put(d, "xyz") // alice's share holds two: b, the least recent of hers, goes
	if _, ok := c.get(b); ok {
		t.Error("least recently used entry kept past the user's share")
	}
	if _, ok := c.get(a); !ok {
		t.Error("recently used entry evicted")
	}
	if _, n := c.Len(); n > c.Bounds().MemoryBytes || c.UserBytes("alice") > c.Bounds().UserBytes {
		t.Errorf("cache holds %d bytes (alice %d), bounds %+v", n, c.UserBytes("alice"), c.Bounds())
	}
	big := a
	big.uid = 10
	if put(big, string(make([]byte, 51))) != nil {
		t.Error("message larger than the entry bound kept without a disk cache")
	}
}

func TestResultCacheDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "stale"), []byte("old"), 0o600)
	c, err := newResultCache(Cache{MemoryBytes: 1 << 20, EntryBytes: 10, UserBytes: 1 << 20, Dir: dir, DiskBytes: 100}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stale")); !os.IsNotExist(err) {
		t.Error("the disk cache was not emptied at start")
	}
	k := cacheKey{user: "alice", uid: 1}
	body := bytes.Repeat([]byte("x"), 60)
	r := c.put(k, &result{size: 60}, bytes.NewReader(body))
	if r == nil || r.file == "" {
		t.Fatalf("60-byte message not kept on disk: %+v", r)
	}
	ra, done, ok := r.open()
	if !ok {
		t.Fatal("open failed")
	}
	got, _ := io.ReadAll(io.NewSectionReader(ra, 0, 60))
	done()
	if !bytes.Equal(got, body) {
		t.Error("disk copy differs")
	}
	k2 := k
	k2.uid = 2
	c.put(k2, &result{size: 60}, bytes.NewReader(body)) // 120 > 100 on disk: the first goes
	if _, ok := c.get(k); ok {
		t.Error("disk bound not kept")
	}
	if _, err := os.Stat(r.file); !os.IsNotExist(err) {
		t.Error("evicted file left on disk")
	}
}
