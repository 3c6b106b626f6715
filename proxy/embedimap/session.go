package embedimap

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// session is one client's IMAP session. Sequence numbers are the client's view, kept by the SessionTracker.
type session struct {
	s         *Server
	user      string
	mb        *mailbox // selected, or nil
	view      *imapserver.SessionTracker
	readOnly  bool
	searchRes imap.UIDSet
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
	Text: "Mailbox is read-only (EXAMINE)"}

var errFixed = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
	Text: "The embedded upstream has a fixed set of mailboxes: INBOX, Drafts, Sent and Trash"}

func (ss *session) Close() error {
	ss.unselect()
	return nil
}

// Login accepts any user name and password: every user sees the same mailboxes.
func (ss *session) Login(username, _ string) error {
	if username == "" {
		return imapserver.ErrAuthFailed
	}
	ss.user = username
	ss.s.log.Info("logged in", "user", username)
	return nil
}

func (ss *session) AppendLimit() uint32 { return uint32(min(ss.s.opts.MaxMessageBytes, 1<<32-1)) }

func (ss *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Delim: '/'}}}, nil
}

func (ss *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	ss.unselect()
	mb := ss.s.mailbox(name)
	if mb == nil {
		return nil, errNoMailbox
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.scanLocked(false)
	ss.mb, ss.view, ss.readOnly = mb, mb.tracker.NewSession(), options.ReadOnly
	flags := []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft}
	known := map[imap.Flag]bool{}
	for _, f := range flags {
		known[canonical(f)] = true
	}
	var firstUnseen uint32
	for i, m := range mb.msgs {
		if firstUnseen == 0 && !m.has(imap.FlagSeen) {
			firstUnseen = uint32(i + 1)
		}
		for _, f := range m.shown {
			if !known[canonical(f)] {
				known[canonical(f)] = true
				flags = append(flags, f)
			}
		}
	}
	return &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    append(append([]imap.Flag{}, flags...), imap.FlagWildcard),
		NumMessages:       uint32(len(mb.msgs)),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           mb.uidNext,
		UIDValidity:       mb.uidValidity,
	}, nil
}

func (ss *session) Unselect() error {
	ss.unselect()
	return nil
}

func (ss *session) unselect() {
	if ss.view != nil {
		ss.view.Close()
	}
	ss.mb, ss.view, ss.readOnly, ss.searchRes = nil, nil, false, nil
}

func (ss *session) Create(name string, _ *imap.CreateOptions) error {
	if ss.s.mailbox(name) != nil {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists,
			Text: "Mailbox already exists"}
	}
	return errFixed
}

func (ss *session) Delete(string) error                              { return errFixed }
func (ss *session) Rename(string, string, *imap.RenameOptions) error { return errFixed }

// Subscribe and Unsubscribe accept every existing mailbox: all of them are always subscribed.
func (ss *session) Subscribe(name string) error {
	if ss.s.mailbox(name) == nil {
		return errNoMailbox
	}
	return nil
}

func (ss *session) Unsubscribe(name string) error { return ss.Subscribe(name) }

func (ss *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: '/'})
	}
	for _, mb := range ss.s.boxes {
		match := false
		for _, p := range patterns {
			match = match || imapserver.MatchList(mb.name, '/', ref, p)
		}
		if !match || (options.SelectSpecialUse && mb.attr == "") {
			continue
		}
		data := &imap.ListData{Mailbox: mb.name, Delim: '/', Attrs: []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}}
		if options.SelectSubscribed || options.ReturnSubscribed {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if mb.attr != "" {
			data.Attrs = append(data.Attrs, mb.attr)
		}
		if options.ReturnStatus != nil {
			mb.mu.Lock()
			mb.scanLocked(false)
			data.Status = mb.statusLocked(options.ReturnStatus)
			mb.mu.Unlock()
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mb := ss.s.mailbox(name)
	if mb == nil {
		return nil, errNoMailbox
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.scanLocked(false)
	return mb.statusLocked(options), nil
}

func (ss *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	mb := ss.s.mailbox(name)
	if mb == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	if r.Size() > ss.s.opts.MaxMessageBytes {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too large"}
	}
	data, err := mb.store(r, options.Flags, options.Time)
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			return nil, err
		}
		ss.s.log.Error("storing an appended message", "mailbox", mb.name, "err", err)
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Message not stored"}
	}
	ss.s.log.Info("message appended", "user", ss.user, "mailbox", mb.name, "uid", data.UID, "size", r.Size())
	return data, nil
}

