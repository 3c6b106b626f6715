package embedimap

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// mailbox is one mailbox: the .eml files of its directories, numbered by its index.
type mailbox struct {
	s         *Server
	name      string
	attr      imap.MailboxAttr // special use, or ""
	dirs      []string         // read; the first is written to
	indexPath string
	tracker   *imapserver.MailboxTracker

	mu          sync.Mutex
	uidValidity uint32
	uidNext     imap.UID
	msgs        []*message           // in UID order; position+1 is the sequence number
	stamps      map[string]time.Time // each directory's modification time at the last scan
	skipped     map[string]bool      // files too large to serve, logged once
}

// message is one .eml file. Its bytes never change; its flags live in the index.
type message struct {
	uid   imap.UID
	path  string
	size  int64
	date  time.Time
	flags map[imap.Flag]struct{} // canonical (lower case) keys
	shown []imap.Flag            // as set by the client
}

// index is the file that keeps UIDs and flags across restarts.
type index struct {
	UIDValidity uint32       `json:"uidvalidity"`
	UIDNext     uint32       `json:"uidnext"`
	Messages    []indexEntry `json:"messages"`
}

type indexEntry struct {
	UID   uint32   `json:"uid"`
	File  string   `json:"file"`
	Flags []string `json:"flags,omitempty"`
}

// openMailbox loads the mailbox's index and scans its directories. A missing or unreadable index starts the
// mailbox afresh with a new UIDVALIDITY, as RFC 3501 §2.3.1.1 asks when UIDs cannot be kept.
func (s *Server) openMailbox(name string, attr imap.MailboxAttr, dirs []string) (*mailbox, error) {
	mb := &mailbox{s: s, name: name, attr: attr, dirs: dirs,
		indexPath: filepath.Join(s.opts.StateDir, name+".index"), stamps: map[string]time.Time{},
		skipped: map[string]bool{}}
	var idx index
	b, err := os.ReadFile(mb.indexPath)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &idx); err != nil || idx.UIDValidity == 0 {
			s.log.Warn("mailbox index unreadable: the mailbox gets a new UIDVALIDITY", "mailbox", name,
				"file", mb.indexPath, "err", err)
			idx = index{}
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("embedimap: reading the index of %s: %w", name, err)
	}
	if idx.UIDValidity == 0 {
		idx.UIDValidity = uint32(now().Unix())
		idx.UIDNext = 1
	}
	mb.uidValidity, mb.uidNext = idx.UIDValidity, imap.UID(max(idx.UIDNext, 1))
	for _, e := range idx.Messages {
		m := &message{uid: imap.UID(e.UID), path: e.File, flags: map[imap.Flag]struct{}{}}
		for _, f := range e.Flags {
			m.setFlag(imap.Flag(f))
		}
		if info, err := os.Stat(m.path); err == nil && e.UID != 0 && imap.UID(e.UID) < mb.uidNext {
			m.size, m.date = info.Size(), info.ModTime()
			mb.msgs = append(mb.msgs, m)
		}
	}
	sort.Slice(mb.msgs, func(i, j int) bool { return mb.msgs[i].uid < mb.msgs[j].uid })
	mb.tracker = imapserver.NewMailboxTracker(uint32(len(mb.msgs)))
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.scanLocked(true)
	if err := mb.saveLocked(); err != nil {
		return nil, err
	}
	return mb, nil
}

// scan brings the mailbox up to date with its directories: a new file is a new message (EXISTS), a file gone is
// an expunged one.
func (mb *mailbox) scan() {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.scanLocked(false)
}

