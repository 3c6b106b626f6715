package smtpproxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// session is go-smtp's Session for one client connection (a new one after STARTTLS). Every command is relayed to
// the upstream in lockstep: the client's reply is the upstream's, or the policy's refusal.
type session struct {
	cs  *connState
	txn *txn

	// bdat is closed when the Data call reading a BDAT transfer returns: go-smtp runs it on a goroutine of its
	// own, and an RSET or EHLO between chunks aborts it (RFC 3030) while it may still be using the transaction.
	bdatMu sync.Mutex
	bdat   chan struct{}
}

// txn is one mail transaction, from MAIL FROM to the end of the message.
type txn struct {
	id      string
	started time.Time
	from    string
	utf8    bool // MAIL FROM had SMTPUTF8 (RFC 6531): plugins see it as field smtputf8
	rcpts   []string
	added   []string         // recipients the policy added at envelope stages
	pending *policy.Decision // a MAIL FROM discard or quarantine, carried out at the end of DATA
	// Recipients a RCPT TO decision took out of the delivery: acknowledged to the client, never given to the
	// upstream. A discarded one is recorded at once; a quarantined one gets its copy at the end of DATA.
	discarded int
	held      []heldRcpt
	// The parameters the upstream accepted, for a replay on a new upstream connection (redial).
	mailOpts *smtp.MailOptions
	rcptOpts []*smtp.RcptOptions
}

// heldRcpt is a recipient whose copy of the message goes to the quarantine.
type heldRcpt struct {
	rcpt     string
	decision *policy.Decision
}

var _ smtp.AuthSession = (*session)(nil)

// Logout is called by go-smtp when the connection closes and when the client starts TLS. RFC 3207 §4.2: after
// STARTTLS, all knowledge from before TLS is discarded, so a MAIL and RCPTs given in plain text (perhaps injected
// by someone on the path) must not stay open upstream, where the next transaction, inside TLS, would fail as a
// nested MAIL or, with a lenient upstream, keep the injected recipients. go-smtp does not call Reset then.
//
// The same holds for an authentication: go-smtp forgets it for the client, but the upstream connection stays
// logged in as that user, so a client (or an AUTH injected on the path) would keep the user's rights inside TLS
// without logging in there. The upstream connection is therefore replaced by a new one when the session had
// authenticated before TLS.
func (s *session) Logout() error {
	if s.cs.startingTLS() {
		s.Reset()
		s.cs.forgetAuth()
		return nil
	}
	// The session is over: serveConn closes the upstream connection, without waiting for an RSET first.
	s.txn = nil
	return nil
}

// startingTLS reports whether go-smtp is in the middle of STARTTLS: it has put the TLS connection in place, and
// no session has seen TLS yet.
func (cs *connState) startingTLS() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.smtpConn == nil || cs.tlsState != nil {
		return false
	}
	_, ok := cs.smtpConn.Conn().(*tls.Conn)
	return ok
}

// Reset ends the transaction: after RSET, after each message, after a new EHLO. An upstream transaction still
// open (the message was refused or never sent) is reset too.
func (s *session) Reset() {
	// go-smtp has closed the BDAT pipe by now, so a transfer in progress ends at once.
	s.bdatMu.Lock()
	running := s.bdat
	s.bdatMu.Unlock()
	if running != nil {
		<-running
	}
	s.txn = nil
	s.cs.setInTxn(false)
	s.cs.noteHelo()
	s.cs.upMu.Lock()
	s.cs.up.reset()
	s.cs.upMu.Unlock()
}

// noteHelo takes the name of an EHLO or HELO given again in the session (go-smtp calls Reset for it, not the
// backend): the latest name is the one Received: and the plugins see, as with Postfix. A name with a NUL is not
// taken, and the next MAIL FROM is refused until the client introduces itself properly (go-smtp has answered the
// EHLO already).
func (cs *connState) noteHelo() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.smtpConn == nil {
		return
	}
	switch h := cs.smtpConn.Hostname(); {
	case h == "" || h == cs.helo:
		cs.badHelo = false
	case strings.IndexByte(h, 0) >= 0:
		cs.badHelo = true
	default:
		cs.helo, cs.badHelo = h, false
	}
}

