package embedimap_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/proxy/embedimap"
)

type env struct {
	inbox, state string
	srv          *embedimap.Server
	logs         *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{inbox: filepath.Join(dir, "mail"), state: filepath.Join(dir, "state")}
	if err := os.MkdirAll(e.inbox, 0o700); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) start(t *testing.T, opts embedimap.Options) {
	t.Helper()
	e.logs = &lockedBuffer{}
	opts.InboxDirs = []string{e.inbox}
	opts.StateDir = e.state
	opts.Logger = slog.New(slog.NewTextHandler(e.logs, nil))
	srv, err := embedimap.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	t.Cleanup(func() { srv.Close() })
}

func (e *env) restart(t *testing.T) {
	t.Helper()
	e.srv.Close()
	e.start(t, embedimap.Options{})
}

// deliver stores a message as embedsmtp does: a temporary file renamed to a name that starts with the time.
func (e *env) deliver(t *testing.T, n int, body string) string {
	t.Helper()
	name := fmt.Sprintf("20260101T0000%02d.000000000Z-%06d.eml", n, n)
	tmp := filepath.Join(e.inbox, ".incoming-"+name)
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.inbox, name)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func msg(subject, text string) string {
	return "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@example.com>\r\n\r\n" + text + "\r\n"
}

type client struct {
	*imapclient.Client
	mu      sync.Mutex
	exists  []uint32
	expunge []uint32
	notify  chan struct{}
}

func (e *env) dial(t *testing.T) *client {
	t.Helper()
	conn, err := e.srv.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := &client{notify: make(chan struct{}, 100)}
	c.Client = imapclient.New(conn, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				c.mu.Lock()
				c.exists = append(c.exists, *d.NumMessages)
				c.mu.Unlock()
				c.notify <- struct{}{}
			}
		},
		Expunge: func(seq uint32) {
			c.mu.Lock()
			c.expunge = append(c.expunge, seq)
			c.mu.Unlock()
			c.notify <- struct{}{}
		},
	}})
	t.Cleanup(func() { c.Close() })
	if err := c.Login("anyone", "any password").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *client) lastExists() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.exists) == 0 {
		return 0
	}
	return c.exists[len(c.exists)-1]
}

func fetchAll(t *testing.T, c *client, set imap.NumSet, opts *imap.FetchOptions) []*imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(set, opts).Collect()
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

var whole = &imap.FetchItemBodySection{Peek: true}

func body(m *imapclient.FetchMessageBuffer) string {
	for _, s := range m.BodySection {
		return string(s.Bytes)
	}
	return ""
}

