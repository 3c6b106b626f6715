package config

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Protocols a listener block may name.
const (
	ProtocolSMTP       = "smtp"
	ProtocolSubmission = "submission"
	ProtocolPOP3       = "pop3"
	ProtocolIMAP       = "imap"
)

// UpstreamEmbedded as a listener's upstream selects the in-process SMTP server that stores messages as files
// (smtp, submission), or the in-process POP3 or IMAP server that serves those files as a mailbox (pop3, imap).
const UpstreamEmbedded = "embedded"

// Policy modes.
const (
	ModeEnforce = "enforce"
	ModeMonitor = "monitor"
)

// Threshold actions, in increasing severity.
const (
	ActionTag        = "tag"
	ActionQuarantine = "quarantine"
	ActionTempfail   = "tempfail"
	ActionReject     = "reject"
	ActionDiscard    = "discard"
)

// Config is a loaded, validated configuration. It is immutable once Load returns it: a reload builds a new one.
type Config struct {
	// Path is the root file as given to Load.
	Path string
	// Files lists every file read, the root first, then includes in the order they were inlined.
	Files []string
	// Version identifies this exact configuration: the hex SHA-256 over every file's content and every plugin
	// module's SHA-256, so a changed .wasm changes the version even when no .hcl file changed.
	Version string
	// StateDir holds the plugin compilation cache (and, by default, the quarantine and the control socket); ""
	// means no on-disk state.
	StateDir string
	// ControlSocket is the unix socket `postern reload` talks to; "" disables it.
	ControlSocket string
	// ReloadTimeout bounds a reload of this configuration's successor: reading the files, loading and
	// initialising the plugins (DefaultReloadTimeout unless reload_timeout says otherwise).
	ReloadTimeout time.Duration
	// Audit configures the audit log; nil when there is no audit block.
	Audit *Audit
	// Admin configures the admin HTTP listener (metrics, health checks, reviewer pages); nil when off.
	Admin *Admin
	// Quarantine is the store every listener shares: the quarantine block, or its defaults (state_dir/quarantine);
	// nil when there is neither a block nor a state_dir.
	Quarantine *Quarantine
	// Listeners, Plugins and Policies are in file order, includes inlined where they appear.
	Listeners []*Listener
	Plugins   []*Plugin
	Policies  []*Policy
	// Warnings are problems that do not stop the configuration from loading (an unused plugin, a constant when).
	Warnings hcl.Diagnostics

	sources map[string][]byte
	lang    *language
}

// Listener is one `listener "<protocol>" "<name>"` block: where Postern accepts connections and where it relays
// them. The protocol packages turn it into their own options.
type Listener struct {
	Protocol string // smtp, submission, pop3 or imap
	Name     string
	Address  string // host:port to listen on
	Upstream string // host:port of the real server, or UpstreamEmbedded
	// Direction is inbound, outbound or retrieval; it defaults from the protocol (smtp inbound, submission
	// outbound, pop3/imap retrieval).
	Direction   string
	TLS         TLS
	UpstreamTLS UpstreamTLS
	Limits      Limits
	// ProxyProtocolTrusted lists the sources allowed to send a PROXY protocol header; nil means the PROXY
	// protocol is off.
	ProxyProtocolTrusted []netip.Prefix
	// XClient makes Postern pass the real client's address and HELO to a Postfix upstream with XCLIENT.
	XClient bool
	// BareNewline is "reject" (550 5.6.0 for a bare CR or LF in DATA) or "normalize" (rewrite it to CRLF).
	BareNewline string
	// ReceivedHeader adds a Received: field for the hop through Postern. Off by default: an unfiltered message
	// then leaves byte-identical.
	ReceivedHeader bool
	// ResultHeaders adds X-Postern-* fields (verdict, tags, score). Off by default, for the same reason.
	ResultHeaders bool
	// QuarantineDir is the shared quarantine's directory (Config.Quarantine.Dir), "" when there is none. A
	// listener may still set quarantine_dir, as before the store was shared, only to the same directory.
	QuarantineDir     string
	AllowInsecureAuth bool
	// POP3 holds what only a pop3 listener has.
	POP3 POP3
	// IMAP holds what only an imap listener has (its imap block).
	IMAP      IMAP
	DeclRange hcl.Range
}

