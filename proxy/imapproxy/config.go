package imapproxy

import (
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/upstream"
)

// FromConfig maps an imap `listener` block to Options. The caller adds what the configuration does not describe:
// Filters, Audit, Logger, Hostname, SpoolDir, Cache.Dir (with a disk cache) and, for `upstream = "embedded"`, Dial.
func FromConfig(l *config.Listener) Options {
	o := Options{
		Name:     l.Name,
		Address:  l.Address,
		Upstream: l.Upstream,
		TLS:      TLS{Mode: TLSMode(l.TLS.Mode), CertFile: l.TLS.Cert, KeyFile: l.TLS.Key},
		UpstreamTLS: upstream.TLSOptions{
			Mode:       upstream.TLSMode(l.UpstreamTLS.Mode),
			CAFile:     l.UpstreamTLS.CAFile,
			ServerName: l.UpstreamTLS.ServerName,
			SkipVerify: !l.UpstreamTLS.Verify,
		},
		UpstreamProxyProtocol: l.IMAP.UpstreamProxyProtocol,
		Limits: Limits{
			MessageSize:       l.Limits.MessageSize,
			Sessions:          l.Limits.Sessions,
			CommandTimeout:    l.Limits.CommandTimeout,
			SessionsPerClient: l.Limits.SessionsPerClient,
			ConnectionRate:    l.Limits.ConnectionRate,
			SessionTime:       l.Limits.SessionTime,
			CommandRate:       l.Limits.CommandRate,
		},
		Cache: Cache{MemoryBytes: l.IMAP.CacheMemory, EntryBytes: l.IMAP.CacheEntry, UserBytes: l.IMAP.CacheUser,
			DiskBytes: l.IMAP.CacheDisk, MetaBytes: l.IMAP.CacheMeta},
		IdleKeepalive:     l.IMAP.IdleKeepalive,
		ResultHeaders:     l.ResultHeaders,
		QuarantineDir:     l.QuarantineDir,
		AllowInsecureAuth: l.AllowInsecureAuth,
	}
	if l.IMAP.PrefilterSet {
		o.Prefilter = l.IMAP.Prefilter
		if o.Prefilter == 0 {
			o.Prefilter = -1
		}
	}
	if l.Upstream == config.UpstreamEmbedded {
		o.Upstream = ""
	}
	for _, p := range l.ProxyProtocolTrusted {
		o.ProxyProtocol.Trusted = append(o.ProxyProtocol.Trusted, p.String())
	}
	return o
}
