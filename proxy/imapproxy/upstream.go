package imapproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
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
	sniff   *sniffer // what imapclient does not read: RECENT, [UNSEEN n]
	timeout time.Duration

	mu  sync.Mutex
	tls *tls.ConnectionState
}

// errUpstream marks a failure of the upstream connection (not a NO or BAD it answered): the session ends with
// an untagged BYE.
var errUpstream = errors.New("upstream connection failed")

func (s *Server) dialUpstream(ctx context.Context, client, local net.Addr, h *imapclient.UnilateralDataHandler) (*upstreamConn, error) {
	o := &s.opts
	d := upstream.Dialer{Address: o.Upstream, Dial: o.Dial, Timeout: o.Limits.CommandTimeout, Listener: o.Name,
		Protocol: Protocol}
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
	copts := &imapclient.Options{UnilateralDataHandler: h}
	if o.UpstreamTLS.Mode == upstream.TLSStartTLS {
		// STARTTLS is done here rather than by imapclient, so that the sniffer reads the plain text under TLS.
		// imapclient then starts on the TLS connection with a greeting without capabilities, and asks for
		// them again, as RFC 3501 §6.2.1 requires after STARTTLS.
		if err := startTLS(ctx, uc, s.upTLS, o.Limits.CommandTimeout); err != nil {
			return fail(fmt.Errorf("STARTTLS: %w", err))
		}
		up.tls = uc.TLS
		up.sniff = newSniffer(uc.Conn, "* OK TLS established\r\n")
	} else {
		up.sniff = newSniffer(uc.Conn, "")
	}
	// imapclient sets its own read deadlines from here on; the watchdog bounds the waits.
	uc.Raw.SetDeadline(time.Time{})
	stop := up.watch()
	defer stop()
	up.c = imapclient.New(up.sniff, copts)
	if err := up.c.WaitGreeting(); err != nil {
		return fail(fmt.Errorf("greeting: %w", err))
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

// startTLS reads the upstream's greeting, sends STARTTLS and does the TLS handshake. The greeting must be OK
// (PREAUTH is not relayed, BYE is a refusal), and nothing may follow the tagged OK before the handshake: bytes
// sent in plain text after it would be taken as coming under TLS.
func startTLS(ctx context.Context, uc *upstream.Conn, cfg *tls.Config, timeout time.Duration) error {
	uc.Raw.SetDeadline(time.Now().Add(timeout))
	br := bufio.NewReaderSize(uc.Conn, 4096)
	readLine := func() (string, error) {
		l, err := br.ReadSlice('\n')
		if err != nil {
			return "", fmt.Errorf("reading: %w", err)
		}
		return string(l), nil
	}
	greeting, err := readLine()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(strings.ToUpper(greeting), "* OK") {
		return fmt.Errorf("greeting %q, want * OK (PREAUTH is not relayed)", strings.TrimSpace(greeting))
	}
	if _, err := io.WriteString(uc.Conn, "P0 STARTTLS\r\n"); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	for {
		l, err := readLine()
		if err != nil {
			return err
		}
		if strings.HasPrefix(l, "* ") {
			continue // CAPABILITY and the like
		}
		if !strings.HasPrefix(strings.ToUpper(l), "P0 OK") {
			return fmt.Errorf("the server answered %q", strings.TrimSpace(l))
		}
		break
	}
	if br.Buffered() > 0 {
		return errors.New("the server sent data after its STARTTLS reply, before TLS")
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return uc.StartTLS(hctx, cfg)
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
