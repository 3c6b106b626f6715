package imapproxy

import "testing"

func TestFilteredCacheKeyAndBound(t *testing.T) {
	c := newFilteredCache(10)
	a := cacheKey{upstream: "u", user: "alice", mailbox: "INBOX", uidValidity: 1, uid: 7, configVersion: "v1"}
	c.put(a, []byte("12345"))
	if got, ok := c.get(a); !ok || string(got) != "12345" {
		t.Fatalf("get = %q, %v", got, ok)
	}
	for _, other := range []cacheKey{
		{upstream: "u", user: "alice", mailbox: "INBOX", uidValidity: 2, uid: 7, configVersion: "v1"},
		{upstream: "u", user: "alice", mailbox: "INBOX", uidValidity: 1, uid: 7, configVersion: "v2"},
		{upstream: "u", user: "bob", mailbox: "INBOX", uidValidity: 1, uid: 7, configVersion: "v1"},
	} {
		if _, ok := c.get(other); ok {
			t.Errorf("hit for %+v, which names another message or configuration", other)
		}
	}
	b := a
	b.uid = 8
	c.put(b, []byte("abcd"))
	c.get(a) // a is now the most recent
	d := a
	d.uid = 9
	c.put(d, []byte("xyz")) // 5+4+3 > 10: b, the least recent, goes
	if _, ok := c.get(b); ok {
		t.Error("least recently used entry kept past the bound")
	}
	if _, ok := c.get(a); !ok {
		t.Error("recently used entry evicted")
	}
	if c.bytes > c.maxBytes {
		t.Errorf("cache holds %d bytes, bound %d", c.bytes, c.maxBytes)
	}
	big := a
	big.uid = 10
	c.put(big, make([]byte, 11))
	if _, ok := c.get(big); ok {
		t.Error("message larger than the whole bound was cached")
	}
}
