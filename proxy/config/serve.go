package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
)

// Served lists the listener protocols this build of Postern serves. A configuration may declare the others (the
// language knows every protocol Postern proxies), but CheckServable refuses them.
var Served = []string{ProtocolSMTP, ProtocolSubmission, ProtocolPOP3, ProtocolIMAP}

// CheckServable reports what would stop `postern run` from starting the configuration's listeners, judged from
// the configuration alone (a busy address is only found by binding it): a listener whose protocol this build does
// not serve, or whose upstream certificate could not be verified for lack of a name. Both `postern check` and
// `postern run` call it, so check refuses what run refuses, with the same diagnostic.
func (c *Config) CheckServable() error {
	var diags hcl.Diagnostics
	for _, l := range c.Listeners {
		fail := func(format string, args ...any) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot start listener " + l.Name,
				Detail: fmt.Sprintf(format, args...), Subject: l.DeclRange.Ptr()})
		}
		if !served(l.Protocol) {
			fail("the %s proxy is not part of this version of Postern; remove the listener or run a version that "+
				"has it", l.Protocol)
			continue
		}
		if (l.POP3.CacheDisk > 0 || l.IMAP.CacheDisk > 0) && c.StateDir == "" {
			fail("cache.disk keeps its files under state_dir: set state_dir, or remove disk")
		}
		u := l.UpstreamTLS
		if u.Mode != "" && u.Mode != "none" && u.Verify && u.ServerName == "" && l.Upstream == UpstreamEmbedded {
			fail("upstream_tls: set server_name (the upstream address has no host name to verify)")
		}
	}
	if len(diags) > 0 {
		return c.NewError(diags)
	}
	return nil
}

func served(protocol string) bool {
	for _, p := range Served {
		if p == protocol {
			return true
		}
	}
	return false
}