// usable returns the reply for a session that cannot go on: the upstream connection is gone, or (for a command
// that would start a transaction) the server is shutting down. A transaction already open may finish.
func (cs *connState) usable(starting bool) *smtp.SMTPError {
	if starting && cs.isShuttingDown() {
		return cs.closing(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
			Message: cs.srv.opts.Hostname + " Service shutting down, try again later"})
	}
	cs.upMu.Lock()
	dead := cs.up.dead
	cs.upMu.Unlock()
	if dead != nil {
		return cs.closing(errUpstreamLost(cs))
	}
	return nil
}

// badAddress returns the reply for an address the relay does not pass on, as Postfix's smtpd refuses it: a
// control character (NUL, a bare CR, which would also break the command line sent upstream) is a syntax error; a
// non-ASCII address needs SMTPUTF8, which the client can only declare when the upstream offers it (advertise),
// and must then be valid UTF-8 (RFC 6531 §3.3).
func (cs *connState) badAddress(role, addr string, smtputf8 bool) *smtp.SMTPError {
	ascii := true
	for i := 0; i < len(addr); i++ {
		switch c := addr[i]; {
		case c < ' ' || c == 0x7f:
			cs.log().Info("refused: control character in address", "role", role, "address", strconv.QuoteToASCII(addr))
			if role == "sender" {
				return cs.countError(&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7},
					Message: "Bad sender address syntax"})
			}
			return cs.countError(&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
				Message: "Bad recipient address syntax"})
		case c >= 0x80:
			ascii = false
		}
	}
	switch {
	case ascii:
		return nil
	case !smtputf8:
		cs.log().Info("refused: non-ASCII address without SMTPUTF8", "role", role, "address", strconv.QuoteToASCII(addr))
		return cs.countError(&smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
			Message: "Must declare SMTPUTF8 to send unicode address"})
	case !utf8.ValidString(addr):
		cs.log().Info("refused: address is not valid UTF-8", "role", role, "address", strconv.QuoteToASCII(addr))
		return cs.countError(&smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
			Message: "Malformed UTF-8 in address"})
	}
	return nil
}

func errUpstreamLost(cs *connState) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message: cs.srv.opts.Hostname + " Lost connection to the upstream server, try again later"}
}

// upstreamError turns the result of an upstream command into the client's reply: a reply from the upstream goes
// back unchanged (a 421 also ends this session); a broken connection gives 421 and ends the session. Must be
// called with upMu held.
func (cs *connState) upstreamError(cmd string, err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if se.Code == 421 {
			cs.up.fail(err)
			return cs.closing(se)
		}
		return cs.countError(se)
	}
	cs.up.fail(err)
	cs.log().Warn("upstream connection failed", "command", cmd, "err", err)
	return cs.closing(errUpstreamLost(cs))
}

// input builds the plugins' view of the transaction so far.
func (s *session) input() *pluginhost.Input {
	if s.txn == nil {
		return &pluginhost.Input{Env: s.cs.envelope()}
	}
	return TransactionInput(s.cs.envelope(), s.txn.from, s.txn.utf8, s.txn.rcpts)
}

// envelopeDecision acts on the decision of an envelope hook. A refusal is returned as the reply; a discard or
// quarantine is remembered and carried out when the message has arrived; added recipients are collected.
func (s *session) envelopeDecision(in *pluginhost.Input, d *policy.Decision) *smtp.SMTPError {
	if e := refusal(d); e != nil {
		s.cs.mf.Record(in, d, s.cs.auditReply(e))
		s.cs.log().Info("refused by policy", "hook", d.Hook.String(), "action", d.Action.String(), "code", e.Code)
		return s.cs.countError(e)
	}
	switch d.Action {
	case pluginhost.Discard, pluginhost.Quarantine:
		if s.txn.pending == nil {
			s.txn.pending = d
		}
	}
	if d.Changes != nil {
		s.txn.added = append(s.txn.added, d.Changes.Recipients()...)
	}
	return nil
}

