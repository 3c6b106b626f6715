package review

import (
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const msgID = "20260102T030405Z-s1.1"

func TestRolePermissions(t *testing.T) {
	f := newFixture(t, nil)
	type want struct{ auditor, reviewer, admin int }
	gets := map[string]want{
		"/decisions":                        {200, 200, 200},
		"/decisions/1":                      {200, 200, 200},
		"/quarantine":                       {200, 200, 200},
		"/quarantine/" + msgID:              {200, 200, 200},
		"/quarantine/" + msgID + "/raw":     {403, 200, 200},
		"/quarantine/" + msgID + "/parts/1": {403, 200, 200},
		"/users":                            {403, 403, 200},
		"/quarantine/nope":                  {404, 404, 404},
		"/decisions/99":                     {404, 404, 404},
	}
	for _, name := range []string{"ada", "rita", "adam"} {
		c := f.client()
		c.mustLogin(name)
		for path, w := range gets {
			status := map[string]int{"ada": w.auditor, "rita": w.reviewer, "adam": w.admin}[name]
			if r := c.get(path); r.status != status {
				t.Errorf("%s GET %s: %d, want %d", name, path, r.status, status)
			}
		}
	}

	// The auditor sees metadata, never the subject, header or parts.
	c := f.client()
	c.mustLogin("ada")
	for _, path := range []string{"/quarantine", "/quarantine/" + msgID} {
		r := c.get(path)
		for _, s := range []string{"pwned", "invoice", "Card 4111", "<hostile-1@example.net>"} {
			if s == "<hostile-1@example.net>" {
				if path != "/quarantine" && !strings.Contains(r.body, "&lt;hostile-1@example.net&gt;") {
					t.Errorf("auditor %s: the Message-ID (metadata) is missing", path)
				}
				continue
			}
			if strings.Contains(r.body, s) {
				t.Errorf("auditor %s: shows %q, which is content", path, s)
			}
		}
	}
	// Nor may the auditor release or delete; the refusal is recorded.
	for _, act := range []string{"release", "delete"} {
		r := c.post("/quarantine", "/quarantine/"+msgID+"/"+act, url.Values{"reason": {"try"}})
		if r.status != http.StatusForbidden {
			t.Errorf("auditor %s: %d, want 403", act, r.status)
		}
	}
	if len(f.q.released)+len(f.q.deleted) != 0 {
		t.Fatalf("the auditor's release or delete reached the quarantine")
	}
	if a := f.audit.actions(); !slices.Contains(a, "ada forbidden POST /quarantine/"+msgID+"/release") {
		t.Errorf("no forbidden record for the auditor's release: %q", a)
	}
	// Viewing a body is recorded (the reviewer's and the admin's views above), an auditor's view is not a body view.
	a := f.audit.actions()
	if !slices.Contains(a, "rita view_body "+msgID) || !slices.Contains(a, "adam view_body "+msgID) || slices.Contains(a, "ada view_body "+msgID) {
		t.Errorf("view records: %q", a)
	}
	if !slices.Contains(a, "rita download "+msgID+" part 1") || !slices.Contains(a, "rita download "+msgID) {
		t.Errorf("download records: %q", a)
	}
}

func TestReleaseAndDelete(t *testing.T) {
	f := newFixture(t, nil)
	c := f.client()
	c.mustLogin("rita")
	page := "/quarantine/" + msgID
	if r := c.post(page, page+"/release", url.Values{"reason": {""}}); r.status != http.StatusBadRequest {
		t.Errorf("release without a reason: %d, want 400", r.status)
	}
	if r := c.post(page, page+"/release", url.Values{"reason": {strings.Repeat("x", maxReason+1)}}); r.status != http.StatusBadRequest {
		t.Errorf("release with a reason too long: %d, want 400", r.status)
	}
	if len(f.q.released) != 0 {
		t.Fatal("released without a valid reason")
	}
	r := c.post(page, page+"/release", url.Values{"reason": {"customer confirmed the invoice"}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "Message released") || !strings.Contains(r.body, "smtp 127.0.0.1:25") {
		t.Fatalf("release: %d %s", r.status, r.body)
	}
	if len(f.q.released) != 1 || f.q.actors[0].Name != "rita" || f.q.actors[0].Role != RoleReviewer ||
		f.q.actors[0].ClientIP != "127.0.0.1" || f.q.reasons[0] != "customer confirmed the invoice" {
		t.Fatalf("release reached the store as %v %v %q", f.q.released, f.q.actors, f.q.reasons)
	}
	c2 := f.client()
	c2.mustLogin("adam")
	if r := c2.post(page, page+"/delete", url.Values{"reason": {"spam"}}); r.status != http.StatusOK || !strings.Contains(r.body, "Message deleted") {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if len(f.q.deleted) != 1 || f.q.actors[1].Name != "adam" || f.q.reasons[1] != "spam" {
		t.Fatalf("delete reached the store as %v %v %q", f.q.deleted, f.q.actors, f.q.reasons)
	}
}

func TestNotLoggedIn(t *testing.T) {
	f := newFixture(t, nil)
	c := f.client()
	for _, path := range []string{"/", "/decisions", "/quarantine/" + msgID, "/quarantine/" + msgID + "/raw", "/users"} {
		r := c.get(path)
		if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login?next=") {
			t.Errorf("GET %s without a session: %d %s", path, r.status, r.header.Get("Location"))
		}
	}
	r := c.do("POST", "/quarantine/"+msgID+"/release", url.Values{"reason": {"x"}}, nil)
	if r.status != http.StatusUnauthorized || len(f.q.released) != 0 {
		t.Errorf("POST without a session: %d", r.status)
	}
	// A forged cookie is no session.
	r = c.do("GET", "/decisions", nil, map[string]string{"Cookie": "postern_session=" + randomToken()})
	if r.status != http.StatusSeeOther {
		t.Errorf("a forged cookie: %d", r.status)
	}
	// The redirect after login stays on the site.
	for next, want := range map[string]string{"/decisions?sender=a": "/decisions?sender=a", "//evil.example/": "/", "https://evil.example/": "/", "/\\evil.example": "/"} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t, nil)
	c := f.client()
	c.mustLogin("rita")
	path := "/quarantine/" + msgID + "/release"
	for name, form := range map[string]url.Values{
		"no token":    {"reason": {"x"}},
		"wrong token": {"reason": {"x"}, "csrf": {randomToken()}},
	} {
		if r := c.do("POST", path, form, nil); r.status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, r.status)
		}
	}
	// Another session's token is not this session's.
	other := f.client()
	other.mustLogin("adam")
	page := other.get("/quarantine/" + msgID)
	if r := c.do("POST", path, url.Values{"reason": {"x"}, "csrf": {token(page.body)}}, nil); r.status != http.StatusForbidden {
		t.Errorf("another session's token: %d, want 403", r.status)
	}
	// A form posted from another site is refused even with a token.
	mine := token(c.get("/quarantine/" + msgID).body)
	if r := c.do("POST", path, url.Values{"reason": {"x"}, "csrf": {mine}}, map[string]string{"Origin": "http://evil.example"}); r.status != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", r.status)
	}
	// Logout is a POST and needs the token too.
	if r := c.do("POST", "/logout", url.Values{}, nil); r.status != http.StatusForbidden {
		t.Errorf("logout without a token: %d, want 403", r.status)
	}
	if len(f.q.released) != 0 {
		t.Fatal("a release without a valid token reached the store")
	}
	// The login form has its own token, bound to a cookie.
	anon := f.client()
	if r := anon.do("POST", "/login", url.Values{"name": {"rita"}, "password": {testPasswords["rita"]}, "csrf": {randomToken()}}, nil); r.status != http.StatusForbidden {
		t.Errorf("login without the form's token: %d, want 403", r.status)
	}
	// With the right token everything works.
	if r := c.do("POST", path, url.Values{"reason": {"x"}, "csrf": {mine}}, nil); r.status != http.StatusOK {
		t.Errorf("with the token: %d", r.status)
	}
}

