package imapinterop

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/internal/testdovecot"
	"github.com/postern/postern/internal/testplugins"
)

const (
	benchMessages = 1000 // listed: RFC822.SIZE, BODYSTRUCTURE, header
	benchBodies   = 100  // then read whole, one UID FETCH each, as a client opens messages
)

// benchMessage is the i-th message of the benchmark mailbox: text of 2 to 20 KiB, every fourth one multipart
// with a small attachment, from outside (so the demo's external-tag would apply, were it run at retrieval).
func benchMessage(i int) string {
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.\r\n"
	text := strings.Repeat(line, 20+(i*37)%200)
	h := fmt.Sprintf("From: Sender %d <s%d@other.test>\r\nTo: bench@example.com\r\nSubject: bench message %d\r\n"+
		"Message-ID: <bench-%d@other.test>\r\nDate: Mon, 01 Jun 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n", i%17, i%17, i, i)
	if i%4 != 0 {
		return h + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text
	}
	return h + "Content-Type: multipart/mixed; boundary=\"bb\"\r\n\r\n--bb\r\nContent-Type: text/plain\r\n\r\n" + text +
		"--bb\r\nContent-Type: text/csv; name=\"data.csv\"\r\nContent-Disposition: attachment; filename=\"data.csv\"\r\n\r\n" +
		"a,b,c\r\n1,2,3\r\n--bb--\r\n"
}

// benchDovecot starts Dovecot with benchMessages messages for alice. One arrives over LMTP (which creates the
// Maildir); the rest are written into Maildir/new as the mail user, which Dovecot indexes at the first SELECT.
func benchDovecot(b *testing.B) *testdovecot.Dovecot {
	dc := testdovecot.Start(b, testdovecot.Options{Users: imaptestUsers,
		Extra: "service imap {\n  process_limit = 2000\n}\n"})
	dc.Deliver(b, "alice", benchMessage(0))
	mail, err := user.Lookup("mail")
	if err != nil {
		b.Fatal(err)
	}
	uid, _ := strconv.Atoi(mail.Uid)
	gid, _ := strconv.Atoi(mail.Gid)
	dir := filepath.Join(dc.Dir, "mail", "alice", "Maildir", "new")
	for i := 1; i < benchMessages; i++ {
		p := filepath.Join(dir, fmt.Sprintf("%d.M%dP1.bench", 1790000000+i, i))
		if err := os.WriteFile(p, []byte(benchMessage(i)), 0o600); err != nil {
			b.Fatal(err)
		}
		os.Chown(p, uid, gid)
	}
	return dc
}

// demoPolicy is policies/demo.hcl's plugins and policies, with the plugins from this build: what a newcomer's
// IMAP listener runs at retrieval (eicar and attachment-guard; hold for suspect structure; external-tag and dlp
// only on arrival, so not here).
func demoPolicy(b testing.TB) string {
	demo, err := os.ReadFile(filepath.Join(testplugins.Root(), "policies", "demo.hcl"))
	if err != nil {
		b.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(demo), "\nplugin ")
	if !ok {
		b.Fatal("policies/demo.hcl has no plugin block")
	}
	rest = "plugin " + rest
	for _, name := range []string{"eicar", "attachment-guard", "verdict", "external-tag", "dlp"} {
		rest = strings.ReplaceAll(rest, fmt.Sprintf("%q", "../build/plugins/"+name+".wasm"),
			fmt.Sprintf("%q", testplugins.Path(b, "plugins/"+name)))
	}
	return rest
}

// examine logs in to addr as alice and examines INBOX.
func examine(b *testing.B, addr string) (*imapclient.Client, *imap.SelectData) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Login("alice", "alicepass").Wait(); err != nil {
		c.Close()
		b.Fatal(err)
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		c.Close()
		b.Fatal(err)
	}
	return c, sel
}

// pass is one client run: login, SELECT, FETCH 1:N (UID RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER]) streamed,
// then benchBodies UID FETCH BODY.PEEK[] one by one. It returns the bytes of the bodies read.
func pass(b *testing.B, addr string) int64 {
	c, sel := examine(b, addr)
	defer c.Close()
	if sel.NumMessages != benchMessages {
		b.Fatalf("%d messages in INBOX, want %d", sel.NumMessages, benchMessages)
	}
	cmd := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, RFC822Size: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}}})
	n := 0
	var uids []imap.UID
	for {
		m := cmd.Next()
		if m == nil {
			break
		}
		buf, err := m.Collect()
		if err != nil {
			b.Fatal(err)
		}
		if len(uids) < benchBodies {
			uids = append(uids, buf.UID)
		}
		n++
	}
	if err := cmd.Close(); err != nil || n != benchMessages {
		b.Fatalf("listing: %d messages, %v", n, err)
	}
	var bytes int64
	for _, uid := range uids {
		msgs, err := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil || len(msgs) != 1 {
			b.Fatalf("UID %d: %v", uid, err)
		}
		for _, s := range msgs[0].BodySection {
			bytes += int64(len(s.Bytes))
		}
	}
	c.Logout().Wait()
	return bytes
}