// withhold carries out a discard or quarantine decided at RCPT TO, for that recipient only: the client is told
// the recipient is accepted, the upstream never hears of it, and the other recipients get the message as usual. A
// discarded recipient is on record (durably) before the client is told; a quarantined one gets its copy, and its
// record, once the message has arrived.
func (s *session) withhold(in *pluginhost.Input, d *policy.Decision, to string) error {
	cs := s.cs
	t := s.txn
	if d.Action == pluginhost.Quarantine {
		if cs.srv.flow.Options().Quarantine == nil {
			cs.log().Error("quarantine verdict but no quarantine directory configured; deferring the recipient",
				"txn", t.id, "rcpt", to)
			return cs.countError(localError())
		}
		t.held = append(t.held, heldRcpt{rcpt: to, decision: d})
		cs.log().Info("recipient held for the quarantine", "txn", t.id, "rcpt", to)
		return nil
	}
	// go-smtp's own reply to an accepted RCPT.
	reply := &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
		Message: "I'll make sure <" + to + "> gets this"}
	if err := cs.mf.RecordDurable(in, d, s.cs.auditReply(reply)); err != nil {
		cs.log().Error("audit record not written; deferring the recipient", "txn", t.id, "rcpt", to, "err", err)
		return cs.countError(auditUnavailable())
	}
	t.discarded++
	cs.log().Info("recipient discarded by policy", "txn", t.id, "rcpt", to)
	return nil
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	cs := s.cs
	if e := cs.usable(true); e != nil {
		return e
	}
	cs.mu.Lock()
	badHelo := cs.badHelo
	cs.mu.Unlock()
	if badHelo {
		return cs.countError(&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
			Message: "Syntax: EHLO hostname"})
	}
	smtputf8 := opts != nil && opts.UTF8
	if e := cs.badAddress("sender", from, smtputf8); e != nil {
		return e
	}
	s.txn = &txn{id: newID(), started: time.Now(), from: from, utf8: smtputf8}
	if cs.mf.Wants(pluginhost.HookMailFrom) {
		in := s.input()
		in.Env.Rcpts = nil
		if e := s.envelopeDecision(in, cs.mf.Stage(pluginhost.HookMailFrom, in)); e != nil {
			s.txn = nil
			return e
		}
	}
	cs.upMu.Lock()
	defer cs.upMu.Unlock()
	if err := cs.up.c.Mail(from, opts); err != nil {
		s.txn = nil
		return cs.upstreamError("MAIL", err)
	}
	cs.up.inTxn = true
	s.txn.mailOpts = opts
	if !cs.setInTxn(true) {
		// Shutdown began while the upstream was answering: do not start a transaction that could be cut off.
		cs.up.reset()
		s.txn = nil
		return cs.closing(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
			Message: cs.srv.opts.Hostname + " Service shutting down, try again later"})
	}
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	cs := s.cs
	if e := cs.usable(false); e != nil {
		return e
	}
	if s.txn == nil {
		// go-smtp checks MAIL FROM first; this is a guard against a future change of that.
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Need MAIL before RCPT"}
	}
	if e := cs.badAddress("recipient", to, s.txn.utf8); e != nil {
		return e
	}
	if cs.mf.Wants(pluginhost.HookRcptTo) {
		in := s.input()
		in.RcptCurrent = to
		d := cs.mf.Stage(pluginhost.HookRcptTo, in)
		if d.Action == pluginhost.Discard || d.Action == pluginhost.Quarantine {
			return s.withhold(in, d, to)
		}
		if e := s.envelopeDecision(in, d); e != nil {
			return e
		}
	}
	cs.upMu.Lock()
	defer cs.upMu.Unlock()
	if err := cs.up.c.Rcpt(to, opts); err != nil {
		return cs.upstreamError("RCPT", err)
	}
	s.txn.rcpts = append(s.txn.rcpts, to)
	s.txn.rcptOpts = append(s.txn.rcptOpts, opts)
	return nil
}

