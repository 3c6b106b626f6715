package pop3proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/pop3"
	"github.com/postern/postern/proxy/upstream"
)

// maildrop is the upstream's listing of the logged-in user's messages, as of login (RFC 1939: the maildrop does
// not change during a session), with what this session knows of each.
type maildrop struct {
	msgs    []msgInfo
	hasUIDL bool
}

type msgInfo struct {
	upSize  int64
	uidl    string
	deleted bool
	// res is what filtering gave in this session (its content dropped: the cache keeps contents), nil until
	// the message was filtered.
	res *result
}

// loadMaildrop lists the upstream maildrop: LIST for the sizes, UIDL for the unique ids (when the upstream has
// UIDL; without it nothing can be cached across sessions).
func (ss *session) loadMaildrop() (*maildrop, error) {
	max := ss.srv.opts.Limits.Messages
	r, err := ss.up.cmd("LIST")
	if err != nil {
		return nil, err
	}
	if !r.OK {
		return nil, &upstreamError{fmt.Errorf("LIST refused: %s", r.Line())}
	}
	lines, err := ss.up.lines(max + 1)
	if err != nil {
		return nil, err
	}
	if len(lines) > max {
		return nil, fmt.Errorf("maildrop holds more than %d messages, the most this proxy serves", max)
	}
	d := &maildrop{msgs: make([]msgInfo, len(lines))}
	for i, l := range lines {
		n, rest, ok := numbered(l)
		size, err := strconv.ParseInt(rest, 10, 64)
		if !ok || n != i+1 || err != nil || size < 0 {
			return nil, &upstreamError{fmt.Errorf("%w: LIST line %q", pop3.ErrProtocol, l)}
		}
		d.msgs[i].upSize = size
	}
	r, err = ss.up.cmd("UIDL")
	if err != nil {
		return nil, err
	}
	if r.OK {
		lines, err := ss.up.lines(max + 1)
		if err != nil {
			return nil, err
		}
		if len(lines) != len(d.msgs) {
			return nil, &upstreamError{fmt.Errorf("%w: UIDL lists %d messages, LIST %d", pop3.ErrProtocol,
				len(lines), len(d.msgs))}
		}
		for i, l := range lines {
			n, uid, ok := numbered(l)
			if !ok || n != i+1 || !validUIDL(uid) {
				return nil, &upstreamError{fmt.Errorf("%w: UIDL line %q", pop3.ErrProtocol, l)}
			}
			d.msgs[i].uidl = uid
		}
		d.hasUIDL = true
	}
	return d, nil
}

// numbered splits a scan listing line "n rest".
func numbered(l string) (int, string, bool) {
	num, rest, ok := strings.Cut(strings.TrimSpace(l), " ")
	if !ok {
		return 0, "", false
	}
	n, ok := pop3.MessageNumber(num)
	return n, strings.TrimSpace(rest), ok
}

