package pop3proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/pop3"
	"github.com/postern/postern/proxy/upstream"
)

// upstreamConn is one session's connection to the upstream POP3 server, after its greeting (and STLS, XCLIENT).
type upstreamConn struct {
	conn    *upstream.Conn
	c       *pop3.Client
	timeout time.Duration
	dl      time.Time // the deadline in force, as deadline set it
	// stamp is the APOP timestamp of the upstream's greeting ("<...>"), "" without one: the proxy greets with
	// the same one, so a client's APOP digest is valid upstream.
	stamp string
	caps  pop3.Capabilities
}

// upstreamError marks errors of the upstream connection: the session cannot go on and ends with -ERR [SYS/TEMP],
// with nothing deleted.
type upstreamError struct{ err error }

func (e *upstreamError) Error() string { return "upstream: " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

func isUpstreamError(err error) bool {
	var ue *upstreamError
	return errors.As(err, &ue)
}

var apopStamp = regexp.MustCompile(`<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>`)

// dialUpstream connects to the upstream, passes the client's address as configured, reads the greeting, does
// STLS when configured, and reads the capabilities.
func (s *Server) dialUpstream(ctx context.Context, client, local net.Addr) (*upstreamConn, error) {
	o := &s.opts
	d := upstream.Dialer{Address: o.Upstream, Dial: o.Dial, Timeout: o.Limits.CommandTimeout, Listener: o.Name,
		Protocol: Protocol}
	if o.UpstreamTLS.Mode == upstream.TLSImplicit && o.ClientAddress != ClientAddressProxyV2 {
		d.TLS = s.upTLS
	}
	uc, err := d.DialContext(ctx)
	if err != nil {
		return nil, &upstreamError{err}
	}
	up := &upstreamConn{conn: uc, timeout: o.Limits.CommandTimeout}
	fail := func(err error) (*upstreamConn, error) {
		uc.Raw.Close()
		return nil, &upstreamError{err}
	}
	up.deadline()
	if o.ClientAddress == ClientAddressProxyV2 {
		// The header goes first, before TLS: it is for the server's TCP layer.
		h := proxyproto.HeaderProxyFromAddrs(2, client, local)
		if _, err := h.WriteTo(uc.Raw); err != nil {
			return fail(fmt.Errorf("writing the PROXY header: %w", err))
		}
		if o.UpstreamTLS.Mode == upstream.TLSImplicit {
			hctx, cancel := context.WithTimeout(ctx, o.Limits.CommandTimeout)
			err := uc.StartTLS(hctx, s.upTLS)
			cancel()
			if err != nil {
				return fail(err)
			}
		}
	}
	up.c = pop3.NewClient(uc.Conn, o.Limits.LineLength)
	greet, err := up.c.ReadResponse()
	if err != nil {
		return fail(fmt.Errorf("greeting: %w", err))
	}
	if !greet.OK {
		return fail(fmt.Errorf("greeting: %s", greet.Line()))
	}
	up.stamp = apopStamp.FindString(greet.Text)
	if up.caps, err = up.c.Capa(); err != nil {
		return fail(fmt.Errorf("CAPA: %w", err))
	}
	if o.UpstreamTLS.Mode == upstream.TLSStartTLS {
		if !up.caps.Has("STLS") {
			return fail(errors.New("the upstream does not offer STLS"))
		}
		r, err := up.c.Cmd("STLS")
		if err != nil {
			return fail(fmt.Errorf("STLS: %w", err))
		}
		if !r.OK {
			return fail(fmt.Errorf("STLS refused: %s", r.Line()))
		}
		hctx, cancel := context.WithTimeout(ctx, o.Limits.CommandTimeout)
		err = uc.StartTLS(hctx, s.upTLS)
		cancel()
		if err == nil {
			err = up.c.Reset(uc.Conn)
		}
		if err != nil {
			return fail(err)
		}
		up.dl = time.Time{} // the handshake may have set its own
		up.deadline()
		if up.caps, err = up.c.Capa(); err != nil {
			return fail(fmt.Errorf("CAPA after STLS: %w", err))
		}
	}
	if o.ClientAddress == ClientAddressXClient {
		if err := up.xclient(client); err != nil {
			return fail(err)
		}
	}
	return up, nil
}

// xclient passes the client's address with XCLIENT (as Dovecot's and nginx's proxies do). The upstream must
// accept it: relaying the session as the proxy's own would defeat the upstream's per-client limits. Dovecot does
// not list XCLIENT in CAPA, and answers one from outside login_trusted_networks with "+OK You are not from
// trusted IP - ignoring": an +OK that says it ignored the command is a refusal.
func (up *upstreamConn) xclient(client net.Addr) error {
	ap, err := netAddrPort(client)
	if err != nil {
		return fmt.Errorf("XCLIENT: %w", err)
	}
	r, err := up.c.Cmd(fmt.Sprintf("XCLIENT ADDR=%s PORT=%d", ap.Addr().Unmap(), ap.Port()))
	if err != nil {
		return fmt.Errorf("XCLIENT: %w", err)
	}
	if !r.OK || strings.Contains(strings.ToLower(r.Text), "ignoring") {
		return fmt.Errorf("XCLIENT refused: %s (Dovecot: set login_trusted_networks to the proxy's address)", r.Line())
	}
	return nil
}

// deadline bounds the next exchange with the upstream. It is called before every command and every read of a
// message, and moves the deadline only when it would move by more than listener.Slack: setting a deadline takes
// the runtime's timer locks, once per read otherwise. A deadline left behind expires while nothing waits.
func (up *upstreamConn) deadline() {
	t := time.Now().Add(up.timeout)
	if t.Sub(up.dl) <= listener.Slack(up.timeout) {
		return
	}
	up.dl = t
	up.conn.Raw.SetDeadline(t)
}

// cmd sends one command and reads its status line; an I/O or protocol error is an upstreamError.
func (up *upstreamConn) cmd(line string) (pop3.Response, error) {
	up.deadline()
	r, err := up.c.Cmd(line)
	if err != nil {
		return r, &upstreamError{err}
	}
	return r, nil
}

// lines reads a listing after a +OK.
func (up *upstreamConn) lines(max int) ([]string, error) {
	up.deadline()
	l, err := up.c.Lines(max)
	if err != nil {
		return nil, &upstreamError{err}
	}
	return l, nil
}

// tlsState is the upstream connection's TLS state, nil without TLS.
func (up *upstreamConn) tlsState() *tls.ConnectionState { return up.conn.TLS }

func (up *upstreamConn) close() { up.conn.Raw.Close() }