// IMAP is the imap block of an imap listener.
type IMAP struct {
	// UpstreamProxyProtocol sends a PROXY protocol v2 header with the client's address to the upstream.
	UpstreamProxyProtocol bool
	// CacheMemory, CacheEntry and CacheUser bound the cache of filtered messages (0: the proxy's defaults);
	// CacheDisk keeps larger messages on disk, under state_dir (0: none).
	CacheMemory, CacheEntry, CacheUser, CacheDisk int64
	// CacheMeta bounds the metadata kept of messages whose bytes were evicted (0: the default, 64 MiB).
	CacheMeta int64
	// IdleKeepalive is how often a client in IDLE gets a keep-alive (0: the default, 2 minutes).
	IdleKeepalive time.Duration
	// Prefilter is how many newly arrived messages are filtered when their EXISTS is delivered (PrefilterSet
	// false: the default, 20).
	Prefilter    int
	PrefilterSet bool
}

// POP3 is the part of a listener block only a pop3 listener has.
type POP3 struct {
	// SizeMode is "exact" (STAT and LIST report what RETR serves; the default) or "upstream".
	SizeMode string
	// UpstreamProxyProtocol sends a PROXY protocol v2 header with the client's address to the upstream (the
	// other way to pass it being xclient).
	UpstreamProxyProtocol bool
	// CacheMemory, CacheEntry and CacheUser bound the cache of filtered messages (0: the proxy's defaults);
	// CacheDisk keeps larger contents on disk, under state_dir (0: none).
	CacheMemory, CacheEntry, CacheUser, CacheDisk int64
	// EarlyOK is how long RETR or TOP may filter before "+OK" is sent ahead of the result (limits block; 0:
	// the default).
	EarlyOK time.Duration
}

// TLS is the client-facing TLS of a listener.
type TLS struct {
	Mode string // "none" (default without a tls block), "starttls" (default with one) or "implicit"
	Cert string // PEM certificate chain file
	Key  string // PEM private key file
	// TestCertificate: Cert and Key are a self-signed pair in StateDir/tls, made at the first start if missing
	// (listener.EnsureTestCertificate). For demonstrations and tests only.
	TestCertificate bool
	Range           hcl.Range // the tls block
}

// UpstreamTLS is the TLS Postern speaks to the upstream server.
type UpstreamTLS struct {
	Mode       string // "none" (default), "starttls" or "tls"
	CAFile     string // PEM roots; "" means the system roots
	ServerName string // "" means the upstream's host name
	Verify     bool   // default true
}

// Limits bound one listener's sessions. Every field has a default (see docs/CONFIG.md), so none is zero.
type Limits struct {
	MessageSize    int64
	Sessions       int
	Recipients     int
	CommandTimeout time.Duration
	IdleTimeout    time.Duration
	Errors         int
	// SessionsPerClient bounds the sessions of one client address (0: no bound); ConnectionRate the connections
	// it may open per minute (0: no bound).
	SessionsPerClient int
	ConnectionRate    int
	// StressSessions is the number of sessions above which StressTimeout replaces the idle and command
	// timeouts (0: never).
	StressSessions int
	StressTimeout  time.Duration
	// MinDataRate is the slowest average transfer inside a command, in bytes per second (0: none).
	MinDataRate int64
	// UpstreamKeepalive is the interval of the NOOPs that keep the upstream's transaction open while a message
	// arrives and is filtered.
	UpstreamKeepalive time.Duration
	// SessionTime bounds a whole session and CommandRate the commands per second it may send on average, for
	// pop3 and imap listeners (0: the front end's default).
	SessionTime time.Duration
	CommandRate int
}

// Plugin is one `plugin "<name>"` block with its module already read and its pin checked.
type Plugin struct {
	Name   string
	Source string // absolute path of the .wasm file
	SHA256 string // hex SHA-256 of Wasm
	Wasm   []byte
	Config []byte // JSON handed to the plugin's config_get; "{}" when absent
	// Memory, Timeout, PoolSize and MaxCalls are 0 when not set, meaning the plugin host's defaults.
	Memory   int64
	Timeout  time.Duration
	PoolSize int
	MaxCalls int
	OnError  string   // "tempfail" (default), "accept" or "reject"
	Grants   []string // "clock", "random"
	// DeclRange is the block's header; SourceRange the source attribute; ConfigRange the config attribute (zero
	// when there is none). Load errors point at them: a configuration the plugin refuses at ConfigRange.
	DeclRange   hcl.Range
	SourceRange hcl.Range
	ConfigRange hcl.Range
	configExpr  hcl.Expression
}

