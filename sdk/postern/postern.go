package postern

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"unicode/utf8"
)

// ABIVersion is the plugin ABI version this package implements; it is exported to the host as
// postern_abi_version.
const ABIVersion = 1

// hook identifies a hook export; the values are the bits of ABI §2.1.
type hook uint32

const (
	hookConnect  hook = 0x1
	hookMailFrom hook = 0x2
	hookRcptTo   hook = 0x4
	hookMessage  hook = 0x8
)

func (k hook) String() string {
	switch k {
	case hookConnect:
		return "on_connect"
	case hookMailFrom:
		return "on_mail_from"
	case hookRcptTo:
		return "on_rcpt_to"
	case hookMessage:
		return "on_message"
	}
	return "postern_init"
}

var handlers struct {
	init     func() error
	envelope map[hook]func(*Envelope) error
	message  func(*Message) error
}

// The handlers receive pointers to these: the types carry no state, so no call allocates them.
var (
	theEnvelope Envelope
	theMessage  Message
)

// OnInit registers fn to run once per plugin instance, before any hook: read the configuration (Config) and
// compile pattern sets (Compile) there. A non-nil error means "my configuration is invalid": it is logged and
// the plugin fails to load, with that log line as the reason.
//
// Each On function may be called once, from an init function; a second registration panics.
func OnInit(fn func() error) {
	if handlers.init != nil {
		panic("postern: OnInit registered twice")
	}
	handlers.init = fn
}

// OnConnect registers the handler for a client connection (SMTP, POP3 and IMAP, before the greeting).
func OnConnect(fn func(*Envelope) error) { onEnvelope(hookConnect, fn) }

// OnMailFrom registers the handler for SMTP MAIL FROM.
func OnMailFrom(fn func(*Envelope) error) { onEnvelope(hookMailFrom, fn) }

// OnRcptTo registers the handler for each SMTP RCPT TO; Envelope.RcptCurrent is the recipient being decided.
func OnRcptTo(fn func(*Envelope) error) { onEnvelope(hookRcptTo, fn) }

// OnMessage registers the handler for a complete message (SMTP end of DATA, POP3 RETR/TOP, IMAP FETCH and
// APPEND).
//
// A handler returns nil when it ran to completion, whatever it decided: the decision is made by calling a
// verdict method (no call means accept). A non-nil error, or a panic, is a plugin failure: the SDK logs it, the
// hook returns non-zero, and the host discards everything the call set (verdict, tags, score, changes) and
// applies the plugin's on_error outcome (tempfail unless configured otherwise).
func OnMessage(fn func(*Message) error) {
	if handlers.message != nil {
		panic("postern: OnMessage registered twice")
	}
	handlers.message = fn
}

func onEnvelope(k hook, fn func(*Envelope) error) {
	if handlers.envelope == nil {
		handlers.envelope = make(map[hook]func(*Envelope) error, 3)
	}
	if handlers.envelope[k] != nil {
		panic("postern: " + k.String() + " handler registered twice")
	}
	handlers.envelope[k] = fn
}

// Want is a kind of message the message hook is for (ABI §2.2, postern_wants).
type Want uint32

// WantFiles declares that the message hook matters only for messages that may carry a file: the host then
// skips it (and records it as skipped) for a message whose parts are all inline, unnamed text/plain or text/html
// bodies without defects or ambiguities. For a plugin that inspects attachments, and that is certain to accept
// such a message.
const WantFiles Want = 0x1

//lint:ignore U1000 read by the postern_wants export (exports_wasip1.go)
var wants Want

// Wants declares the kinds of message the OnMessage handler is for, so that the host skips the call for any other
// message; call it from OnInit (it may depend on the configuration). The default, 0, is every message. The host
// reads the declaration once, after the first instance's OnInit.
func Wants(w Want) { wants = w }

// registered returns the postern_hooks mask: the hooks with a handler.
func registered() hook {
	var m hook
	for k, fn := range handlers.envelope {
		if fn != nil {
			m |= k
		}
	}
	if handlers.message != nil {
		m |= hookMessage
	}
	return m
}

// Hook results. Any non-zero value is a failure for the host; the distinct values tell someone reading a
// trace which path produced it.
const (
	rcOK      = 0
	rcError   = 1
	rcPanic   = 2
	rcMissing = 3
)

func runInit() int32 {
	if handlers.init == nil {
		return rcOK
	}
	return run(0, handlers.init)
}

