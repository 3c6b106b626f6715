package imapproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"
	"golang.org/x/time/rate"

	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/metrics"
)

// session is one client connection and its upstream connection. imapserver calls its methods one at a time
// (Idle runs on a goroutine of its own while the connection waits for DONE); the upstream's unsolicited
// responses arrive on imapclient's goroutines and are only noted, under umu, to be delivered at the points IMAP
// allows (Poll, Idle, the expunge and move writers).
type session struct {
	srv    *Server
	id     string
	log    *slog.Logger
	raw    net.Conn
	remote netip.AddrPort
	tls    *tls.ConnectionState
	ctx    context.Context
	cancel context.CancelFunc
	mf     *mailflow.Session
	up     *upstreamConn
	conn   *imapserver.Conn
	done   chan struct{}
	once   sync.Once

	// caps is the capability set this session's imapserver advertises; it is updated in place at login, when
	// the upstream tells what it has to an authenticated client.
	caps        imap.CapSet
	appendLimit uint32
	user        string
	// relayed is set by a relayed command whose success imapserver follows with Poll; a Poll without it
	// follows a command the upstream did not see (NOOP, CHECK), and polls the upstream with NOOP.
	relayed bool

	view mailboxView

	umu          sync.Mutex
	arrived      bool                     // EXISTS arrived: new messages to list
	expunged     bool                     // EXPUNGE arrived (or a command may have removed messages): the list is compared whole
	flagUpdates  map[imap.UID][]imap.Flag // FETCH FLAGS that named their UID
	flagsUnknown bool                     // a FETCH FLAGS without UID arrived: every message's flags are read again
	notify       chan struct{}            // wakes Idle
	mailboxFlags []imap.Flag              // the mailbox's FLAGS changed (a new keyword)
	// fetchers counts unsolicited FETCH handlers running: a poll lets them finish before it reads what they
	// noted.
	fetchers atomic.Int32

	// limiter paces the client's commands (Limits.CommandRate); throttled notes that it has held one back.
	limiter   *rate.Limiter
	throttled bool

	mu       sync.Mutex
	busy     bool // a command is being carried out
	idling   bool
	draining bool   // the session ends at the next point a BYE may be sent (shutdown, session time)
	byeText  string // what that BYE says
	byeSent  bool
}

// mailboxView is the selected mailbox as the client knows it: sequence number n is uids[n-1].
type mailboxView struct {
	name           string
	readOnly       bool
	uidValidity    uint32
	uids           []imap.UID
	pendingExpunge bool // the upstream expunged messages the client has not been told of
	closing        bool // CLOSE: the upstream's CLOSE both expunges and unselects
}

func (v *mailboxView) selected() bool { return v.name != "" }

