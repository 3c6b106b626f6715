package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Bounds on what Load reads. A configuration is written by an admin, but an include glob or a wrong path must
// still end in an error rather than in reading a disk image.
const (
	maxFileBytes      = 8 << 20  // one .hcl file
	maxFiles          = 256      // files in one configuration
	maxIncludeDepth   = 8        // include nesting
	maxModuleBytes    = 64 << 20 // one .wasm module
	maxPluginConfig   = 1 << 20  // one plugin's JSON configuration
	maxPEMBytes       = 1 << 20  // a certificate chain or key file
	maxReplyText      = 512      // as the ABI's set_verdict text
	maxUnixSocketPath = 107      // sun_path minus the terminating NUL on Linux
	defaultTagHeader  = "X-Postern-Tag"
	defaultRejectText = "Message rejected by policy"
	defaultAuditMax   = 100 << 20
	defaultAuditSync  = time.Second
	// DefaultReloadTimeout bounds a reload when reload_timeout is not set: ample for loading and compiling a
	// few changed plugins, short enough that a stuck file system is reported while the admin still waits.
	DefaultReloadTimeout = 30 * time.Second
)

// DefaultLimits returns the limits of a listener of protocol that sets none. They are the one place the
// listener defaults live: the proxy libraries take explicit values, and a library user that leaves a limit zero
// gets these.
func DefaultLimits(protocol string) Limits {
	idle, ok := defaultIdle[protocol]
	if !ok {
		idle = defaultIdle[ProtocolSMTP]
	}
	return Limits{MessageSize: DefaultMessageSize, Sessions: 1000, Recipients: 100, Errors: 10,
		CommandTimeout: 5 * time.Minute, IdleTimeout: idle, UpstreamKeepalive: DefaultUpstreamKeepalive,
		SessionsPerClient: 50, StressSessions: StressSessions(1000), StressTimeout: 10 * time.Second,
		MinDataRate: 500}
}

// StressSessions is the default stress threshold of a listener with this many sessions: four fifths of them.
func StressSessions(sessions int) int { return max(sessions*4/5, 1) }

// Listener settings the configuration does not expose, with the defaults every front end uses.
const (
	// DefaultMessageSize is the largest message a listener accepts unless limits.message_size says otherwise.
	DefaultMessageSize = 50 << 20
	// DefaultLineLength is the longest command or message line, CRLF included: RFC 5321's 1000 is broken by
	// real mail.
	DefaultLineLength = 64 << 10
	// DefaultMemoryThreshold is the message size kept in memory while a message is filtered; larger ones are
	// spooled to an unlinked temporary file.
	DefaultMemoryThreshold = 1 << 20
	// DefaultUpstreamKeepalive is the interval of the NOOPs to the upstream while a message is received and
	// filtered: well inside the 300 s an SMTP server waits for a command (RFC 5321, Postfix's smtpd_timeout).
	DefaultUpstreamKeepalive = 30 * time.Second
	// DefaultProxyHeaderTimeout bounds reading a PROXY protocol header.
	DefaultProxyHeaderTimeout = 5 * time.Second
)

// Defaults per protocol for the listener limits: RFC 5321 asks SMTP servers to wait 5 minutes for a command,
// RFC 1939 at least 10 minutes for POP3 and RFC 3501 at least 30 for IMAP.
var defaultIdle = map[string]time.Duration{
	ProtocolSMTP: 5 * time.Minute, ProtocolSubmission: 5 * time.Minute,
	ProtocolPOP3: 10 * time.Minute, ProtocolIMAP: 30 * time.Minute,
}

var defaultDirection = map[string]string{
	ProtocolSMTP: "inbound", ProtocolSubmission: "outbound", ProtocolPOP3: "retrieval", ProtocolIMAP: "retrieval",
}

var fileSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "include"}, {Name: "state_dir"}, {Name: "control_socket"},
		{Name: "reload_timeout"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "listener", LabelNames: []string{"protocol", "name"}},
		{Type: "plugin", LabelNames: []string{"name"}},
		{Type: "policy", LabelNames: []string{"name"}},
		{Type: "audit"},
		{Type: "admin"},
		{Type: "quarantine"},
	},
}

var listenerSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "address", Required: true}, {Name: "upstream", Required: true}, {Name: "direction"},
		{Name: "xclient"}, {Name: "bare_newline"}, {Name: "received_header"}, {Name: "result_headers"},
		{Name: "quarantine_dir"}, {Name: "allow_insecure_auth"},
		{Name: "size_mode"}, {Name: "upstream_proxy_protocol"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "tls"}, {Type: "upstream_tls"}, {Type: "limits"}, {Type: "proxy_protocol"},
		{Type: "cache"}, {Type: "imap"}},
}

var imapSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "upstream_proxy_protocol"}, {Name: "cache_size"}, {Name: "cache_entry"}, {Name: "cache_per_user"},
	{Name: "cache_disk"}, {Name: "cache_metadata"}, {Name: "idle_keepalive"}, {Name: "prefilter"},
}}

var cacheSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "memory"}, {Name: "entry"}, {Name: "per_user"}, {Name: "disk"},
}}

var tlsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "cert"}, {Name: "key"}, {Name: "mode"},
	{Name: "test_certificate"}}}

var upstreamTLSSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "mode"}, {Name: "ca_file"}, {Name: "server_name"}, {Name: "verify"},
}}

var limitsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "message_size"}, {Name: "sessions"}, {Name: "recipients"}, {Name: "command_timeout"},
	{Name: "idle_timeout"}, {Name: "errors"}, {Name: "upstream_keepalive"},
	{Name: "sessions_per_client"}, {Name: "connection_rate"}, {Name: "stress_sessions"}, {Name: "stress_timeout"},
	{Name: "min_data_rate"}, {Name: "session_time"}, {Name: "command_rate"}, {Name: "early_ok"},
}}

var proxyProtocolSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "trusted", Required: true}}}

var pluginSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "source", Required: true}, {Name: "sha256"}, {Name: "config"}, {Name: "memory"}, {Name: "timeout"},
	{Name: "pool_size"}, {Name: "max_calls"}, {Name: "on_error"}, {Name: "grants"},
}}

var policySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "when"}, {Name: "plugins", Required: true}, {Name: "mode"}, {Name: "reject_code"},
		{Name: "reject_text"}, {Name: "tag_header"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "thresholds"}},
}

var thresholdsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: ActionTag}, {Name: ActionQuarantine}, {Name: ActionTempfail}, {Name: ActionReject}, {Name: ActionDiscard},
}}

var adminSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "address", Required: true}, {Name: "ready_upstream"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "tls"}, {Type: "review"}},
}

var reviewSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "users_file", Required: true}, {Name: "secure_cookies"}, {Name: "session_idle"}, {Name: "session_max_age"},
}}

var auditSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "path", Required: true}, {Name: "max_bytes"}, {Name: "sync_interval"},
}, Blocks: []hcl.BlockHeaderSchema{{Type: "index"}}}

var auditIndexSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "driver", Required: true}, {Name: "path"}, {Name: "dsn"}, {Name: "node"},
}}

// Load reads the configuration file at path and every file it includes, and validates all of it: syntax, block
// and attribute names and types, references between blocks, `when` expressions, plugin files and their pins.
// On failure the error is an *Error listing every problem found with its file:line:column. Plugin modules are
// read and hashed here but not compiled; the policy engine does that.
func Load(path string) (*Config, error) {
	l := newLoader(path)
	l.file(path, nil, 0)
	l.finish()
	cfg := l.cfg
	cfg.lang.frozen = true
	var warnings hcl.Diagnostics
	for _, d := range sortDiagnostics(l.diags, cfg.Files) {
		if d.Severity == hcl.DiagWarning {
			warnings = append(warnings, d)
		}
	}
	if l.diags.HasErrors() {
		return nil, l.error()
	}
	cfg.Warnings = warnings
	return cfg, nil
}

// ControlSocket returns the control socket of the configuration at path (control_socket, or
// state_dir/control.sock) without requiring the rest of it to be valid: a running proxy is asked what it serves
// exactly when the file on disk does not load. It is "" with a nil error when the configuration sets neither;
// when it cannot be found and the configuration has errors, the error is the *Error that Load returns.
func ControlSocket(path string) (string, error) {
	l := newLoader(path)
	l.lenient = true
	l.file(path, nil, 0)
	l.finish()
	if l.cfg.ControlSocket != "" {
		return l.cfg.ControlSocket, nil
	}
	if l.diags.HasErrors() {
		return "", l.error()
	}
	return "", nil
}

func (l *loader) error() *Error {
	return &Error{Diagnostics: sortDiagnostics(l.diags, l.cfg.Files), sources: l.cfg.sources}
}

func newLoader(path string) *loader {
	return &loader{
		cfg:       &Config{Path: path, sources: map[string][]byte{}, lang: newLanguage()},
		seen:      map[string]bool{},
		names:     map[string]map[string]hcl.Range{"listener": {}, "plugin": {}, "policy": {}},
		addresses: map[string]hcl.Range{},
		singles:   map[string]hcl.Range{},
	}
}

type loader struct {
	cfg               *Config
	diags             hcl.Diagnostics
	seen              map[string]bool                 // absolute paths of the files read
	names             map[string]map[string]hcl.Range // block type → name → where defined
	addresses         map[string]hcl.Range            // listener address → where
	singles           map[string]hcl.Range            // top-level settings that may be given once → where
	quarantineDefault []*Listener                     // listeners whose quarantine_dir defaults from state_dir
	indexDefault      *AuditIndex                     // a sqlite audit index whose path defaults from state_dir
	testCerts         []*TLS                          // tls blocks with test_certificate, given their files in finish
	// lenient goes on past syntax errors with what the parser recovered (ControlSocket).
	lenient bool
}

func (l *loader) add(d ...*hcl.Diagnostic) { l.diags = append(l.diags, d...) }

// file reads one file and everything it includes, in order. from is the include element naming it (nil for the
// root).
func (l *loader) file(path string, from *hcl.Range, depth int) {
	subject := hcl.Range{Filename: path}
	if from != nil {
		subject = *from
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		l.add(errorf(subject, "Cannot read configuration", "%v", err))
		return
	}
	switch {
	case l.seen[abs]:
		l.add(errorf(subject, "File included twice", "%s is already part of the configuration; including it "+
			"again would define everything in it twice (or loop).", path))
		return
	case len(l.cfg.Files) >= maxFiles:
		l.add(errorf(subject, "Too many configuration files", "A configuration may span at most %d files.", maxFiles))
		return
	case depth > maxIncludeDepth:
		l.add(errorf(subject, "Includes nested too deeply", "Includes may nest at most %d levels.", maxIncludeDepth))
		return
	}
	l.seen[abs] = true
	src, err := readBounded(path, maxFileBytes)
	if err != nil {
		l.add(errorf(subject, "Cannot read configuration", "%v", err))
		return
	}
	l.cfg.Files = append(l.cfg.Files, path)
	l.cfg.sources[path] = src
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	l.add(diags...)
	if diags.HasErrors() {
		if l.lenient {
			l.recoverSettings(f)
		}
		return
	}
	content, diags := f.Body.Content(fileSchema)
	l.add(diags...)
	dir := filepath.Dir(path)

	// Blocks are handled in source order, and the include attribute's files are inlined at the place where the
	// attribute is written, because policy order is evaluation order.
	inc := content.Attributes["include"]
	included := inc == nil
	for _, b := range content.Blocks {
		if !included && inc.Range.Start.Byte < b.DefRange.Start.Byte {
			l.include(inc, dir, depth)
			included = true
		}
		switch b.Type {
		case "listener":
			l.listener(b)
		case "plugin":
			l.plugin(b)
		case "policy":
			l.policy(b, src)
		case "audit":
			if l.single("audit", b.DefRange) {
				l.cfg.Audit = l.audit(b)
			}
		case "admin":
			if l.single("admin", b.DefRange) {
				l.cfg.Admin = l.admin(b)
			}
		case "quarantine":
			if l.single("quarantine", b.DefRange) {
				l.cfg.Quarantine = l.quarantine(b)
			}
		}
	}
	if !included {
		l.include(inc, dir, depth)
	}
	if a := content.Attributes["state_dir"]; a != nil && l.single("state_dir", a.Range) {
		l.cfg.StateDir = l.path(a)
	}
	if a := content.Attributes["reload_timeout"]; a != nil && l.single("reload_timeout", a.Range) {
		l.cfg.ReloadTimeout = l.duration(a, time.Second, time.Hour)
	}
	if a := content.Attributes["control_socket"]; a != nil && l.single("control_socket", a.Range) {
		l.cfg.ControlSocket = l.path(a)
		if len(l.cfg.ControlSocket) > maxUnixSocketPath {
			l.add(errorf(a.Expr.Range(), "Control socket path too long", "%s is %d bytes; a unix socket path "+
				"may have at most %d.", l.cfg.ControlSocket, len(l.cfg.ControlSocket), maxUnixSocketPath))
		}
	}
}

// recoverSettings reads state_dir and control_socket from what the parser recovered of a file with syntax
// errors, where they are plain strings; nothing else of such a file is trusted.
func (l *loader) recoverSettings(f *hcl.File) {
	if f == nil {
		return
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return
	}
	for _, name := range []string{"state_dir", "control_socket"} {
		a := body.Attributes[name]
		if a == nil {
			continue
		}
		if v, diags := a.Expr.Value(nil); diags.HasErrors() || !v.IsWhollyKnown() || v.IsNull() || v.Type() != cty.String {
			continue
		}
		ha := a.AsHCLAttribute()
		if !l.single(name, ha.Range) {
			continue
		}
		if name == "state_dir" {
			l.cfg.StateDir = l.path(ha)
		} else {
			l.cfg.ControlSocket = l.path(ha)
		}
	}
}

