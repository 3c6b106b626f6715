package imapproxy

import (
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Select relays SELECT and EXAMINE, then lists the mailbox's UIDs: the client's sequence numbers are this
// list's positions from now on, and only UIDs are sent upstream.
func (ss *session) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	defer ss.begin()()
	ss.relayed = false // imapserver does not poll after SELECT
	ss.view = mailboxView{}
	ss.umu.Lock()
	ss.arrived, ss.expunged, ss.flagUpdates, ss.flagsUnknown = false, false, nil, false
	ss.umu.Unlock()
	var d *imap.SelectData
	ss.up.sniff.reset()
	if err := ss.wait(func() (err error) {
		d, err = ss.up.c.Select(mailbox, &imap.SelectOptions{ReadOnly: options != nil && options.ReadOnly}).Wait()
		return err
	}); err != nil {
		return nil, err
	}
	// Read by the sniffer before the tagged OK that ended Wait.
	recent, unseen := ss.up.sniff.recent.Load(), ss.up.sniff.unseen.Load()
	uids, err := ss.allUIDs()
	if err != nil {
		return nil, err
	}
	if lim := ss.srv.opts.Limits.Messages; len(uids) > lim {
		ss.log.Warn("mailbox larger than the proxy serves; SELECT refused", "mailbox", mailbox, "messages", len(uids), "limit", lim)
		ss.wait(func() error { return ss.up.c.Unselect().Wait() })
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
			Text: fmt.Sprintf("Mailbox holds %d messages, more than the %d this proxy serves", len(uids), lim)}
	}
	ss.view = mailboxView{name: mailbox, readOnly: options != nil && options.ReadOnly, uidValidity: d.UIDValidity,
		uids: uids}
	d.NumMessages = uint32(len(uids))
	d.NumRecent = uint32(max(recent, 0))
	// The upstream's sequence numbers are the view's: the UIDs were listed right after SELECT, and messages that
	// arrived in between come after the first unseen one.
	if unseen > 0 && unseen <= int64(len(uids)) {
		d.FirstUnseenSeqNum = uint32(unseen)
	}
	d.List = nil
	return d, nil
}

// tailWindows yields the newest messages in windows that double (64, 128, ...), newest first: \Recent messages are
// the ones that arrived since the mailbox was last selected, so they are the newest (Dovecot, Cyrus), and the
// search stops at the first window with a message that is not recent.
func tailWindows(uids []imap.UID) func(yield func([]imap.UID) bool) {
	return func(yield func([]imap.UID) bool) {
		end, n := len(uids), 64
		for end > 0 {
			start := max(end-n, 0)
			if !yield(uids[start:end]) {
				return
			}
			end, n = start, 2*n
		}
	}
}

// readRecent finds which messages are \Recent, for a search: it reads the flags of the newest messages in
// windows until a window holds one that is not. With none recent the set is a UID no message has, which
// matches nothing.
func (ss *session) readRecent() (imap.UIDSet, error) {
	var set imap.UIDSet
	for window := range tailWindows(ss.view.uids) {
		all := true
		if err := ss.flagsOf(window, func(m *imapclient.FetchMessageBuffer) error {
			if slices.Contains(m.Flags, flagRecent) {
				set.AddNum(m.UID)
			} else {
				all = false
			}
			return nil
		}); err != nil {
			return nil, err
		}
		if !all {
			break
		}
	}
	if len(set) == 0 {
		set = imap.UIDSet{{Start: 0xFFFFFFFF, Stop: 0xFFFFFFFF}}
	}
	return set, nil
}