func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if ss.view == nil {
		return nil
	}
	ss.mb.scan()
	return ss.view.Poll(w, allowExpunge)
}

// idleScan is how often an idling session looks for new files.
var idleScan = time.Second

func (ss *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if ss.view == nil {
		<-stop
		return nil
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(idleScan)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				ss.mb.scan()
			case <-stop:
				return
			case <-done:
				return
			}
		}
	}()
	return ss.view.Idle(w, stop)
}

// each calls f with the server's sequence number and the message of every message numSet names, under the
// mailbox lock.
func (ss *session) each(numSet imap.NumSet, f func(seq uint32, m *message)) {
	mb := ss.mb
	if imap.IsSearchRes(numSet) {
		numSet = ss.searchRes
	}
	numSet = ss.static(numSet)
	for i, m := range mb.msgs {
		var ok bool
		switch set := numSet.(type) {
		case imap.SeqSet:
			seq := ss.view.EncodeSeqNum(uint32(i + 1))
			ok = seq != 0 && set.Contains(seq)
		case imap.UIDSet:
			ok = set.Contains(m.uid)
		}
		if ok {
			f(uint32(i+1), m)
		}
	}
}

// static replaces "*" with the highest sequence number or UID (RFC 3501 §9, seq-number).
func (ss *session) static(numSet imap.NumSet) imap.NumSet {
	fix := func(start, stop *uint32, max uint32) {
		dyn := *start == 0 || *stop == 0
		if *start == 0 {
			*start = max
		}
		if *stop == 0 {
			*stop = max
		}
		if dyn && *start > *stop {
			*start, *stop = *stop, *start
		}
	}
	switch set := numSet.(type) {
	case imap.SeqSet:
		set = append(imap.SeqSet{}, set...)
		for i := range set {
			fix(&set[i].Start, &set[i].Stop, uint32(len(ss.mb.msgs)))
		}
		return set
	case imap.UIDSet:
		set = append(imap.UIDSet{}, set...)
		max := uint32(ss.mb.uidNext) - 1
		if n := len(ss.mb.msgs); n > 0 {
			max = uint32(ss.mb.msgs[n-1].uid)
		}
		for i := range set {
			fix((*uint32)(&set[i].Start), (*uint32)(&set[i].Stop), max)
		}
		return set
	}
	return numSet
}

// fetched is what Fetch writes for one message, taken under the lock.
type fetched struct {
	seq   uint32 // the client's
	uid   imap.UID
	path  string
	date  time.Time
	flags []imap.Flag
}

func (ss *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	markSeen := false
	for _, bs := range options.BodySection {
		markSeen = markSeen || !bs.Peek
	}
	markSeen = markSeen && !ss.readOnly
	var list []fetched
	mb := ss.mb
	mb.mu.Lock()
	dirty := false
	ss.each(numSet, func(seq uint32, m *message) {
		if markSeen && !m.has(imap.FlagSeen) {
			m.setFlag(imap.FlagSeen)
			mb.tracker.QueueMessageFlags(seq, m.uid, m.flagList(), nil)
			dirty = true
		}
		if cs := ss.view.EncodeSeqNum(seq); cs != 0 {
			list = append(list, fetched{cs, m.uid, m.path, m.date, m.flagList()})
		}
	})
	if dirty {
		if err := mb.saveLocked(); err != nil {
			ss.s.log.Error("saving a mailbox index", "mailbox", mb.name, "err", err)
		}
	}
	mb.mu.Unlock()
	content := options.RFC822Size || options.Envelope || options.BodyStructure != nil ||
		len(options.BodySection) > 0 || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	for _, f := range list {
		var buf []byte
		if content {
			b, err := readMessage(f.path, ss.s.opts.MaxMessageBytes)
			if err != nil {
				// Removed since the lock was let go (another session expunged it): the expunge is queued.
				ss.s.log.Warn("a fetched message is gone", "mailbox", mb.name, "uid", f.uid, "err", err)
				continue
			}
			buf = b
		}
		if err := writeFetch(w.CreateMessage(f.seq), f, buf, options); err != nil {
			return err
		}
	}
	return nil
}

// readMessage reads a message file of at most max bytes.
func readMessage(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}