// ConfigKeyRange returns where the config attribute sets key, one of the top-level keys of its object, so that
// an error a plugin reports about that key points at its line; it is ConfigRange when the key is not written
// there (or the configuration is not an object literal).
func (p *Plugin) ConfigKeyRange(key string) hcl.Range {
	obj, ok := p.configExpr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return p.ConfigRange
	}
	for _, item := range obj.Items {
		name := hcl.ExprAsKeyword(item.KeyExpr)
		if name == "" {
			if v, diags := item.KeyExpr.Value(nil); !diags.HasErrors() && v.IsKnown() && !v.IsNull() && v.Type() == cty.String {
				name = v.AsString()
			}
		}
		if name == key {
			return hcl.RangeBetween(item.KeyExpr.Range(), item.ValueExpr.Range())
		}
	}
	return p.ConfigRange
}

// Policy is one `policy "<name>"` block.
type Policy struct {
	Name string
	Mode string // ModeEnforce or ModeMonitor
	// When selects the messages the policy applies to; nil matches everything.
	When *Condition
	// Plugins run in this order.
	Plugins      []string
	PluginRanges []hcl.Range
	// Thresholds map the chain's summed score to an action, sorted by ascending score.
	Thresholds []Threshold
	// RejectCode, RejectText: the reply for a threshold reject (and RejectText for a threshold tempfail).
	RejectCode int
	RejectText string
	// TagHeader is the header field a tag threshold adds; "" records the tag without changing the message.
	TagHeader string
	DeclRange hcl.Range
}

// Threshold is one score → action mapping of a policy.
type Threshold struct {
	Score  float64
	Action string // one of the Action constants
}

// Admin is the `admin` block: the HTTP listener for metrics, health checks and the reviewer pages.
type Admin struct {
	Address string // host:port; loopback unless TLS is on
	TLS     TLS    // Mode "none" (default) or "implicit" (HTTPS)
	// ReadyUpstream adds a readiness check per listener: its upstream accepts a TCP connection.
	ReadyUpstream bool
	Review        *Review // the reviewer pages; nil when off
	DeclRange     hcl.Range
}

// Review is the `review` block inside `admin`: the reviewer pages, mounted at "/" of the admin listener.
type Review struct {
	UsersFile string // users and password hashes, name:role:hash a line
	// SecureCookies marks the session cookies Secure: true when the admin listener has TLS, and settable for a
	// listener behind a TLS proxy.
	SecureCookies bool
	// SessionIdle and SessionMaxAge end a session after that long without a request, and that long after login.
	SessionIdle, SessionMaxAge time.Duration
	UsersFileRange             hcl.Range // the users_file attribute, for errors about the file
	DeclRange                  hcl.Range
}

// Audit configures the audit log.
type Audit struct {
	Path         string
	MaxBytes     int64         // rotate past this size
	SyncInterval time.Duration // 0: fsync after every record
	// Index is the search index of the records; nil when there is no index block.
	Index *AuditIndex
}

// AuditIndex configures the search index of the audit records (the index block inside audit).
type AuditIndex struct {
	// Driver is "sqlite" (a file, Path) or "postgres" (a database, DSN, which several nodes may share).
	Driver string
	Path   string
	DSN    string
	// Node names this node's chain in the index; "" means the host name.
	Node      string
	DeclRange hcl.Range
}

// Summary counts the blocks: "2 listeners, 4 plugins, 3 policies".
func (c *Config) Summary() string {
	return fmt.Sprintf("%s, %s, %s", plural(len(c.Listeners), "listener", "listeners"),
		plural(len(c.Plugins), "plugin", "plugins"), plural(len(c.Policies), "policy", "policies"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Plugin returns the plugin block with that name, or nil.
func (c *Config) Plugin(name string) *Plugin {
	for _, p := range c.Plugins {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Listener returns the listener with that name, or nil.
func (c *Config) Listener(name string) *Listener {
	for _, l := range c.Listeners {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// NewError wraps diagnostics about this configuration into an *Error that can render their source lines.
func (c *Config) NewError(diags hcl.Diagnostics) *Error {
	return &Error{Diagnostics: sortDiagnostics(diags, c.Files), sources: c.sources}
}

// WriteDiagnostics renders diagnostics about this configuration (for example its Warnings) like Error.WriteText.
func (c *Config) WriteDiagnostics(w io.Writer, diags hcl.Diagnostics) error {
	return writeDiagnostics(w, c.sources, diags)
}

// Source returns the content of a file of this configuration, as read.
func (c *Config) Source(filename string) []byte { return c.sources[filename] }