// Data receives the message, runs the policy and relays it. The reply is always an *smtp.SMTPError, so that
// the client's 250 carries the upstream's own text; it is never a success before the upstream's 250.
func (s *session) Data(r io.Reader) error {
	cs := s.cs
	cs.client.reads.SetPhase(listener.PhaseCommand)
	defer cs.client.reads.SetPhase(listener.PhaseIdle)
	var fast *dataStream
	_, bdat := r.(*io.PipeReader)
	if bdat {
		done := make(chan struct{})
		s.bdatMu.Lock()
		s.bdat = done
		s.bdatMu.Unlock()
		defer func() {
			s.bdatMu.Lock()
			s.bdat = nil
			s.bdatMu.Unlock()
			close(done)
		}()
	}
	if !bdat && cs.plainText() && cs.client.fastDataReady() {
		// The relay reads the content itself (datareader.go); go-smtp's reader r is left to go-smtp.
		fast = cs.client.beginData(cs.smtpSrv.MaxMessageBytes, cs.smtpSrv.MaxLineLength)
		r = fast
	}
	reply := s.data(r)
	if fast != nil {
		cs.client.endData(fast)
	}
	cs.mu.Lock()
	cs.messages++
	cs.mu.Unlock()
	if cs.isShuttingDown() {
		cs.closing(reply)
	}
	return reply
}

// plainText reports whether go-smtp talks to the client over clientConn directly, without TLS. It must be called
// from go-smtp's goroutine.
func (cs *connState) plainText() bool {
	return cs.smtpConn != nil && cs.smtpConn.Conn() == net.Conn(cs.client)
}

func (s *session) data(r io.Reader) *smtp.SMTPError {
	cs := s.cs
	t := s.txn
	if t == nil {
		// Drain what the client sends so the connection stays in sync, then refuse.
		_, _ = io.Copy(io.Discard, r)
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Need MAIL and RCPT before DATA"}
	}
	if e := cs.usable(false); e != nil {
		return e
	}
	o := &cs.srv.opts
	// The upstream waits, in the transaction, while the message arrives and the plugins run.
	stopKeepalive := cs.keepUpstreamAlive()
	defer stopKeepalive()
	sp, err := cs.mf.Receive(r)
	if err != nil {
		reply, aborted := s.receiveError(err)
		reply = cs.countError(reply)
		if !aborted {
			s.refused(reply, 0)
		}
		return reply
	}
	defer sp.Close()

	if e := s.quarantineHeld(sp); e != nil {
		s.logMessage(sp.Size(), pluginhost.Quarantine, e)
		return e
	}
	if len(t.rcpts) == 0 && len(t.added) == 0 && t.pending == nil {
		// Every recipient was discarded or quarantined: nothing goes upstream (the transaction there is reset).
		action := pluginhost.Discard
		if len(t.held) > 0 {
			action = pluginhost.Quarantine
		}
		reply := accepted(t.id)
		s.logMessage(sp.Size(), action, reply)
		return reply
	}

	mi := mailflow.MessageInput{In: s.input(), ID: t.id, Pending: t.pending, RcptsAdded: t.added}
	if o.ReceivedHeader {
		mi.Trace = []mailflow.HeaderField{{Name: "Received", Value: s.received(time.Now())}}
	}
	stopWatch := func() {}
	if cs.mf.Wants(pluginhost.HookMessage) && mi.Pending == nil {
		// A client that leaves while its message is evaluated stops the plugin chain (gone.go).
		stopWatch = cs.client.watchGone(func() {
			cs.log().Info("client left while its message was evaluated", "txn", t.id)
			cs.clientGone.Store(true)
			cs.cancel()
		})
	}
	out, err := cs.mf.Message(sp, mi)
	stopKeepalive()
	stopWatch()
	if err != nil {
		cs.log().Error("indexing message failed", "txn", t.id, "err", err)
		reply := cs.countError(localError())
		s.refused(reply, sp.Size())
		return reply
	}
	defer out.Close()
	out.RcptsAdded = t.added
	var reply *smtp.SMTPError
	switch {
	case out.Err != nil:
		cs.log().Error("carrying out the policy's decision failed; deferring the message", "txn", t.id,
			"action", out.Action.String(), "err", out.Err)
		reply = cs.countError(localError())
		out.Record(s.cs.auditReply(reply))
	case out.Action == pluginhost.Reject, out.Action == pluginhost.Tempfail:
		reply = cs.countError(refusal(out.Decision))
		out.Record(s.cs.auditReply(reply))
	case out.Action == pluginhost.Discard:
		reply = s.acknowledge(out, accepted(t.id))
	case out.Action == pluginhost.Quarantine:
		reply = s.quarantined(out)
	default:
		reply = s.relay(out) // records the outcome itself
	}
	s.logMessage(out.Size, out.Action, reply)
	return reply
}