// single records a setting that may appear once in the whole configuration.
func (l *loader) single(name string, at hcl.Range) bool {
	if prev, ok := l.singles[name]; ok {
		l.add(errorf(at, "Duplicate "+name, "%s is already set at %s; it may be set once in the whole "+
			"configuration (includes count).", name, position(&prev)))
		return false
	}
	l.singles[name] = at
	return true
}

func (l *loader) include(a *hcl.Attribute, dir string, depth int) {
	for _, e := range l.strings(a) {
		pattern := e.value
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(dir, pattern)
		}
		if !strings.ContainsAny(e.value, "*?[") {
			l.file(pattern, e.rng.Ptr(), depth+1)
			continue
		}
		matches, err := filepath.Glob(pattern)
		if err != nil {
			l.add(errorf(e.rng, "Invalid include pattern", "%q: %v", e.value, err))
			continue
		}
		// filepath.Glob already sorts, so conf.d/10-x.hcl comes before conf.d/20-y.hcl as admins expect.
		for _, m := range matches {
			l.file(m, e.rng.Ptr(), depth+1)
		}
	}
}

// finish runs the checks that need the whole configuration.
func (l *loader) finish() {
	cfg := l.cfg
	if cfg.ReloadTimeout == 0 {
		cfg.ReloadTimeout = DefaultReloadTimeout
	}
	if cfg.ControlSocket == "" && cfg.StateDir != "" {
		cfg.ControlSocket = filepath.Join(cfg.StateDir, "control.sock")
	}
	l.finishQuarantine()
	if a := cfg.Admin; a != nil && a.Review != nil && cfg.Audit == nil {
		l.add(errorf(a.Review.DeclRange, "Reviewer pages without an audit log", "Every login, view, release and "+
			"deletion on the reviewer pages is recorded: add an audit block."))
	}
	if ix := l.indexDefault; ix != nil {
		if cfg.StateDir == "" {
			l.add(errorf(ix.DeclRange, "No place for the audit index", "A sqlite index without a path is kept "+
				"in state_dir/audit-index.db: set state_dir, or give path."))
		} else {
			ix.Path = filepath.Join(cfg.StateDir, "audit-index.db")
		}
	}
	for _, t := range l.testCerts {
		if cfg.StateDir == "" {
			l.add(errorf(t.Range, "No place for the test certificate", "test_certificate keeps the "+
				"certificate it makes in state_dir/tls: set state_dir, or give cert and key."))
			continue
		}
		t.Cert = filepath.Join(cfg.StateDir, "tls", "test-cert.pem")
		t.Key = filepath.Join(cfg.StateDir, "tls", "test-key.pem")
		// `postern run` says at every start that the certificate is for testing; `check` stays quiet, so that
		// the demonstration's configuration checks clean.
	}
	used := map[string]bool{}
	for _, p := range cfg.Policies {
		for i, name := range p.Plugins {
			used[name] = true
			if cfg.Plugin(name) != nil {
				continue
			}
			detail := fmt.Sprintf("Policy %q runs plugin %q, but no plugin block defines it.", p.Name, name)
			if s := suggest(name, keys(l.names["plugin"])); s != "" {
				detail += fmt.Sprintf(" Did you mean %q?", s)
			}
			l.add(errorf(p.PluginRanges[i], "Unknown plugin", "%s", detail))
		}
	}
	for _, p := range cfg.Plugins {
		// With errors, a policy that was refused (a duplicate, say) would make its plugins look unused.
		if !used[p.Name] && !l.diags.HasErrors() {
			l.add(warnf(p.DeclRange, "Unused plugin", "No policy runs plugin %q; it is loaded anyway, so "+
				"its module is still checked.", p.Name))
		}
	}
	h := sha256.New()
	for _, f := range cfg.Files {
		sum := sha256.Sum256(cfg.sources[f])
		fmt.Fprintf(h, "file %x\n", sum)
	}
	for _, p := range cfg.Plugins {
		fmt.Fprintf(h, "plugin %s\n", p.SHA256)
	}
	cfg.Version = hex.EncodeToString(h.Sum(nil))
}