func (s *Server) serveConn(conn net.Conn) {
	ss := &session{srv: s, id: newID(), raw: conn, remote: netAddrPort(conn.RemoteAddr()), done: make(chan struct{}),
		notify: make(chan struct{}, 1)}
	ss.log = s.log.With("session", ss.id)
	ss.ctx, ss.cancel = context.WithCancel(context.Background())
	defer ss.cancel()
	ss.limiter = rate.NewLimiter(rate.Limit(s.opts.Limits.CommandRate), 10*s.opts.Limits.CommandRate)
	if !s.ln.Track(ss) {
		handler{s}.Refuse(conn, listener.ErrShuttingDown)
		return
	}
	defer s.ln.Untrack(ss)
	defer conn.Close()
	o := &s.opts
	var client net.Conn = conn
	if o.TLS.Mode == TLSImplicit {
		tc := tls.Server(conn, s.tlsConf)
		ctx, cancel := context.WithTimeout(ss.ctx, o.Limits.CommandTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			ss.log.Info("TLS handshake failed", "client", ss.remote.String(), "err", err)
			return
		}
		st := tc.ConnectionState()
		ss.tls, client = &st, tc
	}
	bye := func(text string) {
		client.SetWriteDeadline(time.Now().Add(o.Limits.CommandTimeout))
		fmt.Fprintf(client, "* BYE [UNAVAILABLE] %s\r\n", text)
	}
	mf, err := s.flow.Open(ss.ctx, ss.id)
	if err != nil {
		// No policy to apply (the manager is closing): mail must not be served unchecked.
		ss.log.Warn("no policy available; refusing session")
		bye("Service not available, try again later")
		return
	}
	ss.mf = mf
	defer mf.Close()
	up, err := s.dialUpstream(ss.ctx, conn.RemoteAddr(), conn.LocalAddr(), &imapclient.UnilateralDataHandler{
		Expunge: func(uint32) { ss.noteExpunge() },
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.Flags != nil {
				ss.umu.Lock()
				ss.mailboxFlags = d.Flags
				ss.umu.Unlock()
				ss.wake()
			}
			if d.NumMessages != nil {
				ss.noteArrival()
			}
		},
		Fetch: ss.noteFetch,
	})
	if err != nil {
		ss.log.Warn("upstream unavailable; refusing session", "client", ss.remote.String(), "err", err)
		bye("Mail server not available, try again later")
		return
	}
	ss.mu.Lock()
	ss.up = up
	ss.mu.Unlock()
	defer up.close()

	ss.caps, ss.appendLimit = ss.capabilities(up.c.Caps())
	so := &imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			ss.mu.Lock()
			ss.conn = c
			ss.mu.Unlock()
			return ss, nil, nil
		},
		Caps:         ss.caps,
		InsecureAuth: o.AllowInsecureAuth,
		Logger:       imapLogger{ss.log},
	}
	if o.TLS.Mode == TLSStartTLS {
		so.TLSConfig = s.tlsConf
	}
	go ss.watchUpstream()
	limit := time.AfterFunc(o.Limits.SessionTime, func() {
		ss.log.Info("session time limit reached; closing", "limit", o.Limits.SessionTime)
		ss.endWith("Session time limit reached, log in again")
	})
	defer limit.Stop()
	// Serve returns once the session's Close has closed done.
	_ = imapserver.New(so).Serve(&oneConn{c: client, done: ss.done})
}

// capabilities is what the session advertises given the upstream's: IMAP4rev1 with the extensions both have
// (and ESEARCH, which the proxy answers itself from the upstream's plain SEARCH).
func (ss *session) capabilities(upstream imap.CapSet) (imap.CapSet, uint32) {
	caps, limit := Capabilities(upstream, uint32(ss.srv.opts.Limits.MessageSize))
	caps[imap.CapIMAP4rev1] = struct{}{}
	caps[imap.CapESearch] = struct{}{}
	return caps, limit
}

// watchUpstream turns the upstream's BYE or disconnect into an untagged BYE to the client, at once when the
// session waits for a command (a command in progress fails and says it itself).
func (ss *session) watchUpstream() {
	select {
	case <-ss.done:
	case <-ss.up.c.Closed():
		ss.mu.Lock()
		quiet := !ss.busy && !ss.byeSent
		ss.mu.Unlock()
		if quiet {
			metrics.UpstreamError(ss.srv.opts.Name, Protocol)
			ss.log.Info("upstream closed the connection; closing session")
			ss.bye("Mail server closed the connection, try again later")
		}
	}
}

// bye sends the client an untagged BYE and closes the connection, once.
func (ss *session) bye(text string) {
	ss.mu.Lock()
	c, sent := ss.conn, ss.byeSent
	ss.byeSent = true
	ss.mu.Unlock()
	if sent {
		return
	}
	if c == nil {
		ss.raw.Close()
		return
	}
	c.Bye(text)
}

