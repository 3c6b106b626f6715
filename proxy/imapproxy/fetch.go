package imapproxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/upstream"
)

// meta is what the upstream says of a message besides its content.
type meta struct {
	uid   imap.UID
	flags []imap.Flag
	date  time.Time
	size  int64 // the upstream's RFC822.SIZE
}

// needsContent reports whether a FETCH asks for anything derived from the message's content: each such item is
// answered from the filtered bytes.
func needsContent(o *imap.FetchOptions) bool {
	return o.BodyStructure != nil || o.Envelope || o.RFC822Size || len(o.BodySection) > 0 ||
		len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0
}

// setsSeen reports whether a FETCH reads a body without PEEK, which sets \Seen (RFC 3501 §6.4.5).
func setsSeen(o *imap.FetchOptions) bool {
	for _, bs := range o.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range o.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

// Fetch answers FETCH: metadata is relayed by UID, and every item derived from content comes from the message
// as filtered (or its notice), taken from the cache or fetched with BODY.PEEK[] and filtered now, one message at
// a time.
func (ss *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, o *imap.FetchOptions) error {
	defer ss.begin()()
	uids := ss.view.resolve(numSet)
	content := needsContent(o)
	seen := !ss.view.readOnly && setsSeen(o)
	var failed *imap.Error
	for _, chunk := range ss.chunks(uids) {
		if err := ss.fetchChunk(w, chunk, o, content, seen, &failed); err != nil {
			return err
		}
	}
	if failed != nil {
		return failed
	}
	return nil
}

// prefilter filters messages into the cache, so that the client's FETCH of them is served from it.
func (ss *session) prefilter(uids []imap.UID) {
	if len(uids) == 0 || ss.srv.opts.Prefilter == 0 {
		return
	}
	var failed *imap.Error
	if err := ss.fetchChunk(nil, uids, &imap.FetchOptions{}, true, false, &failed); err != nil {
		ss.log.Debug("prefiltering failed", "err", err)
	}
}

// fetchChunk serves one chunk of UIDs (w nil: only fills the cache).
func (ss *session) fetchChunk(w *imapserver.FetchWriter, chunk []imap.UID, o *imap.FetchOptions, content, seen bool, failed **imap.Error) error {
	if w != nil && content && !seen && !o.Flags && !o.InternalDate {
		if served, err := ss.fromCache(w, chunk, o, failed); served || err != nil {
			return err
		}
	}
	return ss.fetchChunkUpstream(w, chunk, o, content, seen, failed)
}

// fetchChunkUpstream serves one chunk with the upstream's metadata of each message: from the cache, or fetched
// and filtered now.
func (ss *session) fetchChunkUpstream(w *imapserver.FetchWriter, chunk []imap.UID, o *imap.FetchOptions, content, seen bool, failed **imap.Error) error {
	mo := &imap.FetchOptions{UID: true, Flags: o.Flags || seen || content, InternalDate: o.InternalDate || content,
		RFC822Size: content}
	var msgs []*imapclient.FetchMessageBuffer
	if err := ss.wait(func() (err error) {
		msgs, err = ss.up.c.Fetch(imap.UIDSetNum(chunk...), mo).Collect()
		return err
	}); err != nil {
		return err
	}
	var missing []meta
	var toSeen []imap.UID
	for _, m := range msgs {
		seq := ss.view.seqOf(m.UID)
		if seq == 0 {
			continue
		}
		md := meta{uid: m.UID, flags: m.Flags, date: m.InternalDate, size: m.RFC822Size}
		if !content {
			if w == nil {
				continue
			}
			mw := w.CreateMessage(seq)
			mw.WriteUID(m.UID)
			if o.Flags {
				mw.WriteFlags(m.Flags)
			}
			if o.InternalDate {
				mw.WriteInternalDate(m.InternalDate)
			}
			if err := mw.Close(); err != nil {
				return err
			}
			continue
		}
		setSeen := seen && !slices.Contains(m.Flags, imap.FlagSeen)
		if r, ok := ss.srv.cache.get(ss.key(m.UID)); ok {
			if body, done, ok := r.open(); ok {
				if w == nil {
					done()
					continue
				}
				err := ss.write(w, seq, md, r, body, o, setSeen)
				done()
				if err != nil {
					return err
				}
				if setSeen {
					toSeen = append(toSeen, m.UID)
				}
				continue
			}
		}
		if r, ok := ss.srv.cache.getMeta(ss.key(m.UID)); ok && (w == nil || metaServes(o)) {
			if w != nil {
				if err := ss.write(w, seq, md, r, bytes.NewReader(r.header), o, setSeen); err != nil {
					return err
				}
				if setSeen {
					toSeen = append(toSeen, m.UID)
				}
			}
			continue
		}
		if md.size > ss.srv.opts.Limits.MessageSize {
			r, body := ss.oversize(md)
			if w != nil {
				if err := ss.write(w, seq, md, r, body, o, setSeen); err != nil {
					return err
				}
				if setSeen {
					toSeen = append(toSeen, m.UID)
				}
			}
			continue
		}
		if w == nil && !ss.srv.cache.Fits(md.size) {
			continue // the cache could not keep it: filtered when the client reads it
		}
		missing = append(missing, md)
	}
	if len(missing) > 0 {
		served, err := ss.fetchBodies(w, missing, o, seen, failed)
		toSeen = append(toSeen, served...)
		if err != nil {
			return err
		}
	}
	if len(toSeen) > 0 {
		store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}
		if err := ss.wait(func() error { return ss.up.c.Store(imap.UIDSetNum(toSeen...), store, nil).Close() }); err != nil {
			return err
		}
	}
	return nil
}