// quarantineHeld stores the copy of each recipient held at RCPT TO in the quarantine, with its record (durably),
// before anything is delivered to the others. A failure defers the whole message: the client sends it again, to
// all its recipients.
func (s *session) quarantineHeld(sp *mailflow.Spool) *smtp.SMTPError {
	cs := s.cs
	t := s.txn
	for i, h := range t.held {
		in := TransactionInput(cs.envelope(), t.from, t.utf8, []string{h.rcpt})
		in.RcptCurrent = h.rcpt
		out, err := cs.mf.Message(sp, mailflow.MessageInput{In: in, ID: t.id + "." + strconv.Itoa(i+1), Pending: h.decision})
		if err != nil {
			cs.log().Error("indexing message failed", "txn", t.id, "err", err)
			return cs.countError(localError())
		}
		reply := accepted(t.id)
		if out.Err != nil {
			cs.log().Error("quarantining a recipient's copy failed; deferring the message", "txn", t.id,
				"rcpt", h.rcpt, "err", out.Err)
			reply = cs.countError(localError())
			out.Record(s.cs.auditReply(reply))
		} else {
			cs.log().Info("recipient's copy quarantined", "txn", t.id, "rcpt", h.rcpt, "quarantine_id", out.QuarantineID)
			reply = s.acknowledge(out, reply)
		}
		out.Close()
		if reply.Code != 250 {
			return reply
		}
	}
	return nil
}

// acknowledge records a message the relay accepts without sending it on (discard, quarantine) and returns ok,
// once the record is on disk: without it, the client is told to try again later (docs/AUDIT.md).
func (s *session) acknowledge(out *mailflow.Outcome, ok *smtp.SMTPError) *smtp.SMTPError {
	if err := out.RecordDurable(s.cs.auditReply(ok)); err != nil {
		s.cs.log().Error("audit record not written; deferring the message", "txn", s.txn.id, "err", err)
		return s.cs.countError(auditUnavailable())
	}
	return ok
}

// auditUnavailable is the reply for a message whose audit record cannot be written (audit.UnavailableReply).
func auditUnavailable() *smtp.SMTPError {
	r := audit.UnavailableReply
	ec, _ := parseEnhanced(r.Enhanced)
	return &smtp.SMTPError{Code: r.Code, EnhancedCode: ec, Message: r.Text}
}

// logMessage writes the "message" log line that every message the client finished sending gets, whatever
// became of it.
func (s *session) logMessage(size int64, action pluginhost.Kind, reply *smtp.SMTPError) {
	t := s.txn
	attrs := []any{"txn", t.id, "from", t.from, "rcpts", len(t.rcpts) + len(t.added), "size", size,
		"action", action.String(), "reply", reply.Code, "text", reply.Message,
		"duration", time.Since(t.started).Round(time.Microsecond)}
	if n := t.discarded + len(t.held); n > 0 {
		attrs = append(attrs, "withheld", n) // recipients discarded or quarantined at RCPT TO
	}
	s.cs.log().Info("message", attrs...)
}

// refused logs and records a message the relay refused before any policy decided on it (too large, a bare line
// ending, a line too long, a timeout, a local error): the audit record is a message-stage decision of the relay
// itself (no policy decided it), so that refusals can be counted from the audit log as from the log.
func (s *session) refused(reply *smtp.SMTPError, size int64) {
	action := pluginhost.Reject
	if reply.Code/100 == 4 {
		action = pluginhost.Tempfail
	}
	d := &policy.Decision{Hook: pluginhost.HookMessage, Action: action, Code: reply.Code, Enhanced: enhanced(reply),
		Text: reply.Message}
	in := s.input()
	s.cs.mf.Record(in, d, s.cs.auditReply(reply))
	s.logMessage(size, action, reply)
}