// name validates a block label used as a name and records it, refusing duplicates.
func (l *loader) name(kind string, b *hcl.Block, idx int) (string, bool) {
	name := b.Labels[idx]
	rng := b.LabelRanges[idx]
	if !validName(name) {
		l.add(errorf(rng, "Invalid "+kind+" name", "%q is not a valid name: use 1-64 letters, digits, '-', '_' "+
			"or '.'.", name))
		return name, false
	}
	if prev, ok := l.names[kind][name]; ok {
		l.add(errorf(rng, "Duplicate "+kind+" name", "A %s named %q is already defined at %s.", kind, name,
			position(&prev)))
		return name, false
	}
	l.names[kind][name] = b.DefRange
	return name, true
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// oneBlock returns the only block of a type in content, reporting any repetition.
func (l *loader) oneBlock(content *hcl.BodyContent, typ string) *hcl.Block {
	var first *hcl.Block
	for _, b := range content.Blocks {
		if b.Type != typ {
			continue
		}
		if first != nil {
			l.add(errorf(b.DefRange, "Duplicate "+typ+" block", "Only one %s block is allowed here; another is at %s.",
				typ, position(&first.DefRange)))
			continue
		}
		first = b
	}
	return first
}

func (l *loader) listener(b *hcl.Block) {
	content, diags := b.Body.Content(listenerSchema)
	l.add(diags...)
	proto := b.Labels[0]
	if _, ok := defaultDirection[proto]; !ok {
		l.add(errorf(b.LabelRanges[0], "Unknown listener protocol", "%q is not a protocol Postern proxies; use "+
			"\"smtp\", \"submission\", \"pop3\" or \"imap\".", proto))
		return
	}
	name, ok := l.name("listener", b, 1)
	if !ok {
		return
	}
	ln := &Listener{
		Protocol: proto, Name: name, DeclRange: b.DefRange,
		Direction:   defaultDirection[proto],
		BareNewline: "reject",
		TLS:         TLS{Mode: "none"},
		UpstreamTLS: UpstreamTLS{Mode: "none", Verify: true},
		Limits:      DefaultLimits(proto),
	}
	if a := content.Attributes["address"]; a != nil {
		ln.Address = l.hostPort(a)
		if prev, dup := l.addresses[ln.Address]; dup && ln.Address != "" {
			l.add(errorf(a.Expr.Range(), "Duplicate listener address", "Another listener already listens on %s "+
				"(%s).", ln.Address, position(&prev)))
		}
		l.addresses[ln.Address] = a.Expr.Range()
	}
	if a := content.Attributes["upstream"]; a != nil {
		if v, ok := l.str(a); ok && v == UpstreamEmbedded {
			ln.Upstream = v
		} else if ok {
			ln.Upstream = l.hostPort(a)
		}
	}
	if a := content.Attributes["direction"]; a != nil {
		ln.Direction = l.oneOf(a, "inbound", "outbound", "retrieval")
	}
	if a := content.Attributes["bare_newline"]; a != nil {
		ln.BareNewline = l.oneOf(a, "reject", "normalize")
	}
	l.boolean(content.Attributes["xclient"], &ln.XClient)
	l.boolean(content.Attributes["received_header"], &ln.ReceivedHeader)
	l.boolean(content.Attributes["result_headers"], &ln.ResultHeaders)
	l.boolean(content.Attributes["allow_insecure_auth"], &ln.AllowInsecureAuth)
	if a := content.Attributes["quarantine_dir"]; a != nil {
		ln.QuarantineDir = l.path(a)
	} else {
		l.quarantineDefault = append(l.quarantineDefault, ln)
	}
	if tb := l.oneBlock(content, "tls"); tb != nil {
		l.tls(tb, &ln.TLS, "starttls", "starttls", "implicit", "none")
	}
	if ub := l.oneBlock(content, "upstream_tls"); ub != nil {
		l.upstreamTLS(ub, ln)
	}
	if lb := l.oneBlock(content, "limits"); lb != nil {
		l.limits(lb, &ln.Limits)
		l.sessionLimits(lb, ln)
	}
	l.pop3(content, ln)
	l.imap(content, ln)
	if pb := l.oneBlock(content, "proxy_protocol"); pb != nil {
		pc, diags := pb.Body.Content(proxyProtocolSchema)
		l.add(diags...)
		if a := pc.Attributes["trusted"]; a != nil {
			elems := l.strings(a)
			for _, e := range elems {
				p, err := parsePrefix(e.value)
				if err != nil {
					l.add(errorf(e.rng, "Invalid trusted source", "%v", err))
					continue
				}
				ln.ProxyProtocolTrusted = append(ln.ProxyProtocolTrusted, p)
			}
			if len(elems) == 0 {
				l.add(errorf(a.Expr.Range(), "No trusted sources", "A proxy_protocol block needs at least one "+
					"trusted address or CIDR: accepting PROXY headers from anyone lets any client forge its address."))
			}
		}
	}
	l.cfg.Listeners = append(l.cfg.Listeners, ln)
}

// tls reads a tls block into t: mode defaults to def, and modes lists the modes the block may name.
func (l *loader) tls(b *hcl.Block, t *TLS, def string, modes ...string) {
	c, diags := b.Body.Content(tlsSchema)
	l.add(diags...)
	t.Mode = def
	t.Range = b.DefRange
	if a := c.Attributes["mode"]; a != nil {
		t.Mode = l.oneOf(a, modes...)
	}
	cert, key := c.Attributes["cert"], c.Attributes["key"]
	l.boolean(c.Attributes["test_certificate"], &t.TestCertificate)
	if t.TestCertificate {
		if cert != nil || key != nil {
			l.add(errorf(b.DefRange, "Certificate given twice", "Set either test_certificate or cert and key."))
			return
		}
		if t.Mode != "none" {
			l.testCerts = append(l.testCerts, t)
		}
		return
	}
	if cert != nil {
		t.Cert = l.path(cert)
	}
	if key != nil {
		t.Key = l.path(key)
	}
	if t.Mode == "none" {
		return
	}
	if cert == nil || key == nil {
		l.add(errorf(b.DefRange, "Missing certificate", "TLS mode %q needs both cert and key.", t.Mode))
		return
	}
	if t.Cert == "" || t.Key == "" {
		return // already reported
	}
	certPEM, err := readBounded(t.Cert, maxPEMBytes)
	if err != nil {
		l.add(errorf(cert.Expr.Range(), "Cannot read certificate", "%v.", err))
		return
	}
	keyPEM, err := readBounded(t.Key, maxPEMBytes)
	if err != nil {
		l.add(errorf(key.Expr.Range(), "Cannot read key", "%v.", err))
		return
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		l.add(errorf(cert.Expr.Range(), "Unusable certificate", "Cannot load the key pair %s / %s: %v.",
			t.Cert, t.Key, err))
	}
}

func (l *loader) upstreamTLS(b *hcl.Block, ln *Listener) {
	c, diags := b.Body.Content(upstreamTLSSchema)
	l.add(diags...)
	u := &ln.UpstreamTLS
	if a := c.Attributes["mode"]; a != nil {
		// stls is POP3's name for the upgrade (RFC 2595).
		if u.Mode = l.oneOf(a, "none", "starttls", "stls", "tls"); u.Mode == "stls" {
			u.Mode = "starttls"
		}
	}
	if a := c.Attributes["server_name"]; a != nil {
		u.ServerName, _ = l.str(a)
	}
	l.boolean(c.Attributes["verify"], &u.Verify)
	if a := c.Attributes["ca_file"]; a != nil {
		u.CAFile = l.path(a)
		if u.CAFile != "" {
			pem, err := readBounded(u.CAFile, maxFileBytes)
			if err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
				err = fmt.Errorf("%s holds no PEM certificate", u.CAFile)
			}
			if err != nil {
				l.add(errorf(a.Expr.Range(), "Unusable CA file", "%v.", err))
			}
		}
	}
	if !u.Verify && u.Mode != "none" {
		l.add(warnf(b.DefRange, "Upstream certificate not verified", "verify = false accepts any certificate "+
			"from the upstream of listener %q: anyone on the path can read and change the mail.", ln.Name))
	}
}

// pop3 reads the settings only a pop3 listener has, and refuses them elsewhere.
func (l *loader) pop3(content *hcl.BodyContent, ln *Listener) {
	p := &ln.POP3
	if ln.Protocol == ProtocolPOP3 {
		p.SizeMode = "exact"
	}
	only := func(rng hcl.Range, name string) bool {
		if ln.Protocol == ProtocolPOP3 {
			return true
		}
		l.add(errorf(rng, "Not a "+ln.Protocol+" setting", "%s is a setting of pop3 listeners only.", name))
		return false
	}
	if a := content.Attributes["size_mode"]; a != nil && only(a.Expr.Range(), "size_mode") {
		p.SizeMode = l.oneOf(a, "exact", "upstream")
	}
	if a := content.Attributes["upstream_proxy_protocol"]; a != nil && only(a.Expr.Range(), "upstream_proxy_protocol") {
		l.boolean(a, &p.UpstreamProxyProtocol)
		if p.UpstreamProxyProtocol && ln.XClient {
			l.add(errorf(a.Expr.Range(), "Two ways to pass the client address", "Set xclient or "+
				"upstream_proxy_protocol, not both."))
		}
	}
	if cb := l.oneBlock(content, "cache"); cb != nil && only(cb.DefRange, "cache") {
		c, diags := cb.Body.Content(cacheSchema)
		l.add(diags...)
		if a := c.Attributes["memory"]; a != nil {
			p.CacheMemory = l.size(a, 1<<20, 64<<30)
		}
		if a := c.Attributes["entry"]; a != nil {
			p.CacheEntry = l.size(a, 1<<10, 4<<30)
		}
		if a := c.Attributes["per_user"]; a != nil {
			p.CacheUser = l.size(a, 1<<10, 64<<30)
		}
		if a := c.Attributes["disk"]; a != nil {
			p.CacheDisk = l.size(a, 1<<20, 1<<40) // under state_dir: CheckServable wants one
		}
	}
}