// fromCache serves a chunk from the cache alone when the cache answers every message of it and the FETCH asks
// nothing the upstream must tell now (flags, internal date, a \Seen to set): a client reading messages it
// listed costs no upstream command. A message another client expunged meanwhile is served as it was, until the
// expunge is announced, as RFC 2180 §4.1.1 allows. It reports false, having written nothing, when some message
// must be asked for.
func (ss *session) fromCache(w *imapserver.FetchWriter, chunk []imap.UID, o *imap.FetchOptions, failed **imap.Error) (bool, error) {
	type hit struct {
		r    *result
		meta bool
	}
	hits := make([]hit, 0, len(chunk))
	for _, uid := range chunk {
		k := ss.key(uid)
		if r, ok := ss.srv.cache.get(k); ok {
			hits = append(hits, hit{r: r})
		} else if r, ok := ss.srv.cache.getMeta(k); ok && metaServes(o) {
			hits = append(hits, hit{r: r, meta: true})
		} else {
			return false, nil
		}
	}
	for i, uid := range chunk {
		seq := ss.view.seqOf(uid)
		if seq == 0 {
			continue
		}
		md, h := meta{uid: uid}, hits[i]
		var err error
		if h.meta {
			err = ss.write(w, seq, md, h.r, bytes.NewReader(h.r.header), o, false)
		} else {
			body, done, ok := h.r.open()
			if !ok {
				// The file was evicted between the look-up and now: what is left goes the usual way.
				return true, ss.fetchChunkUpstream(w, chunk[i:], o, true, false, failed)
			}
			err = ss.write(w, seq, md, h.r, body, o, false)
			done()
		}
		if err != nil {
			return true, err
		}
	}
	return true, nil
}

