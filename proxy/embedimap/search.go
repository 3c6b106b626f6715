package embedimap

// The matching rules follow go-imap's imapmemserver (MIT licence, Copyright (c) 2013 The Go-IMAP Authors), the
// reference behaviour of the server library this package is built on.

import (
	"bytes"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

func (ss *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	mb := ss.mb
	mb.mu.Lock()
	defer mb.mu.Unlock()
	ss.staticCriteria(criteria)
	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
	)
	for i, m := range mb.msgs {
		seq := ss.view.EncodeSeqNum(uint32(i + 1))
		sm := searched{message: m, max: ss.s.opts.MaxMessageBytes}
		if !sm.match(seq, criteria) {
			continue
		}
		uidSet.AddNum(m.uid)
		var num uint32
		switch kind {
		case imapserver.NumKindSeq:
			if seq == 0 {
				continue
			}
			seqSet.AddNum(seq)
			num = seq
		case imapserver.NumKindUID:
			num = uint32(m.uid)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqSet
	} else {
		data.All = uidSet
	}
	if options.ReturnSave {
		ss.searchRes = uidSet
	}
	return &data, nil
}

// staticCriteria replaces "*" and "$" in the criteria's sets.
func (ss *session) staticCriteria(c *imap.SearchCriteria) {
	seqs := make([]imap.SeqSet, 0, len(c.SeqNum))
	for _, set := range c.SeqNum {
		var ns imap.NumSet = set
		if imap.IsSearchRes(set) {
			ns = ss.searchRes
		}
		switch s := ss.static(ns).(type) {
		case imap.SeqSet:
			seqs = append(seqs, s)
		case imap.UIDSet:
			c.UID = append(c.UID, s)
		}
	}
	c.SeqNum = seqs
	for i, set := range c.UID {
		if imap.IsSearchRes(set) {
			c.UID[i] = ss.searchRes
			continue
		}
		c.UID[i] = ss.static(set).(imap.UIDSet)
	}
	for i := range c.Not {
		ss.staticCriteria(&c.Not[i])
	}
	for i := range c.Or {
		ss.staticCriteria(&c.Or[i][0])
		ss.staticCriteria(&c.Or[i][1])
	}
}

// searched is a message being searched; its file is read once, when a criterion needs its content.
type searched struct {
	*message
	max  int64
	buf  []byte
	read bool
}

func (sm *searched) content() []byte {
	if !sm.read {
		sm.buf, _ = readMessage(sm.path, sm.max)
		sm.read = true
	}
	return sm.buf
}

func (sm *searched) entity() *gomessage.Entity {
	e, _ := gomessage.Read(bytes.NewReader(sm.content()))
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
	}
	return e
}

func (sm *searched) match(seq uint32, c *imap.SearchCriteria) bool {
	for _, set := range c.SeqNum {
		if seq == 0 || !set.Contains(seq) {
			return false
		}
	}
	for _, set := range c.UID {
		if !set.Contains(sm.uid) {
			return false
		}
	}
	if !matchDate(sm.date, c.Since, c.Before) {
		return false
	}
	for _, f := range c.Flag {
		if !sm.has(f) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if sm.has(f) {
			return false
		}
	}
	if c.Larger != 0 && sm.size <= c.Larger {
		return false
	}
	if c.Smaller != 0 && sm.size >= c.Smaller {
		return false
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		h := mail.Header{Header: sm.entity().Header}
		for _, hc := range c.Header {
			if !matchFields(h.FieldsByKey(hc.Key), hc.Value) {
				return false
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			t, err := h.Date()
			if err != nil || !matchDate(t, c.SentSince, c.SentBefore) {
				return false
			}
		}
	}
	for _, text := range c.Text {
		if !matchEntity(sm.entity(), text, true) {
			return false
		}
	}
	for _, body := range c.Body {
		if !matchEntity(sm.entity(), body, false) {
			return false
		}
	}
	for i := range c.Not {
		if sm.match(seq, &c.Not[i]) {
			return false
		}
	}
	for _, or := range c.Or {
		if !sm.match(seq, &or[0]) && !sm.match(seq, &or[1]) {
			return false
		}
	}
	return true
}

// matchDate compares days without their zone, as RFC 3501 §6.4.4 asks.
func matchDate(t, since, before time.Time) bool {
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	return before.IsZero() || t.Before(before)
}

func matchFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		if v, _ := fields.Text(); strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

func matchEntity(e *gomessage.Entity, pattern string, withHeader bool) bool {
	if pattern == "" {
		return true
	}
	if withHeader && matchFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(part, pattern, withHeader) {
				return true
			}
		}
	}
	t, _, err := e.Header.ContentType()
	if err != nil && t == "" {
		t = "text/plain"
	}
	if !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, err := io.ReadAll(e.Body)
	if err != nil {
		return false
	}
	return bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(pattern)))
}
