package review

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/proxy/audit"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Options configure a Handler.
type Options struct {
	Users      *Users     // required
	Quarantine Quarantine // nil: no quarantine pages
	Decisions  Decisions  // nil: no decision search
	// Audit receives the pages' own records. Nil only in tests: `postern run` passes its audit log, and without
	// one it does not serve the pages.
	Audit  Recorder
	Logger *slog.Logger
	// Secure marks the cookies Secure (and names the session cookie __Host-...): set it when the admin listener
	// has TLS, or when a TLS proxy in front of it does.
	Secure bool

	IdleTimeout time.Duration // a session ends after this long without a request; default 30 min
	MaxAge      time.Duration // and this long after its login whatever happens; default 12 h
	MaxSessions int           // default 1000

	// A client address is refused logins after ClientFailures failures within FailureWindow, a user name after
	// UserFailures; defaults 20, 5 and 15 min.
	ClientFailures, UserFailures int
	FailureWindow                time.Duration

	Now func() time.Time // default time.Now
}

// Handler serves the reviewer pages. Mount it at "/" of the admin listener.
type Handler struct {
	o        Options
	log      *slog.Logger
	mux      *http.ServeMux
	pages    map[string]*template.Template
	sessions *sessions
	byClient *limiter
	byUser   *limiter
	hashing  chan struct{} // bounds the password hashes computed at once (each takes 64 MiB)
	cookie   string

	notedMu sync.Mutex
	noted   map[string]time.Time // when a login refused by the limits was last recorded, per client and user
}

const (
	maxReason    = 1000
	maxFormBytes = 16 << 10
)

// New returns the pages' handler.
func New(o Options) (*Handler, error) {
	if o.Users == nil {
		return nil, errors.New("review: no users")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Minute
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 12 * time.Hour
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 1000
	}
	if o.ClientFailures <= 0 {
		o.ClientFailures = 20
	}
	if o.UserFailures <= 0 {
		o.UserFailures = 5
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = 15 * time.Minute
	}
	h := &Handler{
		o:        o,
		log:      o.Logger,
		mux:      http.NewServeMux(),
		pages:    map[string]*template.Template{},
		sessions: newSessions(o.IdleTimeout, o.MaxAge, o.MaxSessions, o.Now),
		byClient: newLimiter(o.ClientFailures, o.FailureWindow, 10000, o.Now),
		byUser:   newLimiter(o.UserFailures, o.FailureWindow, 10000, o.Now),
		hashing:  make(chan struct{}, 2),
		cookie:   "postern_session",
		noted:    map[string]time.Time{},
	}
	if o.Secure {
		h.cookie = "__Host-postern_session"
	}
	funcs := template.FuncMap{
		"time":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
		"join":   strings.Join,
		"deref":  func(s *string) string { return derefOr(s, "") },
		"bytes":  humanBytes,
		"indent": func(d int) string { return strconv.Itoa(min(d, 6)) },
	}
	for _, name := range []string{"login", "decisions", "decision", "quarantine", "message", "done", "users", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("review: template %s: %w", name, err)
		}
		h.pages[name] = t
	}
	h.routes()
	return h, nil
}

func (h *Handler) routes() {
	m := h.mux
	m.HandleFunc("GET /static/style.css", h.style)
	m.HandleFunc("GET /login", h.loginPage)
	m.HandleFunc("POST /login", h.login)
	m.HandleFunc("POST /logout", h.auth(RoleAuditor, h.logout))
	m.HandleFunc("GET /{$}", h.auth(RoleAuditor, h.home))
	m.HandleFunc("GET /decisions", h.auth(RoleAuditor, h.decisions))
	m.HandleFunc("GET /decisions/{seq}", h.auth(RoleAuditor, h.decision))
	m.HandleFunc("GET /quarantine", h.auth(RoleAuditor, h.quarantineList))
	m.HandleFunc("GET /quarantine/{id}", h.auth(RoleAuditor, h.message))
	m.HandleFunc("GET /quarantine/{id}/raw", h.auth(RoleReviewer, h.downloadRaw))
	m.HandleFunc("GET /quarantine/{id}/parts/{part}", h.auth(RoleReviewer, h.downloadPart))
	m.HandleFunc("POST /quarantine/{id}/release", h.auth(RoleReviewer, h.release))
	m.HandleFunc("POST /quarantine/{id}/delete", h.auth(RoleReviewer, h.delete))
	m.HandleFunc("GET /users", h.auth(RoleAdmin, h.users))
}