func TestCookiesAndLogout(t *testing.T) {
	for _, secure := range []bool{false, true} {
		f := newFixture(t, func(o *Options) { o.Secure = secure })
		c := f.client()
		r := c.login("rita", testPasswords["rita"])
		var ses *http.Cookie
		for _, ck := range (&http.Response{Header: r.header}).Cookies() {
			if strings.HasSuffix(ck.Name, "postern_session") && ck.Value != "" {
				ses = ck
			}
		}
		if ses == nil {
			t.Fatalf("secure=%v: no session cookie in %v", secure, r.header["Set-Cookie"])
		}
		if !ses.HttpOnly || ses.SameSite != http.SameSiteStrictMode || ses.Secure != secure || ses.Path != "/" {
			t.Errorf("secure=%v: cookie %+v", secure, ses)
		}
		if secure != (ses.Name == "__Host-postern_session") {
			t.Errorf("secure=%v: cookie name %s", secure, ses.Name)
		}
		if secure {
			continue // the jar does not send Secure cookies over http
		}
		if r := c.get("/decisions"); r.status != 200 {
			t.Fatalf("logged in: %d", r.status)
		}
		if r := c.post("/decisions", "/logout", nil); r.status != http.StatusSeeOther {
			t.Fatalf("logout: %d", r.status)
		}
		// The old cookie value is dead on the server, not only deleted in the browser.
		if r := c.do("GET", "/decisions", nil, map[string]string{"Cookie": ses.Name + "=" + ses.Value}); r.status != http.StatusSeeOther {
			t.Errorf("after logout the old cookie still works: %d", r.status)
		}
		if a := f.audit.actions(); !slices.Contains(a, "rita login ") || !slices.Contains(a, "rita logout ") {
			t.Errorf("records: %q", a)
		}
	}
}

