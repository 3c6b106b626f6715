package pluginhost

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/postern/postern/proxy/guestprof"
	"github.com/postern/postern/proxy/message"
)

// Hook is one of the points of a mail transaction where a plugin runs.
type Hook int

// The hooks, in the order a transaction meets them. The values are the bit numbers of ABI §2.1.
const (
	HookConnect Hook = iota
	HookMailFrom
	HookRcptTo
	HookMessage
	numHooks
)

var hookNames = [numHooks]string{"connect", "mail_from", "rcpt_to", "message"}

// hookExports are the guest exports that implement each hook (ABI §2).
var hookExports = [numHooks]string{"postern_on_connect", "postern_on_mail_from", "postern_on_rcpt_to", "postern_on_message"}

// String returns the hook's name as the ABI's field "hook" spells it: "connect", "mail_from", "rcpt_to" or "message".
func (h Hook) String() string {
	if h >= 0 && h < numHooks {
		return hookNames[h]
	}
	return fmt.Sprintf("hook(%d)", int(h))
}

func (h Hook) valid() bool { return h >= 0 && h < numHooks }

// HookSet is a set of hooks, with the bits of ABI §2.1 (bit n is Hook n).
type HookSet uint32

// allHooks is every hook bit this host knows.
const allHooks HookSet = 1<<numHooks - 1

// Has reports whether h is in the set.
func (s HookSet) Has(h Hook) bool { return h.valid() && s&(1<<h) != 0 }

// String lists the hooks in the set, for example "connect,message".
func (s HookSet) String() string {
	var names []string
	for h := range numHooks {
		if s.Has(h) {
			names = append(names, h.String())
		}
	}
	return strings.Join(names, ",")
}

// Kind is what a verdict asks the proxy to do with the message (or envelope stage). Its values are the ABI's
// set_verdict kinds.
type Kind int

// The verdict kinds of ABI §3.5.
const (
	Accept Kind = iota
	Reject
	Tempfail
	Discard
	Quarantine
	numKinds
)

var kindNames = [numKinds]string{"accept", "reject", "tempfail", "discard", "quarantine"}