func TestInboxServesStoredFilesWithStableUIDs(t *testing.T) {
	e := newEnv(t)
	m1, m2 := msg("one", "first"), msg("two", "second")
	e.deliver(t, 1, m1)
	e.deliver(t, 2, m2)
	// A hidden temporary file and a file of another kind are not messages.
	os.WriteFile(filepath.Join(e.inbox, ".incoming-x"), []byte(msg("tmp", "x")), 0o600)
	os.WriteFile(filepath.Join(e.inbox, "notes.txt"), []byte("x"), 0o600)
	e.start(t, embedimap.Options{})
	c := e.dial(t)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 || sel.UIDNext != 3 || sel.UIDValidity == 0 {
		t.Fatalf("SELECT = %+v, want 2 messages, UIDNEXT 3", sel)
	}
	got := fetchAll(t, c, imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, RFC822Size: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, BodySection: []*imap.FetchItemBodySection{whole}})
	if len(got) != 2 {
		t.Fatalf("fetched %d messages", len(got))
	}
	for i, want := range []string{m1, m2} {
		m := got[i]
		if m.UID != imap.UID(i+1) || body(m) != want || m.RFC822Size != int64(len(want)) {
			t.Errorf("message %d: UID %d size %d body %q, want UID %d and %q", i+1, m.UID, m.RFC822Size, body(m), i+1, want)
		}
		if m.Envelope == nil || m.Envelope.Subject != []string{"one", "two"}[i] {
			t.Errorf("message %d: envelope %+v", i+1, m.Envelope)
		}
		if m.BodyStructure == nil || m.BodyStructure.MediaType() != "text/plain" {
			t.Errorf("message %d: body structure %+v", i+1, m.BodyStructure)
		}
	}
	validity := sel.UIDValidity

	// A new file is a new message with the next UID, announced at the next command.
	e.deliver(t, 3, msg("three", "third"))
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.lastExists(); n != 3 {
		t.Fatalf("EXISTS after a new file = %d, want 3", n)
	}
	got = fetchAll(t, c, imap.SeqSetNum(3), &imap.FetchOptions{UID: true})
	if len(got) != 1 || got[0].UID != 3 {
		t.Fatalf("new message: %+v", got)
	}
	if err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Label1"}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()

	// Across a restart the UIDs, UIDVALIDITY and flags stay; a message delivered while it was down comes next.
	e.restart(t)
	e.deliver(t, 4, msg("four", "fourth"))
	c = e.dial(t)
	sel, err = c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.UIDValidity != validity || sel.NumMessages != 4 || sel.UIDNext != 5 {
		t.Fatalf("after restart SELECT = %+v, want UIDVALIDITY %d, 4 messages, UIDNEXT 5", sel, validity)
	}
	got = fetchAll(t, c, imap.SeqSetNum(1, 2, 3, 4), &imap.FetchOptions{UID: true, Flags: true, Envelope: true})
	for i, m := range got {
		if m.UID != imap.UID(i+1) || m.Envelope.Subject != []string{"one", "two", "three", "four"}[i] {
			t.Errorf("after restart message %d: UID %d subject %q", i+1, m.UID, m.Envelope.Subject)
		}
	}
	if fl := fmt.Sprint(got[1].Flags); fl != `[\Flagged $Label1]` {
		t.Errorf("flags after restart = %s", fl)
	}
}

func TestUnreadableIndexGetsNewUIDValidity(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, 1, msg("one", "x"))
	e.start(t, embedimap.Options{})
	c := e.dial(t)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	e.srv.Close()
	if err := os.WriteFile(filepath.Join(e.state, "INBOX.index"), []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // UIDVALIDITY is the time in seconds: the new one must differ
	e.start(t, embedimap.Options{})
	c = e.dial(t)
	sel2, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel2.UIDValidity == sel.UIDValidity || sel2.NumMessages != 1 {
		t.Fatalf("UIDVALIDITY %d then %d (%d messages): a lost index must change it", sel.UIDValidity, sel2.UIDValidity, sel2.NumMessages)
	}
	if !strings.Contains(e.logs.String(), "mailbox index unreadable") {
		t.Errorf("no log line for the broken index:\n%s", e.logs)
	}
}