// fetchBodies fetches, filters and serves the messages not in the cache. The upstream's answer is read in order
// here, the messages are filtered by up to filterWorkers goroutines at once, and one writer serves them in the
// order they came, so that downloading, filtering and writing overlap. At most filterWorkers+1 messages are held at
// a time, each in memory up to the spool threshold and in a spool file beyond it. It returns the UIDs whose \Seen
// the client's FETCH sets.
func (ss *session) fetchBodies(w *imapserver.FetchWriter, missing []meta, o *imap.FetchOptions, seen bool, failed **imap.Error) ([]imap.UID, error) {
	byUID := map[imap.UID]meta{}
	uids := make([]imap.UID, 0, len(missing))
	for _, md := range missing {
		byUID[md.uid] = md
		uids = append(uids, md.uid)
	}
	reset, pause, stop := ss.up.watchStream()
	defer stop()
	cmd := ss.up.c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}})

	workers := filterWorkers()
	work := make(chan *fetchJob)
	order := make(chan *fetchJob, workers)
	quit := make(chan struct{}) // the writer stopped: the client is gone or the session ends
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				j.f, j.err = ss.filter(j.md, j.sp)
				close(j.done)
			}
		}()
	}
	var (
		toSeen []imap.UID
		werr   error
	)
	written := make(chan struct{})
	go func() {
		defer close(written)
		for j := range order {
			<-j.done
			if werr != nil {
				j.drop()
				continue
			}
			if werr = ss.serveJob(w, j, o, seen, failed, &toSeen); werr != nil {
				close(quit)
			}
		}
	}()
	// push hands a job to the writer (in order) and to a worker; false when the writer stopped.
	push := func(j *fetchJob) bool {
		select {
		case order <- j:
		case <-quit:
			return false
		}
		if j.sp == nil {
			close(j.done) // nothing to filter
			return true
		}
		select {
		case work <- j:
		case <-quit:
			close(j.done) // the writer drops it
		}
		return true
	}

	// The watchdog runs while the upstream is waited for, not while the proxy hands a message on.
	next := func() *imapclient.FetchMessageData {
		reset()
		return cmd.Next()
	}
	var rerr error
	for msg := next(); msg != nil && rerr == nil; msg = next() {
		var (
			uid imap.UID
			sp  *mailflow.Spool
		)
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataBodySection:
				if sp == nil && rerr == nil && it.Literal != nil {
					sp, rerr = ss.mf.Receive(resetReader{it.Literal, reset})
				}
			}
		}
		pause()
		md, ok := byUID[uid]
		if rerr != nil {
			if !errors.Is(rerr, mailflow.ErrTooLarge) {
				rerr = fmt.Errorf("UID FETCH %d: %w", uid, rerr)
				break
			}
			// Larger than its RFC822.SIZE said and than the limit: not inspected.
			rerr = nil
			md.size = ss.srv.opts.Limits.MessageSize + 1
			if ok && !push(&fetchJob{md: md, oversize: true, done: make(chan struct{})}) {
				break
			}
			continue
		}
		if !ok || sp == nil {
			if sp != nil {
				sp.Close()
			}
			continue
		}
		delete(byUID, uid)
		if !push(&fetchJob{md: md, sp: sp, done: make(chan struct{})}) {
			sp.Close()
			break
		}
	}
	close(work)
	close(order)
	<-written
	wg.Wait()
	if rerr != nil {
		stop()
		ss.up.conn.Raw.Close() // the stream is out of step: the session ends
		cmd.Close()
		return toSeen, ss.lost(rerr)
	}
	if werr != nil {
		cmd.Close()
		return toSeen, werr
	}
	if err := cmd.Close(); err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			return toSeen, ie
		}
		return toSeen, ss.lost(err)
	}
	if ss.up.closed() {
		return toSeen, ss.lost(errUpstream)
	}
	return toSeen, nil
}

// filterWorkers is how many messages one FETCH filters at once: one per CPU, at most four (the plugin pools are
// shared by every session).
func filterWorkers() int { return min(max(runtime.GOMAXPROCS(0), 1), 4) }

// fetchJob is one message of fetchBodies on its way from the upstream to the client.
type fetchJob struct {
	md       meta
	sp       *mailflow.Spool // nil for oversize
	oversize bool            // larger than the limit: served as the notice that says so
	f        *filtered
	err      error
	done     chan struct{} // closed when f and err are set (or the job was dropped)
}

// drop releases a job that will not be served (the client is gone): a decision taken is recorded as such.
func (j *fetchJob) drop() {
	if j.f != nil {
		j.f.record(audit.Reply{Status: audit.StatusIMAPBye, Text: "Connection to the client failed"})
		j.f.close()
	} else if j.sp != nil {
		j.sp.Close()
	}
}

// serveJob writes one filtered message to the client (w nil: it was filtered ahead of the client's FETCH).
func (ss *session) serveJob(w *imapserver.FetchWriter, j *fetchJob, o *imap.FetchOptions, seen bool, failed **imap.Error, toSeen *[]imap.UID) error {
	uid := j.md.uid
	if j.oversize {
		if w == nil {
			return nil
		}
		r, body := ss.oversize(j.md)
		return ss.write(w, ss.view.seqOf(uid), j.md, r, body, o, false)
	}
	if j.err != nil {
		j.sp.Close()
		return j.err
	}
	f := j.f
	if f.refusal != nil {
		*failed = f.refusal
		f.close()
		return nil
	}
	seq := ss.view.seqOf(uid)
	if w == nil || seq == 0 {
		// Filtered ahead of the client's FETCH (new mail), which the cache will answer.
		f.record(audit.Reply{Status: audit.StatusIMAPOK, Text: "Filtered on arrival"})
		f.close()
		return nil
	}
	setSeen := seen && !slices.Contains(j.md.flags, imap.FlagSeen)
	if err := ss.write(w, seq, j.md, f.r, f.body, o, setSeen); err != nil {
		f.record(audit.Reply{Status: audit.StatusIMAPBye, Text: "Connection to the client failed"})
		f.close()
		return err
	}
	f.record(audit.Reply{Status: audit.StatusIMAPOK, Text: "FETCH completed"})
	f.close()
	if setSeen {
		*toSeen = append(*toSeen, uid)
	}
	return nil
}

