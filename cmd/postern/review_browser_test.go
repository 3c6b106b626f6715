package main

import (
	"context"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/testplugins"
)

// hostileMessage tries to run script in a reviewer's browser through its Subject and its HTML part, and to load
// remote content; its card numbers make the dlp plugin quarantine it.
const hostileSubject = `<script>document.title='pwned-subject';window.pwned=1</script><img src=x onerror="window.pwned=2"> invoice`

var hostileMessage = "From: Mallory <mallory@evil.test>\r\n" +
	"To: alice@example.com\r\n" +
	"Subject: " + hostileSubject + "\r\n" +
	"Message-ID: <hostile-browser@evil.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=\"b\"\r\n" +
	"\r\n" +
	"--b\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Please pay with 4111 1111 1111 1111, 5500 0000 0000 0004 or 3400 0000 0000 009.\r\n" +
	"--b\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	"<html><head><meta http-equiv=\"refresh\" content=\"0;url=http://127.0.0.1:9/\"></head>" +
	"<body onload=\"document.title='pwned-html'\"><script>window.pwned=3;document.title='pwned-html'</script>" +
	"<img src=\"http://127.0.0.1:9/track.png\" onerror=\"window.pwned=4\"><p>Pay now</p></body></html>\r\n" +
	"--b--\r\n"

