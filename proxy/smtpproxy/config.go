package smtpproxy

import "github.com/postern/postern/proxy/config"

// FromConfig maps an smtp or submission `listener` block to Options. The caller adds what the configuration
// does not describe: Filters, Audit, Logger, Hostname and, for `upstream = "embedded"`, Embedded.
func FromConfig(l *config.Listener) Options {
	o := Options{
		Name:      l.Name,
		Protocol:  l.Protocol,
		Direction: l.Direction,
		Address:   l.Address,
		Upstream:  l.Upstream,
		TLS:       TLS{Mode: TLSMode(l.TLS.Mode), CertFile: l.TLS.Cert, KeyFile: l.TLS.Key},
		UpstreamTLS: UpstreamTLS{
			Mode:       UpstreamTLSMode(l.UpstreamTLS.Mode),
			CAFile:     l.UpstreamTLS.CAFile,
			ServerName: l.UpstreamTLS.ServerName,
			SkipVerify: !l.UpstreamTLS.Verify,
		},
		Limits: Limits{
			MessageSize:       l.Limits.MessageSize,
			Sessions:          l.Limits.Sessions,
			Recipients:        l.Limits.Recipients,
			CommandTimeout:    l.Limits.CommandTimeout,
			IdleTimeout:       l.Limits.IdleTimeout,
			Errors:            l.Limits.Errors,
			UpstreamKeepalive: l.Limits.UpstreamKeepalive,
			SessionsPerClient: offIfZero(l.Limits.SessionsPerClient),
			ConnectionRate:    l.Limits.ConnectionRate,
			StressSessions:    offIfZero(l.Limits.StressSessions),
			StressTimeout:     l.Limits.StressTimeout,
			MinDataRate:       int64(offIfZero(int(l.Limits.MinDataRate))),
		},
		XClient:           l.XClient,
		BareNewline:       BareNewline(l.BareNewline),
		ReceivedHeader:    l.ReceivedHeader,
		ResultHeaders:     l.ResultHeaders,
		QuarantineDir:     l.QuarantineDir,
		AllowInsecureAuth: l.AllowInsecureAuth,
	}
	for _, p := range l.ProxyProtocolTrusted {
		o.ProxyProtocol.Trusted = append(o.ProxyProtocol.Trusted, p.String())
	}
	return o
}

// offIfZero maps the configuration's 0 ("no limit") to the Options' negative.
func offIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
