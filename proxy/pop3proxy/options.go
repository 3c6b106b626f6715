package pop3proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/frontend"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/quarantine"
	"github.com/postern/postern/proxy/upstream"
)

// Protocol is the name plugins see in the field "protocol".
const Protocol = "pop3"

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

// SizeMode says what STAT and LIST report.
type SizeMode string

// The size modes.
const (
	// SizeExact reports the size of what RETR serves, filtering every listed message at the first STAT or LIST
	// (the default: RFC 1939 says LIST's size is exact, and clients compare it with what they receive).
	SizeExact SizeMode = "exact"
	// SizeUpstream reports the upstream's size for messages not filtered yet: STAT and LIST are as fast as the
	// upstream's, and a message whose filtering changes its size is announced with the wrong size until it has
	// been read once.
	SizeUpstream SizeMode = "upstream"
)

// ClientAddress says how the real client's address reaches the upstream.
type ClientAddress string

// The ways to pass the client's address.
const (
	ClientAddressNone    ClientAddress = "none"
	ClientAddressXClient ClientAddress = "xclient"  // XCLIENT ADDR= PORT= after the greeting (Dovecot)
	ClientAddressProxyV2 ClientAddress = "proxy_v2" // a PROXY protocol v2 header before the first byte
)

// Limits bound what a client can make the proxy do. Zero fields take the defaults in the comments.
type Limits struct {
	// MessageSize is the largest message filtered, in bytes (default 50 MiB). A larger one is answered
	// -ERR [SYS/PERM]: what cannot be inspected is not served.
	MessageSize int64
	// Sessions is the number of concurrent client sessions (default 1000).
	Sessions int
	// LineLength is the longest command line and upstream status or listing line, CRLF included (default 64 KiB,
	// at least 512).
	LineLength int
	// CommandTimeout bounds each wait inside a command: the upstream's reply, a message being fetched and
	// filtered, a TLS handshake, a write to the client (default 5 minutes).
	CommandTimeout time.Duration
	// IdleTimeout is how long a client may stay silent between commands (default 10 minutes, RFC 1939 §3).
	IdleTimeout time.Duration
	// EarlyOK is how long RETR or TOP may filter a message before "+OK" is sent ahead of the result, so that the
	// client, which has heard nothing since its command, does not time out (default 10 s). The message, or the
	// notice, follows once known; when the outcome is that nothing can be served (a tempfail, the command
	// timeout), the connection is closed instead of the message: never a false end, and nothing is deleted.
	EarlyOK time.Duration
	// SessionTime bounds a whole session (default 1 hour): past it the next command is answered
	// -ERR [SYS/TEMP] and the connection closed, with nothing deleted.
	SessionTime time.Duration
	// CommandRate is the sustained number of commands per second a session may send, with bursts of ten times
	// as many (default 100); past it the session is ended with -ERR [SYS/TEMP].
	CommandRate int
	// Errors is the number of error replies a session may cause before it is closed (default 10).
	Errors int
	// Messages is the largest maildrop served, in messages (default 100000); a larger one is refused at login
	// with -ERR [SYS/PERM].
	Messages int
	// SessionsPerClient bounds the concurrent sessions from one client address (0: no limit); one more is
	// refused with -ERR [SYS/TEMP]. ConnectionRate bounds the connections one address may open per minute (0: no
	// limit). Both are listener.Options'.
	SessionsPerClient, ConnectionRate int
}

// Cache bounds the cache of filtered messages. Zero fields take the defaults.
type Cache struct {
	// MemoryBytes bounds the cache's memory, entries and contents together (default 64 MiB).
	MemoryBytes int64
	// EntryBytes is the largest filtered content kept (default 1 MiB): a larger changed message or notice keeps
	// only its size and digest, and is filtered again when it is read.
	EntryBytes int64
	// UserBytes bounds one user's share of the cache (default a quarter of MemoryBytes), so one large maildrop
	// does not push everyone else's out.
	UserBytes int64
	// Dir and DiskBytes keep filtered contents larger than EntryBytes on disk, within DiskBytes in total; "" or 0
	// keeps none (such a message is filtered again when it is read). The directory is private to the listener:
	// it is emptied at New.
	Dir       string
	DiskBytes int64
}