// reviewBrowser starts headless Chromium from Debian, or skips.
func reviewBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed (.ci/deps installs it)")
		}
		t.Skip("chromium is not installed (apt-get install chromium, or .ci/deps)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // as root, Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// step runs one browser step with a bound, so a page that does not come stops the test instead of hanging it.
func step[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// submit clicks a form's button and waits for the page it leads to.
func submit(t *testing.T, ctx context.Context, what, button string) {
	t.Helper()
	step(t, ctx, what, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(button)))
}

// screenshot saves the viewport as build/screenshots/review-NAME.png, for the docs.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := step(t, ctx, "screenshot "+name, chromedp.CaptureScreenshot())
	dir := filepath.Join(testplugins.Root(), "build", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "review-"+name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// noScriptRan checks that nothing of the message ran: the payloads would change the title or set window.pwned.
func noScriptRan(t *testing.T, ctx context.Context, wantTitle string) {
	t.Helper()
	if title := step(t, ctx, "title", chromedp.Title()); title != wantTitle {
		t.Fatalf("page title %q, want %q: script from the message ran", title, wantTitle)
	}
	if v := step(t, ctx, "window.pwned", chromedp.Evaluate[string]("typeof window.pwned")); v != "undefined" {
		t.Fatalf("window.pwned is %s: script from the message ran", v)
	}
	// Nothing was fetched but the page and its style sheet.
	res := step(t, ctx, "resources", chromedp.Evaluate[[]string](
		`performance.getEntriesByType("resource").map(e => e.name)`))
	for _, r := range res {
		if !strings.HasSuffix(r, "/static/style.css") {
			t.Fatalf("the page loaded %s", r)
		}
	}
}

// TestReviewPagesInBrowser runs `postern run` with the reviewer pages and a quarantine holding a hostile
// message, and drives headless Chromium through them as each role: log in, search the decisions, open the
// message (no script of it runs, nothing remote loads), and, as a reviewer, release it to the upstream.
func TestReviewPagesInBrowser(t *testing.T) {
	ctx := reviewBrowser(t)
	// The demo of the README: policies/demo.hcl on free ports, users added with the README's command.
	dir := exampleTree(t)
	cfgPath := filepath.Join(dir, "demo.hcl")
	addr, adminAddr := freePort(t), freePort(t)
	demo, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	demoCfg := strings.NewReplacer("127.0.0.1:2525", addr, "127.0.0.1:2587", freePort(t), "127.0.0.1:2110", freePort(t),
		"127.0.0.1:2143", freePort(t),
		"127.0.0.1:8025", adminAddr).Replace(string(demo))
	if demoCfg == string(demo) || !strings.Contains(demoCfg, "review {") {
		t.Fatal("policies/demo.hcl has no reviewer pages on 127.0.0.1:8025")
	}
	if err := os.WriteFile(cfgPath, []byte(demoCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(testplugins.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var addCmd []string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "build/postern review adduser ") {
			addCmd = strings.Fields(line)
		}
	}
	if len(addCmd) != 8 || addCmd[4] != "policies/demo.hcl" || addCmd[5] != "-role" {
		t.Fatalf("the README's adduser command changed: %q", addCmd)
	}
	passwords := map[string]string{"ada": "auditor-password", "rita": "reviewer-password", "adam": "admin-password"}
	for name, role := range map[string]string{"ada": "auditor", "rita": "reviewer", "adam": "admin"} {
		bin, err := binary()
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{}, addCmd[1:]...)
		args[3], args[5], args[6] = cfgPath, role, name
		cmd := exec.Command(bin, append(args, "-password-stdin")...)
		cmd.Stdin = strings.NewReader(passwords[name] + "\n")
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), name+" is a "+role) {
			t.Fatalf("adduser %s: %v %s", name, err, out)
		}
	}

	p := startPostern(t, "-config", cfgPath)
	p.waitLog(t, "reviewer pages on the admin listener")
	p.waitLog(t, "postern running")
	sendPlain(t, addr, "mallory@evil.test", "alice@example.com", hostileMessage)
	mailDir := filepath.Join(dir, "..", "build", "state", "mail", "demo")
	if n := len(delivered(t, mailDir)); n != 0 {
		t.Fatalf("%d messages reached the upstream; the message should be held", n)
	}
	base := "http://" + adminAddr

	login := func(name string) {
		t.Helper()
		step(t, ctx, "login page", chromedp.Navigate(base+"/"))
		step(t, ctx, "name", chromedp.SendKeys(`input[name=name]`, name))
		step(t, ctx, "password", chromedp.SendKeys(`input[name=password]`, passwords[name]))
		if name == "rita" {
			screenshot(t, ctx, "login")
		}
		submit(t, ctx, "log in as "+name, `form.login button`)
		if who := step(t, ctx, "who", chromedp.Text(`.who`)); !strings.HasPrefix(who, name+" (") {
			t.Fatalf("logged in as %q, want %s", who, name)
		}
	}
	logout := func() {
		t.Helper()
		submit(t, ctx, "log out", `form.logout button`)
		if loc := step(t, ctx, "location", chromedp.Location()); !strings.HasSuffix(loc, "/login") {
			t.Fatalf("after logout at %s", loc)
		}
	}
	// The decision search finds the quarantine decision; its row links to the record.
	searchDecisions := func(shot string) {
		t.Helper()
		step(t, ctx, "decisions", chromedp.Navigate(base+"/decisions"))
		step(t, ctx, "sender", chromedp.SendKeys(`form.filters input[name=sender]`, "mallory@evil.test"))
		submit(t, ctx, "search", `form.filters button`)
		// The index is fed off the reply path: the record may take a moment to be searchable.
		loc := step(t, ctx, "location", chromedp.Location())
		for i := 0; ; i++ {
			rows := step(t, ctx, "rows", chromedp.Text(`#decisions tbody`))
			if strings.Contains(rows, "quarantine") && strings.Contains(rows, "<hostile-browser@evil.test>") {
				break
			}
			if i == 60 {
				t.Fatalf("the search shows %q", rows)
			}
			time.Sleep(500 * time.Millisecond)
			step(t, ctx, "search again", chromedp.Navigate(loc))
		}
		if shot != "" {
			screenshot(t, ctx, shot)
		}
		noScriptRan(t, ctx, "Decisions · Postern")
	}
	openMessage := func() {
		t.Helper()
		step(t, ctx, "quarantine", chromedp.Navigate(base+"/quarantine"))
		submit(t, ctx, "open the message", `#quarantine tbody a`)
	}

	// The auditor: decisions and metadata, never what the message says.
	login("ada")
	searchDecisions("")
	openMessage()
	noScriptRan(t, ctx, "Quarantined message · Postern")
	body := step(t, ctx, "page", chromedp.Text(`main`))
	if strings.Contains(body, "invoice") || strings.Contains(body, "Please pay") || strings.Contains(body, "Pay now") {
		t.Fatalf("the auditor sees content:\n%s", body)
	}
	if n := step(t, ctx, "forms", chromedp.Evaluate[int](`document.querySelectorAll("form.act").length`)); n != 0 {
		t.Fatalf("the auditor is offered %d release/delete forms", n)
	}
	screenshot(t, ctx, "auditor-message")
	logout()

	// The reviewer: the message shown as text, then released with a reason.
	login("rita")
	searchDecisions("decisions")
	openMessage()
	noScriptRan(t, ctx, "Quarantined message · Postern")
	if s := step(t, ctx, "subject", chromedp.Text(`#subject`)); s != hostileSubject {
		t.Fatalf("subject shown as %q, want the literal text %q", s, hostileSubject)
	}
	html := step(t, ctx, "html part", chromedp.Text(`pre.source.text`))
	if !strings.Contains(html, `<script>window.pwned=3`) || !strings.Contains(html, `<body onload=`) {
		t.Fatalf("the HTML part is not shown as its source: %q", html)
	}
	if n := step(t, ctx, "elements", chromedp.Evaluate[int](`document.querySelectorAll("main script, main img, main iframe, main meta").length`)); n != 0 {
		t.Fatalf("the page has %d elements from the message", n)
	}
	screenshot(t, ctx, "message")
	step(t, ctx, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	screenshot(t, ctx, "message-phone")
	step(t, ctx, "desktop", chromedp.EmulateViewport(1280, 900))

	step(t, ctx, "reason", chromedp.SendKeys(`form.act input[name=reason]`, "customer confirmed the invoice"))
	submit(t, ctx, "release", `button.release`)
	if h := step(t, ctx, "done", chromedp.Text(`#done`)); h != "Message released" {
		t.Fatalf("after release: %q\n%s", h, step(t, ctx, "page", chromedp.Text(`main`)))
	}
	screenshot(t, ctx, "released")
	subjects := delivered(t, mailDir)
	if len(subjects) != 1 || subjects[0] != hostileSubject { // as received: released is the original
		t.Fatalf("the upstream has %q, want the released message", subjects)
	}
	files, _ := filepath.Glob(filepath.Join(mailDir, "*.eml"))
	got, _ := os.ReadFile(files[0])
	if !strings.Contains(string(got), "released by rita via web") || !strings.HasSuffix(string(got), hostileMessage) {
		t.Fatalf("the released message:\n%s", got)
	}
	logout()

	// The admin: everything, and the users.
	login("adam")
	step(t, ctx, "users", chromedp.Navigate(base+"/users"))
	if users := step(t, ctx, "users table", chromedp.Text(`main table`)); !strings.Contains(users, "rita") || !strings.Contains(users, "argon2id") {
		t.Fatalf("users page: %q", users)
	}
	// The release and every view are in the audit log, and the search finds them.
	for i := 0; ; i++ {
		step(t, ctx, "release records", chromedp.Navigate(base+"/decisions?event=quarantine_release"))
		rows := step(t, ctx, "rows", chromedp.Text(`#decisions tbody`))
		if strings.Contains(rows, "by rita") {
			break
		}
		if i == 60 {
			t.Fatalf("the release record: %q", rows)
		}
		time.Sleep(500 * time.Millisecond)
	}
	logout()

	code, out, _ := postern(t, "", "audit", "verify", "-config", cfgPath)
	if code != 0 {
		t.Fatalf("audit verify: %d %s", code, out)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "..", "build", "state", "audit.log"))
	for _, want := range []string{`"action":"login","role":"auditor"`, `"action":"view_body","role":"reviewer"`,
		`"action":"logout"`, `"event":"quarantine_release"`, `"actor":"rita","via":"web","reason":"customer confirmed the invoice"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
}

// sendPlain sends one message without STARTTLS (the demo offers it with a test certificate no client trusts).
func sendPlain(t *testing.T, addr, from, to, msg string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("sending: %v", err)
	}
	c.Quit()
}