// begin marks a command in progress, once the command rate lets it start; the returned function ends it. A
// shutdown or session time limit that came meanwhile says goodbye once the command's reply is out.
func (ss *session) begin() func() {
	ss.pace()
	ss.relayed = true
	ss.mu.Lock()
	ss.busy = true
	ss.mu.Unlock()
	return func() {
		ss.mu.Lock()
		ss.busy = false
		draining, text := ss.draining, ss.byeText
		ss.mu.Unlock()
		if draining {
			// imapserver writes the tagged reply after the method returns: let it go out first.
			time.AfterFunc(50*time.Millisecond, func() { ss.bye(text) })
		}
	}
}

// pace holds a command back until the command rate allows it: at most 1/CommandRate seconds, since every command
// takes one token. Delaying rather than refusing keeps a client that bursts past the rate working.
func (ss *session) pace() {
	r := ss.limiter.Reserve()
	d := r.Delay()
	if d <= 0 {
		return
	}
	if !ss.throttled {
		ss.throttled = true
		ss.log.Info("command rate exceeded; commands are delayed", "rate", ss.srv.opts.Limits.CommandRate)
	}
	metrics.Throttled(ss.srv.opts.Name, Protocol)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ss.ctx.Done():
		r.Cancel()
	}
}

// Drain is called when shutdown begins: a session waiting for a command (or in IDLE) is sent BYE now, one
// carrying out a command after it.
func (ss *session) Drain() { ss.endWith("Server shutting down, try again later") }

// endWith ends the session with a BYE saying text: now when it waits for a command or is in IDLE, else once the
// command in progress is answered.
func (ss *session) endWith(text string) {
	ss.mu.Lock()
	if !ss.draining {
		ss.draining, ss.byeText = true, text
	}
	text = ss.byeText
	busy := ss.busy && !ss.idling
	ss.mu.Unlock()
	if !busy {
		ss.bye(text)
	}
}

// Cut closes the session now: plugin calls are cancelled, both connections closed.
func (ss *session) Cut() {
	ss.cancel()
	ss.raw.Close()
	ss.mu.Lock()
	up := ss.up
	ss.mu.Unlock()
	if up != nil {
		up.conn.Raw.Close()
	}
}

// noteExpunge records that messages may have left the upstream's list (EXPUNGE, or a command of the proxy's
// that removes messages).
func (ss *session) noteExpunge() {
	ss.umu.Lock()
	ss.expunged = true
	ss.umu.Unlock()
	ss.wake()
}

// noteArrival records that messages arrived (EXISTS).
func (ss *session) noteArrival() {
	ss.umu.Lock()
	ss.arrived = true
	ss.umu.Unlock()
	ss.wake()
}

// noteFetch records an unsolicited FETCH (a flag change): by UID when it names one, else as "read every
// message's flags again", since imapclient hands it over on a goroutine of its own and its sequence number may
// no longer mean the same message.
func (ss *session) noteFetch(msg *imapclient.FetchMessageData) {
	ss.fetchers.Add(1)
	defer ss.fetchers.Add(-1)
	var (
		uid      imap.UID
		flags    []imap.Flag
		hasFlags bool
	)
	for item := msg.Next(); item != nil; item = msg.Next() {
		switch it := item.(type) {
		case imapclient.FetchItemDataUID:
			uid = it.UID
		case imapclient.FetchItemDataFlags:
			flags, hasFlags = it.Flags, true
		}
	}
	if !hasFlags {
		return
	}
	ss.umu.Lock()
	if uid != 0 {
		if ss.flagUpdates == nil {
			ss.flagUpdates = map[imap.UID][]imap.Flag{}
		}
		ss.flagUpdates[uid] = flags
	} else {
		ss.flagsUnknown = true
	}
	ss.umu.Unlock()
	ss.wake()
}

func (ss *session) wake() {
	select {
	case ss.notify <- struct{}{}:
	default:
	}
}

// upErr maps an upstream error for the client: the upstream's NO or BAD as it came (type, code, text); a
// failed connection ends the session with an untagged BYE.
func (ss *session) upErr(err error) error {
	if err == nil {
		return nil
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		ss.relayed = false // a refused command is not followed by Poll
		return ie
	}
	return ss.lost(err)
}