func (mb *mailbox) scanLocked(force bool) {
	changed := force
	for _, dir := range mb.dirs {
		info, err := os.Stat(dir)
		var t time.Time
		if err == nil {
			t = info.ModTime()
		}
		if !t.Equal(mb.stamps[dir]) {
			changed = true
		}
		mb.stamps[dir] = t
	}
	if !changed {
		return
	}
	present := map[string]os.FileInfo{}
	for _, dir := range mb.dirs {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			mb.s.log.Error("listing a mailbox directory", "mailbox", mb.name, "dir", dir, "err", err)
			return // keep what we have rather than expunge everything
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".eml") || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if info, err := e.Info(); err == nil {
				present[filepath.Join(dir, e.Name())] = info
			}
		}
	}
	dirty := false
	// Gone files are expunged from the highest sequence number down, so that each number stays valid.
	known := map[string]bool{}
	for i := len(mb.msgs) - 1; i >= 0; i-- {
		m := mb.msgs[i]
		if _, ok := present[m.path]; ok {
			known[m.path] = true
			continue
		}
		mb.msgs = append(mb.msgs[:i], mb.msgs[i+1:]...)
		mb.tracker.QueueExpunge(uint32(i + 1))
		dirty = true
	}
	var fresh []string
	for path, info := range present {
		if known[path] {
			continue
		}
		if info.Size() > mb.s.opts.MaxMessageBytes {
			if !mb.skipped[path] {
				mb.s.log.Warn("message larger than the embedded upstream serves: left out", "mailbox", mb.name,
					"file", path, "size", info.Size(), "max", mb.s.opts.MaxMessageBytes)
				mb.skipped[path] = true
			}
			continue
		}
		fresh = append(fresh, path)
	}
	// embedsmtp's names start with the time of storing, so name order is arrival order.
	sort.Slice(fresh, func(i, j int) bool { return filepath.Base(fresh[i]) < filepath.Base(fresh[j]) })
	for _, path := range fresh {
		info := present[path]
		mb.addLocked(&message{path: path, size: info.Size(), date: info.ModTime(), flags: map[imap.Flag]struct{}{}})
		dirty = true
	}
	if dirty {
		if err := mb.saveLocked(); err != nil {
			mb.s.log.Error("saving a mailbox index", "mailbox", mb.name, "err", err)
		}
	}
}

// addLocked gives m the next UID and announces it.
func (mb *mailbox) addLocked(m *message) {
	m.uid = mb.uidNext
	mb.uidNext++
	mb.msgs = append(mb.msgs, m)
	mb.tracker.QueueNumMessages(uint32(len(mb.msgs)))
}

// saveLocked writes the index: to a temporary file, synced, then renamed, so a crash leaves the old or the new.
func (mb *mailbox) saveLocked() error {
	idx := index{UIDValidity: mb.uidValidity, UIDNext: uint32(mb.uidNext), Messages: make([]indexEntry, 0, len(mb.msgs))}
	for _, m := range mb.msgs {
		e := indexEntry{UID: uint32(m.uid), File: m.path}
		for _, f := range m.shown {
			e.Flags = append(e.Flags, string(f))
		}
		idx.Messages = append(idx.Messages, e)
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	return writeFile(filepath.Dir(mb.indexPath), mb.indexPath, b)
}

// writeFile writes b to path through a synced temporary file in dir.
func writeFile(dir, path string, b []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("embedimap: writing %s: %w", path, err)
	}
	return nil
}

