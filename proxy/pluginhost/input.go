package pluginhost

import (
	"io"
	"sync"

	"github.com/postern/postern/proxy/message"
)

// Content modes of part_read, part_match and part_sha256 (ABI §3.3).
const (
	modeRaw     = 0
	modeDecoded = 1
	modeText    = 2
)

// decodeBudget bounds the decoded part content one Input keeps. Content past it is still served, from a single
// slot that holds only the most recent oversized part, so a plugin reading one big part in windows decodes it
// once while memory stays bounded by the budget plus one part.
const decodeBudget = 32 << 20

// Input is what one message (or envelope stage) offers to a chain of plugins. The same Input is passed to every
// plugin of a chain, so decoded part content is cached in it once (bounded), not per plugin. It may be used by one
// call at a time (a chain runs its plugins one after the other); its fields must not change while a call runs.
type Input struct {
	Env         Envelope
	RcptCurrent string           // rcpt_to hook
	Msg         *message.Message // message hook; nil otherwise

	mu        sync.Mutex
	decoded   map[contentKey]*content
	cached    int64    // bytes held in decoded
	big       *content // the most recent content too big for the budget
	malformed []string // message.malformed values, made once
	headers   map[headerKey][]string
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

type contentKey struct {
	part int
	mode int
}

// content is the whole content of a part in one mode, or why it cannot be had.
type content struct {
	key  contentKey
	data []byte
	code int32 // 0, errDecode or errInvalid
}

// content returns the content of part in mode (which the caller has checked: the part exists, the mode is
// decoded or text and the part is not a multipart, or the mode is raw).
func (in *Input) content(part, mode int) *content {
	in.mu.Lock()
	defer in.mu.Unlock()
	key := contentKey{part, mode}
	if c := in.decoded[key]; c != nil {
		return c
	}
	if in.big != nil && in.big.key == key {
		return in.big
	}
	c := &content{key: key}
	var r io.Reader
	var err error
	switch mode {
	case modeRaw:
		r, err = in.Msg.RawBody(part)
	case modeDecoded:
		r, err = in.Msg.Decoded(part)
	default:
		r, err = in.Msg.Text(part)
	}
	if err == nil {
		c.data, err = io.ReadAll(r)
	}
	if err != nil {
		// Bad base64, an unknown encoding or charset: the raw bytes stay readable (ABI ERR_DECODE).
		c.data, c.code = nil, errDecode
	}
	size := int64(len(c.data))
	if in.cached+size <= decodeBudget {
		if in.decoded == nil {
			in.decoded = make(map[contentKey]*content)
		}
		in.decoded[key] = c
		in.cached += size
	} else {
		in.big = c
	}
	return c
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
