package imapproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	proxyproto "github.com/pires/go-proxyproto"

	"github.com/postern/postern/proxy/upstream"
)

// upstreamConn is one session's connection to the upstream IMAP server, greeted (and upgraded to TLS when
// configured). imapclient has no deadlines of its own while it waits for a response: every call the session
// makes runs under a watchdog that closes the network connection when the command timeout passes.
type upstreamConn struct {
	conn    *upstream.Conn
	c       *imapclient.Client
	timeout time.Duration

	mu  sync.Mutex
	tls *tls.ConnectionState
}

// errUpstream marks a failure of the upstream connection (not a NO or BAD it answered): the session ends with
// an untagged BYE.
var errUpstream = errors.New("upstream connection failed")

func (s *Server) dialUpstream(ctx context.Context, client, local net.Addr, h *imapclient.UnilateralDataHandler) (*upstreamConn, error) {
	o := &s.opts
	d := upstream.Dialer{Address: o.Upstream, Dial: o.Dial, Timeout: o.Limits.CommandTimeout}
	if o.UpstreamTLS.Mode == upstream.TLSImplicit && !o.UpstreamProxyProtocol {
		d.TLS = s.upTLS
	}
	uc, err := d.DialContext(ctx)
	if err != nil {
		return nil, err
	}
	up := &upstreamConn{conn: uc, timeout: o.Limits.CommandTimeout, tls: uc.TLS}
	fail := func(err error) (*upstreamConn, error) {
		uc.Raw.Close()
		return nil, err
	}
	uc.Raw.SetDeadline(time.Now().Add(o.Limits.CommandTimeout))
	if o.UpstreamProxyProtocol {
		// The header goes first, before TLS: it is for the server's TCP layer.
		hdr := proxyproto.HeaderProxyFromAddrs(2, client, local)
		if _, err := hdr.WriteTo(uc.Raw); err != nil {
			return fail(fmt.Errorf("writing the PROXY header: %w", err))
		}
		if o.UpstreamTLS.Mode == upstream.TLSImplicit {
			hctx, cancel := context.WithTimeout(ctx, o.Limits.CommandTimeout)
			err := uc.StartTLS(hctx, s.upTLS)
			cancel()
			if err != nil {
				return fail(err)
			}
			up.tls = uc.TLS
		}
	}
	// imapclient sets its own read deadlines from here on; the watchdog bounds the waits.
	uc.Raw.SetDeadline(time.Time{})
	copts := &imapclient.Options{UnilateralDataHandler: h}
	stop := up.watch()
	defer stop()
	if o.UpstreamTLS.Mode == upstream.TLSStartTLS {
		cfg := s.upTLS.Clone()
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			up.mu.Lock()
			up.tls = &cs
			up.mu.Unlock()
			return nil
		}
		copts.TLSConfig = cfg
		up.c, err = imapclient.NewStartTLS(uc.Conn, copts)
		if err != nil {
			return fail(fmt.Errorf("STARTTLS: %w", err))
		}
	} else {
		up.c = imapclient.New(uc.Conn, copts)
		if err := up.c.WaitGreeting(); err != nil {
			return fail(fmt.Errorf("greeting: %w", err))
		}
	}
	if st := up.c.State(); st != imap.ConnStateNotAuthenticated {
		up.c.Close()
		return fail(fmt.Errorf("upstream greeted in state %v, want not authenticated (PREAUTH is not relayed)", st))
	}
	// The greeting's capabilities, or a CAPABILITY command when it had none.
	if up.c.Caps() == nil {
		up.c.Close()
		return fail(errors.New("no capabilities"))
	}
	return up, nil
}

// watch arms the watchdog for one upstream call; the returned function disarms it.
func (up *upstreamConn) watch() (stop func()) {
	t := time.AfterFunc(up.timeout, func() { up.conn.Raw.Close() })
	return func() { t.Stop() }
}

func (up *upstreamConn) tlsState() *tls.ConnectionState {
	up.mu.Lock()
	defer up.mu.Unlock()
	return up.tls
}

func (up *upstreamConn) close() {
	up.c.Close()
	up.conn.Raw.Close()
}

// closed reports whether the upstream connection is gone.
func (up *upstreamConn) closed() bool {
	select {
	case <-up.c.Closed():
		return true
	default:
		return false
	}
}

// watchStream is watch for a stream: reset extends the deadline (more of it arrived), pause holds the watchdog
// while the proxy works on what arrived (the policy has a deadline of its own).
func (up *upstreamConn) watchStream() (reset, pause, stop func()) {
	t := time.AfterFunc(up.timeout, func() { up.conn.Raw.Close() })
	return func() { t.Reset(up.timeout) }, func() { t.Stop() }, func() { t.Stop() }
}