// store writes a new message file from r (at most max bytes) and adds it to the mailbox.
func (mb *mailbox) store(r io.Reader, flags []imap.Flag, date time.Time) (*imap.AppendData, error) {
	dir := mb.dirs[0]
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, ".incoming-*")
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(f, io.LimitReader(r, mb.s.opts.MaxMessageBytes+1))
	if err == nil && n > mb.s.opts.MaxMessageBytes {
		err = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too large"}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if date.IsZero() {
		date = now()
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	path := filepath.Join(dir, now().UTC().Format("20060102T150405.000000000Z")+"-"+hex.EncodeToString(b[:])+".eml")
	if err == nil {
		err = os.Chtimes(f.Name(), date, date)
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if err == nil {
		mb.scanLocked(false) // number what arrived before this message first
		// Rename under the lock: a scan must not find the file before it has its UID and flags.
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	m := &message{path: path, size: n, date: date, flags: map[imap.Flag]struct{}{}}
	for _, fl := range flags {
		m.setFlag(fl)
	}
	mb.addLocked(m)
	mb.stamps[dir] = time.Time{} // the rename changed the directory; the next scan must look again
	if err := mb.saveLocked(); err != nil {
		return nil, err
	}
	return &imap.AppendData{UIDValidity: mb.uidValidity, UID: m.uid}, nil
}

// statusLocked answers STATUS (and LIST-STATUS).
func (mb *mailbox) statusLocked(options *imap.StatusOptions) *imap.StatusData {
	data := &imap.StatusData{Mailbox: mb.name}
	count := func(flag imap.Flag) (n uint32) {
		for _, m := range mb.msgs {
			if m.has(flag) {
				n++
			}
		}
		return n
	}
	if options.NumMessages {
		n := uint32(len(mb.msgs))
		data.NumMessages = &n
	}
	if options.UIDNext {
		data.UIDNext = mb.uidNext
	}
	if options.UIDValidity {
		data.UIDValidity = mb.uidValidity
	}
	if options.NumUnseen {
		n := uint32(len(mb.msgs)) - count(imap.FlagSeen)
		data.NumUnseen = &n
	}
	if options.NumDeleted {
		n := count(imap.FlagDeleted)
		data.NumDeleted = &n
	}
	if options.Size {
		var size int64
		for _, m := range mb.msgs {
			size += m.size
		}
		data.Size = &size
	}
	if options.NumRecent {
		n := uint32(0)
		data.NumRecent = &n
	}
	return data
}

// remove deletes the files of the expunged messages (the positions are sequence numbers - 1, highest first).
func (mb *mailbox) removeLocked(positions []int) {
	for _, i := range positions {
		m := mb.msgs[i]
		if err := os.Remove(m.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			mb.s.log.Error("deleting an expunged message", "mailbox", mb.name, "file", m.path, "err", err)
		}
		mb.msgs = append(mb.msgs[:i], mb.msgs[i+1:]...)
		mb.tracker.QueueExpunge(uint32(i + 1))
		mb.s.log.Info("message expunged", "mailbox", mb.name, "uid", m.uid, "file", m.path)
	}
	for _, dir := range mb.dirs {
		mb.stamps[dir] = time.Time{}
	}
	if err := mb.saveLocked(); err != nil {
		mb.s.log.Error("saving a mailbox index", "mailbox", mb.name, "err", err)
	}
}

func canonical(f imap.Flag) imap.Flag { return imap.Flag(strings.ToLower(string(f))) }

func (m *message) has(f imap.Flag) bool { _, ok := m.flags[canonical(f)]; return ok }

func (m *message) setFlag(f imap.Flag) {
	if strings.EqualFold(string(f), `\Recent`) || m.has(f) {
		return
	}
	m.flags[canonical(f)] = struct{}{}
	m.shown = append(m.shown, f)
}

func (m *message) clearFlag(f imap.Flag) {
	if !m.has(f) {
		return
	}
	delete(m.flags, canonical(f))
	for i, s := range m.shown {
		if canonical(s) == canonical(f) {
			m.shown = append(m.shown[:i], m.shown[i+1:]...)
			break
		}
	}
}

func (m *message) flagList() []imap.Flag {
	return append([]imap.Flag{}, m.shown...)
}

func (m *message) store(op imap.StoreFlagsOp, flags []imap.Flag) {
	switch op {
	case imap.StoreFlagsSet:
		m.flags, m.shown = map[imap.Flag]struct{}{}, nil
		fallthrough
	case imap.StoreFlagsAdd:
		for _, f := range flags {
			m.setFlag(f)
		}
	case imap.StoreFlagsDel:
		for _, f := range flags {
			m.clearFlag(f)
		}
	}
}
