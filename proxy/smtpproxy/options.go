package smtpproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/embedsmtp"
	"github.com/postern/postern/proxy/frontend"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/quarantine"
	"github.com/postern/postern/proxy/upstream"
)

// The policy interfaces are the pipeline's; they are named here too so that a relay's Options read on their own.
type (
	Filter         = mailflow.Filter
	FilterSource   = mailflow.FilterSource
	SnapshotSource = mailflow.SnapshotSource
	HookReporter   = mailflow.HookReporter
	Auditor        = mailflow.Auditor
)

// Policies adapts a *policy.Manager to a FilterSource.
func Policies(src SnapshotSource) FilterSource { return mailflow.Policies(src) }

// Protocol names, as plugins see them in the field "protocol".
const (
	ProtocolSMTP       = "smtp"
	ProtocolSubmission = "submission"
)

// TLSMode, TLS and the mode constants are the listener package's, the same for every front end.
type (
	TLSMode = listener.TLSMode
	TLS     = listener.TLS
)

// The client-side TLS modes.
const (
	TLSNone     = listener.TLSNone
	TLSStartTLS = listener.TLSStartTLS
	TLSImplicit = listener.TLSImplicit
)

// UpstreamTLSMode says how the relay protects its connection to the upstream server (upstream.TLSMode).
type UpstreamTLSMode = upstream.TLSMode

// The upstream TLS modes.
const (
	UpstreamTLSNone     = upstream.TLSNone
	UpstreamTLSStartTLS = upstream.TLSStartTLS
	UpstreamTLSImplicit = upstream.TLSImplicit
)

// UpstreamTLS is the TLS configuration towards the upstream server (upstream.TLSOptions).
type UpstreamTLS = upstream.TLSOptions

// BareNewline is what the relay does with a bare CR, a bare LF or a NUL byte in message content.
type BareNewline string

// The bare newline policies. Either way no lookalike of the end-of-data sequence reaches the upstream.
const (
	// BareNewlineReject refuses the message with 550 5.6.0 (the default; the message stays byte-identical).
	BareNewlineReject BareNewline = "reject"
	// BareNewlineNormalize turns every bare CR and bare LF into CRLF and drops NUL bytes.
	BareNewlineNormalize BareNewline = "normalize"
)

// Limits bound what a client can make the relay do. Zero fields take the configuration's defaults
// (config.DefaultLimits and config.DefaultLineLength), given in the comments.
type Limits struct {
	// MessageSize is the largest message accepted, in bytes (default 50 MiB). The relay advertises the smaller of
	// this and the upstream's SIZE.
	MessageSize int64
	// Sessions is the number of concurrent client sessions; one more is answered 421 and closed (default 1000).
	Sessions int
	// Recipients is the number of RCPT TO accepted per message; more get 452 4.5.3 (default 100).
	Recipients int
	// LineLength is the longest command or message line in bytes, CRLF included (default 65536; RFC 5321's 1000 is
	// broken by real mail). A longer line ends the session with 500 5.4.0.
	LineLength int
	// CommandTimeout bounds each wait inside a command: client progress during DATA/BDAT, the upstream's
	// reply to every command, the TLS handshakes and dialing the upstream (default 5 minutes).
	CommandTimeout time.Duration
	// IdleTimeout is how long a client may stay silent between commands (default 5 minutes).
	IdleTimeout time.Duration
	// SessionsPerClient is the number of concurrent sessions one client address may hold (an IPv6 address counts
	// with its /84); one more is answered 421 4.7.0 and closed (default 50, as Postfix's
	// smtpd_client_connection_count_limit; negative: no limit).
	SessionsPerClient int
	// ConnectionRate is the number of connections one client address may open per minute; more are answered
	// 421 4.7.0 until the minute is over (as Postfix's smtpd_client_connection_rate_limit; 0, the default: no
	// limit).
	ConnectionRate int
	// StressSessions is the number of sessions above which the listener is under stress and StressTimeout
	// replaces the idle and command timeouts (default four fifths of Sessions; negative: never).
	StressSessions int
	// StressTimeout is the idle and command timeout under stress (default 10 seconds, as Postfix's smtpd_timeout
	// in its stress mode).
	StressTimeout time.Duration
	// MinDataRate is the slowest average rate, in bytes per second, at which a client may send a message or
	// a handshake: below it the transfer ends with 421 even if every byte came within CommandTimeout (default
	// 500, as Postfix's smtpd_min_data_rate; negative: no minimum).
	MinDataRate int64
	// UpstreamKeepalive is how often the relay sends NOOP to the upstream while it receives a message and runs
	// the plugins, so that an upstream that drops silent clients keeps the transaction open (default 30 seconds;
	// negative: never).
	UpstreamKeepalive time.Duration
	// Errors is the number of error replies (4xx/5xx, including the upstream's) a session may cause; the reply
	// that reaches it becomes 421 4.7.0 and the connection is closed (default 10). go-smtp additionally closes a
	// session after its fourth syntax error, whatever this says.
	Errors int
}