func TestSessionTimeouts(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.IdleTimeout = 10 * time.Minute; o.MaxAge = time.Hour })
	c := f.client()
	c.mustLogin("rita")
	for range 5 {
		f.clock.add(9 * time.Minute)
		if r := c.get("/decisions"); r.status != 200 {
			t.Fatalf("within the idle timeout: %d", r.status)
		}
	}
	f.clock.add(16 * time.Minute) // 61 min after login, 16 min idle
	if r := c.get("/decisions"); r.status != http.StatusSeeOther {
		t.Fatalf("past the idle timeout: %d", r.status)
	}
	c.mustLogin("rita")
	for range 7 {
		f.clock.add(9 * time.Minute)
		c.get("/decisions")
	}
	if r := c.get("/decisions"); r.status != http.StatusSeeOther {
		t.Fatalf("past the maximum age: %d", r.status)
	}
}

func TestSessionsBounded(t *testing.T) {
	s := newSessions(time.Hour, time.Hour, 3, time.Now)
	var toks []string
	for range 5 {
		tok, _ := s.create("u", RoleAuditor)
		toks = append(toks, tok)
	}
	if s.count() != 3 {
		t.Fatalf("%d sessions, want 3", s.count())
	}
	if _, ok := s.get(toks[4]); !ok {
		t.Fatal("the newest session was ended")
	}
}