func runEnvelope(k hook) int32 {
	fn := handlers.envelope[k]
	if fn == nil {
		// The host only calls hooks in the postern_hooks mask; a call without a handler is a host bug, and
		// accepting silently would hide it.
		logLine(LevelError, k.String()+": no handler registered")
		return rcMissing
	}
	return run(k, func() error { return fn(&theEnvelope) })
}

func runMessage() int32 {
	if handlers.message == nil {
		logLine(LevelError, hookMessage.String()+": no handler registered")
		return rcMissing
	}
	return run(hookMessage, func() error { return handlers.message(&theMessage) })
}

// run calls fn and turns an error or a panic into a log line (the host shows the guest's log as the reason of
// a failure) and a non-zero result.
func run(k hook, fn func() error) (rc int32) {
	resetCall()
	defer func() {
		if r := recover(); r != nil {
			logLine(LevelError, k.String()+": panic: "+panicText(r))
			logLine(LevelDebug, string(debug.Stack()))
			rc = rcPanic
		}
	}()
	if err := fn(); err != nil {
		logLine(LevelError, k.String()+": "+err.Error())
		return rcError
	}
	return rcOK
}

// panicText describes a recovered panic value without fmt, which would pull reflection into every plugin.
func panicText(r any) string {
	switch v := r.(type) {
	case error:
		return v.Error()
	case string:
		return v
	case interface{ String() string }:
		return v.String()
	}
	return "(a panic value that is neither an error nor a string)"
}

// resetCall forgets what the SDK cached during the previous call: message data never outlives its call.
func resetCall() {
	parts = parts[:0]
	partsValid = false
}

// Level is the severity of a log line.
type Level int32

// Log levels, as in ABI §3.5.
const (
	LevelDebug Level = 0
	LevelInfo  Level = 1
	LevelWarn  Level = 2
	LevelError Level = 3
)

// maxLogLine is the host's per-line budget (ABI §6); longer lines are cut here, at a UTF-8 boundary, because a
// too long log line must not turn into a plugin failure.
const maxLogLine = 4096

// Log records a log line with the plugin's name. It works in OnInit and in every hook. Lines longer than
// 4 KiB are truncated. The host also limits the log bytes of a call (64 KiB by default); past that the call
// fails, so do not log per byte or per match of untrusted input.
func Log(level Level, msg string) { logLine(level, msg) }

// Logf is Log with fmt formatting.
func Logf(level Level, format string, args ...any) { logLine(level, fmt.Sprintf(format, args...)) }

func logLine(level Level, msg string) {
	if len(msg) > maxLogLine {
		cut := maxLogLine
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	hostLog(int32(level), msg)
}

// ConfigJSON returns the plugin's configuration: a JSON document, "{}" when the policy gives none.
func ConfigJSON() ([]byte, error) {
	b, owned, err := fetch(hostConfigGet)
	if err != nil {
		return nil, err
	}
	if !owned {
		b = bytes.Clone(b)
	}
	return b, nil
}

// Config decodes the plugin's configuration into v (a pointer to a struct holding the defaults) with
// DecodeConfig: strictly, so that a misspelt setting fails the load instead of being silently ignored, and with
// errors that name the key. An empty configuration leaves v unchanged, like "{}". Call it from OnInit and return
// its error.
func Config(v any) error {
	b, _, err := fetch(hostConfigGet)
	if err != nil {
		return fmt.Errorf("postern: reading the configuration: %w", err)
	}
	if err := DecodeConfig(b, v); err != nil {
		return fmt.Errorf("postern: configuration: %w", err)
	}
	return nil
}

// Field returns the first value of a context field (ABI §3.2: "protocol", "client.ip", "mail_from", ...). The
// error is ErrNotFound for an unknown name, ErrUnavailable for a field that does not apply to the current hook.
func Field(name string) (string, error) {
	return fetchString(func(buf *byte, limit uint32) int32 { return hostFieldGet(name, 0, buf, limit) })
}

// Fields returns every value of a multi-valued field ("rcpt", "message.malformed"); none is an empty list and
// no error.
func Fields(name string) ([]string, error) {
	var vals []string
	for i := uint32(0); ; i++ {
		v, err := fetchString(func(buf *byte, limit uint32) int32 { return hostFieldGet(name, i, buf, limit) })
		if err == ErrNotFound {
			return vals, nil
		}
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
}
