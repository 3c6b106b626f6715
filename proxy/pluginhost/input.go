package pluginhost

import (
	"sync"

	"github.com/postern/postern/proxy/message"
)

// Input is what one message (or envelope stage) offers to a chain of plugins. The same Input is passed to every
// plugin of a chain, so what is costly to redo (small decoded contents, hashes, lengths, decoded headers) is kept
// in it once, within fixed bounds, not per plugin: see content.go for how part content is served. It may be used
// by one call at a time (a chain runs its plugins one after the other); its fields must not change while a call
// runs.
type Input struct {
	Env         Envelope
	RcptCurrent string           // rcpt_to hook
	Msg         *message.Message // message hook; nil otherwise

	// mu guards everything below. A content operation holds it throughout, streams included: calls on one Input
	// do not overlap, so it never waits in practice, and it keeps a stream's cursor consistent if they ever do.
	mu        sync.Mutex
	contents  map[contentKey]*content
	cached    int64      // bytes of content held in memory (content.data), at most decodeBudget
	streams   []*content // contents with an open part_read stream, least recently used first
	opened    int        // content streams opened, for tests: a backward seek reopens, a forward one must not
	malformed []string   // message.malformed values, made once
	ambiguous []string   // message.ambiguous values, made once
	headers   map[headerKey][]string
	parts     []byte // parts_get's answer, made once
	shape     uint8  // 0 not known yet, 1 no part may be a file, 2 some may (mayCarryFiles)
}

// partList returns parts_get's answer for the message.
func (in *Input) partList() []byte {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.parts == nil {
		in.parts = encodePartList(in.Msg)
	}
	return in.parts
}

// headerKey names one header_get lookup. The name is kept as the guest spelled it: plugins of a chain ask for
// "Subject" the same way, and a miss only costs a lookup.
type headerKey struct {
	part    int
	name    string
	decoded bool
}

// maxCachedHeaders bounds the header lookups an Input remembers.
const maxCachedHeaders = 256

// headerValues is Message.HeaderValues, remembered: every plugin of a chain reads Subject and From, and decoding
// RFC 2047 words is most of what such a read costs.
func (in *Input) headerValues(part int, name []byte, decoded bool) []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.headers[headerKey{part, string(name), decoded}]; ok {
		return v
	}
	key := headerKey{part, string(name), decoded}
	v := in.Msg.HeaderValues(part, key.name, decoded)
	if in.headers == nil {
		in.headers = make(map[headerKey][]string)
	}
	if len(in.headers) < maxCachedHeaders {
		in.headers[key] = v
	}
	return v
}

// malformedValues returns the message.malformed field's values: one "kind: detail" per defect.
func (in *Input) malformedValues() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.malformed == nil {
		defects := in.Msg.Defects()
		in.malformed = make([]string, len(defects))
		for i, d := range defects {
			in.malformed[i] = d.String()
		}
	}
	return in.malformed
}

// ambiguousValues returns the message.ambiguous field's values: one "kind: detail" per place where mail clients
// read the message differently.
func (in *Input) ambiguousValues() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.ambiguous == nil {
		as := in.Msg.Ambiguities()
		in.ambiguous = make([]string, len(as))
		for i, d := range as {
			in.ambiguous[i] = d.String()
		}
	}
	return in.ambiguous
}