// imap reads the imap block, which only an imap listener has.
func (l *loader) imap(content *hcl.BodyContent, ln *Listener) {
	b := l.oneBlock(content, "imap")
	if b == nil {
		return
	}
	if ln.Protocol != ProtocolIMAP {
		l.add(errorf(b.DefRange, "Not a "+ln.Protocol+" setting", "The imap block is a setting of imap listeners only."))
		return
	}
	c, diags := b.Body.Content(imapSchema)
	l.add(diags...)
	p := &ln.IMAP
	if a := c.Attributes["upstream_proxy_protocol"]; a != nil {
		l.boolean(a, &p.UpstreamProxyProtocol)
	}
	if a := c.Attributes["cache_size"]; a != nil {
		p.CacheMemory = l.size(a, 1<<20, 64<<30)
	}
	if a := c.Attributes["cache_entry"]; a != nil {
		p.CacheEntry = l.size(a, 1<<10, 4<<30)
	}
	if a := c.Attributes["cache_per_user"]; a != nil {
		p.CacheUser = l.size(a, 1<<10, 64<<30)
	}
	if a := c.Attributes["cache_disk"]; a != nil {
		p.CacheDisk = l.size(a, 1<<20, 1<<40) // under state_dir: CheckServable wants one
	}
	if a := c.Attributes["cache_metadata"]; a != nil {
		p.CacheMeta = l.size(a, 1<<20, 64<<30)
	}
	if a := c.Attributes["idle_keepalive"]; a != nil {
		p.IdleKeepalive = l.duration(a, 10*time.Second, time.Hour)
	}
	if a := c.Attributes["prefilter"]; a != nil {
		p.Prefilter = l.integer(a, 0, 10_000)
		p.PrefilterSet = true
	}
}

// sessionLimits reads the limits of the retrieval front ends: session_time and command_rate (pop3 and imap),
// early_ok (pop3).
func (l *loader) sessionLimits(b *hcl.Block, ln *Listener) {
	c, _ := b.Body.Content(limitsSchema) // diagnostics reported by limits
	for _, name := range []string{"session_time", "command_rate", "early_ok"} {
		a := c.Attributes[name]
		if a == nil {
			continue
		}
		retrieval := ln.Protocol == ProtocolPOP3 || ln.Protocol == ProtocolIMAP
		if name == "early_ok" && ln.Protocol != ProtocolPOP3 {
			l.add(errorf(a.Expr.Range(), "Not a "+ln.Protocol+" setting", "limits.early_ok is a setting of pop3 "+
				"listeners only."))
			continue
		}
		if !retrieval {
			l.add(errorf(a.Expr.Range(), "Not a "+ln.Protocol+" setting", "limits.%s is a setting of pop3 "+
				"and imap listeners only.", name))
			continue
		}
		switch name {
		case "session_time":
			ln.Limits.SessionTime = l.duration(a, time.Second, 7*24*time.Hour)
		case "early_ok":
			ln.POP3.EarlyOK = l.duration(a, time.Second, time.Hour)
		default:
			ln.Limits.CommandRate = l.integer(a, 1, 100_000)
		}
	}
}

func (l *loader) limits(b *hcl.Block, lim *Limits) {
	c, diags := b.Body.Content(limitsSchema)
	l.add(diags...)
	if a := c.Attributes["message_size"]; a != nil {
		lim.MessageSize = l.size(a, 1<<10, 4<<30)
	}
	if a := c.Attributes["sessions"]; a != nil {
		lim.Sessions = l.integer(a, 1, 1_000_000)
	}
	if a := c.Attributes["recipients"]; a != nil {
		lim.Recipients = l.integer(a, 1, 100_000)
	}
	if a := c.Attributes["errors"]; a != nil {
		lim.Errors = l.integer(a, 1, 10_000)
	}
	if a := c.Attributes["command_timeout"]; a != nil {
		lim.CommandTimeout = l.duration(a, time.Second, 24*time.Hour)
	}
	if a := c.Attributes["idle_timeout"]; a != nil {
		lim.IdleTimeout = l.duration(a, time.Second, 24*time.Hour)
	}
	if a := c.Attributes["upstream_keepalive"]; a != nil {
		lim.UpstreamKeepalive = l.duration(a, time.Second, time.Hour)
	}
	if a := c.Attributes["sessions_per_client"]; a != nil {
		lim.SessionsPerClient = l.integer(a, 0, 1_000_000)
	}
	if a := c.Attributes["connection_rate"]; a != nil {
		lim.ConnectionRate = l.integer(a, 0, 1_000_000)
	}
	if a := c.Attributes["stress_timeout"]; a != nil {
		lim.StressTimeout = l.duration(a, time.Second, 24*time.Hour)
	}
	if a := c.Attributes["min_data_rate"]; a != nil {
		lim.MinDataRate = int64(l.integer(a, 0, 1<<30))
	}
	if a := c.Attributes["stress_sessions"]; a != nil {
		lim.StressSessions = l.integer(a, 0, 1_000_000)
	} else if c.Attributes["sessions"] != nil {
		lim.StressSessions = StressSessions(lim.Sessions)
	}
}

