package pluginhost

import (
	"log/slog"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/postern/postern/proxy/message"
)

// Per-call budgets (ABI §6). Past one, the call is aborted: the plugin is broken, not the message.
const (
	maxLogBytes    = 64 << 10 // log bytes per call
	maxLogLine     = 4 << 10  // bytes per log line
	maxTags        = 256      // distinct tag keys per call
	maxChanges     = 1000     // recorded changes per call
	maxChangeBytes = 1 << 20  // header, banner and replacement bytes per call
	maxHeaderValue = 64 << 10 // one header value (or subject prefix)
	maxMatches     = 1000     // matches per part_match
)

// Validation limits of ABI §3.5 (breaking them is ERR_INVALID, not fatal).
const (
	maxTagKey      = 64
	maxTagValue    = 1024
	maxVerdictText = 512
)

// stateKey is the context key under which a call's state travels to the host functions. The state belongs to the
// call, never to the instance (ABI §1: instances are reused across unrelated messages).
type stateKey struct{}

// callState is everything one call (or one instance initialisation) accumulates.
type callState struct {
	p    *Plugin
	inst *instance
	hook Hook
	init bool // instantiation or postern_init: no hook, no message
	in   *Input

	verdict     Verdict
	tags        map[string]string
	score       float64
	changes     *message.Changes
	changeBytes int
	logs        []LogLine
	logBytes    int

	// The last part_match answer: a guest whose buffer was too small asks again, and must not pay for a
	// second scan.
	match    matchKey
	matchOut []byte
	hasMatch bool
}

type matchKey struct {
	part, mode, handle, max uint32
}

var statePool = sync.Pool{New: func() any { return new(callState) }}

func getState() *callState { return statePool.Get().(*callState) }

// putState recycles st. What a Result took (tags, logs, changes) is dropped, never reused.
func putState(st *callState) {
	matchOut := st.matchOut[:0]
	if cap(matchOut) > 64<<10 {
		matchOut = nil // don't keep a big buffer alive for every future call
	}
	*st = callState{matchOut: matchOut}
	statePool.Put(st)
}

func (st *callState) begin(p *Plugin, inst *instance, hook Hook, in *Input) {
	st.p, st.inst, st.hook, st.in = p, inst, hook, in
	st.verdict = Verdict{Kind: Accept}
}

func (st *callState) beginInit(p *Plugin) {
	st.p, st.init = p, true
	st.in = &emptyInput
	st.verdict = Verdict{Kind: Accept}
}

var emptyInput Input

// addLog records a log line, enforcing the log budget.
func (st *callState) addLog(level slog.Level, b []byte) {
	if len(b) > maxLogLine {
		abort(ErrBudget, "log budget exceeded (%d bytes per line, got %d)", maxLogLine, len(b))
	}
	st.logBytes += len(b)
	if st.logBytes > maxLogBytes {
		abort(ErrBudget, "log budget exceeded (%d bytes)", maxLogBytes)
	}
	st.logs = append(st.logs, LogLine{Level: level, Text: cleanLogText(b)})
}

// hostLog records a line the host writes on the guest's behalf (a bad pattern). It counts against the same
// budget, so a guest cannot make the host log without bound.
func (st *callState) hostLog(level slog.Level, text string) {
	if len(text) > maxLogLine {
		text = text[:maxLogLine]
	}
	st.addLog(level, []byte(text))
}

// cleanLogText makes a guest's bytes safe for any log: invalid UTF-8 and control characters (which could forge
// lines or drive a terminal) become U+FFFD. Tabs are kept.
func cleanLogText(b []byte) string {
	clean := true
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f || c >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b))
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r != '\t' && unicode.IsControl(r) {
			r = utf8.RuneError
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// checkChange aborts the call if recording one more change of n bytes would exceed the change budget.
func (st *callState) checkChange(n int) {
	if st.changes != nil && st.changes.Len() >= maxChanges {
		abort(ErrBudget, "change budget exceeded (%d changes)", maxChanges)
	}
	if st.changeBytes+n > maxChangeBytes {
		abort(ErrBudget, "change budget exceeded (%d bytes)", maxChangeBytes)
	}
}

func (st *callState) changeList() *message.Changes {
	if st.changes == nil {
		st.changes = new(message.Changes)
	}
	return st.changes
}
