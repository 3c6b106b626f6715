package pop3proxy

import (
	"io"
	"log/slog"

	"github.com/postern/postern/proxy/resultcache"
)

// cacheKey names one filtered result: the same message (UIDL) of the same user on the same upstream, filtered
// by the same configuration. A reload changes the version, so nothing an older configuration decided is served
// after it; the old entries age out.
type cacheKey struct {
	upstream, user, uidl, version string
}

// Owner is the user whose share of the cache the entry counts in.
func (k cacheKey) Owner() string { return k.user }

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

// resultCache is the listener's cache of filtered results (package resultcache: bounded in total and per user,
// in memory and on disk, never shared between users).
type resultCache struct {
	*resultcache.Cache[cacheKey, *result]
}

func newResultCache(c Cache, log *slog.Logger) (*resultCache, error) {
	rc, err := resultcache.New[cacheKey, *result](resultcache.Bounds{MemoryBytes: c.MemoryBytes,
		UserBytes: c.UserBytes, EntryBytes: c.EntryBytes, Dir: c.Dir, DiskBytes: c.DiskBytes}, log, nil)
	if err != nil {
		return nil, err
	}
	return &resultCache{rc}, nil
}

func (c *resultCache) get(k cacheKey) (*result, bool) { return c.Get(k) }

// put keeps r, with body (r.size bytes) as its content when it differs from the upstream's message: in memory up
// to the entry bound, else on disk within the disk bound, else not at all (the message is filtered again when it
// is read).
func (c *resultCache) put(k cacheKey, r *result, body io.ReaderAt) {
	cp := *r
	r = &cp
	r.content, r.file = nil, ""
	var content resultcache.Content
	if !r.unchanged && body != nil {
		if kept, ok := c.Store(body, r.size); ok {
			content, r.content, r.file = kept, kept.Bytes, kept.File
		}
	}
	c.Add(k, r, content, r.cost(k))
}
