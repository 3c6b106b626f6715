package imapproxy

import (
	"bufio"
	"bytes"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/internal/testdovecot"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/upstream"
)

// TestDovecotUpstream runs the proxy in front of a real Dovecot, over verified STARTTLS: login, the capabilities,
// FETCH from the filtered bytes, \Seen, IDLE with new mail delivered by LMTP, a withheld message, APPEND with
// APPENDUID, MOVE with COPYUID and the expunges it causes.
func TestDovecotUpstream(t *testing.T) {
	dc := testdovecot.Start(t, testdovecot.Options{})
	dc.Deliver(t, "alice", plainMsg)
	dc.Deliver(t, "alice", multipartMsg)
	r := dovecotRig(t, dc, func(o *Options) {
		o.UpstreamTLS = upstream.TLSOptions{Mode: upstream.TLSStartTLS, CAFile: dc.CertFile, ServerName: "localhost"}
		o.ResultHeaders = true
	})
	r.filter.set(func(in *pluginhost.Input) *policy.Decision {
		if in.Env.Direction == "retrieval" && in.Env.UID == 3 {
			return &policy.Decision{Action: pluginhost.Reject, Text: "EICAR", DecidedBy: "av"}
		}
		return &policy.Decision{Action: pluginhost.Accept}
	})
	addr := r.addr

	exists := make(chan uint32, 10)
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "alicepass").Wait(); err != nil {
		t.Fatal(err)
	}
	caps := c.Caps()
	for _, want := range []imap.Cap{imap.CapUIDPlus, imap.CapMove, imap.CapIdle, imap.CapNamespace} {
		if !caps.Has(want) {
			t.Errorf("capability %s missing (Dovecot has it): %v", want, caps)
		}
	}
	if err := c.Create("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil || sd.NumMessages != 2 {
		t.Fatalf("SELECT = %+v, %v", sd, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, RFC822Size: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("FETCH: %d messages, %v", len(msgs), err)
	}
	for _, m := range msgs {
		b := m.FindBodySection(&imap.FetchItemBodySection{})
		if !bytes.Contains(b, []byte("X-Postern-Verdict: accept")) || m.RFC822Size != int64(len(b)) {
			t.Errorf("message %d: RFC822.SIZE %d, %d filtered bytes", m.SeqNum, m.RFC822Size, len(b))
		}
	}
	flags, _ := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if len(flags) != 1 || !slices.Contains(flags[0].Flags, imap.FlagSeen) {
		t.Errorf("BODY[] did not set \\Seen upstream: %+v", flags)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	dc.Deliver(t, "alice", strings.Replace(plainMsg, "hello", "infected", 1))
	select {
	case n := <-exists:
		if n != 3 {
			t.Errorf("EXISTS %d during IDLE, want 3", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no EXISTS during IDLE")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	idle.Wait()
	m, err := c.Fetch(imap.SeqSetNum(3), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(m) != 1 || !bytes.Contains(m[0].FindBodySection(&imap.FetchItemBodySection{Peek: true}), []byte("withheld")) {
		t.Fatalf("withheld message: %v, %v", m, err)
	}
	ac := c.Append("Sent", int64(len(plainMsg)), nil)
	ac.Write([]byte(plainMsg))
	ac.Close()
	ad, err := ac.Wait()
	if err != nil || ad.UID == 0 {
		t.Errorf("APPEND = %+v, %v", ad, err)
	}
	md, err := c.Move(imap.SeqSetNum(1), "Sent").Wait()
	if err != nil || md.UIDValidity == 0 {
		t.Errorf("MOVE = %+v, %v", md, err)
	}
	if n := c.Mailbox().NumMessages; n != 2 {
		t.Errorf("after MOVE the client counts %d messages, want 2", n)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Errorf("LOGOUT: %v", err)
	}
}

// dovecotRig is newRig in front of a real Dovecot.
func dovecotRig(t *testing.T, dc *testdovecot.Dovecot, edit func(*Options)) *rig {
	t.Helper()
	return newRig(t, &memUpstream{t: t, addr: dc.IMAP}, edit)
}

// rawLogin connects to addr and logs in as alice.
func rawLogin(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawClient{t: t, c: c, br: bufio.NewReader(c)}
	rc.line()
	rc.send("a LOGIN alice alicepass\r\n")
	if l := rc.until("a "); !strings.HasPrefix(l[len(l)-1], "a OK") {
		t.Fatalf("LOGIN: %q", l)
	}
	return rc
}

// TestDovecotSubscriptions checks LSUB and LIST's subscription options against Dovecot's own answers: LSUB lists the
// unsubscribed parent of a subscribed child as \Noselect (RFC 3501 §6.3.9) where LIST (SUBSCRIBED) does not, and
// with RECURSIVEMATCH and several patterns a parent gets CHILDINFO only for a child no pattern matched (RFC 5258).
func TestDovecotSubscriptions(t *testing.T) {
	dc := testdovecot.Start(t, testdovecot.Options{})
	proxy := dovecotRig(t, dc, nil).addr
	setup := rawLogin(t, dc.IMAP)
	for _, cmd := range []string{"CREATE box.test", "CREATE box.test2.test", "CREATE box.test3.x",
		"SUBSCRIBE box.test", "SUBSCRIBE box.test2.test", "SUBSCRIBE box.test3.x",
		"CREATE box.gone", "SUBSCRIBE box.gone", "DELETE box.gone"} { // a subscription outlives its mailbox
		setup.send("c " + cmd + "\r\n")
		if l := setup.until("c "); !strings.HasPrefix(l[len(l)-1], "c OK") {
			t.Fatalf("%s: %q", cmd, l)
		}
	}
	answers := func(rc *rawClient, cmd string) []string {
		rc.send("q " + cmd + "\r\n")
		lines := rc.until("q ")
		if !strings.HasPrefix(lines[len(lines)-1], "q OK") {
			t.Fatalf("%s: %q", cmd, lines)
		}
		lines = lines[:len(lines)-1]
		slices.Sort(lines)
		return lines
	}
	direct, proxied := rawLogin(t, dc.IMAP), rawLogin(t, proxy)
	for _, tc := range []struct {
		cmd  string
		want []string // what Dovecot answers, to be sure the case tests something
	}{
		{`LSUB "" box.%`, []string{`* LSUB () "." box.gone`, `* LSUB () "." box.test`,
			`* LSUB (\Noselect) "." box.test2`, `* LSUB (\Noselect) "." box.test3`}},
		{`LIST (SUBSCRIBED) "" box.%`, []string{`* LIST (\Subscribed \NonExistent) "." box.gone`,
			`* LIST (\Subscribed) "." box.test`}},
		{`LIST (SUBSCRIBED RECURSIVEMATCH) "" (box.test2)`,
			[]string{`* LIST (\NonExistent) "." box.test2 (CHILDINFO ("SUBSCRIBED"))`}},
		{`LIST (SUBSCRIBED RECURSIVEMATCH) "" (box.test2 box.test2.test)`,
			[]string{`* LIST (\Subscribed) "." box.test2.test`}},
		{`LIST (SUBSCRIBED RECURSIVEMATCH) "" (box.test2 box.test3)`, []string{
			`* LIST (\NonExistent) "." box.test2 (CHILDINFO ("SUBSCRIBED"))`, `* LIST (\NonExistent) "." box.test3 (CHILDINFO ("SUBSCRIBED"))`}},
	} {
		want := answers(direct, tc.cmd)
		if !slices.Equal(want, tc.want) {
			t.Fatalf("Dovecot answers %s with %q, the test expects %q", tc.cmd, want, tc.want)
		}
		if got := normalise(answers(proxied, tc.cmd)); !slices.Equal(got, normalise(want)) {
			t.Errorf("%s through the proxy:\n got %q\nwant %q", tc.cmd, got, want)
		}
	}
}

// normalise writes LIST and LSUB lines alike whatever the quoting of names and extended items: go-imap quotes
// where Dovecot writes atoms.
func normalise(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.ReplaceAll(l, `"`, "")
	}
	return out
}

// TestDovecotRecent: \Recent reaches the client as Dovecot gives it to the proxy's upstream session: the RECENT
// count and [UNSEEN n] at SELECT, \Recent in FLAGS, SEARCH RECENT, NEW and OLD, STATUS RECENT of the selected
// mailbox, and RECENT with the EXISTS of new mail.
func TestDovecotRecent(t *testing.T) {
	dc := testdovecot.Start(t, testdovecot.Options{})
	dc.Deliver(t, "alice", plainMsg)
	dc.Deliver(t, "alice", multipartMsg)
	rc := rawLogin(t, dovecotRig(t, dc, nil).addr)
	expect := func(cmd string, want ...string) {
		t.Helper()
		rc.send("q " + cmd + "\r\n")
		lines := rc.until("q ")
		if !strings.HasPrefix(lines[len(lines)-1], "q OK") {
			t.Fatalf("%s: %q", cmd, lines)
		}
		for _, w := range want {
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, w) }) {
				t.Errorf("%s: no %q in %q", cmd, w, lines)
			}
		}
	}
	expect("EXAMINE INBOX", "* 2 RECENT", "[UNSEEN 1]")
	expect("FETCH 1:2 (FLAGS)", "UID 1 FLAGS (\\Recent))", "UID 2 FLAGS (\\Recent))")
	expect("SEARCH RECENT", "* SEARCH 1 2")
	expect("SEARCH NEW", "* SEARCH 1 2")
	expect("SEARCH NOT RECENT", "* SEARCH")
	rc.send("o SEARCH OLD\r\n")
	if l := rc.until("o "); len(l) != 2 || l[0] != "* SEARCH" {
		t.Errorf("SEARCH OLD: %q, want no message", l)
	}
	expect("STATUS INBOX (RECENT)", "(RECENT 2)")
	dc.Deliver(t, "alice", plainMsg)
	expect("NOOP", "* 3 EXISTS", "* 3 RECENT")
}