func (l *loader) plugin(b *hcl.Block) {
	content, diags := b.Body.Content(pluginSchema)
	l.add(diags...)
	name, ok := l.name("plugin", b, 0)
	if !ok {
		return
	}
	p := &Plugin{Name: name, DeclRange: b.DefRange, OnError: "tempfail", Config: []byte("{}")}
	defer func() { l.cfg.Plugins = append(l.cfg.Plugins, p) }()
	if a := content.Attributes["config"]; a != nil {
		p.Config = l.json(a)
		p.ConfigRange, p.configExpr = a.Range, a.Expr
	}
	if a := content.Attributes["memory"]; a != nil {
		p.Memory = l.size(a, 1<<20, 4<<30)
	}
	if a := content.Attributes["timeout"]; a != nil {
		p.Timeout = l.duration(a, time.Millisecond, 10*time.Minute)
	}
	if a := content.Attributes["pool_size"]; a != nil {
		p.PoolSize = l.integer(a, 1, 1024)
	}
	if a := content.Attributes["max_calls"]; a != nil {
		p.MaxCalls = l.integer(a, 1, 1_000_000_000)
	}
	if a := content.Attributes["on_error"]; a != nil {
		p.OnError = l.oneOf(a, "tempfail", "accept", "reject")
	}
	if a := content.Attributes["grants"]; a != nil {
		for _, e := range l.strings(a) {
			if e.value != "clock" && e.value != "random" {
				l.add(errorf(e.rng, "Unknown grant", "%q is not a capability Postern grants; use \"clock\" or "+
					"\"random\".", e.value))
				continue
			}
			if !slices.Contains(p.Grants, e.value) {
				p.Grants = append(p.Grants, e.value)
			}
		}
	}
	src := content.Attributes["source"]
	if src == nil {
		return
	}
	p.SourceRange = src.Expr.Range()
	p.Source = l.path(src)
	if p.Source == "" {
		return
	}
	wasm, err := readBounded(p.Source, maxModuleBytes)
	if err != nil {
		l.add(errorf(p.SourceRange, "Cannot read plugin module", "Plugin %q: %v.%s", name, err, buildHint(p.Source, err)))
		return
	}
	p.Wasm = wasm
	sum := sha256.Sum256(wasm)
	p.SHA256 = hex.EncodeToString(sum[:])
	if a := content.Attributes["sha256"]; a != nil {
		pin, ok := l.str(a)
		pin = strings.ToLower(strings.TrimSpace(pin))
		switch {
		case !ok:
		case len(pin) != 64 || strings.Trim(pin, "0123456789abcdef") != "":
			l.add(errorf(a.Expr.Range(), "Invalid sha256 pin", "A pin is 64 hexadecimal digits (sha256sum "+
				"prints it); this one is %q.", pin))
		case pin != p.SHA256:
			l.add(errorf(a.Expr.Range(), "Plugin sha256 mismatch", "Plugin %q: %s has SHA-256 %s, but the "+
				"configuration pins %s. The module changed since it was pinned; check it before updating the pin.",
				name, p.Source, p.SHA256, pin))
		}
	}
}

// buildHint tells how to build a missing module that a Postern checkout builds: ROOT/build/plugins/NAME.wasm
// comes from ROOT/plugins/NAME (or one of the SDK's kits) by `make plugins`, which `make run` does not run for the
// C plugins.
func buildHint(source string, err error) string {
	if !errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	dir, file := filepath.Split(source)
	name, ok := strings.CutSuffix(file, ".wasm")
	if !ok || filepath.Base(filepath.Clean(dir)) != "plugins" || filepath.Base(filepath.Dir(filepath.Clean(dir))) != "build" {
		return ""
	}
	root := filepath.Dir(filepath.Dir(filepath.Clean(dir)))
	if _, err := os.Stat(filepath.Join(root, "Makefile")); err != nil {
		return ""
	}
	for _, src := range []string{filepath.Join("plugins", name), filepath.Join("sdk", "conformance", name)} {
		if fi, err := os.Stat(filepath.Join(root, src)); err == nil && fi.IsDir() {
			return fmt.Sprintf(" It is built from %s by `make plugins` (run in %s).", src, root)
		}
	}
	return ""
}

func (l *loader) policy(b *hcl.Block, src []byte) {
	content, diags := b.Body.Content(policySchema)
	l.add(diags...)
	name, ok := l.name("policy", b, 0)
	if !ok {
		return
	}
	p := &Policy{Name: name, DeclRange: b.DefRange, Mode: ModeEnforce, RejectCode: 550,
		RejectText: defaultRejectText, TagHeader: defaultTagHeader}
	if a := content.Attributes["mode"]; a != nil {
		p.Mode = l.oneOf(a, ModeEnforce, ModeMonitor)
	}
	if a := content.Attributes["when"]; a != nil {
		cond, diags := l.cfg.lang.compileWhen(a, src)
		l.add(diags...)
		p.When = cond
	}
	if a := content.Attributes["plugins"]; a != nil {
		seen := map[string]bool{}
		for _, e := range l.strings(a) {
			if seen[e.value] {
				l.add(errorf(e.rng, "Plugin listed twice", "Policy %q already runs plugin %q.", name, e.value))
				continue
			}
			seen[e.value] = true
			p.Plugins = append(p.Plugins, e.value)
			p.PluginRanges = append(p.PluginRanges, e.rng)
		}
	}
	if a := content.Attributes["reject_code"]; a != nil {
		p.RejectCode = l.integer(a, 500, 599)
	}
	if a := content.Attributes["reject_text"]; a != nil {
		if v, ok := l.str(a); ok {
			if err := checkReplyText(v); err != nil {
				l.add(errorf(a.Expr.Range(), "Invalid reject_text", "%v.", err))
			}
			p.RejectText = v
		}
	}
	if a := content.Attributes["tag_header"]; a != nil {
		if v, ok := l.str(a); ok {
			if v != "" && !validHeaderName(v) {
				l.add(errorf(a.Expr.Range(), "Invalid tag_header", "%q is not a header field name (1-76 printable "+
					"ASCII characters, no ':').", v))
			}
			p.TagHeader = v
		}
	}
	if tb := l.oneBlock(content, "thresholds"); tb != nil {
		c, diags := tb.Body.Content(thresholdsSchema)
		l.add(diags...)
		at := map[float64]string{}
		for _, a := range sortedAttrs(c.Attributes) {
			action := a.Name
			score, ok := l.number(a)
			if !ok {
				continue
			}
			if score <= 0 {
				l.add(errorf(a.Expr.Range(), "Invalid threshold", "A threshold must be above 0, or every "+
					"message would reach it."))
				continue
			}
			if other, dup := at[score]; dup {
				l.add(errorf(a.Expr.Range(), "Ambiguous threshold", "%s and %s are both at %g.", other, action, score))
				continue
			}
			at[score] = action
			p.Thresholds = append(p.Thresholds, Threshold{Score: score, Action: action})
		}
		slices.SortFunc(p.Thresholds, func(a, b Threshold) int {
			switch {
			case a.Score < b.Score:
				return -1
			case a.Score > b.Score:
				return 1
			}
			return 0
		})
	}
	if a := content.Attributes["plugins"]; a != nil && len(p.Plugins) == 0 && l.isEmptyList(a) {
		l.add(warnf(a.Expr.Range(), "Empty policy", "Policy %q runs no plugin, so it "+
			"never does anything.", name))
	}
	l.cfg.Policies = append(l.cfg.Policies, p)
}

