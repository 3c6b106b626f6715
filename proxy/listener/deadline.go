package listener

import (
	"sync/atomic"
	"time"
)

// Phase says which timeout bounds a connection's next read.
type Phase int32

// The phases of a client connection.
const (
	// PhaseIdle is between commands: Timeouts.Idle bounds the whole request, from the moment the server waits
	// for it (Request) to its last byte.
	PhaseIdle Phase = iota
	// PhaseCommand is inside a command (a message being received, a handshake): Timeouts.Command bounds each
	// wait, and with a MinRate the whole transfer.
	PhaseCommand
	// PhaseWait is a client waiting on purpose for the server to speak (IMAP IDLE): Timeouts.Wait.
	PhaseWait
)

// Timeouts bound a client connection's reads.
type Timeouts struct {
	Idle, Command, Wait time.Duration
}

// ReadDeadlines keeps a connection's read deadline, so that a silent client is always cut off and a slow one
// cannot hold a session for ever by sending a byte per timeout (slowloris):
//
//   - Between commands the deadline is fixed when the server begins to wait (Request): the whole command line
//     must arrive within Timeouts.Idle, however it is spread out. (Postfix's smtpd_per_request_deadline.)
//   - Inside a command every read gets Timeouts.Command; with MinRate, the deadline also moves by only one
//     second per MinRate bytes received (Progress), so a transfer slower than MinRate on average ends, while
//     one at least that fast never does. (Postfix's smtpd_min_data_rate.)
//   - Under stress (Stressed reports true) every timeout is at most its Stress counterpart.
//
// It sets the deadline without reaching the runtime's timers on every read: a deadline is only moved when it
// would move by more than Slack of the timeout. It is safe for one reader and any number of goroutines changing
// the phase or calling Request.
type ReadDeadlines struct {
	Timeouts
	// Stress are the timeouts under stress; a zero field leaves that timeout alone.
	Stress Timeouts
	// Stressed reports stress mode (Server.Stressed); nil: never.
	Stressed func() bool
	// MinRate is the slowest average transfer, in bytes per second, accepted inside a command; 0: none.
	MinRate int64

	phase atomic.Int32
	cur   time.Time   // the deadline set last
	seen  Phase       // the phase of the last Next
	start time.Time   // when the server began to wait for the current request (PhaseIdle)
	limit time.Time   // the furthest the deadline may go inside a command (MinRate)
	fresh atomic.Bool // Request was called since the last Next
}

// SetPhase changes the phase; the next Next uses its timeout.
func (d *ReadDeadlines) SetPhase(p Phase) { d.phase.Store(int32(p)) }

// Phase is the phase in force.
func (d *ReadDeadlines) Phase() Phase { return Phase(d.phase.Load()) }

// Timeout is the timeout of the phase in force.
func (d *ReadDeadlines) Timeout() time.Duration { return d.timeout(d.Phase()) }

func (d *ReadDeadlines) timeout(p Phase) time.Duration {
	to, stress := d.Idle, d.Stress.Idle
	switch p {
	case PhaseCommand:
		to, stress = d.Command, d.Stress.Command
	case PhaseWait:
		if d.Wait > 0 {
			to, stress = d.Wait, d.Stress.Wait
		}
	}
	if stress > 0 && stress < to && d.Stressed != nil && d.Stressed() {
		to = stress
	}
	return to
}

// Request says the server begins to wait for a new request (it sent a reply and reads): the next read between
// commands starts a new deadline.
func (d *ReadDeadlines) Request() { d.fresh.Store(true) }

// Progress records n bytes received at now: inside a command with a MinRate, the deadline may move on by
// n/MinRate.
func (d *ReadDeadlines) Progress(n int, now time.Time) {
	if d.MinRate <= 0 || d.seen != PhaseCommand || n <= 0 {
		return
	}
	d.limit = d.limit.Add(time.Duration(int64(n) * int64(time.Second) / d.MinRate))
	if max := now.Add(d.timeout(PhaseCommand)); d.limit.After(max) {
		d.limit = max
	}
}

// Next returns the deadline for a read starting now, and whether it must be set (it moved by more than the
// slack, or earlier).
func (d *ReadDeadlines) Next(now time.Time) (time.Time, bool) {
	p := d.Phase()
	to := d.timeout(p)
	if p != d.seen || d.start.IsZero() {
		d.seen, d.start, d.limit = p, now, now.Add(to)
	} else if d.fresh.Load() {
		d.start = now
	}
	d.fresh.Store(false)
	var t time.Time
	switch p {
	case PhaseIdle:
		t = d.start.Add(to)
	case PhaseCommand:
		t = now.Add(to)
		if d.MinRate > 0 && d.limit.Before(t) {
			t = d.limit
		}
	default:
		t = now.Add(to)
	}
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