func TestLoginFailures(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.UserFailures = 3; o.ClientFailures = 5; o.FailureWindow = 10 * time.Minute })
	c := f.client()
	if r := c.login("rita", "wrong"); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "Wrong name or password") {
		t.Fatalf("wrong password: %d", r.status)
	}
	if r := c.login("nobody", "x"); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "Wrong name or password") {
		t.Fatalf("unknown user: %d", r.status)
	}
	c.login("rita", "wrong")
	c.login("rita", "wrong")
	// Three failures for rita: refused now, even with the right password.
	r := c.login("rita", testPasswords["rita"])
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("past the user's limit: %d %q", r.status, r.header.Get("Retry-After"))
	}
	// From another address rita is refused too: the user's limit is the user's.
	// Another user from this address still logs in (4 failures < 5).
	if r := c.login("adam", testPasswords["adam"]); r.status != http.StatusSeeOther {
		t.Fatalf("another user: %d", r.status)
	}
	c.login("x1", "x")
	// Five failures from this address: every user is refused from it.
	if r := f.client().login("ada", testPasswords["ada"]); r.status != http.StatusTooManyRequests {
		t.Fatalf("past the client's limit: %d", r.status)
	}
	a := f.audit.actions()
	if !slices.Contains(a, "rita login_failed ") || !slices.Contains(a, "nobody login_failed ") || !slices.Contains(a, "rita login_limited ") {
		t.Errorf("records: %q", a)
	}
	for _, r := range f.audit.recs {
		if r.Review.Action == "login_failed" && (r.ClientIP != "127.0.0.1" || r.Review.Reason == "") {
			t.Errorf("a failed login's record: %+v %+v", r, r.Review)
		}
	}
	// Refusals by the limits are recorded once a minute, not once per attempt.
	before := len(f.audit.actions())
	for range 5 {
		f.client().login("zed", "x")
	}
	if n := len(f.audit.actions()) - before; n != 1 {
		t.Errorf("%d records for 5 refused attempts, want 1", n)
	}
	f.clock.add(61 * time.Second)
	f.client().login("zed", "x")
	if n := len(f.audit.actions()) - before; n != 2 {
		t.Errorf("%d records after a minute, want 2", n)
	}
	// The window slides: later, logins work again.
	f.clock.add(10 * time.Minute)
	if r := f.client().login("rita", testPasswords["rita"]); r.status != http.StatusSeeOther {
		t.Fatalf("after the window: %d", r.status)
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"::ffff:192.0.2.7":     "::ffff:192.0.2.7",
		"not an address":       "not an address",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLimiterBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(2, time.Minute, 100, func() time.Time { return now })
	for i := range 1000 {
		l.fail(string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if len(l.m) > 100 {
		t.Fatalf("%d keys, want at most 100", len(l.m))
	}
}

func TestAuditFailureRefuses(t *testing.T) {
	f := newFixture(t, nil)
	c := f.client()
	c.mustLogin("rita")
	f.audit.fail = true
	if r := c.get("/quarantine/" + msgID); r.status != http.StatusServiceUnavailable || strings.Contains(r.body, "Card 4111") {
		t.Errorf("a body view that cannot be recorded: %d", r.status)
	}
	if r := c.get("/quarantine/" + msgID + "/raw"); r.status != http.StatusServiceUnavailable {
		t.Errorf("a download that cannot be recorded: %d", r.status)
	}
	if r := f.client().login("adam", testPasswords["adam"]); r.status != http.StatusServiceUnavailable {
		t.Errorf("a login that cannot be recorded: %d", r.status)
	}
}

func TestHostileMessageEscaped(t *testing.T) {
	f := newFixture(t, nil)
	c := f.client()
	c.mustLogin("rita")
	pages := map[string]response{
		"list":     c.get("/quarantine"),
		"message":  c.get("/quarantine/" + msgID),
		"decision": c.get("/decisions/1"),
	}
	for name, r := range pages {
		if r.status != 200 {
			t.Fatalf("%s: %d", name, r.status)
		}
		csp := r.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "style-src 'self'") || strings.Contains(csp, "script-src") {
			t.Errorf("%s: CSP %q", name, csp)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", name, r.header)
		}
		// Nothing from the message becomes markup: every tag of the page is one of the templates' own, and none
		// has an event handler.
		for _, m := range tagRE.FindAllStringSubmatch(r.body, -1) {
			if !ownTags[strings.ToLower(m[1])] || handlerRE.MatchString(m[2]) || strings.Contains(strings.ToLower(m[2]), "http-equiv") {
				t.Errorf("%s: the page has the tag %q", name, m[0])
			}
		}
	}
	msg := pages["message"].body
	for _, want := range []string{
		"&lt;script&gt;document.title=&#39;pwned-subject&#39;&lt;/script&gt; invoice", // the Subject, as text
		"&lt;body onload=", // the HTML part, as its source
		"HTML source, shown as text and never rendered",
		"&lt;/pre&gt;&lt;script&gt;window.pwned=1", // the text part cannot close the pre
		"Card 4111 1111 1111 1111",
		"file <span class=\"filename\">&lt;script&gt;.html</span>", // the attachment's name, without its path, as text
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the message page lacks %q", want)
		}
	}
	if !strings.Contains(pages["decision"].body, "&lt;b&gt;card&lt;/b&gt;") {
		t.Errorf("the decision page lacks the escaped plugin text")
	}
}