// receiveError maps a failure while receiving the message to the reply; aborted is true when the client ended
// the transfer itself (RSET between BDAT chunks, a closed connection), so that no one reads the reply.
func (s *session) receiveError(err error) (reply *smtp.SMTPError, aborted bool) {
	cs := s.cs
	var bn *mailflow.BareNewlineError
	var se *smtp.SMTPError
	var ne net.Error
	switch {
	case errors.As(err, &bn):
		cs.log().Info("message refused: bare line ending", "txn", s.txn.id, "what", bn.What, "offset", bn.Offset)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
			Message: "Message refused: it contains a " + bn.What + "; SMTP lines must end with CRLF"}, false
	case errors.Is(err, mailflow.ErrTooLarge):
		return smtp.ErrDataTooLarge, false
	case errors.As(err, &se):
		return se, false
	case errors.Is(err, smtp.ErrTooLongLine):
		return &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 4, 0}, Message: "Line too long"}, false
	case errors.As(err, &ne) && ne.Timeout():
		cs.client.failReads.Store(true)
		return cs.closing(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
			Message: cs.srv.opts.Hostname + " Timeout while receiving the message, closing connection"}), false
	case errors.Is(err, smtp.ErrDataReset):
		// RSET or EHLO between BDAT chunks (RFC 3030 §4): the transaction is aborted and the session goes on.
		// go-smtp does not send this reply.
		cs.log().Info("message aborted by the client", "txn", s.txn.id)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Message transfer aborted"}, true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		cs.log().Info("message aborted: the client left", "txn", s.txn.id)
		return cs.closing(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
			Message: "Message transfer aborted"}), true
	}
	cs.log().Error("receiving message failed", "txn", s.txn.id, "err", err)
	return localError(), false
}

func localError() *smtp.SMTPError {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Requested action aborted: local error in processing"}
}

// accepted is the reply for a message the relay took responsibility for without the upstream (discard,
// quarantine).
func accepted(id string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: accepted as " + id}
}

// quarantined is the reply for a message the pipeline stored in the quarantine: accepted, unless the policy
// wants the sender told (for example 550 "held for review").
func (s *session) quarantined(out *mailflow.Outcome) *smtp.SMTPError {
	d := out.Decision
	s.cs.log().Info("message quarantined", "txn", s.txn.id, "quarantine_id", out.QuarantineID)
	if d.Code >= 400 && d.Code < 600 {
		if e := refusal(&policy.Decision{Hook: d.Hook, Action: codeAction(d.Code), Code: d.Code,
			Enhanced: d.Enhanced, Text: d.Text}); e != nil {
			e = s.cs.countError(e)
			out.Record(s.cs.auditReply(e))
			return e
		}
	}
	return s.acknowledge(out, accepted(s.txn.id))
}

func codeAction(code int) pluginhost.Kind {
	if code/100 == 4 {
		return pluginhost.Tempfail
	}
	return pluginhost.Reject
}