func (ss *session) lost(err error) error {
	metrics.UpstreamError(ss.srv.opts.Name, Protocol)
	ss.log.Warn("upstream connection failed; closing session", "err", err)
	ss.bye("Mail server not available, try again later")
	return fmt.Errorf("%w: %v", errUpstream, err)
}

// wait runs one upstream command under the watchdog.
func (ss *session) wait(f func() error) error {
	stop := ss.up.watch()
	defer stop()
	return ss.upErr(f())
}

// Close is called by imapserver when the connection ends.
func (ss *session) Close() error {
	ss.once.Do(func() {
		ss.mu.Lock()
		ss.byeSent = true // the connection is ending: the upstream's goodbye is not the client's news
		ss.mu.Unlock()
		if !ss.up.closed() {
			stop := ss.up.watch()
			ss.up.c.Logout().Wait()
			stop()
		}
		close(ss.done)
	})
	return nil
}

// Login relays LOGIN: the client is logged in exactly when the upstream says so.
func (ss *session) Login(username, password string) error {
	defer ss.begin()()
	ss.relayed = false // imapserver does not poll after LOGIN
	if err := ss.wait(func() error { return ss.up.c.Login(username, password).Wait() }); err != nil {
		return err
	}
	ss.loggedIn(username)
	return nil
}

// AuthenticateMechanisms are relayed as LOGIN is: the proxy takes the credentials and logs in upstream with them.
func (ss *session) AuthenticateMechanisms() []string { return []string{"PLAIN", "LOGIN"} }

func (ss *session) Authenticate(mech string) (sasl.Server, error) {
	switch mech {
	case "PLAIN":
		return sasl.NewPlainServer(func(identity, username, password string) error {
			defer ss.begin()()
			ss.relayed = false
			var c sasl.Client
			if ss.up.c.Caps().Has(imap.AuthCap("PLAIN")) {
				c = sasl.NewPlainClient(identity, username, password)
			} else if identity != "" && identity != username {
				return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed,
					Text: "Authorization identity not supported by the mail server"}
			}
			var err error
			if c != nil {
				err = ss.wait(func() error { return ss.up.c.Authenticate(c) })
			} else {
				err = ss.wait(func() error { return ss.up.c.Login(username, password).Wait() })
			}
			if err != nil {
				return err
			}
			ss.loggedIn(username)
			return nil
		}), nil
	case "LOGIN":
		return &loginServer{login: func(username, password string) error { return ss.Login(username, password) }}, nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported authentication mechanism"}
}

// loggedIn records the user and advertises what the upstream has for an authenticated client.
func (ss *session) loggedIn(user string) {
	ss.user = user
	stop := ss.up.watch()
	upCaps := ss.up.c.Caps()
	stop()
	caps, limit := ss.capabilities(upCaps)
	for c := range ss.caps {
		delete(ss.caps, c)
	}
	for c := range caps {
		ss.caps[c] = struct{}{}
	}
	ss.appendLimit = limit
	ss.log.Info("logged in", "user", user, "client", ss.remote.String())
}

// AppendLimit is the APPENDLIMIT advertised: the smaller of the proxy's message size and the upstream's limit.
func (ss *session) AppendLimit() uint32 { return ss.appendLimit }

// loginServer is the server side of SASL LOGIN (draft-murchison-sasl-login): username and password prompts.
type loginServer struct {
	login    func(username, password string) error
	username string
	step     int
}

func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		s.step++
		if len(response) > 0 { // the initial response carries the username
			s.username = string(response)
			s.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		s.username = string(response)
		s.step++
		return []byte("Password:"), false, nil
	case 2:
		s.step++
		return nil, true, s.login(s.username, string(response))
	}
	return nil, true, errors.New("unexpected client response")
}