// ProxyProtocol enables the HAProxy PROXY protocol (v1 and v2) on a listener.
type ProxyProtocol struct {
	// Trusted lists the addresses and CIDR ranges allowed to connect; each connection from them must start with a
	// PROXY header, whose source address then becomes the client address. Connections from any other address are
	// closed unanswered. An empty list disables the PROXY protocol.
	Trusted []string
	// HeaderTimeout bounds reading the header (default 5 seconds).
	HeaderTimeout time.Duration
}

// Options configure a Server: one listener relaying to one upstream.
type Options struct {
	// Name is the listener's name, used in logs, audit records and the plugins' field "listener".
	Name string
	// Protocol is "smtp" (the default) or "submission".
	Protocol string
	// Direction is "inbound" or "outbound"; the default is inbound for smtp and outbound for submission.
	Direction string
	// Address is where ListenAndServe listens, host:port.
	Address string
	// Hostname names this relay in the greeting, in EHLO to the upstream and in Received: (default: the
	// machine's host name).
	Hostname string

	// Upstream is the server to relay to, host:port, or "embedded" for Embedded.
	Upstream string
	// Embedded is the in-process upstream used when Upstream is "embedded".
	Embedded *embedsmtp.Server
	// Dial, if set, opens the upstream connection instead of a TCP dial to Upstream (tests use it to inject
	// faults). The relay applies the upstream TLS mode on the connection it returns.
	Dial func(ctx context.Context) (net.Conn, error)
	// UpstreamTLS protects the connection to the upstream.
	UpstreamTLS UpstreamTLS
	// XClient sends the client's address, port and HELO name to the upstream with Postfix's XCLIENT command, so
	// that the upstream applies its own policy to the real client. The upstream must offer XCLIENT to this relay;
	// if it does not, sessions are refused with 421 rather than relayed as if they came from the relay itself.
	XClient bool

	// TLS offers TLS to clients.
	TLS TLS
	// AllowInsecureAuth offers AUTH on connections that are not encrypted. Off by default: passwords are only
	// accepted under TLS.
	AllowInsecureAuth bool

	Limits        Limits
	ProxyProtocol ProxyProtocol
	BareNewline   BareNewline

	// ReceivedHeader adds a Received: trace field to every relayed message.
	ReceivedHeader bool
	// ResultHeaders adds X-Postern-Verdict, X-Postern-Score and X-Postern-Tags to every relayed message, after
	// removing any the message already carried (a sender cannot forge them).
	ResultHeaders bool
	// QuarantineDir receives quarantined messages: NAME.eml as received and NAME.json with the decision. A
	// quarantine verdict without a directory tempfails the message rather than losing it.
	QuarantineDir string
	// Quarantine is the proxy's shared store (`postern run` opens one for every listener); when set it is used
	// instead of QuarantineDir.
	Quarantine *quarantine.Store

	// SpoolDir holds messages larger than MemoryThreshold while they are filtered (default os.TempDir()). The files
	// are unlinked as soon as they are created, so nothing is left behind by a crash.
	SpoolDir string
	// MemoryThreshold is the message size kept in memory; larger messages are spilled to SpoolDir (default 1 MiB).
	MemoryThreshold int64
	// MessageLimits bound the MIME indexing of each message. MaxSize is raised to Limits.MessageSize so that every
	// accepted message is indexed in full.
	MessageLimits message.Limits

	// Filters supplies the policy. nil relays every message unchanged (apart from the trace headers asked for).
	Filters FilterSource
	// Audit receives a record of every decision that is not a plain accept at an envelope stage.
	Audit Auditor
	// Logger receives the relay's log; nil uses slog.Default().
	Logger *slog.Logger
}

