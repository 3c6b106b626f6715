package listener

import "sync/atomic"

// Stats counts what a Server refused and why, for an operator watching for floods and slow clients. The
// counters only grow; Sessions and Stressed are the state now.
type Stats struct {
	// Sessions is the number of connections being served now.
	Sessions int64
	// Stressed reports stress mode (Options.StressSessions).
	Stressed bool
	// RefusedBusy counts connections refused at the session limit, RefusedClientBusy at the per-client
	// session limit, RefusedClientRate at the per-client connection rate.
	RefusedBusy, RefusedClientBusy, RefusedClientRate int64
	// StressEntered counts the times stress mode began.
	StressEntered int64
	// IdleTimeouts counts sessions cut off waiting for a command, CommandTimeouts inside one (a message too
	// slow, a handshake), as reported by the front end (Server.CountTimeout).
	IdleTimeouts, CommandTimeouts int64
}

type stats struct {
	refusedBusy, refusedClientBusy, refusedClientRate atomic.Int64
	stress                                            atomic.Int64
	idleTimeouts, commandTimeouts                     atomic.Int64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Sessions:          s.sessions.Load(),
		Stressed:          s.stressed.Load(),
		RefusedBusy:       s.stats.refusedBusy.Load(),
		RefusedClientBusy: s.stats.refusedClientBusy.Load(),
		RefusedClientRate: s.stats.refusedClientRate.Load(),
		StressEntered:     s.stats.stress.Load(),
		IdleTimeouts:      s.stats.idleTimeouts.Load(),
		CommandTimeouts:   s.stats.commandTimeouts.Load(),
	}
}
