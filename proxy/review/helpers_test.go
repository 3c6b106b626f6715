package review

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/postern/postern/proxy/audit"
)

// hostile is a quarantined message that tries to run script in the reviewer's browser through its Subject, its
// From, its HTML part (script, an event handler, a remote image, a meta refresh) and an attachment's name.
const hostile = "From: \"<img src=x onerror=alert(1)>\" <evil@example.net>\r\n" +
	"To: bob@example.com\r\n" +
	"Subject: <script>document.title='pwned-subject'</script> invoice\r\n" +
	"Message-ID: <hostile-1@example.net>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Card 4111 1111 1111 1111 </pre><script>window.pwned=1</script>\r\n" +
	"--b1\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	"<html><head><meta http-equiv=\"refresh\" content=\"0;url=http://evil.example/\"></head>" +
	"<body onload=\"document.title='pwned-html'\"><script>document.title='pwned-html'</script>" +
	"<img src=\"http://evil.example/track.png\">Hello</body></html>\r\n" +
	"--b1\r\n" +
	"Content-Type: text/html; name=\"<b>x</b>.html\"\r\n" +
	"Content-Disposition: attachment; filename=\"../../<script>.html\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\r\n" +
	"--b1--\r\n"

// memQuarantine is an in-memory Quarantine.
type memQuarantine struct {
	mu       sync.Mutex
	entries  map[string]*Entry
	bodies   map[string][]byte
	released []string
	actors   []Actor
	reasons  []string
	deleted  []string
}

func newMemQuarantine() *memQuarantine {
	q := &memQuarantine{entries: map[string]*Entry{}, bodies: map[string][]byte{}}
	q.add(Entry{ID: "20260102T030405Z-s1.1", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Listener: "mx",
		Protocol: "smtp", Stage: "smtp", Policy: "content", Plugin: "dlp", Verdict: "payment card numbers",
		Sender: "evil@example.net", Rcpts: []string{"bob@example.com"}, MessageID: "<hostile-1@example.net>",
		Subject: "<script>document.title='pwned-subject'</script> invoice", Size: int64(len(hostile)), AuditSeq: 1},
		hostile)
	return q
}

func (q *memQuarantine) add(e Entry, body string) {
	q.entries[e.ID] = &e
	q.bodies[e.ID] = []byte(body)
}

func (q *memQuarantine) List(_ context.Context, f QuarantineFilter) ([]Entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Entry
	for _, e := range q.entries {
		if f.Sender != "" && e.Sender != f.Sender {
			continue
		}
		out = append(out, *e)
	}
	return out, nil
}

func (q *memQuarantine) Get(_ context.Context, id string) (Entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.entries[id]
	if !ok {
		return Entry{}, ErrNotFound
	}
	return *e, nil
}

func (q *memQuarantine) Open(_ context.Context, id string) (io.ReaderAt, int64, io.Closer, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	b, ok := q.bodies[id]
	if !ok {
		return nil, 0, nil, ErrNotFound
	}
	return bytes.NewReader(b), int64(len(b)), io.NopCloser(nil), nil
}

func (q *memQuarantine) Release(_ context.Context, id string, by Actor, reason string) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.released = append(q.released, id)
	q.actors = append(q.actors, by)
	q.reasons = append(q.reasons, reason)
	q.entries[id].State = "released"
	return "smtp 127.0.0.1:25", nil
}

func (q *memQuarantine) Delete(_ context.Context, id string, by Actor, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleted = append(q.deleted, id)
	q.actors = append(q.actors, by)
	q.reasons = append(q.reasons, reason)
	return nil
}

// memDecisions serves fixed records.
type memDecisions struct{ recs []audit.Record }

func (d memDecisions) Search(_ context.Context, q DecisionQuery) ([]DecisionRow, error) {
	var out []DecisionRow
	for i := len(d.recs) - 1; i >= 0; i-- {
		if Matches(&d.recs[i], q) {
			out = append(out, DecisionRow{Record: d.recs[i]})
		}
	}
	return out, nil
}

