package pop3proxy

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

func TestLoginIsRelayed(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	r := newRig(t, up, nil)
	c := r.dial()
	if resp := c.cmd("STAT"); resp.OK {
		t.Fatal("STAT before login answered +OK")
	}
	c.ok("USER alice")
	resp := c.cmd("PASS wrong")
	if resp.OK || resp.Code != "AUTH" {
		t.Fatalf("wrong password: %s (want the upstream's -ERR [AUTH])", resp.Line())
	}
	c.ok("USER alice")
	c.ok("PASS secret")
	if resp := c.ok("STAT"); resp.Text != fmt.Sprintf("1 %d", len(msg1)) {
		t.Fatalf("STAT %q", resp.Text)
	}
	if resp := c.cmd("USER bob"); resp.OK {
		t.Fatal("USER after login answered +OK")
	}
	c.ok("QUIT")
	if !contains(up.seen(), "PASS ***") {
		t.Fatalf("the upstream saw no PASS: %v", up.seen())
	}
}

func TestPasswordWithSpaces(t *testing.T) {
	up := newTestUpstream(t)
	up.users["carol"] = "two words"
	r := newRig(t, up, nil)
	c := r.dial()
	c.ok("USER carol")
	c.ok("PASS two words")
}

func TestInsecureAuthRefused(t *testing.T) {
	up := newTestUpstream(t)
	r := newRig(t, up, func(o *Options) { o.AllowInsecureAuth = false })
	c := r.dial()
	c.ok("CAPA")
	if caps := c.lines(); contains(caps, "USER") || contains(caps, "SASL") {
		t.Fatalf("CAPA offers passwords on a plain connection: %v", caps)
	}
	if resp := c.cmd("USER alice"); resp.OK || resp.Code != "AUTH" {
		t.Fatalf("USER on a plain connection: %s", resp.Line())
	}
	if contains(up.seen(), "USER") {
		t.Fatal("the user name went upstream")
	}
}

func TestAuthPlainAndLoginAreRelayed(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	r := newRig(t, up, nil)
	c := r.dial()
	c.ok("AUTH PLAIN AGFsaWNlAHNlY3JldA==") // \0alice\0secret
	c.ok("STAT")

	c = r.dial()
	c.c.Send("AUTH LOGIN")
	if resp, _ := c.c.Conn().Read(make([]byte, 64)); resp == 0 {
		t.Fatal("no challenge")
	}
	c.c.Send("YWxpY2U=") // alice
	buf := make([]byte, 64)
	n, _ := c.c.Conn().Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "+ UGFzc3dvcmQ6") {
		t.Fatalf("second challenge %q", buf[:n])
	}
	c.c.Send("c2VjcmV0") // secret
	if resp := c.status(); !resp.OK {
		t.Fatalf("AUTH LOGIN: %s", resp.Line())
	}
	// The upstream offers only PLAIN: both logins reached it as AUTH PLAIN.
	if n := strings.Count(strings.Join(up.seen(), "\n"), "AUTH PLAIN"); n != 2 {
		t.Fatalf("upstream saw %d AUTH PLAIN: %v", n, up.seen())
	}
	c = r.dial()
	if resp := c.cmd("AUTH PLAIN AGFsaWNlAHdyb25n"); resp.OK || resp.Code != "AUTH" {
		t.Fatalf("a wrong password: %s", resp.Line())
	}
	if resp := c.cmd("AUTH CRAM-MD5"); resp.OK {
		t.Fatal("an unknown mechanism answered +OK")
	}
}

func TestAPOPRelayedWithTheUpstreamTimestamp(t *testing.T) {
	up := newTestUpstream(t)
	up.stamp = "<1896.697170952@upstream.test>"
	r := newRig(t, up, nil)
	c := r.dial()
	// The client computes its digest from the proxy's greeting, which carries the upstream's timestamp.
	c.ok("APOP alice " + apopDigest(up.stamp, "secret"))
	c.ok("STAT")

	up2 := newTestUpstream(t)
	c = newRig(t, up2, nil).dial()
	if resp := c.cmd("APOP alice 0123"); resp.OK {
		t.Fatal("APOP without an upstream timestamp answered +OK")
	}
}

