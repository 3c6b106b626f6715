package imapproxy

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
const Protocol = "imap"

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

// Limits bound what a client can make the proxy do. Zero fields take the defaults in the comments.
type Limits struct {
	// MessageSize is the largest message filtered, in bytes (default 50 MiB), and the APPENDLIMIT advertised
	// (or the upstream's, when smaller). A larger message is served as a notice saying it was too large to be
	// inspected; the original stays upstream, untouched.
	MessageSize int64
	// Sessions is the number of concurrent client sessions (default 1000).
	Sessions int
	// CommandTimeout bounds each wait on the upstream inside a command: a reply, a message being fetched, the
	// policy's work on one message, a TLS handshake (default 5 minutes).
	CommandTimeout time.Duration
	// SessionsPerClient and ConnectionRate are listener.Options' (0: no limit).
	SessionsPerClient, ConnectionRate int
	// Messages is the largest mailbox served, in messages (default 1,000,000): the session keeps a UID per
	// message of the selected mailbox. SELECT of a larger one is refused NO [LIMIT].
	Messages int
	// UIDSetLength bounds the UID set of one command sent upstream, in bytes (default 8000, well under every
	// server's line limit: Dovecot allows 64 KiB, go-imap 50 KiB); a larger set is sent in several commands.
	UIDSetLength int
	// SessionTime bounds a whole session (default 24 hours): past it the session is sent BYE when it waits for a
	// command or is in IDLE, or once its command is answered; the client logs in again.
	SessionTime time.Duration
	// CommandRate is the sustained number of commands per second a session may send, with bursts of ten times
	// as many (default 1000); commands past it are delayed, not refused, so that a runaway client cannot drive
	// the upstream and the plugins flat out.
	CommandRate int
}

// Cache bounds the cache of filtered messages. Zero fields take the defaults.
type Cache struct {
	// MemoryBytes bounds the cache's memory (default 256 MiB).
	MemoryBytes int64
	// EntryBytes is the largest filtered message kept in memory (default 4 MiB); a larger one goes to Dir.
	EntryBytes int64
	// UserBytes bounds one user's share (default a quarter of MemoryBytes).
	UserBytes int64
	// Dir and DiskBytes keep filtered messages larger than EntryBytes on disk; "" or 0 keeps none (such a message
	// is fetched and filtered again at each FETCH). The directory is private to the listener: it is emptied at New.
	Dir       string
	DiskBytes int64
	// MetaBytes bounds the metadata kept of messages whose filtered bytes were evicted (size, digest, envelope,
	// structure, header block: what a folder listing asks), so that listing a large folder again runs no plugin
	// (default 64 MiB, some 20,000 messages).
	MetaBytes int64
}

// Options configure a Server: one listener in front of one upstream IMAP server.
type Options struct {
	// Name is the listener's name, in logs, audit records and the plugins' field "listener".
	Name string
	// Address is where ListenAndServe listens.
	Address string
	// Hostname names the proxy in notices' Message-ID (default: the machine's host name).
	Hostname string
	// Upstream is the IMAP server, host:port. With Dial set it only names the upstream in logs and cache keys.
	Upstream string
	// Dial, if set, opens the upstream connection instead of a TCP dial to Upstream (an in-process upstream,
	// tests injecting faults). The upstream TLS mode applies on the connection it returns.
	Dial func(ctx context.Context) (net.Conn, error)
	// UpstreamTLS protects the connection to the upstream: none, starttls or tls.
	UpstreamTLS upstream.TLSOptions
	// UpstreamProxyProtocol sends a PROXY protocol v2 header with the client's address before the first byte
	// to the upstream (Dovecot: haproxy_trusted_networks).
	UpstreamProxyProtocol bool

	TLS TLS
	// AllowInsecureAuth relays LOGIN and AUTHENTICATE on connections that are not encrypted. Off by default.
	AllowInsecureAuth bool

	Limits        Limits
	ProxyProtocol ProxyProtocol
	Cache         Cache

	// IdleKeepalive is how often a client in IDLE is sent a keep-alive (default 2 minutes, as Dovecot). IdlePoll
	// is how often the upstream is polled with NOOP during IDLE when it has no IDLE itself (default 30 s).
	IdleKeepalive, IdlePoll time.Duration
	// Prefilter is the number of newly arrived messages filtered when their EXISTS reaches the session, so
	// that the client's FETCH is answered from the cache (default 20; -1 turns it off).
	Prefilter int

	// ResultHeaders adds X-Postern-Verdict, X-Postern-Score and X-Postern-Tags to every message served.
	ResultHeaders bool
	// QuarantineDir keeps the originals of withheld messages and copies of APPENDs the policy quarantined;
	// without it a withheld message is answered NO [UNAVAILABLE].
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

// Defaults.
const (
	DefaultCacheBytes      = 256 << 20
	DefaultCacheEntryBytes = 4 << 20
	DefaultCacheMetaBytes  = 64 << 20
	DefaultUIDSetLength    = 8000
	DefaultMessages        = 1_000_000
	DefaultIdleKeepalive   = 2 * time.Minute
	DefaultIdlePoll        = 30 * time.Second
	DefaultPrefilter       = 20
	DefaultSessionTime     = 24 * time.Hour
	DefaultCommandRate     = 1000
)

func (o Options) withDefaults() (Options, error) {
	if o.Name == "" {
		o.Name = "imap"
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
		return o, fmt.Errorf("upstream_tls mode %q: want none, starttls or tls", o.UpstreamTLS.Mode)
	}
	if o.TLS, err = o.TLS.WithDefaults(); err != nil {
		return o, err
	}
	l := &o.Limits
	def := config.DefaultLimits(config.ProtocolIMAP)
	setDefault(&l.MessageSize, def.MessageSize)
	setDefault(&l.Sessions, def.Sessions)
	setDefault(&l.CommandTimeout, def.CommandTimeout)
	setDefault(&l.UIDSetLength, DefaultUIDSetLength)
	setDefault(&l.Messages, DefaultMessages)
	setDefault(&l.SessionTime, DefaultSessionTime)
	setDefault(&l.CommandRate, DefaultCommandRate)
	if l.MessageSize < 0 || l.Sessions < 0 || l.CommandTimeout < 0 || l.UIDSetLength < 0 || l.Messages < 0 ||
		l.SessionTime < 0 || l.CommandRate < 0 {
		return o, errors.New("limits must not be negative")
	}
	if l.MessageSize > 1<<32-1 {
		l.MessageSize = 1<<32 - 1 // IMAP's APPENDLIMIT and literal sizes in go-imap are 32-bit
	}
	if l.UIDSetLength < 100 {
		return o, fmt.Errorf("UID set length %d: at least 100", l.UIDSetLength)
	}
	c := &o.Cache
	setDefault(&c.MemoryBytes, DefaultCacheBytes)
	setDefault(&c.EntryBytes, min(DefaultCacheEntryBytes, c.MemoryBytes))
	setDefault(&c.UserBytes, max(c.MemoryBytes/4, c.EntryBytes))
	setDefault(&c.MetaBytes, DefaultCacheMetaBytes)
	if c.MemoryBytes < 0 || c.EntryBytes < 0 || c.UserBytes < 0 || c.DiskBytes < 0 || c.MetaBytes < 0 {
		return o, errors.New("cache sizes must not be negative")
	}
	setDefault(&o.IdleKeepalive, DefaultIdleKeepalive)
	setDefault(&o.IdlePoll, DefaultIdlePoll)
	setDefault(&o.Prefilter, DefaultPrefilter)
	if o.Prefilter < 0 {
		o.Prefilter = 0
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

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
