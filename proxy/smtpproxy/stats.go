package smtpproxy

import (
	"sync/atomic"

	"github.com/postern/postern/proxy/listener"
)

// Stats counts the events of a listener that an operator watches for: refusals by the session limits, time-outs,
// stress mode, upstream keep-alives. The counters only grow.
type Stats struct {
	listener.Stats
	// UpstreamKeepalives is the number of NOOPs sent to keep an upstream transaction open.
	UpstreamKeepalives int64
	// UpstreamRedials is the number of upstream connections opened again in the middle of a transaction, to
	// replay its envelope after the first was lost.
	UpstreamRedials int64
}

type counters struct {
	keepalives, redials atomic.Int64
}

// Stats returns the listener's counters.
func (s *Server) Stats() Stats {
	return Stats{Stats: s.ln.Stats(), UpstreamKeepalives: s.stats.keepalives.Load(),
		UpstreamRedials: s.stats.redials.Load()}
}