// admin reads the admin block. The admin listener serves metrics, health checks and the reviewer pages, which
// carry passwords and mail: off the loopback it must have TLS.
func (l *loader) admin(b *hcl.Block) *Admin {
	c, diags := b.Body.Content(adminSchema)
	l.add(diags...)
	a := &Admin{TLS: TLS{Mode: "none"}, DeclRange: b.DefRange}
	if at := c.Attributes["address"]; at != nil {
		a.Address = l.hostPort(at)
	}
	if tb := l.oneBlock(c, "tls"); tb != nil {
		l.tls(tb, &a.TLS, "implicit", "implicit", "none")
	}
	if at := c.Attributes["ready_upstream"]; at != nil {
		l.boolean(at, &a.ReadyUpstream)
	}
	if rb := l.oneBlock(c, "review"); rb != nil {
		a.Review = l.review(rb, a.TLS.Mode != "none")
	}
	if a.Address != "" && a.TLS.Mode == "none" && !loopbackAddress(a.Address) {
		l.add(errorf(c.Attributes["address"].Expr.Range(), "Admin listener without TLS off the loopback",
			"%s is not a loopback address, and the admin listener carries passwords and mail: listen on "+
				"127.0.0.1 or [::1] (behind a TLS proxy), or give it a tls block with cert and key.", a.Address))
	}
	return a
}

// review reads the review block of the admin listener. The users file itself is read when the pages start (and
// again whenever it changes), so its own errors name its lines.
func (l *loader) review(b *hcl.Block, tls bool) *Review {
	c, diags := b.Body.Content(reviewSchema)
	l.add(diags...)
	r := &Review{SecureCookies: tls, SessionIdle: 30 * time.Minute, SessionMaxAge: 12 * time.Hour, DeclRange: b.DefRange}
	if at := c.Attributes["users_file"]; at != nil {
		r.UsersFile = l.path(at)
		r.UsersFileRange = at.Expr.Range()
	}
	if at := c.Attributes["secure_cookies"]; at != nil {
		l.boolean(at, &r.SecureCookies)
		if tls && !r.SecureCookies {
			l.add(errorf(at.Expr.Range(), "Session cookies not Secure under TLS",
				"The admin listener has TLS: its session cookies are always Secure; remove secure_cookies."))
		}
	}
	if at := c.Attributes["session_idle"]; at != nil {
		r.SessionIdle = l.duration(at, time.Minute, 24*time.Hour)
	}
	if at := c.Attributes["session_max_age"]; at != nil {
		r.SessionMaxAge = l.duration(at, time.Minute, 30*24*time.Hour)
	}
	return r
}

// loopbackAddress reports whether host:port names a loopback host.
func loopbackAddress(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (l *loader) audit(b *hcl.Block) *Audit {
	c, diags := b.Body.Content(auditSchema)
	l.add(diags...)
	a := &Audit{MaxBytes: defaultAuditMax, SyncInterval: defaultAuditSync}
	if at := c.Attributes["path"]; at != nil {
		a.Path = l.path(at)
	}
	if at := c.Attributes["max_bytes"]; at != nil {
		a.MaxBytes = l.size(at, 64<<10, 1<<40)
	}
	if at := c.Attributes["sync_interval"]; at != nil {
		a.SyncInterval = l.duration(at, 0, time.Hour)
	}
	if ib := l.oneBlock(c, "index"); ib != nil {
		a.Index = l.auditIndex(ib)
	}
	return a
}

// auditIndex reads the index block. A sqlite index without a path goes to state_dir/audit-index.db (finish).
func (l *loader) auditIndex(b *hcl.Block) *AuditIndex {
	c, diags := b.Body.Content(auditIndexSchema)
	l.add(diags...)
	ix := &AuditIndex{DeclRange: b.DefRange}
	if at := c.Attributes["driver"]; at != nil {
		n := len(l.diags)
		if ix.Driver = l.oneOf(at, "sqlite", "postgres"); len(l.diags) > n {
			ix.Driver = "" // reported; the other checks would only add noise
		}
	}
	path, dsn := c.Attributes["path"], c.Attributes["dsn"]
	switch {
	case ix.Driver == "sqlite" && dsn != nil:
		l.add(errorf(dsn.NameRange, "Unexpected dsn", "A sqlite index is a file: give its path, not a dsn."))
	case ix.Driver == "postgres" && path != nil:
		l.add(errorf(path.NameRange, "Unexpected path", "A postgres index is a database: give its dsn, not a path."))
	case ix.Driver == "postgres" && dsn == nil:
		l.add(errorf(b.DefRange, "Missing dsn", "A postgres index needs dsn, the database's connection string "+
			"(\"postgres://user@host:5432/postern\" or \"host=… dbname=…\")."))
	}
	if path != nil {
		ix.Path = l.path(path)
	}
	if dsn != nil {
		ix.DSN, _ = l.str(dsn)
	}
	if at := c.Attributes["node"]; at != nil {
		if ix.Node, _ = l.str(at); ix.Node == "" || len(ix.Node) > 255 || strings.ContainsAny(ix.Node, " \t\r\n/") {
			l.add(errorf(at.Expr.Range(), "Invalid node", "node names this node's chain in the index: 1 to 255 "+
				"characters, no spaces or slashes."))
		}
	}
	if ix.Driver == "sqlite" && ix.Path == "" {
		l.indexDefault = ix
	}
	return ix
}

// Value helpers. Each evaluates a constant attribute (no variables, no functions: settings are data), reports a
// problem at the value's range and returns the zero value on failure.

func (l *loader) value(a *hcl.Attribute, ty cty.Type, what string) (cty.Value, bool) {
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		l.add(diags...)
		return cty.NilVal, false
	}
	if v.IsNull() {
		l.add(errorf(a.Expr.Range(), "Missing value", "%s must not be null.", a.Name))
		return cty.NilVal, false
	}
	if ty == cty.DynamicPseudoType {
		return v, true
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		l.add(errorf(a.Expr.Range(), "Wrong type", "%s must be %s; this is %s.", a.Name, what, v.Type().FriendlyName()))
		return cty.NilVal, false
	}
	return cv, true
}