// validUIDL checks RFC 1939 §7: 1 to 70 characters 0x21 to 0x7E.
func validUIDL(s string) bool {
	if len(s) == 0 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// size is what STAT and LIST report for message i: the size of what RETR serves once it is known, in exact
// mode after filtering it now. An error is the upstream's (the session ends).
func (ss *session) size(i int) (int64, error) {
	m := &ss.drop.msgs[i]
	if m.res != nil {
		return m.res.size, nil
	}
	if r, ok := ss.cached(i); ok {
		m.res = stripped(r)
		return r.size, nil
	}
	if ss.srv.opts.SizeMode == SizeUpstream {
		return m.upSize, nil
	}
	f, err := ss.filter(i, "retr")
	if err != nil {
		return 0, err
	}
	defer f.close()
	if f.refusal != nil {
		// Not known until it can be filtered: the upstream's size is the best guess, and RETR will say why.
		f.record(*f.refusal)
		return m.upSize, nil
	}
	f.record(pop3.OK(fmt.Sprintf("%d %d", i+1, f.res.size)))
	return f.res.size, nil
}

func (ss *session) stat(cmd pop3.Command) bool {
	if len(cmd.Args) != 0 {
		return ss.fail(pop3.Err("", "Usage: STAT"))
	}
	var count int
	var total int64
	for i := range ss.drop.msgs {
		if ss.drop.msgs[i].deleted {
			continue
		}
		n, err := ss.size(i)
		if err != nil {
			return ss.upstreamLost(err)
		}
		count++
		total += n
	}
	ss.reply(pop3.OK(fmt.Sprintf("%d %d", count, total)))
	return false
}

func (ss *session) list(cmd pop3.Command) bool {
	switch len(cmd.Args) {
	case 0:
		// The lines are sent as the messages are filtered (in exact size mode, the first LIST filters them all),
		// so a client sees progress instead of a silence it may time out on. An upstream that fails part way
		// cuts the connection: a listing that ends early would be a false end.
		count := 0
		for _, m := range ss.drop.msgs {
			if !m.deleted {
				count++
			}
		}
		ss.reply(pop3.OK(fmt.Sprintf("%d messages", count)))
		for i := range ss.drop.msgs {
			m := &ss.drop.msgs[i]
			if m.deleted {
				continue
			}
			known := m.res != nil
			n, err := ss.size(i)
			if err != nil {
				ss.log.Warn("upstream failed during LIST; closing the connection, nothing was deleted", "err", err)
				return true
			}
			fmt.Fprintf(ss.bw, "%d %d\r\n", i+1, n)
			if !known {
				if err := ss.bw.Flush(); err != nil {
					return true
				}
			}
		}
		ss.bw.WriteString(".\r\n")
	case 1:
		i, e := ss.msgArg(cmd.Args[0])
		if e != nil {
			return ss.fail(*e)
		}
		n, err := ss.size(i)
		if err != nil {
			return ss.upstreamLost(err)
		}
		ss.reply(pop3.OK(fmt.Sprintf("%d %d", i+1, n)))
	default:
		return ss.fail(pop3.Err("", "Usage: LIST [msg]"))
	}
	return false
}

func (ss *session) uidl(cmd pop3.Command) bool {
	if !ss.drop.hasUIDL {
		return ss.fail(pop3.Err("", "UIDL not supported by the mail server"))
	}
	switch len(cmd.Args) {
	case 0:
		var lines []string
		for i, m := range ss.drop.msgs {
			if !m.deleted {
				lines = append(lines, strconv.Itoa(i+1)+" "+m.uidl)
			}
		}
		ss.reply(pop3.OK(""))
		pop3.WriteLines(ss.bw, lines)
	case 1:
		i, e := ss.msgArg(cmd.Args[0])
		if e != nil {
			return ss.fail(*e)
		}
		ss.reply(pop3.OK(strconv.Itoa(i+1) + " " + ss.drop.msgs[i].uidl))
	default:
		return ss.fail(pop3.Err("", "Usage: UIDL [msg]"))
	}
	return false
}

func (ss *session) retr(cmd pop3.Command) bool {
	if len(cmd.Args) != 1 {
		return ss.fail(pop3.Err("", "Usage: RETR msg"))
	}
	i, e := ss.msgArg(cmd.Args[0])
	if e != nil {
		return ss.fail(*e)
	}
	return ss.serve(i, "retr", -1)
}

func (ss *session) top(cmd pop3.Command) bool {
	if len(cmd.Args) != 2 {
		return ss.fail(pop3.Err("", "Usage: TOP msg lines"))
	}
	i, e := ss.msgArg(cmd.Args[0])
	if e != nil {
		return ss.fail(*e)
	}
	n, ok := pop3.Count(cmd.Args[1])
	if !ok {
		return ss.fail(pop3.Err("", "Invalid number of lines"))
	}
	return ss.serve(i, "top", n)
}

// serve answers RETR (lines < 0) or TOP: the filtered message, or the part of it TOP asks for. A message that
// takes longer than Limits.EarlyOK to filter gets its "+OK" first (filterAhead).
func (ss *session) serve(i int, command string, lines int) bool {
	f, early, err := ss.filterAhead(i, command)
	defer ss.earlyOK.Store(false)
	if early && (err != nil || f.refusal != nil) {
		// "+OK" is out, an -ERR cannot follow it, and a short message would be taken for the message: the
		// connection is closed, with nothing deleted (no QUIT), and the client will ask again.
		why := "the upstream failed"
		if err == nil {
			why = f.refusal.Line()
			f.record(*f.refusal)
			f.close()
		}
		ss.log.Warn("message not servable after an early +OK; closing the connection, nothing was deleted",
			"msg", i+1, "command", command, "outcome", why, "err", err)
		return true
	}
	if err != nil {
		return ss.upstreamLost(err)
	}
	defer f.close()
	if f.refusal != nil {
		f.record(*f.refusal)
		return ss.fail(*f.refusal)
	}
	m := &ss.drop.msgs[i]
	if m.res == nil {
		m.res = stripped(f.res)
	}
	size := f.res.size
	r := pop3.OK(fmt.Sprintf("%d octets", size))
	if lines >= 0 {
		if size, err = pop3.TopLength(f.body, f.res.size, lines); err != nil {
			return ss.upstreamLost(err)
		}
		r = pop3.OK("")
	}
	if early {
		r = earlyOK
	} else {
		ss.reply(r)
	}
	err = mailflow.CopyBuffer(func(buf []byte) error {
		return pop3.WriteMessage(ss.bw, io.NewSectionReader(f.body, 0, size), buf)
	})
	f.record(r)
	return err != nil
}

// earlyOK is the "+OK" sent ahead of a message that takes long to filter.
var earlyOK = pop3.OK("message follows")

// filterAhead is filter for RETR and TOP, with the wait bounded for the client: when the message is not ready
// after Limits.EarlyOK, "+OK" is sent from a timer (early is true) while the filtering goes on. The session's
// goroutine does not write to the client while it filters, so the timer's write is the only one.
func (ss *session) filterAhead(i int, command string) (f *filtered, early bool, err error) {
	var (
		mu   sync.Mutex
		done bool
	)
	t := time.AfterFunc(ss.srv.opts.Limits.EarlyOK, func() {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		early = true
		ss.earlyOK.Store(true) // until serve is done with this command
		ss.log.Info("filtering takes long; +OK sent ahead of the message", "msg", i+1, "command", command,
			"after", ss.srv.opts.Limits.EarlyOK)
		ss.reply(earlyOK)
		ss.bw.Flush() // a client that left is noticed when the message is written
	})
	f, err = ss.filter(i, command)
	t.Stop()
	mu.Lock()
	done = true
	mu.Unlock()
	return f, early, err
}

func (ss *session) dele(cmd pop3.Command) bool {
	if len(cmd.Args) != 1 {
		return ss.fail(pop3.Err("", "Usage: DELE msg"))
	}
	i, e := ss.msgArg(cmd.Args[0])
	if e != nil {
		return ss.fail(*e)
	}
	r, err := ss.up.cmd("DELE " + strconv.Itoa(i+1))
	if err != nil {
		return ss.upstreamLost(err)
	}
	if r.OK {
		ss.drop.msgs[i].deleted = true
	}
	return ss.relayed(r)
}

func (ss *session) rset(cmd pop3.Command) bool {
	if len(cmd.Args) != 0 {
		return ss.fail(pop3.Err("", "Usage: RSET"))
	}
	r, err := ss.up.cmd("RSET")
	if err != nil {
		return ss.upstreamLost(err)
	}
	if r.OK {
		for i := range ss.drop.msgs {
			ss.drop.msgs[i].deleted = false
		}
	}
	return ss.relayed(r)
}

func (ss *session) noop(pop3.Command) bool {
	r, err := ss.up.cmd("NOOP")
	if err != nil {
		return ss.upstreamLost(err)
	}
	return ss.relayed(r)
}

// quit ends the session normally: the upstream deletes what was marked (its UPDATE state) and its reply, which
// says whether that worked, is the client's.
func (ss *session) quit() bool {
	r, err := ss.up.cmd("QUIT")
	if err != nil {
		ss.log.Warn("upstream failed at QUIT", "err", err)
		ss.reply(pop3.Err(pop3.CodeSysTemp, "Mail server not available; deletions may not have been made"))
		return true
	}
	ss.reply(r)
	return true
}

// filtered is one message made ready to serve: from the cache, or filtered now.
type filtered struct {
	res     *result
	refusal *pop3.Response // a message that cannot be served now (tempfail, too large), with its reply
	body    io.ReaderAt    // what is served, res.size bytes
	out     *mailflow.Outcome
	sp      *mailflow.Spool
	file    *os.File // a cached content on disk
	// early: "+OK" went to the client ahead of the outcome, so a refusal reaches it as a closed connection.
	early *atomic.Bool
}

// record appends the decision's audit record, if a policy decided now, with the reply the client got.
func (f *filtered) record(r pop3.Response) {
	if f.out == nil {
		return
	}
	var sha, withheld string
	if f.res != nil {
		sha, withheld = f.res.sha256, f.res.withheld
	}
	f.out.RecordServed(servedReply(r, f.early), sha, withheld)
	f.out = nil
}

// servedReply is the reply the audit record gives: r, or, when "+OK" was sent ahead of an outcome that is an
// error, the closed connection the client got instead.
func servedReply(r pop3.Response, early *atomic.Bool) audit.Reply {
	if r.OK || early == nil || !early.Load() {
		return audit.Reply{Status: r.Status(), Text: r.Detail()}
	}
	return audit.Reply{Status: "cut", Text: "no reply: +OK was sent ahead of the outcome and the connection was " +
		"closed instead of the message (the reply would have been " + r.Line() + ")"}
}

func (f *filtered) close() {
	if f.file != nil {
		f.file.Close()
	}
	if f.out != nil {
		f.out.Close()
	}
	if f.sp != nil {
		f.sp.Close()
	}
}

func (ss *session) key(i int) (cacheKey, bool) {
	m := &ss.drop.msgs[i]
	if m.uidl == "" {
		return cacheKey{}, false
	}
	return cacheKey{upstream: ss.srv.upstreamName(), user: ss.mailbox, uidl: m.uidl, version: ss.mf.PolicyVersion()}, true
}

// reference names message i in the quarantine: for good when it has a UIDL (the same message gets the same
// reference in every session, so that its original is kept once however often it is read), else by the session
// and its number.
func (ss *session) reference(i int) (ref string, lasting bool) {
	k, ok := ss.key(i)
	if !ok {
		return ss.id + "-" + strconv.Itoa(i+1), false
	}
	sum := sha256.Sum256([]byte(k.upstream + "\x00" + k.user + "\x00" + k.uidl))
	return "pop3-" + hex.EncodeToString(sum[:8]), true
}

func (ss *session) cached(i int) (*result, bool) {
	if k, ok := ss.key(i); ok {
		return ss.srv.cache.get(k)
	}
	return nil, false
}

// stripped is a result without its content, as a session keeps it.
func stripped(r *result) *result {
	cp := *r
	cp.content = nil
	return &cp
}

// filter makes message i ready to serve: the cached content, or the upstream's message when the cache says it
// is served unchanged (and it still has the same digest), or the message filtered now. An error is the
// upstream's; a message that cannot be served is a refusal.
func (ss *session) filter(i int, command string) (*filtered, error) {
	m := &ss.drop.msgs[i]
	r, ok := ss.cached(i)
	if !ok && m.res != nil && m.res.unchanged {
		r, ok = m.res, true
	}
	if ok && r.content != nil {
		return &filtered{res: r, body: bytes.NewReader(r.content)}, nil
	}
	if ok && r.file != "" {
		if f, err := os.Open(r.file); err == nil {
			return &filtered{res: r, body: f, file: f}, nil
		}
		// Evicted meanwhile: filter it again.
	}
	lim := ss.srv.opts.Limits.MessageSize
	if m.upSize > lim {
		ss.log.Warn("message too large to be filtered; not served", "msg", i+1, "size", m.upSize, "limit", lim)
		e := pop3.Errf(pop3.CodeSysPerm, "Message too large to be filtered (%d bytes, limit %d)", m.upSize, lim)
		return &filtered{refusal: &e}, nil
	}
	sp, refusal, err := ss.fetch(i)
	if err != nil || refusal != nil {
		return &filtered{refusal: refusal}, err
	}
	if ok && r.unchanged && digest(sp) == r.in {
		return &filtered{res: r, body: sp.ReaderAt(), sp: sp}, nil
	}
	f, err := ss.runPolicy(i, command, sp)
	if err != nil {
		sp.Close()
		return nil, err
	}
	return f, nil
}

// fetch retrieves message i from the upstream into a spool, through the line guard.
func (ss *session) fetch(i int) (*mailflow.Spool, *pop3.Response, error) {
	r, err := ss.up.cmd("RETR " + strconv.Itoa(i+1))
	if err != nil {
		return nil, nil, err
	}
	if !r.OK {
		return nil, &r, nil
	}
	sp, err := ss.mf.Receive(readTimeout{ss.up.c.Body(), ss.up})
	if errors.Is(err, mailflow.ErrTooLarge) {
		// The rest of the message is still coming: the upstream connection is out of step.
		return nil, nil, &upstreamError{fmt.Errorf("message %d is larger than its listed size and the limit", i+1)}
	}
	if err != nil {
		return nil, nil, &upstreamError{fmt.Errorf("RETR %d: %w", i+1, err)}
	}
	return sp, nil, nil
}

// errFilterTimeout ends a session whose policy did not decide within the command timeout.
var errFilterTimeout = errors.New("filtering took longer than the command timeout")

// readTimeout refreshes the upstream's deadline at every read of a message: a slow upstream that sends is
// waited for, a stalled one is not.
type readTimeout struct {
	r  io.Reader
	up *upstreamConn
}

func (r readTimeout) Read(p []byte) (int, error) {
	r.up.deadline()
	return r.r.Read(p)
}

// runPolicy runs the retrieval policy on a fetched message and makes the result: the message (changed or not),
// the withheld notice with the original in quarantine, or a tempfail refusal.
func (ss *session) runPolicy(i int, command string, sp *mailflow.Spool) (*filtered, error) {
	m := &ss.drop.msgs[i]
	in := &pluginhost.Input{Env: ss.envelope(m.uidl, command)}
	// The wait for the policy is bounded by command_timeout: past it the session's plugin calls are cancelled,
	// the client is told to try later, and the session ends (its policy context is gone).
	var timedOut atomic.Bool
	watchdog := time.AfterFunc(ss.srv.opts.Limits.CommandTimeout, func() {
		timedOut.Store(true)
		ss.cancel()
	})
	ref, lasting := ss.reference(i)
	out, err := ss.mf.Message(sp, mailflow.MessageInput{In: in, ID: ref, Lasting: lasting})
	watchdog.Stop()
	if timedOut.Load() {
		ss.log.Warn("filtering took longer than the command timeout; closing session", "msg", i+1,
			"timeout", ss.srv.opts.Limits.CommandTimeout)
		if out != nil {
			e := pop3.Err(pop3.CodeSysTemp, "Filtering took too long, try again later; nothing was deleted")
			(&filtered{out: out, early: &ss.earlyOK}).record(e)
			out.Close()
		}
		return nil, errFilterTimeout
	}
	f := &filtered{sp: sp, out: out, early: &ss.earlyOK}
	tempfail := func(text string) (*filtered, error) {
		e := pop3.Err(pop3.CodeSysTemp, text)
		f.refusal = &e
		return f, nil
	}
	if err != nil {
		ss.log.Warn("message could not be indexed; not served", "msg", i+1, "err", err)
		return tempfail("Message could not be filtered, try again later")
	}
	sumIn := out.SHA256In
	if sumIn == "" {
		sumIn = digest(sp)
	}
	if out.Err != nil {
		ss.log.Warn("policy outcome could not be carried out", "msg", i+1, "action", out.Action.String(), "err", out.Err)
		return tempfail("Message could not be filtered, try again later")
	}
	res := &result{in: sumIn}
	switch out.Action {
	case pluginhost.Tempfail:
		text := mailflow.ReplyText(out.Decision.Text)
		if text == "" {
			text = "Message temporarily unavailable, try again later"
		}
		return tempfail(text)
	case pluginhost.Accept:
		body, size := out.Content()
		res.size = size
		if out.Changed() {
			// Served from the rendered copy, which stays in its spool (memory or an unlinked file) until the
			// command ends; the cache takes its own copy within its bounds.
			if out.SHA256Out != "" {
				res.sha256 = out.SHA256Out
			} else {
				res.sha256 = digestOf(body, size)
			}
		} else {
			res.unchanged = true
			res.sha256 = sumIn
		}
		f.body = body
	default: // reject, discard, quarantine: withheld
		id := out.QuarantineID
		if out.Action != pluginhost.Quarantine {
			q := ss.srv.flow.Options().Quarantine
			if q == nil {
				ss.log.Error("message withheld but no quarantine to keep it in; not served", "msg", i+1)
				return tempfail("Message temporarily unavailable, try again later")
			}
			qm := mailflow.QuarantineMeta(ss.id, &in.Env, out.Decision, out.Msg)
			qm.ID, qm.Size, qm.SHA256 = ref, sp.Size(), sumIn
			store := q.Store
			if lasting {
				store = q.StoreOnce // read again in another session, its original is kept already
			}
			id, err = store(sp.Reader(), qm)
			if err != nil {
				ss.log.Error("withheld message could not be kept; not served", "msg", i+1, "err", err)
				return tempfail("Message temporarily unavailable, try again later")
			}
		}
		d := out.Decision
		notice := mailflow.Notice(out.Msg, mailflow.Withheld{Policy: d.DecidedBy, Action: out.Action.String(),
			Reason: d.Text, Reference: id, Hostname: ss.srv.opts.Hostname, Date: time.Now()})
		res.size, res.sha256, res.withheld = int64(len(notice)), sha(notice), id
		f.body = bytes.NewReader(notice)
	}
	f.res = res
	m.res = stripped(res)
	if k, ok := ss.key(i); ok {
		ss.srv.cache.put(k, res, f.body)
	}
	return f, nil
}

func (ss *session) envelope(uidl, command string) pluginhost.Envelope {
	env := pluginhost.Envelope{Protocol: Protocol, Direction: "retrieval", Listener: ss.srv.opts.Name,
		AuthUser: ss.authUser, MailboxUser: ss.mailbox, UIDL: uidl, Command: command}
	if ss.remote.IsValid() {
		env.ClientIP, env.ClientPort = ss.remote.Addr().String(), int(ss.remote.Port())
	}
	env.TLSVersion, env.TLSCipher = upstream.TLSInfo(ss.tls)
	env.UpstreamTLSVersion, env.UpstreamTLSCipher = upstream.TLSInfo(ss.up.tlsState())
	return env
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func digest(sp *mailflow.Spool) string {
	if s := sp.Sum(); s != "" {
		return s
	}
	return digestOf(sp.ReaderAt(), sp.Size())
}

func digestOf(ra io.ReaderAt, size int64) string {
	h := sha256.New()
	io.Copy(h, io.NewSectionReader(ra, 0, size))
	return hex.EncodeToString(h.Sum(nil))
}