// resetReader extends the upstream watchdog at every read of a message literal: a slow upstream that sends is
// waited for, a stalled one is not.
type resetReader struct {
	r     io.Reader
	reset func()
}

func (r resetReader) Read(p []byte) (int, error) {
	r.reset()
	return r.r.Read(p)
}

func (ss *session) key(uid imap.UID) cacheKey {
	return cacheKey{upstream: ss.srv.upstreamName(), user: ss.user, mailbox: ss.view.name,
		uidValidity: ss.view.uidValidity, uid: uid, configVersion: ss.mf.PolicyVersion()}
}

// reference names a withheld message for good: the same message gets the same notice, byte for byte, in every
// session, and its quarantined original carries the reference in its name.
func (ss *session) reference(uid imap.UID) string {
	k := ss.key(uid)
	k.configVersion = ""
	sum := sha256.Sum256([]byte(k.String()))
	return "imap-" + hex.EncodeToString(sum[:8])
}

// filtered is one message made ready to serve.
type filtered struct {
	r       *result
	body    io.ReaderAt
	refusal *imap.Error
	out     *mailflow.Outcome
	sp      *mailflow.Spool
}

func (f *filtered) close() {
	if f.out != nil {
		f.out.Close()
	}
	if f.sp != nil {
		f.sp.Close()
	}
}

// metaServes reports whether a FETCH asks only for what the cache's metadata of a message answers: the size,
// the envelope, the structure and header sections of the whole message (a folder listing).
func metaServes(o *imap.FetchOptions) bool {
	if len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0 {
		return false
	}
	for _, bs := range o.BodySection {
		if bs.Specifier != imap.PartSpecifierHeader || len(bs.Part) > 0 {
			return false
		}
	}
	return true
}

// errFilterTimeout ends a session whose policy did not decide within the command timeout.
var errFilterTimeout = errors.New("filtering took longer than the command timeout")