// Options configure a Server: one listener in front of one upstream POP3 server.
type Options struct {
	// Name is the listener's name, in logs, audit records and the plugins' field "listener".
	Name string
	// Address is where ListenAndServe listens.
	Address string
	// Hostname names the proxy in the greeting and in notices' Message-ID (default: the machine's host name).
	Hostname string
	// Upstream is the POP3 server, host:port. With Dial set it only names the upstream in logs and cache keys.
	Upstream string
	// Dial, if set, opens the upstream connection instead of a TCP dial to Upstream (the embedded upstream; tests
	// injecting faults). The upstream TLS mode applies on the connection it returns.
	Dial func(ctx context.Context) (net.Conn, error)
	// UpstreamTLS protects the connection to the upstream: none, starttls (STLS) or tls.
	UpstreamTLS upstream.TLSOptions
	// ClientAddress passes the real client's address to the upstream (default none). With xclient the
	// upstream must accept XCLIENT from the proxy (Dovecot: login_trusted_networks); if it refuses, sessions are
	// refused rather than relayed as the proxy's own.
	ClientAddress ClientAddress

	TLS TLS
	// AllowInsecureAuth relays USER/PASS, APOP and AUTH on connections that are not encrypted. Off by default:
	// passwords are only accepted under TLS.
	AllowInsecureAuth bool

	Limits        Limits
	ProxyProtocol ProxyProtocol
	SizeMode      SizeMode
	Cache         Cache

	// ResultHeaders adds X-Postern-Verdict, X-Postern-Score and X-Postern-Tags to every message served.
	ResultHeaders bool
	// QuarantineDir keeps the originals of withheld messages; without it a withheld message is answered
	// -ERR [SYS/TEMP] (its original cannot be kept, so it is not replaced by a notice).
	QuarantineDir string
	// Quarantine is the proxy's shared store (`postern run` opens one for every listener); when set it is used
	// instead of QuarantineDir.
	Quarantine *quarantine.Store
	// SpoolDir and MemoryThreshold: where messages larger than the threshold are held while filtered (default
	// os.TempDir() and 1 MiB).
	SpoolDir        string
	MemoryThreshold int64
	MessageLimits   message.Limits

	Filters mailflow.FilterSource
	Audit   mailflow.Auditor
	Logger  *slog.Logger
}

// ProxyProtocol enables the PROXY protocol (v1, v2) from trusted sources on the listener.
type ProxyProtocol struct {
	Trusted       []string
	HeaderTimeout time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if o.Name == "" {
		o.Name = "pop3"
	}
	var err error
	if o.Hostname, err = frontend.Hostname(o.Hostname); err != nil {
		return o, err
	}
	if err := frontend.CheckUpstream(o.Upstream, o.Dial != nil); err != nil {
		return o, err
	}
	switch o.UpstreamTLS.Mode {
	case "":
		o.UpstreamTLS.Mode = upstream.TLSNone
	case upstream.TLSNone, upstream.TLSStartTLS, upstream.TLSImplicit:
	default:
		return o, fmt.Errorf("upstream_tls mode %q: want none, stls or tls", o.UpstreamTLS.Mode)
	}
	switch o.ClientAddress {
	case "":
		o.ClientAddress = ClientAddressNone
	case ClientAddressNone, ClientAddressXClient, ClientAddressProxyV2:
	default:
		return o, fmt.Errorf("client address %q: want none, xclient or proxy_v2", o.ClientAddress)
	}
	if o.TLS, err = o.TLS.WithDefaults(); err != nil {
		return o, err
	}
	switch o.SizeMode {
	case "":
		o.SizeMode = SizeExact
	case SizeExact, SizeUpstream:
	default:
		return o, fmt.Errorf("size_mode %q: want exact or upstream", o.SizeMode)
	}
	l := &o.Limits
	def := config.DefaultLimits(config.ProtocolPOP3)
	setDefault(&l.MessageSize, def.MessageSize)
	setDefault(&l.Sessions, def.Sessions)
	setDefault(&l.LineLength, config.DefaultLineLength)
	setDefault(&l.CommandTimeout, def.CommandTimeout)
	setDefault(&l.IdleTimeout, def.IdleTimeout)
	setDefault(&l.SessionTime, DefaultSessionTime)
	setDefault(&l.EarlyOK, DefaultEarlyOK)
	setDefault(&l.CommandRate, DefaultCommandRate)
	setDefault(&l.Errors, def.Errors)
	setDefault(&l.Messages, DefaultMessages)
	if l.MessageSize < 0 || l.Sessions < 0 || l.LineLength < 0 || l.CommandTimeout < 0 || l.IdleTimeout < 0 ||
		l.EarlyOK < 0 || l.SessionTime < 0 || l.CommandRate < 0 || l.Errors < 0 || l.Messages < 0 {
		return o, errors.New("limits must not be negative")
	}
	if l.LineLength < 512 {
		return o, fmt.Errorf("limits line_length %d: RFC 2449 needs at least 512", l.LineLength)
	}
	c := &o.Cache
	setDefault(&c.MemoryBytes, DefaultCacheBytes)
	setDefault(&c.EntryBytes, min(DefaultCacheEntryBytes, c.MemoryBytes))
	setDefault(&c.UserBytes, max(c.MemoryBytes/4, c.EntryBytes))
	if c.MemoryBytes < 0 || c.EntryBytes < 0 || c.UserBytes < 0 || c.DiskBytes < 0 {
		return o, errors.New("cache sizes must not be negative")
	}
	setDefault(&o.ProxyProtocol.HeaderTimeout, config.DefaultProxyHeaderTimeout)
	if err := frontend.CheckTrusted(o.ProxyProtocol.Trusted); err != nil {
		return o, err
	}
	frontend.SpoolDefaults(&o.SpoolDir, &o.MemoryThreshold, &o.MessageLimits, l.MessageSize)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Defaults of the limits and the cache.
const (
	DefaultSessionTime     = time.Hour
	DefaultEarlyOK         = 10 * time.Second
	DefaultCommandRate     = 100
	DefaultMessages        = 100_000
	DefaultCacheBytes      = 64 << 20
	DefaultCacheEntryBytes = 1 << 20
)

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
