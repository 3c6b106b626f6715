package listener

import (
	"sync/atomic"
	"time"
)

// Phase says which timeout bounds a connection's next read.
type Phase int32

// The phases of a client connection.
const (
	// PhaseIdle is between commands: Timeouts.Idle.
	PhaseIdle Phase = iota
	// PhaseCommand is inside a command (a message being received, a handshake): Timeouts.Command.
	PhaseCommand
	// PhaseWait is a client waiting on purpose for the server to speak (IMAP IDLE): Timeouts.Wait.
	PhaseWait
)

// Timeouts bound a client connection's reads. A slow but progressing client is never cut off, a silent one
// always is: every read gets a fresh deadline for the phase the session is in.
type Timeouts struct {
	Idle, Command, Wait time.Duration
}

// ReadDeadlines keeps a connection's read deadline fresh without reaching the runtime's timers on every read: a
// deadline is only moved when it would move by more than Slack of the timeout. It is safe for one reader and any
// number of goroutines changing the phase.
type ReadDeadlines struct {
	Timeouts
	phase atomic.Int32
	cur   time.Time
}

// SetPhase changes the phase; the next Next uses its timeout.
func (d *ReadDeadlines) SetPhase(p Phase) { d.phase.Store(int32(p)) }

// Phase is the phase in force.
func (d *ReadDeadlines) Phase() Phase { return Phase(d.phase.Load()) }

// Timeout is the timeout of the phase in force.
func (d *ReadDeadlines) Timeout() time.Duration {
	switch d.Phase() {
	case PhaseCommand:
		return d.Command
	case PhaseWait:
		if d.Wait > 0 {
			return d.Wait
		}
	}
	return d.Idle
}

// Next returns the deadline for a read starting now, and whether it must be set (it moved by more than the
// slack, or earlier).
func (d *ReadDeadlines) Next(now time.Time) (time.Time, bool) {
	to := d.Timeout()
	t := now.Add(to)
	if t.Before(d.cur) || t.Sub(d.cur) > Slack(to) {
		d.cur = t
		return t, true
	}
	return d.cur, false
}

// Slack is how far a deadline may stand before the one asked for, so that setting a deadline, which a session
// does several times per command, only reaches the runtime's timers now and then: a timeout of d then fires
// between d-d/32 (at most a second less) and d after the wait began.
func Slack(d time.Duration) time.Duration { return min(d/32, time.Second) }