// securityHeaders are on every response. The policy allows the page's own style sheet and nothing else: no
// script, no image, no frame, no font, no connection, so nothing in a message can run or call home even if
// some of it were ever written unescaped.
func securityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; "+
		"frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// ServeHTTP serves the pages.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	if r.Method == http.MethodPost && !h.sameOrigin(r) {
		h.fail(w, r, http.StatusForbidden, "This form came from another site.")
		return
	}
	h.mux.ServeHTTP(w, r)
}

// sameOrigin checks the Origin (or Referer) of a POST against the host it was sent to: a browser always sends
// one of them on a form POST; their absence means a client that is not a browser, which the CSRF token checks.
func (h *Handler) sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" || o == "null" && r.Header.Get("Sec-Fetch-Site") == "same-origin" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// request is what a page handler knows of who is asking.
type request struct {
	*http.Request
	ses *session
	ip  string
}

func (h *Handler) auth(min Role, fn func(http.ResponseWriter, *request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req := &request{Request: r, ip: clientIP(r)}
		c, err := r.Cookie(h.cookie)
		var ok bool
		if err == nil {
			req.ses, ok = h.sessions.get(c.Value)
		}
		if ok {
			// The users file is the authority: a user removed or given another role loses the session at once.
			if u, found := h.o.Users.Lookup(req.ses.user); !found || u.Role != req.ses.role {
				h.sessions.endUser(req.ses.user)
				ok = false
			}
		}
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			h.fail(w, r, http.StatusUnauthorized, "Your session has ended: log in again.")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil || !tokensEqual(r.PostForm.Get("csrf"), req.ses.csrf) {
				h.log.Warn("review: POST without a valid CSRF token", "user", req.ses.user, "client", req.ip, "path", r.URL.Path)
				h.fail(w, r, http.StatusForbidden, "This form is not valid any more: go back, reload the page and try again.")
				return
			}
		}
		if !allowed(req.ses.role, min) {
			h.record(req, "forbidden", r.Method+" "+r.URL.Path, "role "+string(req.ses.role))
			h.failPage(w, req, http.StatusForbidden, fmt.Sprintf("Your role (%s) may not do this.", req.ses.role))
			return
		}
		fn(w, req)
	}
}

func allowed(have, need Role) bool {
	rank := map[Role]int{RoleAuditor: 1, RoleReviewer: 2, RoleAdmin: 3}
	return rank[have] >= rank[need]
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// record appends an EventReview record. It returns the error so that an action that must be recorded (a view
// of a body) does not happen when it cannot be.
func (h *Handler) record(req *request, action, target, reason string) error {
	rec := &audit.Record{Event: audit.EventReview, Time: h.o.Now().UTC(), Listener: "admin", Protocol: "http",
		ClientIP: req.ip, Review: &audit.ReviewAction{Action: action, Target: target, Reason: reason}}
	if req.ses != nil {
		rec.AuthUser, rec.Review.Role = req.ses.user, string(req.ses.role)
	}
	h.log.Info("review: "+action, "user", rec.AuthUser, "client", req.ip, "target", target, "reason", reason)
	if h.o.Audit == nil {
		return nil
	}
	if err := h.o.Audit.Append(rec); err != nil {
		h.log.Error("review: cannot write the audit record", "action", action, "error", err)
		return fmt.Errorf("the audit log cannot be written: %w", err)
	}
	return nil
}

// page is what every template gets.
type page struct {
	Title  string
	User   string
	Role   Role
	CSRF   string
	Nav    string
	Search bool // decisions are searchable
	Quar   bool // a quarantine is configured
	Data   any
}

func (h *Handler) render(w http.ResponseWriter, req *request, status int, name, title string, data any) {
	p := page{Title: title, Data: data, Nav: name, Search: h.o.Decisions != nil, Quar: h.o.Quarantine != nil}
	if req != nil && req.ses != nil {
		p.User, p.Role, p.CSRF = req.ses.user, req.ses.role, req.ses.csrf
	}
	var b strings.Builder
	if err := h.pages[name].Execute(&b, p); err != nil {
		h.log.Error("review: rendering a page", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, b.String())
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.render(w, &request{Request: r}, status, "error", http.StatusText(status), msg)
}

func (h *Handler) failPage(w http.ResponseWriter, req *request, status int, msg string) {
	h.render(w, req, status, "error", http.StatusText(status), msg)
}

func (h *Handler) style(w http.ResponseWriter, r *http.Request) {
	b, _ := assets.ReadFile("static/style.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Write(b)
}

func derefOr(s *string, def string) string {
	if s == nil {
		return def
	}
	if *s == "" {
		return "<>"
	}
	return *s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// withTimeout bounds a backend call made for one page.
func withTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 30*time.Second)
}