func TestAppendToSentAndDrafts(t *testing.T) {
	e := newEnv(t)
	// Over 4096 bytes: imapserver takes smaller non-synchronising literals (LITERAL-) before it checks the limit.
	e.start(t, embedimap.Options{MaxMessageBytes: 5000})
	c := e.dial(t)
	if lim := c.Caps(); lim == nil {
		t.Fatal("no capabilities")
	}
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := caps.AppendLimit(); !ok || l == nil || *l != 5000 {
		t.Errorf("APPENDLIMIT = %v %v, want 5000", l, ok)
	}
	for _, cap := range []imap.Cap{imap.CapUIDPlus, imap.CapMove, imap.CapSpecialUse, imap.CapIdle} {
		if !caps.Has(cap) {
			t.Errorf("capability %s missing", cap)
		}
	}
	sent := msg("sent", "a sent message")
	date := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	ad := appendMsg(t, c, "Sent", sent, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: date})
	if ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("APPENDUID = %+v", ad)
	}
	appendMsg(t, c, "Drafts", msg("draft", "a draft"), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft}})
	files, _ := filepath.Glob(filepath.Join(e.state, "Sent", "*.eml"))
	if len(files) != 1 {
		t.Fatalf("Sent files: %v", files)
	}
	if b, _ := os.ReadFile(files[0]); string(b) != sent {
		t.Fatalf("stored %q, want %q", b, sent)
	}
	if _, err := c.Select("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got := fetchAll(t, c, imap.UIDSetNum(1), &imap.FetchOptions{UID: true, Flags: true, InternalDate: true,
		BodySection: []*imap.FetchItemBodySection{whole}})
	if len(got) != 1 || body(got[0]) != sent || !got[0].InternalDate.Equal(date) || fmt.Sprint(got[0].Flags) != `[\Seen]` {
		t.Fatalf("fetched %+v", got)
	}

	// Errors a client acts on: TRYCREATE for a missing mailbox, TOOBIG past the limit, CANNOT for CREATE.
	wantCode := func(err error, code imap.ResponseCode) {
		t.Helper()
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Code != code {
			t.Errorf("error %v, want [%s]", err, code)
		}
	}
	wantCode(appendErr(c, "Nowhere", msg("x", "x")), imap.ResponseCodeTryCreate)
	wantCode(c.Create("Archive", nil).Wait(), imap.ResponseCodeCannot)
	wantCode(c.Create("Sent", nil).Wait(), imap.ResponseCodeAlreadyExists)
	// Last: imapclient closes the connection when a literal is refused.
	wantCode(appendErr(c, "Sent", msg("big", strings.Repeat("x", 5000))), imap.ResponseCodeTooBig)
	if files, _ := filepath.Glob(filepath.Join(e.state, "Sent", "*")); len(files) != 1 {
		t.Errorf("a refused APPEND left files: %v", files)
	}
}

func appendMsg(t *testing.T, c *client, mailbox, m string, opts *imap.AppendOptions) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(m)), opts)
	io.WriteString(cmd, m)
	cmd.Close()
	ad, err := cmd.Wait()
	if err != nil {
		t.Fatalf("APPEND %s: %v", mailbox, err)
	}
	return ad
}

func appendErr(c *client, mailbox, m string) error {
	cmd := c.Append(mailbox, int64(len(m)), nil)
	io.WriteString(cmd, m)
	cmd.Close()
	_, err := cmd.Wait()
	return err
}

func TestListSpecialUse(t *testing.T) {
	e := newEnv(t)
	e.start(t, embedimap.Options{})
	c := e.dial(t)
	list, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range list {
		got = append(got, fmt.Sprint(l.Mailbox, l.Attrs, *l.Status.NumMessages))
	}
	want := `[INBOX[\HasNoChildren] 0 Drafts[\HasNoChildren \Drafts] 0 Sent[\HasNoChildren \Sent] 0 Trash[\HasNoChildren \Trash] 0]`
	if fmt.Sprint(got) != want {
		t.Errorf("LIST = %s\nwant   %s", got, want)
	}
	list, err = c.List("", "*", &imap.ListOptions{SelectSpecialUse: true}).Collect()
	if err != nil || len(list) != 3 {
		t.Errorf("LIST (SPECIAL-USE) = %v, %v; want Drafts, Sent, Trash", list, err)
	}
}

