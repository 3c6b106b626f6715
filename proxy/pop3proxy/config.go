package pop3proxy

import (
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/upstream"
)

// FromConfig maps a pop3 `listener` block to Options. The caller adds what the configuration does not describe:
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
		Limits: Limits{
			MessageSize:    l.Limits.MessageSize,
			Sessions:       l.Limits.Sessions,
			CommandTimeout: l.Limits.CommandTimeout,
			IdleTimeout:    l.Limits.IdleTimeout,
			Errors:         l.Limits.Errors,
			SessionTime:    l.Limits.SessionTime,
			CommandRate:    l.Limits.CommandRate,
			EarlyOK:        l.POP3.EarlyOK,

			SessionsPerClient: l.Limits.SessionsPerClient,
			ConnectionRate:    l.Limits.ConnectionRate,
		},
		SizeMode: SizeMode(l.POP3.SizeMode),
		Cache: Cache{MemoryBytes: l.POP3.CacheMemory, EntryBytes: l.POP3.CacheEntry, UserBytes: l.POP3.CacheUser,
			DiskBytes: l.POP3.CacheDisk},
		ResultHeaders:     l.ResultHeaders,
		QuarantineDir:     l.QuarantineDir,
		AllowInsecureAuth: l.AllowInsecureAuth,
	}
	switch {
	case l.XClient:
		o.ClientAddress = ClientAddressXClient
	case l.POP3.UpstreamProxyProtocol:
		o.ClientAddress = ClientAddressProxyV2
	}
	for _, p := range l.ProxyProtocolTrusted {
		o.ProxyProtocol.Trusted = append(o.ProxyProtocol.Trusted, p.String())
	}
	return o
}