// filter runs the retrieval policy on a fetched message and makes what the client is served: the message
// (changed or not), the notice of a withheld one with its original in quarantine, or a refusal (tempfail). It
// caches the result and records the decision.
func (ss *session) filter(md meta, sp *mailflow.Spool) (*filtered, error) {
	in := &pluginhost.Input{Env: ss.envelope("retrieval", "fetch", md.uid, md.date, md.flags)}
	ref := ss.reference(md.uid)
	var timedOut atomic.Bool
	watchdog := time.AfterFunc(ss.srv.opts.Limits.CommandTimeout, func() {
		timedOut.Store(true)
		ss.cancel()
	})
	out, err := ss.mf.Message(sp, mailflow.MessageInput{In: in, ID: ref, Lasting: true})
	watchdog.Stop()
	f := &filtered{sp: sp, out: out}
	if timedOut.Load() {
		ss.log.Warn("filtering took longer than the command timeout; closing session", "uid", md.uid,
			"timeout", ss.srv.opts.Limits.CommandTimeout)
		if out != nil {
			out.RecordServed(audit.Reply{Status: audit.StatusIMAPBye, Text: "Filtering took too long"}, "", "")
		}
		f.close()
		ss.bye("Filtering took too long, try again later")
		return nil, errFilterTimeout
	}
	refuse := func(text string) (*filtered, error) {
		f.refusal = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: text}
		if out != nil {
			out.RecordServed(audit.Reply{Status: audit.StatusIMAPNo, Text: "[UNAVAILABLE] " + text}, "", "")
		}
		return f, nil
	}
	if err != nil {
		ss.log.Warn("message could not be indexed; not served", "uid", md.uid, "err", err)
		return refuse("Message could not be filtered, try again later")
	}
	if out.Err != nil {
		ss.log.Warn("policy outcome could not be carried out", "uid", md.uid, "action", out.Action.String(), "err", out.Err)
		return refuse("Message could not be filtered, try again later")
	}
	if out.Msg == nil {
		// Nothing indexed the message: check it against the MIME bounds before its structure is computed
		// (BODYSTRUCTURE recurses per nesting level).
		if _, err := message.Parse(sp.ReaderAt(), sp.Size(), ss.srv.opts.MessageLimits); err != nil {
			ss.log.Warn("message exceeds the MIME bounds; not served", "uid", md.uid, "err", err)
			return refuse("Message could not be filtered, try again later")
		}
	}
	r := &result{}
	switch out.Action {
	case pluginhost.Tempfail:
		text := mailflow.ReplyText(out.Decision.Text)
		if text == "" {
			text = "Message temporarily unavailable, try again later"
		}
		return refuse(text)
	case pluginhost.Accept:
		body, size := out.Content()
		r.size, f.body = size, body
		if out.Changed() && out.SHA256Out != "" {
			r.sha256 = out.SHA256Out
		} else if !out.Changed() && out.SHA256In != "" {
			r.sha256 = out.SHA256In
		} else {
			r.sha256 = digestOf(body, size)
		}
	default: // reject, discard, quarantine: withheld
		r.entry = out.QuarantineID
		if out.Action != pluginhost.Quarantine {
			q := ss.srv.flow.Options().Quarantine
			if q == nil {
				ss.log.Error("message withheld but no quarantine to keep it in; not served", "uid", md.uid)
				return refuse("Message temporarily unavailable, try again later")
			}
			// The entry's ID ends in ref, the notice's reference, which stays the same each time the message
			// is read so that the notice has the same bytes every time; a message read again finds its
			// original kept already.
			qm := mailflow.QuarantineMeta(ss.id, &in.Env, out.Decision, out.Msg)
			qm.ID, qm.Size, qm.SHA256 = ref, sp.Size(), out.SHA256In
			if r.entry, err = q.StoreOnce(sp.Reader(), qm); err != nil {
				ss.log.Error("withheld message could not be kept; not served", "uid", md.uid, "err", err)
				return refuse("Message temporarily unavailable, try again later")
			}
		}
		d := out.Decision
		notice := mailflow.Notice(out.Msg, mailflow.Withheld{Policy: d.DecidedBy, Action: out.Action.String(),
			Reason: d.Text, Reference: ref, Hostname: ss.srv.opts.Hostname, Date: md.date})
		r.size, r.sha256, r.withheld = int64(len(notice)), sha(notice), ref
		r.content = notice
		f.body = bytes.NewReader(notice)
	}
	if kept := ss.srv.cache.put(ss.key(md.uid), r, f.body); kept != nil {
		f.r = kept
	} else {
		f.r = r
	}
	return f, nil
}

// record appends the decision's record with the reply the client got.
func (f *filtered) record(reply audit.Reply) {
	if f.out != nil && f.r != nil {
		f.out.RecordServed(reply, f.r.sha256, f.r.entry)
	}
}

// keptUpstream is what the notice of a message too large to inspect says of the original.
const keptUpstream = "The original is still on the mail server, unchanged, but it cannot be read\n" +
	"here until it has been inspected. Ask your mail administrator and quote\n" +
	"the reference above."

// oversize is what a message larger than the scan size is served as: a notice saying it was not inspected
// (what cannot be inspected is not served); the original stays upstream, untouched. The refusal is recorded.
func (ss *session) oversize(md meta) (*result, io.ReaderAt) {
	k := ss.key(md.uid)
	if r, ok := ss.srv.cache.get(k); ok && r.withheld != "" {
		return r, bytes.NewReader(r.content)
	}
	lim := ss.srv.opts.Limits.MessageSize
	ref := ss.reference(md.uid)
	reason := fmt.Sprintf("The message (%d bytes) is larger than the %d bytes the filter inspects; it is still on the mail server, unchanged", md.size, lim)
	ss.log.Warn("message too large to be filtered; served as a notice", "uid", md.uid, "size", md.size, "limit", lim)
	notice := mailflow.Notice(nil, mailflow.Withheld{Action: "not inspected", Reason: reason, Reference: ref,
		Hostname: ss.srv.opts.Hostname, Date: md.date, Kept: keptUpstream})
	r := &result{size: int64(len(notice)), sha256: sha(notice), withheld: ref, content: notice}
	if kept := ss.srv.cache.put(k, r, bytes.NewReader(notice)); kept != nil {
		r = kept
	}
	in := &pluginhost.Input{Env: ss.envelope("retrieval", "fetch", md.uid, md.date, md.flags)}
	ss.mf.Record(in, &policy.Decision{Hook: pluginhost.HookMessage, Action: pluginhost.Reject, Text: reason,
		ConfigVersion: ss.mf.PolicyVersion()}, audit.Reply{Status: audit.StatusIMAPOK, Text: "FETCH completed (notice " + ref + ")"})
	return r, bytes.NewReader(r.content)
}

