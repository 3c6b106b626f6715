package imapproxy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

func TestLoginRelayedAndCapabilities(t *testing.T) {
	up := newMemUpstream(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapMove: {}, imap.CapNamespace: {}})
	r := newRig(t, up, nil)
	c, err := imapclient.DialInsecure(r.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Login("alice", "wrong").Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeAuthenticationFailed {
		t.Fatalf("wrong password: %v, want the upstream's NO [AUTHENTICATIONFAILED]", err)
	}
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has(imap.CapMove) || !caps.Has(imap.CapNamespace) || !caps.Has(imap.CapIdle) {
		t.Errorf("capabilities %v lack what the upstream and proxy both have", caps)
	}
	for _, c := range []imap.Cap{imap.CapUIDPlus, imap.CapCondStore, imap.CapListStatus} {
		if caps.Has(c) {
			t.Errorf("%s advertised though the upstream or the proxy lacks it", c)
		}
	}
	if lim, ok := caps.AppendLimit(); !ok || lim == nil || *lim != DefaultMessageSizeForTest {
		t.Errorf("APPENDLIMIT = %v, want %d", lim, DefaultMessageSizeForTest)
	}
}

const DefaultMessageSizeForTest = 50 << 20

func TestAuthenticatePlain(t *testing.T) {
	r := newRig(t, nil, nil)
	c, err := imapclient.DialInsecure(r.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(saslPlain("alice", "wrong")); err == nil {
		t.Fatal("AUTHENTICATE PLAIN with a wrong password succeeded")
	}
	if err := c.Authenticate(saslPlain("alice", "secret")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestMailboxCommandsRelayed(t *testing.T) {
	r := newRig(t, nil, nil)
	c := r.client(nil)
	if err := c.Create("Projects", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("Projects", "Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "Archive,INBOX,Sent,Work" {
		t.Errorf("LIST = %v", names)
	}
	r.up.add("INBOX", plainMsg)
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true}).Wait()
	if err != nil || st.NumMessages == nil || *st.NumMessages != 1 {
		t.Fatalf("STATUS = %+v, %v", st, err)
	}
	if err := c.Delete("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	err = c.Delete("Nonexistent").Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo {
		t.Errorf("DELETE of a missing mailbox: %v, want the upstream's NO", err)
	}
	if _, err := c.Namespace().Wait(); err != nil {
		t.Errorf("NAMESPACE: %v", err)
	}
}

func TestFetchAnsweredFromFilteredBytes(t *testing.T) {
	r := newRig(t, nil, func(o *Options) { o.ResultHeaders = true })
	r.up.add("INBOX", plainMsg)
	r.up.add("INBOX", multipartMsg)
	c := r.client(nil)
	r.selectBox(c, "INBOX", false)
	whole := fetchOne(t, c, 1, &imap.FetchOptions{RFC822Size: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{{Peek: true}}})
	body := whole.FindBodySection(&imap.FetchItemBodySection{Peek: true})
	if !bytes.Contains(body, []byte("X-Postern-Verdict: accept")) {
		t.Fatalf("BODY[] is not the filtered message:\n%s", body)
	}
	if !bytes.HasSuffix(body, []byte(plainMsg[strings.Index(plainMsg, "From:"):])) && !bytes.Contains(body, []byte("Hello Alice.")) {
		t.Errorf("body lost: %q", body)
	}
	if whole.RFC822Size != int64(len(body)) {
		t.Errorf("RFC822.SIZE %d, BODY[] %d bytes", whole.RFC822Size, len(body))
	}
	if whole.Envelope == nil || whole.Envelope.Subject != "hello" {
		t.Errorf("ENVELOPE = %+v", whole.Envelope)
	}
	if sp, ok := whole.BodyStructure.(*imap.BodyStructureSinglePart); !ok || sp.Size != uint32(len("Hello Alice.\r\n")) {
		t.Errorf("BODYSTRUCTURE = %#v", whole.BodyStructure)
	}
	// Partials: inside, straddling and past the end.
	for _, p := range []struct{ off, n int64 }{{0, 10}, {int64(len(body)) - 5, 100}, {int64(len(body)) + 10, 100}} {
		sec := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: p.off, Size: p.n}}
		m := fetchOne(t, c, 1, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}})
		got := m.FindBodySection(sec)
		lo := min(p.off, int64(len(body)))
		want := body[lo:min(lo+p.n, int64(len(body)))]
		if !bytes.Equal(got, want) {
			t.Errorf("BODY[]<%d.%d> = %q, want %q", p.off, p.n, got, want)
		}
	}
	// Sections of a multipart message and the header fields.
	sec2 := &imap.FetchItemBodySection{Peek: true, Part: []int{2}}
	hdr := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject", "X-Postern-Verdict"}}
	m := fetchOne(t, c, 2, &imap.FetchOptions{RFC822Size: true, BodySection: []*imap.FetchItemBodySection{sec2, hdr},
		BodyStructure: &imap.FetchItemBodyStructure{}})
	if got := string(m.FindBodySection(sec2)); got != "second part" {
		t.Errorf("BODY[2] = %q", got)
	}
	if got := string(m.FindBodySection(hdr)); !strings.Contains(got, "Subject: parts") || !strings.Contains(got, "X-Postern-Verdict") {
		t.Errorf("BODY[HEADER.FIELDS] = %q", got)
	}
	if mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart); !ok || len(mp.Children) != 2 {
		t.Errorf("BODYSTRUCTURE = %#v", m.BodyStructure)
	}
	if n := r.filter.count(); n != 2 {
		t.Errorf("policy ran %d times for two messages fetched part by part, want 2 (the cache)", n)
	}
	env := r.filter.last()
	if env.Protocol != "imap" || env.Direction != "retrieval" || env.Mailbox != "INBOX" || env.UID != 2 ||
		env.UIDValidity == 0 || env.Command != "fetch" || env.MailboxUser != "alice" {
		t.Errorf("plugins saw %+v", env)
	}
	// A second session is served from the cache too.
	c2 := r.client(nil)
	r.selectBox(c2, "INBOX", true)
	again := fetchOne(t, c2, 1, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	if !bytes.Equal(again.FindBodySection(&imap.FetchItemBodySection{Peek: true}), body) {
		t.Error("a second session got other bytes")
	}
	if n := r.filter.count(); n != 2 {
		t.Errorf("policy ran %d times after a second session's FETCH, want 2", n)
	}
	// The upstream's copy is untouched.
	direct := r.up.direct()
	direct.Select("INBOX", nil).Wait()
	msgs, _ := direct.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if got := string(msgs[0].FindBodySection(&imap.FetchItemBodySection{Peek: true})); got != plainMsg {
		t.Errorf("upstream copy changed: %q", got)
	}
}