// String returns the lower-case name of the kind, as used in configuration and logs.
func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// MarshalText implements encoding.TextMarshaler.
func (k Kind) MarshalText() ([]byte, error) {
	if k < 0 || k >= numKinds {
		return nil, fmt.Errorf("pluginhost: invalid verdict kind %d", int(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; it accepts the names String returns, in any case.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if strings.EqualFold(string(b), n) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("pluginhost: unknown verdict kind %q (want accept, reject, tempfail, discard or quarantine)", b)
}

// Verdict is a plugin's decision. The host fills the defaults the ABI gives: a reject without a code is 550 5.7.1,
// a tempfail without a code is 451 4.7.1. Accept, Discard and Quarantine carry no code; Text is the reply text
// (for Quarantine, the reason) and may be empty, in which case the protocol layer uses its own wording.
type Verdict struct {
	Kind     Kind
	Code     int
	Enhanced string
	Text     string
}

// Grants are the sandbox relaxations a policy gives a plugin (ABI §8). The zero value grants nothing.
type Grants struct {
	Clock  bool // real wall and monotonic clocks, and real sleeps; otherwise a fixed, deterministic clock
	Random bool // the host's cryptographic random source; otherwise a deterministic one
}

// OnError is the outcome a plugin's failure gives the message (ABI §7).
type OnError int

// The failure outcomes. The zero value, OnErrorTempfail, is the default: a broken plugin delays mail rather than
// letting it through unchecked or losing it.
const (
	OnErrorTempfail OnError = iota
	OnErrorAccept
	OnErrorReject
)

// String returns "tempfail", "accept" or "reject".
func (o OnError) String() string {
	switch o {
	case OnErrorTempfail:
		return "tempfail"
	case OnErrorAccept:
		return "accept"
	case OnErrorReject:
		return "reject"
	}
	return fmt.Sprintf("on_error(%d)", int(o))
}

// ParseOnError parses "tempfail", "accept" or "reject" (any case); "" is the default, tempfail.
func ParseOnError(s string) (OnError, error) {
	switch strings.ToLower(s) {
	case "", "tempfail":
		return OnErrorTempfail, nil
	case "accept":
		return OnErrorAccept, nil
	case "reject":
		return OnErrorReject, nil
	}
	return 0, fmt.Errorf("pluginhost: unknown on_error %q (want tempfail, accept or reject)", s)
}

// verdict is the verdict a failed call gives.
func (o OnError) verdict() Verdict {
	switch o {
	case OnErrorAccept:
		return Verdict{Kind: Accept}
	case OnErrorReject:
		return Verdict{Kind: Reject, Code: 550, Enhanced: "5.7.1", Text: "message could not be checked"}
	}
	return Verdict{Kind: Tempfail, Code: 451, Enhanced: "4.7.1", Text: "message filter temporarily unavailable"}
}

// Config describes one plugin to load. Zero fields take the defaults shown.
type Config struct {
	Name     string        // plugin name used in logs and errors (required)
	Wasm     []byte        // module bytes (callers read the file; Load computes the sha256)
	Config   []byte        // JSON handed to config_get; nil, empty or only white space => "{}"
	Memory   uint32        // guest memory limit in bytes, rounded up to 64 KiB pages; default 64 MiB
	Timeout  time.Duration // per hook call; default 2s
	PoolSize int           // max live instances; default max(2, 2*GOMAXPROCS)
	MaxCalls int           // recycle an instance after this many calls; default 10000
	OnError  OnError
	Grants   Grants
	// InitTimeout bounds creating one instance: instantiation, _initialize and postern_init. Default
	// max(5s, Timeout): a Go guest's runtime start-up takes milliseconds, far more than a hook call.
	InitTimeout time.Duration
}

// Options configure a Host.
type Options struct {
	// CacheDir is a folder for wazero's compilation cache, shared by every plugin of the host and by later
	// processes, so that a Go guest starts in tens of milliseconds instead of about a second. "" keeps compiled
	// code in memory only (still shared by the plugins of this host).
	CacheDir string
	// Logger receives the host's own records (instance failures, replacements). nil discards them.
	Logger *slog.Logger
	// IdleTimeout is how long an instance beyond the first may stay unused in its plugin's pool before it is
	// closed: a pool grows for a burst of mail and shrinks back to one warm instance. Default 10s; negative keeps
	// every instance.
	IdleTimeout time.Duration
	// Profiler, when set, profiles the guest code of every plugin the host loads (package guestprof): the
	// plugins are compiled with function listeners, which makes their calls several times slower. For
	// `postern plugin test -cpuprofile` and `postern run -plugin-cpuprofile`, never for normal service.
	Profiler *guestprof.Profiler
}

// Envelope is the connection and SMTP envelope a plugin can read with field_get (ABI §3.2).
type Envelope struct {
	Protocol, Direction, Listener string
	ClientIP                      string
	ClientPort                    int
	HELO                          string
	TLSVersion, TLSCipher         string // the client's connection; "" when not encrypted
	// UpstreamTLSVersion and UpstreamTLSCipher describe the connection to the upstream server ("" when not
	// encrypted).
	UpstreamTLSVersion, UpstreamTLSCipher string
	AuthUser                              string
	MailFrom                              string
	HasMailFrom                           bool // MailFrom was given (it may be "", the null reverse path)
	SMTPUTF8                              bool // MAIL FROM had the SMTPUTF8 parameter (RFC 6531)
	Rcpts                                 []string

	// The mailbox a message is read from (POP3 RETR/TOP, IMAP FETCH) or stored in (IMAP APPEND). Which of these a
	// plugin sees depends on the protocol and the hook (the table in proxy/field), not on whether they are set;
	// a zero UID, UIDValidity or InternalDate and an empty UIDL mean "not known" and are unavailable too.
	MailboxUser  string    // whose mailbox: the user the upstream server logged in
	Mailbox      string    // IMAP mailbox name, UTF-8
	UID          uint32    // IMAP UID; 0 before the server assigned one (APPEND)
	UIDValidity  uint32    // IMAP UIDVALIDITY of Mailbox
	UIDL         string    // POP3 unique-id listing
	InternalDate time.Time // IMAP INTERNALDATE, or APPEND's date-time
	Flags        []string  // IMAP flags and keywords
	Command      string    // what caused the filtering: "retr", "top", "fetch" or "append"
}

// LogLine is one line a plugin logged during a call (or the host logged on its behalf). Text is valid UTF-8 with
// control characters replaced, so it can be written to any log safely.
type LogLine struct {
	Level slog.Level
	Text  string
}

// Result is the outcome of one hook call of one plugin.
type Result struct {
	Plugin   string
	Hook     Hook
	Verdict  Verdict
	Tags     map[string]string // nil when the plugin set none
	Score    float64
	Changes  *message.Changes // never nil
	Logs     []LogLine
	Duration time.Duration
	// Skipped is why the guest was not called, or "": the plugin declared that its message hook is for messages
	// of a shape this one is not (Plugin.Wants). The result is then an accept with nothing set.
	Skipped string
	// Err is non-nil when the call failed; Verdict is then the OnError outcome and Tags, Score and Changes are
	// empty. Logs are kept: they often say why. Err is a *CallError.
	Err error
}

// Stats are a plugin's counters (since Load) and its pool's current state.
type Stats struct {
	Live        int    // instances that exist: idle, busy or being created
	Idle        int    // instances ready in the pool
	Created     uint64 // instances created, including the one Load made
	Discarded   uint64 // instances thrown away after a failure
	Recycled    uint64 // instances retired after MaxCalls or memory growth
	Calls       uint64 // hook calls made (including failed ones)
	Skipped     uint64 // message hook calls not made: the message was not of a shape the plugin wants
	Trimmed     uint64 // idle instances closed because the pool had more than it needed (Options.IdleTimeout)
	Failures    uint64 // calls that failed
	MemoryBytes uint64 // sum of the live instances' linear memory, as of their last call
}