func TestRetrUnchangedIsByteIdentical(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1, msg2)
	r := newRig(t, up, nil)
	c := r.dial()
	c.login()
	if got := c.retr("1"); got != msg1 {
		t.Fatalf("RETR 1 = %q", got)
	}
	c.ok("LIST")
	if l := c.lines(); len(l) != 2 || l[0] != fmt.Sprintf("1 %d", len(msg1)) || l[1] != fmt.Sprintf("2 %d", len(msg2)) {
		t.Fatalf("LIST %q", l)
	}
	c.ok("UIDL")
	if l := c.lines(); len(l) != 2 || l[1] != "2 uid-alice-2" {
		t.Fatalf("UIDL %q", l)
	}
	if resp := c.ok("UIDL 2"); resp.Text != "2 uid-alice-2" {
		t.Fatalf("UIDL 2: %q", resp.Text)
	}
	c.ok("TOP 1 1")
	if got := c.body(); got != msg1[:strings.Index(msg1, "\r\n\r\n")+4]+"line 1\r\n" {
		t.Fatalf("TOP 1 1 = %q", got)
	}
	for _, bad := range []string{"RETR 3", "RETR 0", "RETR x", "TOP 1", "TOP 1 -1", "LIST 9", "DELE 3"} {
		if resp := c.cmd(bad); resp.OK {
			t.Fatalf("%s answered +OK", bad)
		}
	}
	// Every plugin input named the protocol, the mailbox, the UIDL and the command.
	env := r.filter.inputs[0]
	if env.Protocol != "pop3" || env.Direction != "retrieval" || env.MailboxUser != "alice" || env.AuthUser != "alice" ||
		env.UIDL != "uid-alice-1" || env.Command != "retr" || env.Listener != "pop3-test" || env.ClientIP != "127.0.0.1" {
		t.Fatalf("plugin input %+v", env)
	}
}

// changeSubject is a policy that changes every message.
func changeSubject(in *pluginhost.Input) *policy.Decision {
	var ch message.Changes
	ch.PrefixSubject("[external] ")
	return &policy.Decision{Action: pluginhost.Accept, Changes: &ch}
}

func TestExactSizesOfChangedMessages(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1, msg2)
	r := newRig(t, up, nil)
	r.filter.set(changeSubject, "v1")
	c := r.dial()
	c.login()
	stat := c.ok("STAT")
	c.ok("LIST")
	list := c.lines()
	var total int
	for i := 1; i <= 2; i++ {
		got := c.retr(strconv.Itoa(i))
		if !strings.Contains(got, "Subject: [external] ") {
			t.Fatalf("message %d not changed: %q", i, got)
		}
		if list[i-1] != fmt.Sprintf("%d %d", i, len(got)) {
			t.Fatalf("LIST said %q, RETR served %d bytes", list[i-1], len(got))
		}
		total += len(got)
	}
	if stat.Text != fmt.Sprintf("2 %d", total) {
		t.Fatalf("STAT %q, served %d", stat.Text, total)
	}
	if n := r.filter.count(); n != 2 {
		t.Fatalf("the policy ran %d times for two messages", n)
	}
	// TOP is cut from the changed message.
	c.ok("TOP 1 0")
	if got := c.body(); !strings.Contains(got, "Subject: [external] hello") || strings.Contains(got, "line 1") {
		t.Fatalf("TOP 1 0 = %q", got)
	}
}

func TestUpstreamSizeMode(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	r := newRig(t, up, func(o *Options) { o.SizeMode = SizeUpstream })
	r.filter.set(changeSubject, "v1")
	c := r.dial()
	c.login()
	if resp := c.ok("LIST 1"); resp.Text != fmt.Sprintf("1 %d", len(msg1)) {
		t.Fatalf("LIST 1 before filtering: %q", resp.Text)
	}
	if r.filter.count() != 0 {
		t.Fatal("LIST filtered in upstream size mode")
	}
	got := c.retr("1")
	if resp := c.ok("LIST 1"); resp.Text != fmt.Sprintf("1 %d", len(got)) {
		t.Fatalf("LIST 1 after RETR: %q, served %d", resp.Text, len(got))
	}
}

func TestCacheSparesThePlugins(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1, msg2)
	r := newRig(t, up, nil)
	r.filter.set(changeSubject, "v1")
	c := r.dial()
	c.login()
	first := c.retr("1")
	c.retr("2")
	c.ok("QUIT")
	calls, retrs := r.filter.count(), up.retrCount()

	c = r.dial()
	c.login()
	c.ok("STAT")
	if got := c.retr("1"); got != first {
		t.Fatalf("cached RETR differs:\n%q\n%q", got, first)
	}
	if r.filter.count() != calls {
		t.Fatalf("the policy ran again for cached messages (%d calls, then %d)", calls, r.filter.count())
	}
	if up.retrCount() != retrs {
		t.Fatal("a cached changed message was fetched from the upstream again")
	}
	// A new configuration version filters again.
	r.filter.set(changeSubject, "v2")
	c = r.dial()
	c.login()
	c.retr("1")
	if r.filter.count() != calls+1 {
		t.Fatalf("a reload did not invalidate the cache: %d calls", r.filter.count())
	}
}