func (ss *session) Create(mailbox string, options *imap.CreateOptions) error {
	defer ss.begin()()
	if options != nil && len(options.SpecialUse) > 0 && !ss.up.c.Caps().Has(imap.CapCreateSpecialUse) {
		options = nil
	}
	return ss.wait(func() error { return ss.up.c.Create(mailbox, options).Wait() })
}

func (ss *session) Delete(mailbox string) error {
	defer ss.begin()()
	return ss.wait(func() error { return ss.up.c.Delete(mailbox).Wait() })
}

func (ss *session) Rename(mailbox, newName string, options *imap.RenameOptions) error {
	defer ss.begin()()
	return ss.wait(func() error { return ss.up.c.Rename(mailbox, newName, options).Wait() })
}

func (ss *session) Subscribe(mailbox string) error {
	defer ss.begin()()
	return ss.wait(func() error { return ss.up.c.Subscribe(mailbox).Wait() })
}

func (ss *session) Unsubscribe(mailbox string) error {
	defer ss.begin()()
	return ss.wait(func() error { return ss.up.c.Unsubscribe(mailbox).Wait() })
}

// List relays LIST, one upstream LIST per pattern, and LSUB (which imapserver hands over as a LIST with
// SelectSubscribed).
func (ss *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	defer ss.begin()()
	if len(patterns) == 0 {
		// imapserver drops an empty pattern: `LIST "" ""` asks for the hierarchy delimiter (RFC 3501 §6.3.8).
		patterns = []string{""}
	}
	if isLSub(w) {
		return ss.lsub(w, ref, patterns[0])
	}
	seen := map[string]bool{}
	var all []*imap.ListData
	for _, p := range patterns {
		list, err := ss.list(ref, p, options)
		if err != nil {
			return err
		}
		for _, d := range list {
			if !seen[d.Mailbox] {
				seen[d.Mailbox] = true
				all = append(all, d)
			}
		}
	}
	if options.SelectRecursiveMatch && len(patterns) > 1 {
		var err error
		if all, err = ss.recursiveMatch(ref, patterns, all); err != nil {
			return err
		}
	}
	for _, d := range all {
		if err := w.WriteList(d); err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) list(ref, pattern string, options *imap.ListOptions) ([]*imap.ListData, error) {
	var list []*imap.ListData
	err := ss.wait(func() (err error) {
		list, err = ss.up.c.List(ref, pattern, options).Collect()
		return err
	})
	return list, err
}

// isLSub tells an LSUB from a LIST (SUBSCRIBED), which imapserver passes with the same options: only its
// ListWriter knows, in an unexported field (go-imap is pinned; TestDovecotSubscriptions fails if the field goes).
func isLSub(w *imapserver.ListWriter) bool {
	f := reflect.ValueOf(w).Elem().FieldByName("lsub")
	return f.IsValid() && f.Kind() == reflect.Bool && f.Bool()
}

// lsub answers LSUB from the upstream's LIST (SUBSCRIBED RECURSIVEMATCH): a mailbox that is not subscribed but
// has a subscribed child the pattern's `%` does not reach comes back with CHILDINFO, and LSUB lists it as
// \Noselect (RFC 3501 §6.3.9); a subscription whose mailbox no longer exists is listed as it is.
func (ss *session) lsub(w *imapserver.ListWriter, ref, pattern string) error {
	list, err := ss.list(ref, pattern, &imap.ListOptions{SelectSubscribed: true, SelectRecursiveMatch: true})
	if err != nil {
		return err
	}
	for _, d := range list {
		subscribed := slices.Contains(d.Attrs, imap.MailboxAttrSubscribed)
		if !subscribed && (d.ChildInfo == nil || !d.ChildInfo.Subscribed) {
			continue
		}
		out := &imap.ListData{Delim: d.Delim, Mailbox: d.Mailbox}
		if !subscribed {
			out.Attrs = []imap.MailboxAttr{imap.MailboxAttrNoSelect}
		}
		for _, a := range d.Attrs {
			switch a {
			case imap.MailboxAttrSubscribed:
			case imap.MailboxAttrNonExistent:
				// A subscribed name whose mailbox is gone is listed as a plain subscription, as Dovecot's own
				// LSUB does: LSUB's \Noselect says "not subscribed, but a child is".
			case imap.MailboxAttrNoSelect:
				if !slices.Contains(out.Attrs, imap.MailboxAttrNoSelect) {
					out.Attrs = append(out.Attrs, imap.MailboxAttrNoSelect)
				}
			default:
				out.Attrs = append(out.Attrs, a)
			}
		}
		if err := w.WriteList(out); err != nil {
			return err
		}
	}
	return nil
}

// recursiveMatch corrects what one upstream LIST per pattern gets wrong with RECURSIVEMATCH and several patterns:
// a parent that does not meet the selection is listed with CHILDINFO only for a subscribed descendant that no
// pattern matches (RFC 5258 §3.5, as Dovecot does), and a descendant another pattern matched does not count.
func (ss *session) recursiveMatch(ref string, patterns []string, all []*imap.ListData) ([]*imap.ListData, error) {
	out := all[:0:0]
	for _, d := range all {
		if slices.Contains(d.Attrs, imap.MailboxAttrSubscribed) || d.ChildInfo == nil || d.Delim == 0 {
			out = append(out, d)
			continue
		}
		subs, err := ss.list("", d.Mailbox+string(d.Delim)+"*", &imap.ListOptions{SelectSubscribed: true})
		if err != nil {
			return nil, err
		}
		keep := false
		for _, s := range subs {
			matched := false
			for _, p := range patterns {
				if imapserver.MatchList(s.Mailbox, d.Delim, ref, p) {
					matched = true
					break
				}
			}
			if !matched {
				keep = true
				break
			}
		}
		if keep {
			out = append(out, d)
		}
	}
	return out, nil
}

func (ss *session) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	defer ss.begin()()
	// imapclient cannot ask for RECENT (obsolete, IMAP4rev1 only): for the selected mailbox the session has the
	// upstream's last RECENT; for another one it is given as 0.
	o := *options
	o.NumRecent = false
	if o == (imap.StatusOptions{}) {
		o.NumMessages = true // STATUS (RECENT) alone: ask something, so that a missing mailbox is still a NO
	}
	var d *imap.StatusData
	err := ss.wait(func() (err error) {
		d, err = ss.up.c.Status(mailbox, &o).Wait()
		return err
	})
	if err == nil && options.NumRecent {
		var n uint32
		if ss.view.selected() && sameMailbox(mailbox, ss.view.name) {
			n = uint32(max(ss.up.sniff.recent.Load(), 0))
		}
		d.NumRecent = &n
	}
	return d, err
}

// sameMailbox compares mailbox names, INBOX in any case being INBOX (RFC 3501 §5.1).
func sameMailbox(a, b string) bool {
	if strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX") {
		return true
	}
	return a == b
}

func (ss *session) Namespace() (*imap.NamespaceData, error) {
	defer ss.begin()()
	if !ss.up.c.Caps().Has(imap.CapNamespace) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "NAMESPACE not supported by the mail server"}
	}
	var d *imap.NamespaceData
	err := ss.wait(func() (err error) {
		d, err = ss.up.c.Namespace().Wait()
		return err
	})
	return d, err
}

// clientTLS is the client connection's TLS state: implicit TLS, or what STARTTLS negotiated.
func (ss *session) clientTLS() *tls.ConnectionState {
	if ss.tls != nil {
		return ss.tls
	}
	ss.mu.Lock()
	c := ss.conn
	ss.mu.Unlock()
	if c == nil {
		return nil
	}
	if tc, ok := c.NetConn().(*tls.Conn); ok {
		st := tc.ConnectionState()
		return &st
	}
	return nil
}

var (
	_ imapserver.SessionMove        = (*session)(nil)
	_ imapserver.SessionNamespace   = (*session)(nil)
	_ imapserver.SessionSASL        = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)