func (d memDecisions) Record(_ context.Context, node string, seq uint64) (*DecisionRow, error) {
	for i := range d.recs {
		if d.recs[i].Seq == seq && node == "" {
			return &DecisionRow{Record: d.recs[i]}, nil
		}
	}
	return nil, ErrNotFound
}

// memRecorder keeps the records; fail makes Append fail.
type memRecorder struct {
	mu   sync.Mutex
	recs []audit.Record
	fail bool
}

func (m *memRecorder) Append(r *audit.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.recs = append(m.recs, *r)
	return nil
}

func (m *memRecorder) actions() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.recs {
		out = append(out, r.AuthUser+" "+r.Review.Action+" "+r.Review.Target)
	}
	return out
}

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	t     *testing.T
	h     *Handler
	srv   *httptest.Server
	q     *memQuarantine
	audit *memRecorder
	clock *clock
	users string // path of the users file
}

// testPasswords: bcrypt at its lowest cost keeps the tests fast; argon2id is tested on its own.
var testPasswords = map[string]string{"ada": "auditor-pw", "rita": "reviewer-pw", "adam": "admin-pw"}

func writeUsers(t *testing.T, path string) {
	t.Helper()
	var b strings.Builder
	for name, role := range map[string]Role{"ada": RoleAuditor, "rita": RoleReviewer, "adam": RoleAdmin} {
		h, err := bcrypt.GenerateFromPassword([]byte(testPasswords[name]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s:%s\n", name, role, h)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newFixture(t *testing.T, tweak func(*Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, q: newMemQuarantine(), audit: &memRecorder{}, clock: &clock{t: time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC)}}
	f.users = filepath.Join(t.TempDir(), "users")
	writeUsers(t, f.users)
	users, err := OpenUsers(f.users)
	if err != nil {
		t.Fatal(err)
	}
	from := "evil@example.net"
	decs := memDecisions{recs: []audit.Record{{Seq: 1, Event: audit.EventDecision, Time: f.clock.t.Add(-time.Hour),
		Listener: "mx", Protocol: "smtp", MailFrom: &from, Rcpts: []string{"bob@example.com"},
		MessageID: "<hostile-1@example.net>", Action: "quarantine", Withheld: "20260102T030405Z-s1.1",
		Policies: []audit.Policy{{Name: "content", Matched: true, Action: "quarantine",
			Plugins: []audit.Plugin{{Name: "dlp", Verdict: "quarantine", Text: "<b>card</b>"}}}}}}}
	o := Options{Users: users, Quarantine: f.q, Decisions: decs, Audit: f.audit, Now: f.clock.now}
	if tweak != nil {
		tweak(&o)
	}
	f.h, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.h)
	t.Cleanup(f.srv.Close)
	return f
}

// client is a browser: it keeps cookies, does not follow redirects, and sends the Origin a browser sends.
type client struct {
	f    *fixture
	http *http.Client
}

func (f *fixture) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{f: f, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (c *client) do(method, path string, form url.Values, hdr map[string]string) response {
	c.f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.f.srv.URL+path, body)
	if err != nil {
		c.f.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", c.f.srv.URL)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (c *client) get(path string) response { return c.do("GET", path, nil, nil) }

var tokenRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func token(body string) string {
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// login logs in through the form and returns the response to the POST.
func (c *client) login(name, password string) response {
	c.f.t.Helper()
	page := c.get("/login")
	return c.do("POST", "/login", url.Values{"name": {name}, "password": {password}, "csrf": {token(page.body)}, "next": {"/quarantine"}}, nil)
}

func (c *client) mustLogin(name string) {
	c.f.t.Helper()
	if r := c.login(name, testPasswords[name]); r.status != http.StatusSeeOther {
		c.f.t.Fatalf("login %s: %d %s", name, r.status, r.body)
	}
}

// post sends a form with this session's CSRF token, read from the page at from.
func (c *client) post(from, path string, form url.Values) response {
	c.f.t.Helper()
	page := c.get(from)
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", token(page.body))
	return c.do("POST", path, form, nil)
}