func TestCachedUnchangedMessageIsCheckedAgainstTheUpstream(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	r := newRig(t, up, nil)
	c := r.dial()
	c.login()
	c.retr("1")
	c.ok("QUIT")
	// Same UIDL, other bytes (a broken upstream): the cache's "unchanged" does not apply, the policy runs.
	up.setMessages("alice", msg2)
	c = r.dial()
	c.login()
	if got := c.retr("1"); got != msg2 {
		t.Fatalf("got %q", got)
	}
	if r.filter.count() != 2 {
		t.Fatalf("policy calls %d, want 2", r.filter.count())
	}
}

func withhold(action pluginhost.Kind) func(in *pluginhost.Input) *policy.Decision {
	return func(in *pluginhost.Input) *policy.Decision {
		if !strings.Contains(string(in.Env.UIDL), "-2") {
			return &policy.Decision{Action: pluginhost.Accept}
		}
		return &policy.Decision{Action: action, Text: "looks like phishing", DecidedBy: "malware"}
	}
}

func TestWithheldMessageIsQuarantinedThenNoticed(t *testing.T) {
	for _, action := range []pluginhost.Kind{pluginhost.Reject, pluginhost.Discard, pluginhost.Quarantine} {
		t.Run(action.String(), func(t *testing.T) {
			up := newTestUpstream(t)
			up.setMessages("alice", msg1, msg2)
			r := newRig(t, up, nil)
			r.filter.set(withhold(action), "v1")
			c := r.dial()
			c.login()
			c.ok("LIST 2")
			got := c.retr("2")
			if !strings.Contains(got, "Subject: [withheld] invoice") || !strings.Contains(got, "malware") ||
				strings.Contains(got, "open the attachment") {
				t.Fatalf("notice %q", got)
			}
			emls, _ := filepath.Glob(filepath.Join(r.qdir, "*.eml"))
			if len(emls) != 1 {
				t.Fatalf("quarantine holds %v", emls)
			}
			if b, _ := os.ReadFile(emls[0]); string(b) != msg2 {
				t.Fatalf("quarantined copy %q", b)
			}
			recs := r.audit.all()
			var rec = recs[len(recs)-1]
			ref := strings.TrimSuffix(filepath.Base(emls[0]), ".eml")
			if rec.Withheld != ref || !strings.Contains(got, ref) || rec.SHA256Served == "" || rec.UIDL != "uid-alice-2" ||
				rec.MailboxUser != "alice" || rec.Command != "retr" || rec.Action != action.String() {
				t.Fatalf("audit record %+v (reference %s)", rec, ref)
			}
			// The same message read again gives the same notice, from the cache.
			if again := c.retr("2"); again != got {
				t.Fatal("a second RETR served another notice")
			}
			c.ok("DELE 2")
			c.ok("QUIT")
			if d := up.deletedOf("alice"); len(d) != 1 || d[0] != 2 {
				t.Fatalf("deleted %v", d)
			}
		})
	}
}

// TestWithheldMessageReadAgainIsKeptOnce: a withheld message read in another session, once the result cache let
// it go, is not kept again: both notices quote the entry the first read stored, both records name it, and it
// stays linked to the first.
func TestWithheldMessageReadAgainIsKeptOnce(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1, msg2)
	r := newRig(t, up, nil)
	r.filter.set(withhold(pluginhost.Reject), "v1")
	var notices []string
	for range 2 {
		r.srv.cache = testCache(t, Cache{MemoryBytes: 1 << 20, EntryBytes: 1 << 20, UserBytes: 1 << 20})
		c := r.dial()
		c.login()
		notices = append(notices, c.retr("2"))
		c.ok("QUIT")
	}
	emls, _ := filepath.Glob(filepath.Join(r.qdir, "*.eml"))
	if len(emls) != 1 {
		t.Fatalf("%d originals kept for a message read in two sessions, want 1: %v", len(emls), emls)
	}
	entry := strings.TrimSuffix(filepath.Base(emls[0]), ".eml")
	var withheld []*audit.Record
	for _, rec := range r.audit.all() {
		if rec.Withheld != "" {
			withheld = append(withheld, rec)
		}
	}
	if len(withheld) != 2 || withheld[0].Withheld != entry || withheld[1].Withheld != entry {
		t.Fatalf("withheld records %+v, want two naming %s", withheld, entry)
	}
	for i, n := range notices {
		if !strings.Contains(n, entry) {
			t.Errorf("notice %d does not quote %s:\n%s", i+1, entry, n)
		}
	}
	q, err := mailflow.OpenQuarantine(r.qdir)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := q.Get(entry); err != nil || m.AuditSeq != withheld[0].Seq {
		t.Errorf("entry linked to %v (%v), want record %d", m, err, withheld[0].Seq)
	}
}

