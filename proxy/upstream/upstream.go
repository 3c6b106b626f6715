// Package upstream opens a front end's connection to the server it proxies for: the dial, bounded by a deadline,
// and TLS towards the upstream (none, STARTTLS after the protocol's own negotiation, or TLS from the first byte),
// with certificate verification on unless explicitly turned off. What the protocol says on the connection (SMTP's
// EHLO and XCLIENT, a POP3 or IMAP greeting) belongs to its front end.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/postern/postern/proxy/metrics"
)

// TLSMode says how a connection to the upstream is protected.
type TLSMode string

// The upstream TLS modes.
const (
	TLSNone     TLSMode = "none"
	TLSStartTLS TLSMode = "starttls" // the protocol's upgrade command, then a handshake (StartTLS)
	TLSImplicit TLSMode = "tls"      // a handshake first (Dialer.Dial does it)
)

// TLSOptions configure TLS towards the upstream.
type TLSOptions struct {
	// Mode is none, starttls or tls. With starttls an upstream that does not offer the upgrade is an error: a
	// front end never falls back to plain text silently.
	Mode TLSMode
	// CAFile is a PEM bundle of the certificate authorities trusted for the upstream; "" uses the system pool.
	CAFile string
	// ServerName is the name checked against the upstream's certificate; "" uses the host of the address.
	ServerName string
	// SkipVerify turns certificate verification off. It exists for test rigs with throw-away certificates; a
	// production proxy should set CAFile instead. (The configuration's `verify = false`.)
	SkipVerify bool
}

// TLSConfig builds the client TLS configuration for an upstream at address (host:port; "" or a name without a
// host when the connection is made otherwise): verification on unless SkipVerify, with CAFile or the system pool,
// TLS 1.2 at least.
func TLSConfig(address string, o TLSOptions) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName, InsecureSkipVerify: o.SkipVerify}
	if cfg.ServerName == "" && address != "" {
		if host, _, err := net.SplitHostPort(address); err == nil {
			cfg.ServerName = host
		}
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream_tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream_tls ca_file %s: no PEM certificate found", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		return nil, errors.New("upstream_tls: set server_name (the upstream address has no host name to verify)")
	}
	return cfg, nil
}

// Dialer opens connections to one upstream.
type Dialer struct {
	// Address is host:port, dialled over TCP unless Dial is set.
	Address string
	// Dial, if set, opens the connection instead (an in-process upstream; tests injecting faults).
	Dial func(ctx context.Context) (net.Conn, error)
	// Timeout bounds the dial and, for TLSImplicit, the handshake.
	Timeout time.Duration
	// TLS is used for TLSImplicit; nil means no TLS at dial time.
	TLS *tls.Config
	// Listener and Protocol name the front end in the dial metrics.
	Listener, Protocol string
}

// Conn is an open upstream connection.
type Conn struct {
	// Conn is what the protocol talks over: the TLS connection when there is TLS.
	net.Conn
	// Raw is the network connection; closing it interrupts whoever is waiting on the upstream.
	Raw net.Conn
	// TLS is the state of the TLS connection, nil without TLS.
	TLS *tls.ConnectionState
}

// DialContext connects, within Timeout, and with d.TLS set does the TLS handshake. TCP keep-alives are off: the
// session's timeouts bound the connection.
func (d *Dialer) DialContext(ctx context.Context) (_ *Conn, err error) {
	defer func() {
		// A dial the session gave up on (the client left) is not the upstream's failure.
		if !errors.Is(err, context.Canceled) {
			metrics.UpstreamDial(d.Listener, d.Protocol, err)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	var c net.Conn
	if d.Dial != nil {
		c, err = d.Dial(ctx)
	} else {
		nd := net.Dialer{KeepAlive: -1}
		c, err = nd.DialContext(ctx, "tcp", d.Address)
	}
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	uc := &Conn{Conn: c, Raw: c}
	if d.TLS != nil {
		if err := uc.StartTLS(ctx, d.TLS); err != nil {
			c.Close()
			return nil, err
		}
	}
	return uc, nil
}

// StartTLS does the client TLS handshake on the connection (after the protocol's STARTTLS, STLS or the like), and
// from then on the connection talks TLS.
func (c *Conn) StartTLS(ctx context.Context, cfg *tls.Config) error {
	tc := tls.Client(c.Conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	st := tc.ConnectionState()
	c.Conn, c.TLS = tc, &st
	return nil
}

// TLSInfo describes a TLS connection state for logs and plugins: "TLS1.3" and the IANA cipher suite name; "", ""
// for nil.
func TLSInfo(st *tls.ConnectionState) (version, cipher string) {
	if st == nil {
		return "", ""
	}
	switch st.Version {
	case tls.VersionTLS12:
		version = "TLS1.2"
	case tls.VersionTLS13:
		version = "TLS1.3"
	default:
		version = strings.ReplaceAll(tls.VersionName(st.Version), " ", "")
	}
	return version, tls.CipherSuiteName(st.CipherSuite)
}