func TestSeenExpungeAndMove(t *testing.T) {
	e := newEnv(t)
	paths := []string{e.deliver(t, 1, msg("one", "1")), e.deliver(t, 2, msg("two", "2")), e.deliver(t, 3, msg("three", "3"))}
	e.start(t, embedimap.Options{})
	c := e.dial(t)

	// EXAMINE never sets \Seen; a non-PEEK BODY[] under SELECT does, and it persists.
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}})
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err == nil {
		t.Error("STORE under EXAMINE succeeded")
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true})
	if len(got[0].Flags) != 0 {
		t.Fatalf("flags after a FETCH under EXAMINE: %v", got[0].Flags)
	}
	fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}})
	got = fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true})
	if fmt.Sprint(got[0].Flags) != `[\Seen]` {
		t.Fatalf("flags after FETCH BODY[] = %v, want \\Seen", got[0].Flags)
	}

	// MOVE to Trash: COPYUID, the file moves, the source is expunged.
	md, err := c.Move(imap.UIDSetNum(2), "Trash").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if md.UIDValidity == 0 || fmt.Sprint(md.SourceUIDs) != "2" || fmt.Sprint(md.DestUIDs) != "1" {
		t.Errorf("MOVE data = %+v", md)
	}
	if _, err := os.Stat(paths[1]); !os.IsNotExist(err) {
		t.Errorf("the moved message's file is still in INBOX: %v", err)
	}
	if trash, _ := filepath.Glob(filepath.Join(e.state, "Trash", "*.eml")); len(trash) != 1 {
		t.Errorf("Trash files: %v", trash)
	}

	// \Deleted and EXPUNGE remove the file.
	if err := c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	seqs, err := c.Expunge().Collect()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[2]" {
		t.Errorf("EXPUNGE answered %v, want [2]", seqs)
	}
	if _, err := os.Stat(paths[2]); !os.IsNotExist(err) {
		t.Errorf("the expunged message's file is still there: %v", err)
	}
	c.mu.Lock()
	expunged := fmt.Sprint(c.expunge)
	c.mu.Unlock()
	if expunged != "[2]" {
		t.Errorf("EXPUNGE responses of MOVE %s, want [2]", expunged)
	}

	// A file removed behind its back (a POP3 client deleted it) is expunged at the next command.
	os.Remove(paths[0])
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	sd, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *sd.NumMessages != 0 {
		t.Fatalf("STATUS after removing every file: %+v %v", sd, err)
	}
}

func TestSearch(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, 1, msg("invoice", "please pay"))
	e.deliver(t, 2, msg("hello", "nothing to pay"))
	e.deliver(t, 3, msg("meeting", "tomorrow"))
	e.start(t, embedimap.Options{})
	c := e.dial(t)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		criteria *imap.SearchCriteria
		want     string
	}{
		{&imap.SearchCriteria{Body: []string{"PAY"}}, "1:2"},
		{&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "meet"}}}, "3"},
		{&imap.SearchCriteria{Not: []imap.SearchCriteria{{Text: []string{"pay"}}}}, "3"},
		{&imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(2, 3)}, Body: []string{"pay"}}, "2"},
	} {
		sd, err := c.UIDSearch(tc.criteria, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if got := sd.All.String(); got != tc.want {
			t.Errorf("UID SEARCH %+v = %s, want %s", tc.criteria, got, tc.want)
		}
	}
}

func TestIdleAnnouncesNewMail(t *testing.T) {
	e := newEnv(t)
	e.start(t, embedimap.Options{})
	c := e.dial(t)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	e.deliver(t, 1, msg("pushed", "x"))
	select {
	case <-c.notify:
	case <-time.After(30 * time.Second):
		t.Fatal("no EXISTS during IDLE")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.lastExists(); n != 1 {
		t.Fatalf("EXISTS %d, want 1", n)
	}
}

func TestLargeFileLeftOut(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, 1, msg("big", strings.Repeat("x", 200)))
	e.deliver(t, 2, msg("small", "x"))
	e.start(t, embedimap.Options{MaxMessageBytes: 150})
	c := e.dial(t)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 1 {
		t.Fatalf("%d messages, want the small one only", sel.NumMessages)
	}
	if !strings.Contains(e.logs.String(), "left out") {
		t.Errorf("no log line for the large file:\n%s", e.logs)
	}
}

func TestTwoSessionsSeeEachOthersChanges(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, 1, msg("one", "1"))
	e.start(t, embedimap.Options{})
	a, b := e.dial(t), e.dial(t)
	for _, c := range []*client{a, b} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	appendMsg(t, a, "INBOX", msg("two", "2"), nil)
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := b.lastExists(); n != 2 {
		t.Fatalf("the other session saw EXISTS %d, want 2", n)
	}
	got := fetchAll(t, b, imap.SeqSetNum(2), &imap.FetchOptions{UID: true, Envelope: true})
	if len(got) != 1 || got[0].UID != 2 || got[0].Envelope.Subject != "two" {
		t.Fatalf("fetched %+v", got)
	}
	// The appended message went to the first INBOX directory, so POP3 sees it too.
	if files, _ := filepath.Glob(filepath.Join(e.inbox, "*.eml")); len(files) != 2 {
		t.Errorf("INBOX files: %v", files)
	}
}