func TestWithheldWithoutQuarantineIsTempfail(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1, msg2)
	r := newRig(t, up, func(o *Options) { o.QuarantineDir = "" })
	r.filter.set(withhold(pluginhost.Reject), "v1")
	c := r.dial()
	c.login()
	if resp := c.cmd("RETR 2"); resp.OK || resp.Code != "SYS/TEMP" {
		t.Fatalf("RETR 2: %s", resp.Line())
	}
}

func TestTempfail(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	r := newRig(t, up, nil)
	r.filter.set(func(*pluginhost.Input) *policy.Decision {
		return &policy.Decision{Action: pluginhost.Tempfail, Text: "scanner busy"}
	}, "v1")
	c := r.dial()
	c.login()
	resp := c.cmd("RETR 1")
	if resp.OK || resp.Code != "SYS/TEMP" || resp.Text != "scanner busy" {
		t.Fatalf("RETR 1: %s", resp.Line())
	}
	recs := r.audit.all()
	if len(recs) == 0 || recs[len(recs)-1].Reply.Status != "-ERR" || recs[len(recs)-1].Reply.Text != "[SYS/TEMP] scanner busy" {
		t.Fatalf("audit %+v", recs)
	}
	// A tempfail is not cached: the next RETR asks again.
	r.filter.set(nil, "v1")
	if got := c.retr("1"); got != msg1 {
		t.Fatalf("retry: %q", got)
	}
}

func TestDeleteOnlyOnQuit(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1, msg2)
	r := newRig(t, up, nil)
	c := r.dial()
	c.login()
	c.ok("DELE 1")
	if resp := c.cmd("RETR 1"); resp.OK {
		t.Fatal("RETR of a deleted message answered +OK")
	}
	if resp := c.ok("STAT"); resp.Text != fmt.Sprintf("1 %d", len(msg2)) {
		t.Fatalf("STAT after DELE: %q", resp.Text)
	}
	c.n.Close() // dropped: nothing is deleted
	c = r.dial()
	c.login()
	c.ok("DELE 1")
	c.ok("RSET")
	c.ok("DELE 2")
	c.ok("NOOP")
	c.ok("QUIT")
	waitFor(t, func() bool { return len(up.deletedOf("alice")) > 0 })
	if d := up.deletedOf("alice"); len(d) != 1 || d[0] != 2 {
		t.Fatalf("deleted %v, want [2]", d)
	}
}

func TestCapabilities(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	r := newRig(t, up, nil)
	c := r.dial()
	c.ok("CAPA")
	caps := c.lines()
	for _, want := range []string{"TOP", "UIDL", "USER", "SASL PLAIN LOGIN", "RESP-CODES", "AUTH-RESP-CODE",
		"PIPELINING", "EXPIRE NEVER"} {
		if !contains(caps, want) {
			t.Errorf("CAPA lacks %q: %v", want, caps)
		}
	}
	if contains(caps, "STLS") {
		t.Error("STLS offered without a certificate")
	}
	c.login()
	c.ok("CAPA")
	if caps := c.lines(); contains(caps, "USER") || contains(caps, "SASL") || !contains(caps, "UIDL") {
		t.Errorf("CAPA after login: %v", caps)
	}
	// Pipelined commands are all answered, in order.
	c.n.Write([]byte("NOOP\r\nSTAT\r\nUIDL 1\r\n"))
	if a, b, u := c.status(), c.status(), c.status(); !a.OK || b.Text != fmt.Sprintf("1 %d", len(msg1)) || u.Text != "1 uid-alice-1" {
		t.Fatalf("pipelined: %v %v %v", a, b, u)
	}
}

func TestLargeChangedMessageCachedOnDisk(t *testing.T) {
	up := newTestUpstream(t)
	big := "From: bob@example.org\r\nSubject: big\r\n\r\n" + strings.Repeat("0123456789\r\n", 1000)
	up.setMessages("alice", big)
	dir := filepath.Join(t.TempDir(), "cache")
	r := newRig(t, up, func(o *Options) { o.Cache = Cache{EntryBytes: 1024, Dir: dir, DiskBytes: 1 << 20} })
	r.filter.set(changeSubject, "v1")
	c := r.dial()
	c.login()
	first := c.retr("1")
	c.ok("QUIT")
	calls, retrs := r.filter.count(), up.retrCount()
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Fatalf("disk cache holds %d files", len(files))
	}
	c = r.dial()
	c.login()
	if resp := c.ok("LIST 1"); resp.Text != fmt.Sprintf("1 %d", len(first)) {
		t.Fatalf("LIST 1 %q, served %d", resp.Text, len(first))
	}
	if got := c.retr("1"); got != first {
		t.Fatal("the message served from the disk cache differs")
	}
	if r.filter.count() != calls || up.retrCount() != retrs {
		t.Fatal("a message cached on disk was fetched or filtered again")
	}
}