func writeFetch(w *imapserver.FetchResponseWriter, f fetched, buf []byte, options *imap.FetchOptions) error {
	w.WriteUID(f.uid)
	if options.Flags {
		w.WriteFlags(f.flags)
	}
	if options.InternalDate {
		w.WriteInternalDate(f.date)
	}
	if options.RFC822Size {
		w.WriteRFC822Size(int64(len(buf)))
	}
	if options.Envelope {
		if h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(buf))); err == nil {
			w.WriteEnvelope(imapserver.ExtractEnvelope(h))
		} else {
			w.WriteEnvelope(&imap.Envelope{})
		}
	}
	if options.BodyStructure != nil {
		w.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(buf)))
	}
	for _, bs := range options.BodySection {
		b := imapserver.ExtractBodySection(bytes.NewReader(buf), bs)
		if err := writeLiteral(w.WriteBodySection(bs, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		b := imapserver.ExtractBinarySection(bytes.NewReader(buf), bs)
		if err := writeLiteral(w.WriteBinarySection(bs, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		w.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(buf), bss))
	}
	return w.Close()
}

func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

func (ss *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	if ss.readOnly {
		return errReadOnly
	}
	mb := ss.mb
	var list []fetched
	mb.mu.Lock()
	ss.each(numSet, func(seq uint32, m *message) {
		m.store(flags.Op, flags.Flags)
		mb.tracker.QueueMessageFlags(seq, m.uid, m.flagList(), ss.view)
		if cs := ss.view.EncodeSeqNum(seq); cs != 0 {
			list = append(list, fetched{seq: cs, uid: m.uid, flags: m.flagList()})
		}
	})
	if err := mb.saveLocked(); err != nil {
		ss.s.log.Error("saving a mailbox index", "mailbox", mb.name, "err", err)
	}
	mb.mu.Unlock()
	if flags.Silent {
		return nil
	}
	for _, f := range list {
		if err := writeFetch(w.CreateMessage(f.seq), f, nil, &imap.FetchOptions{Flags: true}); err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) Expunge(_ *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if ss.readOnly {
		return errReadOnly
	}
	mb := ss.mb
	mb.mu.Lock()
	defer mb.mu.Unlock()
	var gone []int
	for i := len(mb.msgs) - 1; i >= 0; i-- {
		m := mb.msgs[i]
		if m.has(imap.FlagDeleted) && (uids == nil || uids.Contains(m.uid)) {
			gone = append(gone, i)
		}
	}
	// The tracker delivers the EXPUNGE responses to every session, this one included, at its next poll (which
	// imapserver runs before the tagged OK).
	if len(gone) > 0 {
		mb.removeLocked(gone)
	}
	return nil
}

func (ss *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	data, _, err := ss.copy(numSet, dest)
	return data, err
}

// copy copies the messages to dest and returns which were copied.
func (ss *session) copy(numSet imap.NumSet, dest string) (*imap.CopyData, []imap.UID, error) {
	to := ss.s.mailbox(dest)
	if to == nil {
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	var list []fetched
	ss.mb.mu.Lock()
	ss.each(numSet, func(_ uint32, m *message) {
		list = append(list, fetched{uid: m.uid, path: m.path, date: m.date, flags: m.flagList()})
	})
	ss.mb.mu.Unlock()
	data := &imap.CopyData{UIDValidity: to.uidValidity}
	var copied []imap.UID
	for _, f := range list {
		src, err := os.Open(f.path)
		if err != nil {
			continue // expunged meanwhile
		}
		ad, err := to.store(src, f.flags, f.date)
		src.Close()
		if err != nil {
			ss.s.log.Error("copying a message", "from", ss.mb.name, "to", to.name, "uid", f.uid, "err", err)
			return nil, nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Message not copied"}
		}
		data.SourceUIDs.AddNum(f.uid)
		data.DestUIDs.AddNum(ad.UID)
		copied = append(copied, f.uid)
	}
	return data, copied, nil
}

func (ss *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if ss.readOnly {
		return errReadOnly
	}
	data, copied, err := ss.copy(numSet, dest)
	if err != nil {
		return err
	}
	if err := w.WriteCopyData(data); err != nil {
		return err
	}
	moved := map[imap.UID]bool{}
	for _, uid := range copied {
		moved[uid] = true
	}
	mb := ss.mb
	mb.mu.Lock()
	defer mb.mu.Unlock()
	var gone []int
	for i := len(mb.msgs) - 1; i >= 0; i-- {
		if moved[mb.msgs[i].uid] {
			gone = append(gone, i)
		}
	}
	// As for EXPUNGE, the tracker writes this session's EXPUNGE responses at the poll before the tagged OK.
	if len(gone) > 0 {
		mb.removeLocked(gone)
	}
	return nil
}