func TestFetchWithheldNotice(t *testing.T) {
	r := newRig(t, nil, nil)
	r.up.add("INBOX", plainMsg)
	r.filter.set(func(*pluginhost.Input) *policy.Decision {
		return &policy.Decision{Action: pluginhost.Reject, Text: "EICAR test signature", DecidedBy: "antivirus"}
	})
	read := func() []byte {
		c := r.client(nil)
		r.selectBox(c, "INBOX", true)
		m := fetchOne(t, c, 1, &imap.FetchOptions{RFC822Size: true, UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		b := m.FindBodySection(&imap.FetchItemBodySection{Peek: true})
		if m.RFC822Size != int64(len(b)) || m.UID != 1 {
			t.Errorf("notice: RFC822.SIZE %d, %d bytes, UID %d", m.RFC822Size, len(b), m.UID)
		}
		return b
	}
	first := read()
	if !bytes.Contains(first, []byte("withheld")) || !bytes.Contains(first, []byte("EICAR test signature")) {
		t.Fatalf("not a notice:\n%s", first)
	}
	// Not cached: filtered again, and still the same bytes.
	r.srv.cache = mustCache(t)
	second := read()
	if !bytes.Equal(first, second) {
		t.Errorf("the notice changed between fetches:\n%s\n---\n%s", first, second)
	}
	// Read twice, kept once: the entry that keeps the original is the one both records name, linked to the
	// first, and the reference the notice quotes names it.
	emls, _ := filepath.Glob(filepath.Join(r.qdir, "*.eml"))
	if len(emls) != 1 {
		t.Fatalf("%d originals kept for a message read twice, want 1: %v", len(emls), emls)
	}
	orig, _ := os.ReadFile(emls[0])
	if string(orig) != plainMsg {
		t.Errorf("quarantined copy differs: %q", orig)
	}
	entry := strings.TrimSuffix(filepath.Base(emls[0]), ".eml")
	var withheld []*audit.Record
	for _, rec := range r.audit.all() {
		if rec.Withheld != "" && rec.Protocol == "imap" {
			withheld = append(withheld, rec)
			if rec.Withheld != entry {
				t.Errorf("record %d: withheld %q, want the entry %q", rec.Seq, rec.Withheld, entry)
			}
		}
	}
	if len(withheld) != 2 {
		t.Fatalf("%d withheld records, want 2", len(withheld))
	}
	q, err := mailflow.OpenQuarantine(r.qdir)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := q.Get(entry); err != nil || m.AuditSeq != withheld[0].Seq {
		t.Errorf("entry %s linked to record %v (%v), want %d", entry, m, err, withheld[0].Seq)
	}
	ref := regexp.MustCompile(`imap-[0-9a-f]{16}`).Find(first)
	if got, err := q.Resolve(string(ref)); err != nil || got != entry {
		t.Errorf("the notice's reference %q names %q (%v), want %q", ref, got, err, entry)
	}
}

// TestFetchQuarantinedOnce: a message the policy quarantines at FETCH is kept once however often it is read.
func TestFetchQuarantinedOnce(t *testing.T) {
	r := newRig(t, nil, nil)
	r.up.add("INBOX", plainMsg)
	r.filter.set(func(*pluginhost.Input) *policy.Decision {
		return &policy.Decision{Action: pluginhost.Quarantine, Text: "held for review", DecidedBy: "dlp"}
	})
	for range 2 {
		r.srv.cache = mustCache(t)
		c := r.client(nil)
		r.selectBox(c, "INBOX", true)
		fetchOne(t, c, 1, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	}
	emls, _ := filepath.Glob(filepath.Join(r.qdir, "*.eml"))
	if len(emls) != 1 {
		t.Fatalf("%d copies kept, want 1: %v", len(emls), emls)
	}
	entry := strings.TrimSuffix(filepath.Base(emls[0]), ".eml")
	for _, rec := range r.audit.all() {
		if rec.Protocol == "imap" && rec.Action == "quarantine" && rec.Withheld != entry {
			t.Errorf("record %d: withheld %q, want %q", rec.Seq, rec.Withheld, entry)
		}
	}
}

func mustCache(t *testing.T) *resultCache {
	c, err := newResultCache(Cache{MemoryBytes: 1 << 20, EntryBytes: 1 << 20, UserBytes: 1 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFetchTempfail(t *testing.T) {
	r := newRig(t, nil, nil)
	r.up.add("INBOX", plainMsg)
	r.up.add("INBOX", multipartMsg)
	r.filter.set(func(in *pluginhost.Input) *policy.Decision {
		if in.Env.UID == 1 {
			return &policy.Decision{Action: pluginhost.Tempfail, Text: "scanner busy"}
		}
		return &policy.Decision{Action: pluginhost.Accept}
	})
	c := r.client(nil)
	r.selectBox(c, "INBOX", false)
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{RFC822Size: true}).Collect()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeUnavailable {
		t.Fatalf("FETCH with a tempfailed message: %v, want NO [UNAVAILABLE]", err)
	}
	if len(msgs) != 1 || msgs[0].SeqNum != 2 {
		t.Errorf("the other message was not served: %+v", msgs)
	}
}

func TestFetchSetsSeenOnceNotUnderExamine(t *testing.T) {
	r := newRig(t, nil, nil)
	r.up.add("INBOX", plainMsg)
	r.up.add("INBOX", multipartMsg)
	c := r.client(nil)
	seenUpstream := func(seq uint32) bool {
		d := r.up.direct()
		d.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		m, _ := d.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{Flags: true}).Collect()
		return slices.Contains(m[0].Flags, imap.FlagSeen)
	}
	r.selectBox(c, "INBOX", true)
	fetchOne(t, c, 1, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}})
	if seenUpstream(1) {
		t.Error("BODY[] under EXAMINE set \\Seen")
	}
	r.selectBox(c, "INBOX", false)
	fetchOne(t, c, 2, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	if seenUpstream(2) {
		t.Error("BODY.PEEK[] set \\Seen")
	}
	m := fetchOne(t, c, 1, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}})
	if !slices.Contains(m.Flags, imap.FlagSeen) {
		t.Errorf("client not told of \\Seen: flags %v", m.Flags)
	}
	if !seenUpstream(1) {
		t.Error("BODY[] did not set \\Seen upstream")
	}
}

func TestAppendThroughOutboundPolicy(t *testing.T) {
	r := newRig(t, nil, func(o *Options) { o.ResultHeaders = true })
	c := r.client(nil)
	appendMsg := func(msg string) (*imap.AppendData, error) {
		cmd := c.Append("Sent", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
		cmd.Write([]byte(msg))
		cmd.Close()
		return cmd.Wait()
	}
	d, err := appendMsg(plainMsg)
	if err != nil {
		t.Fatal(err)
	}
	if d.UID == 0 || d.UIDValidity == 0 {
		t.Errorf("APPENDUID not passed back: %+v", d)
	}
	env := r.filter.last()
	if env.Direction != "outbound" || env.Command != "append" || env.Mailbox != "Sent" || env.UID != 0 ||
		!slices.Contains(env.Flags, `\Seen`) {
		t.Errorf("plugins saw %+v", env)
	}
	r.filter.set(func(*pluginhost.Input) *policy.Decision {
		return &policy.Decision{Action: pluginhost.Reject, Text: "Confidential content"}
	})
	_, err = appendMsg(multipartMsg)
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || !strings.Contains(ie.Text, "Confidential content") {
		t.Errorf("rejected APPEND: %v", err)
	}
	r.filter.set(func(*pluginhost.Input) *policy.Decision {
		return &policy.Decision{Action: pluginhost.Tempfail, Text: "later"}
	})
	_, err = appendMsg(multipartMsg)
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeUnavailable {
		t.Errorf("tempfailed APPEND: %v, want NO [UNAVAILABLE]", err)
	}
	r.filter.set(func(*pluginhost.Input) *policy.Decision {
		return &policy.Decision{Action: pluginhost.Quarantine, Text: "held"}
	})
	if _, err = appendMsg(multipartMsg); err == nil {
		t.Error("quarantined APPEND answered OK")
	}
	if emls, _ := filepath.Glob(filepath.Join(r.qdir, "*.eml")); len(emls) != 1 {
		t.Errorf("%d quarantined copies, want 1", len(emls))
	}
	r.filter.set(func(*pluginhost.Input) *policy.Decision {
		return &policy.Decision{Action: pluginhost.Discard}
	})
	if d, err := appendMsg(multipartMsg); err != nil || d.UID != 0 {
		t.Errorf("discarded APPEND = %+v, %v; want OK without APPENDUID", d, err)
	}
	direct := r.up.direct()
	sd, _ := direct.Select("Sent", nil).Wait()
	if sd.NumMessages != 1 {
		t.Fatalf("Sent holds %d messages upstream, want only the accepted one", sd.NumMessages)
	}
	msgs, _ := direct.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if got := string(msgs[0].FindBodySection(&imap.FetchItemBodySection{Peek: true})); !strings.Contains(got, "X-Postern-Verdict") {
		t.Errorf("the stored copy is not the changed message: %q", got)
	}
	var appends int
	for _, rec := range r.audit.all() {
		if rec.Protocol == "imap" {
			appends++
		}
	}
	if appends != 5 {
		t.Errorf("%d audit records for 5 APPENDs", appends)
	}
}

func TestSequenceNumbersFollowUpstreamExpunge(t *testing.T) {
	r := newRig(t, nil, nil)
	for _, s := range []string{"one", "two", "three"} {
		r.up.add("INBOX", strings.Replace(plainMsg, "hello", s, 1))
	}
	var mu syncList
	c := r.client(&imapclient.UnilateralDataHandler{Expunge: func(seq uint32) { mu.add(seq) }})
	r.selectBox(c, "INBOX", false)
	// Another client deletes the first message.
	d := r.up.direct()
	d.Select("INBOX", nil).Wait()
	d.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	d.Expunge().Close()
	// FETCH may not announce it: the client still numbers "two" as 2.
	m := fetchOne(t, c, 2, &imap.FetchOptions{Envelope: true, UID: true})
	if m.UID != 2 || m.Envelope.Subject != "two" {
		t.Errorf("before NOOP, message 2 is UID %d %q", m.UID, m.Envelope.Subject)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if got := mu.get(); len(got) != 1 || got[0] != 1 {
		t.Errorf("EXPUNGEs after NOOP = %v, want [1]", got)
	}
	m = fetchOne(t, c, 1, &imap.FetchOptions{Envelope: true, UID: true})
	if m.UID != 2 || m.Envelope.Subject != "two" {
		t.Errorf("after the expunge message 1 is UID %d %q, want UID 2 \"two\"", m.UID, m.Envelope.Subject)
	}
	// New mail is announced and filtered when it arrives.
	before := r.filter.count()
	r.up.add("INBOX", strings.Replace(plainMsg, "hello", "four", 1))
	d.Noop().Wait()
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 3 {
		t.Errorf("client counts %d messages, want 3", n)
	}
	if r.filter.count() != before+1 {
		t.Errorf("new message not filtered at its EXISTS (policy calls %d → %d)", before, r.filter.count())
	}
	m = fetchOne(t, c, 3, &imap.FetchOptions{Envelope: true, UID: true})
	if m.UID != 4 || m.Envelope.Subject != "four" {
		t.Errorf("message 3 = UID %d %q", m.UID, m.Envelope.Subject)
	}
	if r.filter.count() != before+1 {
		t.Error("the new message's FETCH ran the policy again")
	}
	// SEARCH with sequence numbers, and ESEARCH computed by the proxy.
	sd, err := c.Search(&imap.SearchCriteria{SeqNum: []imap.SeqSet{imap.SeqSetNum(2, 3)}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := sd.AllSeqNums(); !slices.Equal(got, []uint32{2, 3}) {
		t.Errorf("SEARCH 2,3 = %v", got)
	}
	sd, err = c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "four"}}},
		&imap.SearchOptions{ReturnCount: true, ReturnMin: true}).Wait()
	if err != nil || sd.Count != 1 || sd.Min != 4 {
		t.Errorf("UID SEARCH RETURN (COUNT MIN) = %+v, %v", sd, err)
	}
	// Our own STORE and EXPUNGE.
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	exp, err := c.Expunge().Collect()
	if err != nil || !slices.Equal(exp, []uint32{1}) {
		t.Errorf("EXPUNGE = %v, %v", exp, err)
	}
	// MOVE with COPYUID.
	md, err := c.Move(imap.SeqSetNum(1), "Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if md.UIDValidity == 0 {
		t.Errorf("MOVE gave no COPYUID: %+v", md)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Errorf("after MOVE the client counts %d messages, want 1", n)
	}
	cd, err := c.Copy(imap.SeqSetNum(1), "Archive").Wait()
	if err != nil || cd.UIDValidity == 0 {
		t.Errorf("COPY = %+v, %v", cd, err)
	}
}

type syncList struct {
	mu   chan struct{}
	nums []uint32
}

func (l *syncList) add(n uint32) {
	l.lock()
	l.nums = append(l.nums, n)
	l.unlock()
}
func (l *syncList) get() []uint32 {
	l.lock()
	defer l.unlock()
	return slices.Clone(l.nums)
}
func (l *syncList) lock() {
	if l.mu == nil {
		l.mu = make(chan struct{}, 1)
	}
	l.mu <- struct{}{}
}
func (l *syncList) unlock() { <-l.mu }

func TestIdleDeliversNewMail(t *testing.T) {
	// The keep-alive (a repeated * 1 EXISTS) says the proxy's IDLE upstream is running: imapmemserver announces
	// only what arrives after its IDLE began.
	r := newRig(t, nil, func(o *Options) { o.IdleKeepalive = 100 * time.Millisecond })
	r.up.add("INBOX", plainMsg)
	exists := make(chan uint32, 10)
	c := r.client(&imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
		if d.NumMessages != nil {
			exists <- *d.NumMessages
		}
	}})
	r.selectBox(c, "INBOX", false)
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		if n != 1 {
			t.Fatalf("keep-alive EXISTS %d, want 1", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no keep-alive during IDLE")
	}
	d := r.up.direct()
	d.Select("INBOX", nil).Wait()
	cmd := d.Append("INBOX", int64(len(plainMsg)), nil)
	cmd.Write([]byte(plainMsg))
	cmd.Close()
	cmd.Wait()
	for n := uint32(1); n == 1; {
		select {
		case n = <-exists:
			if n != 1 && n != 2 {
				t.Fatalf("EXISTS %d, want 2", n)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no EXISTS during IDLE")
		}
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}