// write answers one message's FETCH items, every content item from body (r.size bytes; for a result of which
// the cache kept only the metadata, body is its header block and o asks only for what that answers).
func (ss *session) write(w *imapserver.FetchWriter, seq uint32, md meta, r *result, body io.ReaderAt, o *imap.FetchOptions, setSeen bool) error {
	bodyLen := r.size
	if r.metaOnly {
		bodyLen = int64(len(r.header))
	}
	mw := w.CreateMessage(seq)
	mw.WriteUID(md.uid)
	if o.Flags || setSeen {
		flags := md.flags
		if setSeen {
			flags = append(slices.Clone(flags), imap.FlagSeen)
		}
		mw.WriteFlags(flags)
	}
	if o.InternalDate {
		mw.WriteInternalDate(md.date)
	}
	if o.RFC822Size {
		mw.WriteRFC822Size(r.size)
	}
	whole := func() io.Reader { return io.NewSectionReader(body, 0, bodyLen) }
	if o.Envelope {
		mw.WriteEnvelope(r.envelopeOf(whole))
	}
	if o.BodyStructure != nil {
		mw.WriteBodyStructure(r.structureOf(whole))
	}
	for _, bs := range o.BodySection {
		var wc io.WriteCloser
		var err error
		if bs.Specifier == imap.PartSpecifierNone && len(bs.Part) == 0 && !r.metaOnly {
			// The whole message (or a window of it) is streamed, never held in memory.
			off, n := int64(0), r.size
			if p := bs.Partial; p != nil {
				off = min(p.Offset, r.size)
				n = min(p.Size, r.size-off)
			}
			wc = mw.WriteBodySection(bs, n)
			_, err = io.Copy(wc, io.NewSectionReader(body, off, n))
		} else {
			buf := imapserver.ExtractBodySection(whole(), bs)
			wc = mw.WriteBodySection(bs, int64(len(buf)))
			_, err = wc.Write(buf)
		}
		if cerr := wc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	for _, bs := range o.BinarySection {
		buf := imapserver.ExtractBinarySection(whole(), bs)
		wc := mw.WriteBinarySection(bs, int64(len(buf)))
		_, err := wc.Write(buf)
		if cerr := wc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	for _, bss := range o.BinarySectionSize {
		mw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(whole(), bss))
	}
	return mw.Close()
}

func (r *result) envelopeOf(body func() io.Reader) *imap.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.envelope == nil {
		h, err := textproto.ReadHeader(bufio.NewReader(body()))
		if err != nil {
			r.envelope = &imap.Envelope{}
		} else {
			r.envelope = extractEnvelope(h)
		}
	}
	return r.envelope
}

func (r *result) structureOf(body func() io.Reader) imap.BodyStructure {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bs == nil {
		r.bs = imapserver.ExtractBodyStructure(body())
	}
	return r.bs
}

// envelope is the plugins' view of the session and the message.
func (ss *session) envelope(direction, command string, uid imap.UID, date time.Time, flags []imap.Flag) pluginhost.Envelope {
	env := pluginhost.Envelope{Protocol: Protocol, Direction: direction, Listener: ss.srv.opts.Name,
		AuthUser: ss.user, MailboxUser: ss.user, Mailbox: ss.view.name, UID: uint32(uid),
		UIDValidity: ss.view.uidValidity, InternalDate: date, Command: command}
	for _, f := range flags {
		env.Flags = append(env.Flags, string(f))
	}
	if ss.remote.IsValid() {
		env.ClientIP, env.ClientPort = ss.remote.Addr().String(), int(ss.remote.Port())
	}
	env.TLSVersion, env.TLSCipher = upstream.TLSInfo(ss.clientTLS())
	env.UpstreamTLSVersion, env.UpstreamTLSCipher = upstream.TLSInfo(ss.up.tlsState())
	return env
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func digestOf(ra io.ReaderAt, size int64) string {
	h := sha256.New()
	io.Copy(h, io.NewSectionReader(ra, 0, size))
	return hex.EncodeToString(h.Sum(nil))
}