func (l *loader) str(a *hcl.Attribute) (string, bool) {
	v, ok := l.value(a, cty.String, "a string")
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

func (l *loader) oneOf(a *hcl.Attribute, allowed ...string) string {
	v, ok := l.str(a)
	if !ok {
		return allowed[0]
	}
	if !slices.Contains(allowed, v) {
		l.add(errorf(a.Expr.Range(), "Invalid "+a.Name, "%q is not one of %s.", v, quoteList(allowed)))
		return allowed[0]
	}
	return v
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func (l *loader) boolean(a *hcl.Attribute, dst *bool) {
	if a == nil {
		return
	}
	if v, ok := l.value(a, cty.Bool, "true or false"); ok {
		*dst = v.True()
	}
}

func (l *loader) number(a *hcl.Attribute) (float64, bool) {
	v, ok := l.value(a, cty.Number, "a number")
	if !ok {
		return 0, false
	}
	f, _ := v.AsBigFloat().Float64()
	if math.IsInf(f, 0) || math.IsNaN(f) {
		l.add(errorf(a.Expr.Range(), "Invalid number", "%s must be finite.", a.Name))
		return 0, false
	}
	return f, true
}

func (l *loader) integer(a *hcl.Attribute, lo, hi int) int {
	f, ok := l.number(a)
	if !ok {
		return 0
	}
	if f != math.Trunc(f) || f < float64(lo) || f > float64(hi) {
		l.add(errorf(a.Expr.Range(), "Invalid "+a.Name, "%s must be a whole number from %d to %d; this is %g.",
			a.Name, lo, hi, f))
		return 0
	}
	return int(f)
}

// size accepts a number of bytes or a string with a unit.
func (l *loader) size(a *hcl.Attribute, lo, hi int64) int64 {
	v, ok := l.value(a, cty.DynamicPseudoType, "")
	if !ok {
		return 0
	}
	var n int64
	switch v.Type() {
	case cty.Number:
		f, _ := v.AsBigFloat().Float64()
		if f != math.Trunc(f) || f < 0 || f > math.MaxInt64/2 {
			l.add(errorf(a.Expr.Range(), "Invalid "+a.Name, "%g is not a whole number of bytes.", f))
			return 0
		}
		n = int64(f)
	case cty.String:
		var err error
		if n, err = ParseSize(v.AsString()); err != nil {
			l.add(errorf(a.Expr.Range(), "Invalid "+a.Name, "%v.", err))
			return 0
		}
	default:
		l.add(errorf(a.Expr.Range(), "Wrong type", "%s must be a size such as \"64MiB\" or a number of bytes; "+
			"this is %s.", a.Name, v.Type().FriendlyName()))
		return 0
	}
	if n < lo || n > hi {
		l.add(errorf(a.Expr.Range(), "Invalid "+a.Name, "%s must be from %s to %s; this is %s.", a.Name,
			FormatSize(lo), FormatSize(hi), FormatSize(n)))
		return 0
	}
	return n
}

func (l *loader) duration(a *hcl.Attribute, lo, hi time.Duration) time.Duration {
	s, ok := l.str(a)
	if !ok {
		return 0
	}
	d, err := ParseDuration(s)
	if err != nil {
		l.add(errorf(a.Expr.Range(), "Invalid "+a.Name, "%v.", err))
		return 0
	}
	if d < lo || d > hi {
		l.add(errorf(a.Expr.Range(), "Invalid "+a.Name, "%s must be from %v to %v; this is %v.", a.Name, lo, hi, d))
		return 0
	}
	return d
}

// path resolves a file attribute relative to the directory of the file that contains it, and makes it absolute
// so that it does not depend on the working directory of a long-running proxy.
func (l *loader) path(a *hcl.Attribute) string {
	s, ok := l.str(a)
	if !ok {
		return ""
	}
	if s == "" {
		l.add(errorf(a.Expr.Range(), "Empty path", "%s must name a file or directory.", a.Name))
		return ""
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(filepath.Dir(a.Range.Filename), s)
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		l.add(errorf(a.Expr.Range(), "Invalid path", "%v.", err))
		return ""
	}
	return abs
}

func (l *loader) hostPort(a *hcl.Attribute) string {
	s, ok := l.str(a)
	if !ok {
		return ""
	}
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		var n int
		n, err = strconv.Atoi(port)
		if err == nil && (n < 1 || n > 65535) {
			err = fmt.Errorf("port %d out of range", n)
		}
	}
	if err != nil {
		l.add(errorf(a.Expr.Range(), "Invalid "+a.Name, "%q is not host:port (examples: \"127.0.0.1:2525\", "+
			"\"[::1]:25\", \":25\"): %v.", s, err))
		return ""
	}
	return s
}

// sortedAttrs returns attributes in source order (hcl gives a map), so problems are reported top to bottom.
func sortedAttrs(attrs hcl.Attributes) []*hcl.Attribute {
	out := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *hcl.Attribute) int { return a.Range.Start.Byte - b.Range.Start.Byte })
	return out
}

// isEmptyList reports whether the attribute is written as an empty list.
func (l *loader) isEmptyList(a *hcl.Attribute) bool {
	exprs, diags := hcl.ExprList(a.Expr)
	return !diags.HasErrors() && len(exprs) == 0
}

type element struct {
	value string
	rng   hcl.Range
}

// strings reads a list of strings, keeping each element's range so that a bad element is pointed at exactly.
func (l *loader) strings(a *hcl.Attribute) []element {
	exprs, diags := hcl.ExprList(a.Expr)
	if diags.HasErrors() {
		// Not a list literal (a function call, say): evaluate it whole.
		v, ok := l.value(a, cty.List(cty.String), "a list of strings")
		if !ok {
			return nil
		}
		var out []element
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.IsNull() {
				l.add(errorf(a.Expr.Range(), "Missing value", "%s must not contain null.", a.Name))
				continue
			}
			out = append(out, element{e.AsString(), a.Expr.Range()})
		}
		return out
	}
	out := make([]element, 0, len(exprs))
	for _, e := range exprs {
		v, diags := e.Value(nil)
		if diags.HasErrors() {
			l.add(diags...)
			continue
		}
		cv, err := convert.Convert(v, cty.String)
		if err != nil || cv.IsNull() {
			l.add(errorf(e.Range(), "Wrong type", "Each element of %s must be a string; this is %s.", a.Name,
				v.Type().FriendlyName()))
			continue
		}
		out = append(out, element{cv.AsString(), e.Range()})
	}
	return out
}

func (l *loader) json(a *hcl.Attribute) []byte {
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		l.add(diags...)
		return []byte("{}")
	}
	if v.IsNull() {
		return []byte("{}")
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		l.add(errorf(a.Expr.Range(), "Invalid plugin config", "Cannot turn it into JSON: %v.", err))
		return []byte("{}")
	}
	if len(b) > maxPluginConfig {
		l.add(errorf(a.Expr.Range(), "Plugin config too large", "It is %d bytes as JSON; the limit is %d.", len(b),
			maxPluginConfig))
	}
	return b
}

// readBounded reads a regular file of at most limit bytes. Anything else is refused before a byte is read: a FIFO
// or a device would block the load (and a reload, and everything waiting for it) until a writer comes, or return
// endless data. The open itself does not block (O_NONBLOCK), so a FIFO is refused as promptly as a directory.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|nonBlock, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file but a %s; configuration files, plugin modules and "+
			"certificates must be regular files", path, fileKind(fi.Mode()))
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %s", path, FormatSize(limit))
	}
	return b, nil
}

// fileKind names a file type for a diagnostic.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "FIFO (named pipe)"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file"
}

// checkReplyText applies the ABI's rules for reply text: at most 512 bytes of printable UTF-8, no CR or LF.
func checkReplyText(s string) error {
	if len(s) > maxReplyText {
		return fmt.Errorf("it is %d bytes; the limit is %d", len(s), maxReplyText)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("it is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("it contains a control character or invalid UTF-8")
		}
	}
	return nil
}

// validHeaderName is RFC 5322's field-name, at most 76 characters so the field fits a line.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 76 {
		return false
	}
	for _, c := range []byte(s) {
		if c <= 32 || c >= 127 || c == ':' {
			return false
		}
	}
	return true
}