// download reads every message of INBOX whole in one FETCH, straight from addr: what any proxy that must know the
// size and structure of what it serves has to take from the upstream before the first listing is answered.
func download(b *testing.B, addr string) {
	c, _ := examine(b, addr)
	defer c.Close()
	cmd := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	n := 0
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		if _, err := m.Collect(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	if err := cmd.Close(); err != nil || n != benchMessages {
		b.Fatalf("download: %d messages, %v", n, err)
	}
	c.Logout().Wait()
}

// BenchmarkIMAPFetch runs the client pass straight to Dovecot, through a fresh Postern with the demo's policy
// (first pass: every message fetched and filtered), through the same Postern again (cached), through a fresh
// Postern without plugins (what fetching and parsing cost by themselves), and a download of every message whole
// straight from Dovecot (the floor of a first pass that must know what it serves), in one run, interleaved. An op is one of
// each; the metrics are the milliseconds per pass and each Postern pass's throughput as a fraction of direct.
func BenchmarkIMAPFetch(b *testing.B) {
	dc := benchDovecot(b)
	pass(b, dc.IMAP) // Dovecot indexes the new mail
	var direct, first, cached, bare, floor time.Duration
	for b.Loop() {
		b.StopTimer()
		addr, stop := startBenchProxy(b, dc.IMAP)
		bareAddr, stopBare := startBenchProxyPolicy(b, dc.IMAP, "")
		b.StartTimer()
		t0 := time.Now()
		pass(b, dc.IMAP)
		t1 := time.Now()
		pass(b, addr)
		t2 := time.Now()
		pass(b, addr)
		t3 := time.Now()
		pass(b, bareAddr)
		t4 := time.Now()
		download(b, dc.IMAP)
		t5 := time.Now()
		direct, first, cached, bare = direct+t1.Sub(t0), first+t2.Sub(t1), cached+t3.Sub(t2), bare+t4.Sub(t3)
		floor += t5.Sub(t4)
		b.StopTimer()
		stop()
		stopBare()
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(direct.Milliseconds())/n, "direct-ms/pass")
	b.ReportMetric(float64(first.Milliseconds())/n, "first-ms/pass")
	b.ReportMetric(float64(cached.Milliseconds())/n, "cached-ms/pass")
	b.ReportMetric(float64(bare.Milliseconds())/n, "noplugins-first-ms/pass")
	b.ReportMetric(float64(direct)/float64(first), "first/direct")
	b.ReportMetric(float64(direct)/float64(cached), "cached/direct")
	b.ReportMetric(float64(direct)/float64(bare), "noplugins-first/direct")
	b.ReportMetric(float64(floor.Milliseconds())/n, "download-ms/pass")
}

// startBenchProxy starts imapproxy in-process with the demo's policy; stop ends it (and empties its cache).
func startBenchProxy(b *testing.B, upstream string) (string, func()) {
	return startBenchProxyPolicy(b, upstream, demoPolicy(b))
}

// startBenchProxyPolicy is startBenchProxy with other plugin and policy blocks ("" runs no plugin: what the proxy
// costs by itself, fetching and parsing every message).
func startBenchProxyPolicy(b *testing.B, upstream, policyHCL string) (string, func()) {
	// A sub-test-like scope: the proxy's cleanups run at stop, not at the end of the benchmark.
	tb := &scope{TB: b}
	addr := startInProcessPolicy(tb, upstream, policyHCL)
	return addr, tb.run
}

// scope collects cleanups to run them early.
type scope struct {
	testing.TB
	cleanups []func()
}

func (s *scope) Cleanup(f func()) { s.cleanups = append(s.cleanups, f) }
func (s *scope) TempDir() string {
	d, err := os.MkdirTemp("", "imapbench-")
	if err != nil {
		s.Fatal(err)
	}
	s.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (s *scope) run() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
	s.cleanups = nil
}

// BenchmarkIMAPStress runs imaptest's stress mode, 10 clients, straight to Dovecot and through `postern run` with
// the demo's policy, in one run (IMAP_STRESS_SECS each, default 30), with imaptest's default command mix. The
// metrics are commands per second and the ratio.
func BenchmarkIMAPStress(b *testing.B) {
	secs := 30
	if s, err := strconv.Atoi(os.Getenv("IMAP_STRESS_SECS")); err == nil && s > 0 {
		secs = s
	}
	dc := testdovecot.Start(b, testdovecot.Options{Users: imaptestUsers,
		Extra: "service imap {\n  process_limit = 2000\n}\n"})
	addr, stop := startBenchProxy(b, dc.IMAP)
	defer stop()
	var direct, proxied float64
	for b.Loop() {
		d := stress(b, dc.IMAP, 10, secs)
		p := stress(b, addr, 10, secs)
		if testing.Verbose() {
			// imaptest's rows of commands per kind, to see where the proxy is slower.
			b.Logf("direct:\n%s\nthrough Postern:\n%s", lastLines(d.stdout, 6), lastLines(p.stdout, 6))
		}
		direct += float64(d.commands) / float64(secs)
		proxied += float64(p.commands) / float64(secs)
	}
	n := float64(b.N)
	b.ReportMetric(direct/n, "direct-cmd/s")
	b.ReportMetric(proxied/n, "postern-cmd/s")
	b.ReportMetric(proxied/direct, "postern/direct")
}

// BenchmarkIMAPIdleSession reports the heap of one logged-in session with INBOX selected and idle (proxy side,
// its upstream client and the test's client connection together), from 200 sessions.
func BenchmarkIMAPIdleSession(b *testing.B) {
	dc := testdovecot.Start(b, testdovecot.Options{Users: imaptestUsers,
		Extra: "service imap {\n  process_limit = 2000\n}\n"})
	for i := 0; i < 20; i++ {
		dc.Deliver(b, "alice", benchMessage(i))
	}
	addr, stop := startBenchProxy(b, dc.IMAP)
	defer stop()
	const sessions = 200
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var conns []*imapclient.Client
		for i := 0; i < sessions; i++ {
			c, err := imapclient.DialInsecure(addr, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Login("alice", "alicepass").Wait(); err != nil {
				b.Fatalf("login %d: %v", i, err)
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				b.Fatalf("select %d: %v", i, err)
			}
			conns = append(conns, c)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/sessions, "heap-B/session")
		b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/sessions, "stack-B/session")
		for _, c := range conns {
			c.Close()
		}
	}
}