// defaults returns a copy of o with every zero field replaced by its default, or an error naming the first invalid
// field.
func (o Options) withDefaults() (Options, error) {
	if o.Name == "" {
		o.Name = "smtp"
	}
	switch o.Protocol {
	case "":
		o.Protocol = ProtocolSMTP
	case ProtocolSMTP, ProtocolSubmission:
	default:
		return o, fmt.Errorf("protocol %q: want %q or %q", o.Protocol, ProtocolSMTP, ProtocolSubmission)
	}
	switch o.Direction {
	case "":
		o.Direction = "inbound"
		if o.Protocol == ProtocolSubmission {
			o.Direction = "outbound"
		}
	case "inbound", "outbound":
	default:
		return o, fmt.Errorf("direction %q: want inbound or outbound", o.Direction)
	}
	var err error
	if o.Hostname, err = frontend.Hostname(o.Hostname); err != nil {
		return o, err
	}
	switch {
	case o.Upstream == "embedded" && o.Dial == nil:
		if o.Embedded == nil {
			return o, errors.New(`upstream "embedded" needs Options.Embedded`)
		}
	case o.Upstream == "" && o.Dial == nil:
		return o, errors.New("no upstream: set upstream to host:port or \"embedded\"")
	default:
		if err := frontend.CheckUpstream(o.Upstream, o.Dial != nil); err != nil {
			return o, err
		}
	}
	switch o.UpstreamTLS.Mode {
	case "":
		o.UpstreamTLS.Mode = UpstreamTLSNone
	case UpstreamTLSNone, UpstreamTLSStartTLS, UpstreamTLSImplicit:
	default:
		return o, fmt.Errorf("upstream_tls mode %q: want none, starttls or tls", o.UpstreamTLS.Mode)
	}
	if o.TLS, err = o.TLS.WithDefaults(); err != nil {
		return o, err
	}
	switch o.BareNewline {
	case "":
		o.BareNewline = BareNewlineReject
	case BareNewlineReject, BareNewlineNormalize:
	default:
		return o, fmt.Errorf("bare_newline %q: want reject or normalize", o.BareNewline)
	}
	l := &o.Limits
	def := config.DefaultLimits(o.Protocol)
	if l.MessageSize == 0 {
		l.MessageSize = def.MessageSize
	}
	if l.Sessions == 0 {
		l.Sessions = def.Sessions
	}
	if l.Recipients == 0 {
		l.Recipients = def.Recipients
	}
	if l.LineLength == 0 {
		l.LineLength = config.DefaultLineLength
	}
	if l.CommandTimeout == 0 {
		l.CommandTimeout = def.CommandTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = def.IdleTimeout
	}
	if l.Errors == 0 {
		l.Errors = def.Errors
	}
	if l.UpstreamKeepalive == 0 {
		l.UpstreamKeepalive = def.UpstreamKeepalive
	}
	if l.SessionsPerClient == 0 {
		l.SessionsPerClient = def.SessionsPerClient
	}
	if l.StressSessions == 0 {
		l.StressSessions = config.StressSessions(l.Sessions)
	}
	if l.StressTimeout == 0 {
		l.StressTimeout = def.StressTimeout
	}
	if l.MinDataRate == 0 {
		l.MinDataRate = def.MinDataRate
	}
	if l.ConnectionRate < 0 || l.StressTimeout < 0 {
		return o, errors.New("limits connection_rate and stress_timeout must not be negative")
	}
	if l.MessageSize < 0 || l.Sessions < 0 || l.Recipients < 0 || l.LineLength < 0 || l.CommandTimeout < 0 ||
		l.IdleTimeout < 0 || l.Errors < 0 {
		return o, errors.New("limits must not be negative")
	}
	if l.LineLength < 512 {
		return o, fmt.Errorf("limits line_length %d: RFC 5321 needs at least 512", l.LineLength)
	}
	if o.ProxyProtocol.HeaderTimeout == 0 {
		o.ProxyProtocol.HeaderTimeout = config.DefaultProxyHeaderTimeout
	}
	if err := frontend.CheckTrusted(o.ProxyProtocol.Trusted); err != nil {
		return o, err
	}
	frontend.SpoolDefaults(&o.SpoolDir, &o.MemoryThreshold, &o.MessageLimits, l.MessageSize)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