func TestDownloadsAreAttachments(t *testing.T) {
	f := newFixture(t, nil)
	c := f.client()
	c.mustLogin("rita")
	for path, wantName := range map[string]string{
		"/quarantine/" + msgID + "/parts/3": "_script_.html",
		"/quarantine/" + msgID + "/parts/2": msgID + "-part2.bin",
		"/quarantine/" + msgID + "/raw":     msgID + ".eml",
	} {
		r := c.get(path)
		if r.status != 200 {
			t.Fatalf("%s: %d", path, r.status)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(r.header.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("%s: headers %v", path, r.header)
		}
		cd := r.header.Get("Content-Disposition")
		if !strings.HasPrefix(cd, "attachment;") {
			t.Errorf("%s: Content-Disposition %q", path, cd)
		}
		if _, params, err := mimeParse(cd); err != nil || params["filename"] != wantName {
			t.Errorf("%s: file name %q (%v), want %q", path, params["filename"], err, wantName)
		}
	}
	// The attachment is decoded (it was base64).
	if r := c.get("/quarantine/" + msgID + "/parts/3"); r.body != "<script>alert(1)</script>" {
		t.Errorf("part 3: %q", r.body)
	}
	if r := c.get("/quarantine/" + msgID + "/raw"); r.body != hostile {
		t.Errorf("the original is not byte for byte")
	}
	if r := c.get("/quarantine/" + msgID + "/parts/0"); r.status != http.StatusNotFound {
		t.Errorf("the multipart itself: %d, want 404", r.status)
	}
}

func TestUserRemovedEndsSession(t *testing.T) {
	f := newFixture(t, nil)
	c := f.client()
	c.mustLogin("rita")
	if err := RemoveUser(f.users, "rita"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the file is looked at again at most every second
	if r := c.get("/decisions"); r.status != http.StatusSeeOther {
		t.Fatalf("a removed user's session still works: %d", r.status)
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"a\r\nb":           "a\nb",
		"a\x1b[31mb":       `a\u001b[31mb`,
		"pay\u202egnp.exe": `pay\u202egnp.exe`,
		"bad\xffbyte":      "bad\uFFFDbyte",
		"tab\tok ünïcode":  "tab\tok ünïcode",
		"lone\rcr":         `lone\rcr`,
	} {
		if got := printable([]byte(in)); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

var (
	tagRE     = regexp.MustCompile(`<([a-zA-Z][a-zA-Z0-9]*)([^>]*)>`)
	handlerRE = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	ownTags   = map[string]bool{"html": true, "head": true, "meta": true, "title": true, "link": true, "body": true,
		"header": true, "span": true, "nav": true, "a": true, "form": true, "input": true, "button": true, "main": true,
		"h1": true, "h2": true, "h3": true, "p": true, "dl": true, "dt": true, "dd": true, "pre": true, "section": true,
		"ul": true, "li": true, "table": true, "thead": true, "tbody": true, "tr": true, "th": true, "td": true,
		"div": true, "label": true, "small": true, "select": true, "option": true, "code": true}
)

func mimeParse(v string) (string, map[string]string, error) { return mime.ParseMediaType(v) }

func TestLoginPageWithoutUsers(t *testing.T) {
	f := newFixture(t, nil)
	if err := os.Remove(f.users); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	r := f.client().get("/login")
	if r.status != 200 || !strings.Contains(r.body, "No one can log in yet") || !strings.Contains(r.body, "postern review adduser -users "+f.users) {
		t.Fatalf("login page without users: %d %s", r.status, r.body)
	}
	if r := f.client().login("rita", testPasswords["rita"]); r.status != http.StatusUnauthorized {
		t.Fatalf("a login with no users file: %d", r.status)
	}
}
