package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/sys"

	"github.com/postern/postern/proxy/metrics"
)

// Reasons a call fails. A Result's Err matches exactly one of them with errors.Is, so callers can count failures
// by reason without parsing messages.
var (
	ErrTimeout    = errors.New("timeout")              // the call ran past its Timeout (or the caller's deadline)
	ErrCanceled   = errors.New("canceled")             // the caller's context was canceled
	ErrTrap       = errors.New("wasm trap")            // the guest trapped: a Go panic, unreachable, bad memory access
	ErrExit       = errors.New("module exited")        // the guest called proc_exit
	ErrOutOfRange = errors.New("out of range pointer") // a host function got a pointer outside guest memory
	ErrBudget     = errors.New("budget exceeded")      // a per-call budget of ABI §6 was exceeded
	ErrHookFailed = errors.New("hook failed")          // the hook returned non-zero
	ErrBusy       = errors.New("no free instance")     // every instance stayed busy until the deadline
	ErrClosed     = errors.New("plugin closed")        // the plugin (or its host) was closed
	ErrInstance   = errors.New("instance failed")      // a new instance could not be created
)

// ErrConfigRefused is the reason of a Load error when the plugin's postern_init refused its configuration (the
// error also carries the plugin's log lines, which say why).
var ErrConfigRefused = errors.New("configuration refused")

// CallError is the error of a failed call. Its message names the plugin and the reason, for example
// `plugin "dlp": timeout after 50ms` or `plugin "x": wasm trap: unreachable`.
type CallError struct {
	Plugin string
	Hook   Hook
	Reason error  // one of the Err* reasons above
	Detail string // the reason in words
	Err    error  // the underlying error (wazero's), if any
	// Memory is set for a trap that happened with the instance's linear memory within an eighth of its limit:
	// almost always an allocation that failed (a guest's out-of-memory ends in a trap, not an error code).
	Memory bool
}

// metricKind is the kind of a failed call in the metrics.
func metricKind(err error) string {
	var ce *CallError
	if !errors.As(err, &ce) {
		return metrics.KindTrap
	}
	switch {
	case ce.Memory:
		return metrics.KindMemory
	case errors.Is(ce.Reason, ErrTimeout):
		return metrics.KindTimeout
	case errors.Is(ce.Reason, ErrTrap), errors.Is(ce.Reason, ErrExit):
		return metrics.KindTrap
	case errors.Is(ce.Reason, ErrHookFailed), errors.Is(ce.Reason, ErrOutOfRange), errors.Is(ce.Reason, ErrBudget):
		return metrics.KindBadResult
	case errors.Is(ce.Reason, ErrBusy):
		return metrics.KindBusy
	case errors.Is(ce.Reason, ErrCanceled):
		return metrics.KindCanceled
	case errors.Is(ce.Reason, ErrClosed):
		return metrics.KindClosed
	}
	return metrics.KindInstance
}

// Error returns `plugin "name": reason`.
func (e *CallError) Error() string { return fmt.Sprintf("plugin %q: %s", e.Plugin, e.Detail) }

// Unwrap returns the reason and the underlying error, so errors.Is works with both.
func (e *CallError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

// abortError is what a host function panics with to abort the call (ABI §3.1: out of range pointers and budgets
// are fatal). wazero recovers the panic and returns it wrapped (with %w), so classify finds it with errors.As.
type abortError struct {
	reason error
	msg    string
}

func (e *abortError) Error() string { return e.msg }
func (e *abortError) Unwrap() error { return e.reason }

func abort(reason error, format string, args ...any) {
	panic(&abortError{reason: reason, msg: fmt.Sprintf(format, args...)})
}

// classify turns an error from a guest call into a reason and a one-line detail. timeout is the call's own
// limit; parent is the caller's context, to tell our timeout from the caller's deadline or cancellation.
func classify(err error, parent context.Context, timeout time.Duration) (detail string, reason error) {
	var ab *abortError
	if errors.As(err, &ab) {
		return ab.msg, ab.reason
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			if parent.Err() != nil {
				return "caller's deadline exceeded", ErrTimeout
			}
			return "timeout after " + timeout.String(), ErrTimeout
		case sys.ExitCodeContextCanceled:
			return "canceled by the caller", ErrCanceled
		}
		return fmt.Sprintf("module exited with code %d", exit.ExitCode()), ErrExit
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "wasm error: "); ok {
		// wazero: "wasm error: unreachable\nwasm stack trace:\n\t...". Keep the first line; the stack trace stays
		// available through Unwrap for debugging.
		first, _, _ := strings.Cut(rest, "\n")
		return "wasm trap: " + first, ErrTrap
	}
	first, _, _ := strings.Cut(msg, "\n")
	return "wasm trap: " + first, ErrTrap
}
