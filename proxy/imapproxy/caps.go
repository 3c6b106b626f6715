package imapproxy

import (
	"fmt"

	"github.com/emersion/go-imap/v2"
)

// relayable lists the opt-in capabilities the proxy can offer a client, each only when the upstream has it too:
// advertising one the upstream lacks would promise a command Postern cannot relay.
var relayable = []imap.Cap{
	imap.CapUIDPlus,
	imap.CapMove,
	imap.CapNamespace,
	imap.CapListExtended,
	imap.CapListStatus,
	imap.CapSpecialUse,
	imap.CapChildren,
}

// Capabilities returns the opt-in capabilities to advertise to a client: those the proxy relays and the upstream
// has. appendLimit is the smaller of the proxy's own limit and the upstream's APPENDLIMIT (when it announces one
// for all mailboxes); the caller advertises it as APPENDLIMIT=n.
func Capabilities(upstream imap.CapSet, proxyLimit uint32) (caps imap.CapSet, appendLimit uint32) {
	caps = make(imap.CapSet)
	for _, c := range relayable {
		if upstream.Has(c) {
			caps[c] = struct{}{}
		}
	}
	appendLimit = proxyLimit
	if limit, ok := upstream.AppendLimit(); ok && limit != nil && *limit < appendLimit {
		appendLimit = *limit
	}
	caps[imap.Cap(fmt.Sprintf("APPENDLIMIT=%d", appendLimit))] = struct{}{}
	return caps, appendLimit
}