// flagsOf reads the flags of uids upstream, in chunks, and hands each message to f.
func (ss *session) flagsOf(uids []imap.UID, f func(*imapclient.FetchMessageBuffer) error) error {
	for _, chunk := range ss.chunks(slices.Clone(uids)) {
		var msgs []*imapclient.FetchMessageBuffer
		if err := ss.wait(func() (err error) {
			msgs, err = ss.up.c.Fetch(imap.UIDSetNum(chunk...), &imap.FetchOptions{UID: true, Flags: true}).Collect()
			return err
		}); err != nil {
			return err
		}
		for _, m := range msgs {
			if err := f(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// flagRecent is IMAP4rev1's \Recent, which go-imap keeps internal.
const flagRecent imap.Flag = "\\Recent"

// newest returns the last Prefilter UIDs of the list.
func (ss *session) newest(uids []imap.UID) []imap.UID {
	n := ss.srv.opts.Prefilter
	if len(uids) > n {
		return uids[len(uids)-n:]
	}
	return uids
}

// uidsAfter lists the UIDs above last upstream, ascending.
func (ss *session) uidsAfter(last imap.UID) ([]imap.UID, error) {
	uids, err := ss.searchUIDs(&imap.SearchCriteria{UID: []imap.UIDSet{{{Start: last + 1, Stop: 0}}}})
	// "n:*" also names the last message when its UID is below n.
	return slices.DeleteFunc(uids, func(u imap.UID) bool { return u <= last }), err
}

// allUIDs lists the selected mailbox's UIDs upstream, ascending.
func (ss *session) allUIDs() ([]imap.UID, error) { return ss.searchUIDs(&imap.SearchCriteria{}) }

// searchUIDs runs a UID SEARCH upstream (RETURN (ALL) with ESEARCH: ranges, not one number per message) and
// returns the UIDs found, ascending.
func (ss *session) searchUIDs(c *imap.SearchCriteria) ([]imap.UID, error) {
	var d *imap.SearchData
	var opts *imap.SearchOptions
	if ss.up.c.Caps().Has(imap.CapESearch) {
		opts = &imap.SearchOptions{ReturnAll: true}
	}
	if err := ss.wait(func() (err error) {
		d, err = ss.up.c.UIDSearch(c, opts).Wait()
		return err
	}); err != nil {
		return nil, err
	}
	var uids []imap.UID
	if set, ok := d.All.(imap.UIDSet); ok {
		uids, _ = set.Nums()
	}
	slices.Sort(uids)
	return slices.Compact(uids), nil
}

func (ss *session) Unselect() error {
	defer ss.begin()()
	v := ss.view
	ss.view = mailboxView{}
	if v.closing {
		return nil // the upstream's CLOSE unselected it
	}
	if ss.up.c.Caps().Has(imap.CapUnselect) {
		return ss.wait(func() error { return ss.up.c.Unselect().Wait() })
	}
	// Without UNSELECT only CLOSE leaves the selected state, and it expunges unless the mailbox is read-only.
	if !v.readOnly {
		if err := ss.wait(func() error {
			_, err := ss.up.c.Select(v.name, &imap.SelectOptions{ReadOnly: true}).Wait()
			return err
		}); err != nil {
			return err
		}
	}
	return ss.wait(func() error { return ss.up.c.UnselectAndExpunge().Wait() })
}

// seqOf returns the client's sequence number of uid, 0 when the client does not know it.
func (v *mailboxView) seqOf(uid imap.UID) uint32 {
	i, ok := slices.BinarySearch(v.uids, uid)
	if !ok {
		return 0
	}
	return uint32(i + 1)
}

// resolve turns a client's sequence or UID set into the UIDs it names in the client's view, ascending: `*` is
// the last message the client knows of, and UIDs the client does not know are left out.
func (v *mailboxView) resolve(set imap.NumSet) []imap.UID {
	var out []imap.UID
	n := uint32(len(v.uids))
	switch set := set.(type) {
	case imap.SeqSet:
		for _, r := range set {
			start, stop := r.Start, r.Stop
			if start == 0 {
				start = n
			}
			if stop == 0 {
				stop = n
			}
			if start > stop {
				start, stop = stop, start
			}
			for seq := start; seq <= stop && seq <= n; seq++ {
				if seq >= 1 {
					out = append(out, v.uids[seq-1])
				}
			}
		}
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			return nil
		}
		var last imap.UID
		if n > 0 {
			last = v.uids[n-1]
		}
		for _, r := range set {
			start, stop := r.Start, r.Stop
			if start == 0 {
				start = last
			}
			if stop == 0 {
				stop = last
			}
			if start > stop {
				start, stop = stop, start
			}
			lo, _ := slices.BinarySearch(v.uids, start)
			for i := lo; i < len(v.uids) && v.uids[i] <= stop; i++ {
				out = append(out, v.uids[i])
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// chunks splits UIDs into sets whose every command line stays well under the upstream's line limit.
func (ss *session) chunks(uids []imap.UID) [][]imap.UID {
	per := max(ss.srv.opts.Limits.UIDSetLength/11, 1) // at most 10 digits and a comma each
	var out [][]imap.UID
	for len(uids) > per {
		out = append(out, uids[:per])
		uids = uids[per:]
	}
	if len(uids) > 0 {
		out = append(out, uids)
	}
	return out
}

// expungeWriter is what the expunge, move and update writers share.
type expungeWriter interface {
	WriteExpunge(seqNum uint32) error
}

// sync brings the client's view up to the upstream's: expunges (when allowed: ew not nil), then new messages
// and flag changes (when uw is not nil). Expunges not allowed now and new messages that cannot be announced
// now wait for the next point.
func (ss *session) sync(ew expungeWriter, uw *imapserver.UpdateWriter) error {
	v := &ss.view
	if !v.selected() {
		return nil
	}
	ss.settle()
	ss.umu.Lock()
	arrived, expunged, flags, unknown, boxFlags := ss.arrived, ss.expunged, ss.flagUpdates, ss.flagsUnknown, ss.mailboxFlags
	ss.arrived, ss.expunged = false, false
	if uw != nil {
		ss.flagUpdates, ss.flagsUnknown, ss.mailboxFlags = nil, false, nil
	}
	ss.umu.Unlock()
	if uw != nil && boxFlags != nil {
		// Before the messages' flags: a client must know a keyword before a message carries it.
		if err := uw.WriteMailboxFlags(boxFlags); err != nil {
			return err
		}
	}
	var last imap.UID
	if len(v.uids) > 0 {
		last = v.uids[len(v.uids)-1]
	}
	var fresh []imap.UID
	switch {
	case expunged || v.pendingExpunge:
		// Which messages went is told by the whole list: the EXPUNGEs' sequence numbers are the upstream's.
		now, err := ss.allUIDs()
		if err != nil {
			return err
		}
		v.pendingExpunge = false
		if ew != nil {
			for i := len(v.uids) - 1; i >= 0; i-- {
				if _, ok := slices.BinarySearch(now, v.uids[i]); !ok {
					if err := ew.WriteExpunge(uint32(i + 1)); err != nil {
						return err
					}
					v.uids = slices.Delete(v.uids, i, i+1)
				}
			}
		} else {
			for _, u := range v.uids {
				if _, ok := slices.BinarySearch(now, u); !ok {
					v.pendingExpunge = true
					break
				}
			}
		}
		i, _ := slices.BinarySearch(now, last+1)
		fresh = now[i:]
	case arrived:
		// Only new messages: the UIDs above the last one known, not the whole list again (a large mailbox
		// that receives mail would be listed at each message).
		var err error
		if fresh, err = ss.uidsAfter(last); err != nil {
			return err
		}
	}
	if len(fresh) > 0 {
		if uw == nil {
			ss.noteArrival() // announced at the next point that may
		} else {
			v.uids = append(v.uids, fresh...)
			ss.prefilter(ss.newest(fresh))
			if err := uw.WriteNumMessages(uint32(len(v.uids))); err != nil {
				return err
			}
			// The upstream sends RECENT with EXISTS; both were read before the reply that ended the poll.
			if n := ss.up.sniff.recent.Load(); n >= 0 {
				if err := uw.WriteNumRecent(uint32(n)); err != nil {
					return err
				}
			}
		}
	}
	if uw == nil {
		return nil
	}
	if unknown {
		return ss.refreshFlags(uw, v.uids)
	}
	for uid, f := range flags {
		if seq := v.seqOf(uid); seq > 0 {
			if err := uw.WriteMessageFlags(seq, uid, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// settle gives the unsolicited FETCH responses that came with the last upstream reply time to be noted:
// imapclient hands each to a goroutine of its own, which may not have run yet when the reply's command returns.
// It waits a little for handlers that run, never for long.
func (ss *session) settle() {
	runtime.Gosched()
	for i := 0; i < 50 && ss.fetchers.Load() > 0; i++ {
		time.Sleep(100 * time.Microsecond)
	}
}

// refreshFlags reads the flags of uids again and tells the client.
func (ss *session) refreshFlags(uw *imapserver.UpdateWriter, uids []imap.UID) error {
	return ss.flagsOf(uids, func(m *imapclient.FetchMessageBuffer) error {
		if seq := ss.view.seqOf(m.UID); seq > 0 {
			return uw.WriteMessageFlags(seq, m.UID, m.Flags)
		}
		return nil
	})
}

// Poll runs after most commands: it delivers what the upstream announced.
func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	relayed := ss.relayed
	ss.relayed = false
	if !relayed && ss.user != "" {
		ss.pace() // NOOP and CHECK: the upstream hears a NOOP
		if err := ss.wait(func() error { return ss.up.c.Noop().Wait() }); err != nil {
			return err
		}
	}
	var ew expungeWriter
	if allowExpunge {
		ew = w
	}
	return ss.sync(ew, w)
}

// Idle relays IDLE: upstream IDLE when the upstream has it, NOOP polling otherwise; what the upstream announces
// is delivered as it arrives, and a repeated EXISTS every IdleKeepalive keeps NAT and clients from cutting the
// connection.
func (ss *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	ss.mu.Lock()
	ss.idling = true
	draining, text := ss.draining, ss.byeText
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		ss.idling = false
		ss.mu.Unlock()
	}()
	if draining {
		ss.bye(text)
		return nil
	}
	o := &ss.srv.opts
	keep := time.NewTicker(o.IdleKeepalive)
	defer keep.Stop()
	hasIdle := ss.up.c.Caps().Has(imap.CapIdle)
	var pollC <-chan time.Time
	if !hasIdle {
		poll := time.NewTicker(o.IdlePoll)
		defer poll.Stop()
		pollC = poll.C
	}
	// What the upstream has not announced yet (a message that arrived while the client's IDLE started).
	if err := ss.wait(func() error { return ss.up.c.Noop().Wait() }); err != nil {
		return err
	}
	if err := ss.sync(w, w); err != nil {
		return err
	}
	for {
		var idle *imapclient.IdleCommand
		if hasIdle {
			var err error
			stopWatch := ss.up.watch()
			idle, err = ss.up.c.Idle()
			stopWatch()
			if err != nil {
				return ss.upErr(err)
			}
		}
		endIdle := func() error {
			if idle == nil {
				return nil
			}
			return ss.wait(func() error {
				if err := idle.Close(); err != nil {
					return err
				}
				return idle.Wait()
			})
		}
	wait:
		for {
			select {
			case <-stop:
				if err := endIdle(); err != nil {
					return err
				}
				return ss.sync(w, w)
			case <-ss.notify:
				break wait
			case <-pollC:
				if err := ss.wait(func() error { return ss.up.c.Noop().Wait() }); err != nil {
					return err
				}
				break wait
			case <-keep.C:
				if ss.view.selected() {
					if err := w.WriteNumMessages(uint32(len(ss.view.uids))); err != nil {
						endIdle()
						return err
					}
				}
			case <-ss.up.c.Closed():
				return ss.lost(errUpstream)
			}
		}
		if err := endIdle(); err != nil {
			return err
		}
		if err := ss.sync(w, w); err != nil {
			return err
		}
	}
}

// Expunge relays EXPUNGE and UID EXPUNGE (which needs the upstream's UIDPLUS), and CLOSE's silent expunge.
func (ss *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	defer ss.begin()()
	if w != nil && *w == (imapserver.ExpungeWriter{}) {
		// CLOSE: the upstream's CLOSE expunges silently and unselects. Under EXAMINE nothing may be expunged,
		// whatever the upstream does with a CLOSE then: Unselect leaves the mailbox without CLOSE.
		if ss.view.readOnly {
			return nil
		}
		ss.view.closing = true
		return ss.wait(func() error { return ss.up.c.UnselectAndExpunge().Wait() })
	}
	if ss.view.readOnly {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Mailbox is read-only"}
	}
	var cmd *imapclient.ExpungeCommand
	if uids != nil {
		if !ss.up.c.Caps().Has(imap.CapUIDPlus) {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "UID EXPUNGE not supported by the mail server"}
		}
		set := ss.view.resolve(*uids)
		if len(set) == 0 {
			return ss.sync(w, nil)
		}
		for _, chunk := range ss.chunks(set) {
			cmd = ss.up.c.UIDExpunge(imap.UIDSetNum(chunk...))
			if err := ss.wait(cmd.Close); err != nil {
				return err
			}
		}
	} else {
		cmd = ss.up.c.Expunge()
		if err := ss.wait(cmd.Close); err != nil {
			return err
		}
	}
	ss.noteExpunge()
	return ss.sync(w, nil)
}

// Search relays SEARCH with sequence numbers turned into UIDs; ESEARCH's results (MIN, MAX, COUNT, ALL) are
// computed here from the upstream's plain UID SEARCH. It runs upstream, on the messages as stored, not as
// filtered.
func (ss *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	defer ss.begin()()
	if options != nil && options.ReturnSave {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "SEARCHRES not supported"}
	}
	var recent imap.UIDSet
	if usesRecent(criteria) {
		var err error
		if recent, err = ss.readRecent(); err != nil {
			return nil, err
		}
	}
	c := ss.uidCriteria(*criteria, recent)
	var d *imap.SearchData
	if err := ss.wait(func() (err error) {
		d, err = ss.up.c.UIDSearch(&c, nil).Wait()
		return err
	}); err != nil {
		return nil, err
	}
	var found []imap.UID
	if set, ok := d.All.(imap.UIDSet); ok {
		found, _ = set.Nums()
	}
	slices.Sort(found)
	out := &imap.SearchData{}
	var nums []uint32
	for _, u := range slices.Compact(found) {
		seq := ss.view.seqOf(u)
		if seq == 0 {
			continue // not announced to the client yet
		}
		if kind == imapserver.NumKindUID {
			nums = append(nums, uint32(u))
		} else {
			nums = append(nums, seq)
		}
	}
	if kind == imapserver.NumKindUID {
		var set imap.UIDSet
		for _, n := range nums {
			set.AddNum(imap.UID(n))
		}
		out.All = set
	} else {
		var set imap.SeqSet
		for _, n := range nums {
			set.AddNum(n)
		}
		out.All = set
	}
	out.Count = uint32(len(nums))
	if len(nums) > 0 {
		out.Min, out.Max = slices.Min(nums), slices.Max(nums)
	}
	return out, nil
}

// usesRecent reports whether a search asks for RECENT, NEW or OLD.
func usesRecent(c *imap.SearchCriteria) bool {
	if slices.Contains(c.Flag, flagRecent) || slices.Contains(c.NotFlag, flagRecent) {
		return true
	}
	for i := range c.Not {
		if usesRecent(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if usesRecent(&c.Or[i][0]) || usesRecent(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// uidCriteria rewrites the sequence sets of a search as the UIDs they name for the client, and RECENT as the
// UIDs of recent (from readRecent when the search uses it).
func (ss *session) uidCriteria(c imap.SearchCriteria, recent imap.UIDSet) imap.SearchCriteria {
	for _, s := range c.SeqNum {
		var set imap.UIDSet
		for _, u := range ss.view.resolve(s) {
			set.AddNum(u)
		}
		if len(set) == 0 {
			// Nothing matches: UID 0 is never a message's.
			set = imap.UIDSet{{Start: 0xFFFFFFFF, Stop: 0xFFFFFFFF}}
		}
		c.UID = append(c.UID, set)
	}
	c.SeqNum = nil
	uids := c.UID
	c.UID = nil
	for _, s := range uids {
		// `*` in a client's UID set means its last known message, which may not be the upstream's.
		var set imap.UIDSet
		for _, u := range ss.view.resolve(s) {
			set.AddNum(u)
		}
		if len(set) == 0 {
			set = imap.UIDSet{{Start: 0xFFFFFFFF, Stop: 0xFFFFFFFF}}
		}
		c.UID = append(c.UID, set)
	}
	// RECENT, NEW and OLD: imapclient cannot send them (it would ask for a keyword "\Recent"), and the session
	// knows which messages are recent: they become UID sets.
	if slices.Contains(c.Flag, flagRecent) {
		c.Flag = slices.DeleteFunc(slices.Clone(c.Flag), func(f imap.Flag) bool { return f == flagRecent })
		c.UID = append(c.UID, recent)
	}
	if slices.Contains(c.NotFlag, flagRecent) {
		c.NotFlag = slices.DeleteFunc(slices.Clone(c.NotFlag), func(f imap.Flag) bool { return f == flagRecent })
		c.Not = append(slices.Clone(c.Not), imap.SearchCriteria{UID: []imap.UIDSet{recent}})
	}
	c.Not = slices.Clone(c.Not)
	for i := range c.Not {
		c.Not[i] = ss.uidCriteria(c.Not[i], recent)
	}
	c.Or = slices.Clone(c.Or)
	for i := range c.Or {
		c.Or[i] = [2]imap.SearchCriteria{ss.uidCriteria(c.Or[i][0], recent), ss.uidCriteria(c.Or[i][1], recent)}
	}
	return c
}

// Store relays STORE by UID; the upstream's FLAGS answers are written with the client's sequence numbers.
func (ss *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	defer ss.begin()()
	if ss.view.readOnly {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Mailbox is read-only"}
	}
	_, isUID := numSet.(imap.UIDSet)
	for _, chunk := range ss.chunks(ss.view.resolve(numSet)) {
		var msgs []*imapclient.FetchMessageBuffer
		if err := ss.wait(func() (err error) {
			msgs, err = ss.up.c.Store(imap.UIDSetNum(chunk...), flags, nil).Collect()
			return err
		}); err != nil {
			return err
		}
		ss.settle()
		ss.umu.Lock()
		newKeywords := ss.mailboxFlags != nil
		if newKeywords {
			// The store made a keyword the mailbox did not have: the client must hear the mailbox's new FLAGS
			// first, which only Poll (right after this) can write, so the answers go out there.
			if ss.flagUpdates == nil {
				ss.flagUpdates = map[imap.UID][]imap.Flag{}
			}
			for _, m := range msgs {
				ss.flagUpdates[m.UID] = m.Flags
			}
		}
		ss.umu.Unlock()
		if newKeywords {
			continue
		}
		for _, m := range msgs {
			seq := ss.view.seqOf(m.UID)
			if seq == 0 {
				continue
			}
			mw := w.CreateMessage(seq)
			if isUID {
				mw.WriteUID(m.UID)
			}
			mw.WriteFlags(m.Flags)
			if err := mw.Close(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Copy relays COPY by UID; COPYUID comes back when the upstream has UIDPLUS.
func (ss *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	defer ss.begin()()
	uids := ss.view.resolve(numSet)
	if len(uids) == 0 {
		return nil, nil
	}
	var all imap.CopyData
	for _, chunk := range ss.chunks(uids) {
		var d *imap.CopyData
		if err := ss.wait(func() (err error) {
			d, err = ss.up.c.Copy(imap.UIDSetNum(chunk...), dest).Wait()
			return err
		}); err != nil {
			return nil, err
		}
		if d == nil || d.UIDValidity == 0 {
			return nil, nil
		}
		all.UIDValidity = d.UIDValidity
		all.SourceUIDs = append(all.SourceUIDs, d.SourceUIDs...)
		all.DestUIDs = append(all.DestUIDs, d.DestUIDs...)
	}
	return &all, nil
}

// Move relays MOVE by UID, only to an upstream that has MOVE (imapclient's fallback would expunge every
// \Deleted message); the expunges are told through the move writer.
func (ss *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	defer ss.begin()()
	if !ss.up.c.Caps().Has(imap.CapMove) {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "MOVE not supported by the mail server"}
	}
	if ss.view.readOnly {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Mailbox is read-only"}
	}
	uids := ss.view.resolve(numSet)
	var all imap.CopyData
	for _, chunk := range ss.chunks(uids) {
		var d *imapclient.MoveData
		if err := ss.wait(func() (err error) {
			d, err = ss.up.c.Move(imap.UIDSetNum(chunk...), dest).Wait()
			return err
		}); err != nil {
			return err
		}
		src, ok1 := d.SourceUIDs.(imap.UIDSet)
		dst, ok2 := d.DestUIDs.(imap.UIDSet)
		if d.UIDValidity != 0 && ok1 && ok2 {
			all.UIDValidity = d.UIDValidity
			all.SourceUIDs = append(all.SourceUIDs, src...)
			all.DestUIDs = append(all.DestUIDs, dst...)
		}
	}
	if all.UIDValidity != 0 {
		if err := w.WriteCopyData(&all); err != nil {
			return err
		}
	}
	ss.noteExpunge()
	return ss.sync(w, nil)
}