// relay sends the message upstream, as the pipeline rendered it, and returns the upstream's reply. It records the
// outcome: before the message goes upstream, its decision is put on record (durably, with a durable audit log);
// when that fails, the message is not sent and the client is told to try again later. An upstream that dropped
// the transaction while the message arrived (it timed out an idle client) is connected to again and given the
// envelope again, once, before any of the message is sent (redial).
func (s *session) relay(out *mailflow.Outcome) (reply *smtp.SMTPError) {
	cs := s.cs
	t := s.txn
	var done func(audit.Reply)
	defer func() {
		if done != nil {
			done(s.cs.auditReply(reply))
		} else {
			out.Record(s.cs.auditReply(reply))
		}
	}()
	cs.upMu.Lock()
	defer cs.upMu.Unlock()
	added := s.addedRecipients(out.Decision)
	var (
		up *upstreamConn
		w  *smtp.DataCommand
	)
	for attempt := 0; ; attempt++ {
		if cs.up.dead != nil {
			if e := cs.redial(t); e != nil {
				return e
			}
		}
		up = cs.up
		retry := func(err error) bool {
			if attempt > 0 || !upstreamDropped(err) {
				return false
			}
			up.fail(err)
			return true
		}
		var refused *smtp.SMTPError
		for _, rcpt := range added {
			err := up.c.Rcpt(rcpt, nil)
			if err == nil {
				continue
			}
			if retry(err) {
				break
			}
			if isConnErr(err) {
				return cs.upstreamError("RCPT", err)
			}
			// The policy wants this copy delivered (an archive, a compliance mailbox): without it the message
			// must not go through, and the sender should try again.
			cs.log().Warn("upstream refused a recipient added by the policy", "txn", t.id, "rcpt", rcpt, "err", err)
			refused = cs.countError(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
				Message: "Requested action aborted: a recipient required by policy was refused"})
			break
		}
		if refused != nil {
			return refused
		}
		if up.dead != nil {
			continue
		}
		if done == nil {
			out.RcptsAdded = t.added
			d, err := out.Pending()
			if err != nil {
				// The upstream transaction is reset after the reply, so nothing is delivered.
				cs.log().Error("audit record not written; deferring the message", "txn", t.id, "err", err)
				return cs.countError(auditUnavailable())
			}
			done = d
		}
		var err error
		if w, err = up.c.Data(); err == nil {
			break
		}
		if !retry(err) {
			return cs.upstreamError("DATA", err)
		}
	}
	content, size := out.Content()
	if err := up.sendContent(w, content, size); err != nil {
		// The final dot was not sent, so the upstream will not deliver what it got.
		return cs.upstreamError("DATA", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		up.inTxn = false
		return cs.upstreamError("end of DATA", err)
	}
	up.inTxn = false
	reply = parseReply(250, resp.StatusText)
	if reply.EnhancedCode == smtp.EnhancedCodeNotSet {
		reply.EnhancedCode = smtp.EnhancedCode{2, 0, 0}
	}
	return reply
}

// addedRecipients lists the recipients the policy added, without duplicates and without those the client gave.
func (s *session) addedRecipients(d *policy.Decision) []string {
	t := s.txn
	all := t.added
	if d != nil && d.Changes != nil {
		all = append(all[:len(all):len(all)], d.Changes.Recipients()...)
	}
	if len(all) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(t.rcpts)+len(all))
	for _, r := range t.rcpts {
		seen[strings.ToLower(r)] = true
	}
	var out []string
	for _, r := range all {
		if k := strings.ToLower(r); !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	t.added = out
	return out
}

// AuthMechanisms offers PLAIN and LOGIN when the upstream offers either: the relay translates between them.
func (s *session) AuthMechanisms() []string {
	cs := s.cs
	cs.upMu.Lock()
	defer cs.upMu.Unlock()
	if cs.up.dead != nil {
		return nil
	}
	if cs.up.c.SupportsAuth(sasl.Plain) || cs.up.c.SupportsAuth(sasl.Login) {
		return []string{sasl.Plain, sasl.Login}
	}
	return nil
}

// Auth relays the client's credentials to the upstream's AUTH: the client is authenticated exactly when the
// upstream says so.
func (s *session) Auth(mech string) (sasl.Server, error) {
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return &plainServer{auth: s.authenticate}, nil
	case sasl.Login:
		return &loginServer{auth: s.authenticate}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) authenticate(identity, user, pass string) error {
	cs := s.cs
	if e := cs.usable(false); e != nil {
		return e
	}
	cs.upMu.Lock()
	defer cs.upMu.Unlock()
	var c sasl.Client
	switch {
	case cs.up.c.SupportsAuth(sasl.Plain):
		c = sasl.NewPlainClient(identity, user, pass)
	case identity != "" && identity != user:
		return cs.countError(&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
			Message: "Authorization identity not supported"})
	default:
		c = sasl.NewLoginClient(user, pass)
	}
	if err := cs.up.c.Auth(c); err != nil {
		cs.log().Info("authentication failed", "user", user, "err", err)
		if isConnErr(err) && !errors.Is(err, sasl.ErrUnexpectedServerChallenge) {
			cs.up.fail(err)
			return cs.closing(&smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
				Message: "Temporary authentication failure"})
		}
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			se = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication failed"}
		}
		return cs.countError(se)
	}
	cs.mu.Lock()
	cs.authUser = user
	cs.mu.Unlock()
	cs.log().Info("authenticated", "user", user)
	return nil
}
