package review

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/proxy/audit"
)

const loginCookie = "postern_login"

func (h *Handler) loginCookieName() string {
	if h.o.Secure {
		return "__Host-" + loginCookie
	}
	return loginCookie
}

func (h *Handler) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: h.o.Secure, SameSite: http.SameSiteStrictMode})
}

type loginData struct {
	Next, Error, Name string
	Token             string
	NoUsers           string // the users file, when it names no user yet
}

func (h *Handler) loginData(d loginData) loginData {
	if h.o.Users.Empty() {
		d.NoUsers = h.o.Users.Path()
	}
	return d
}

// loginPage shows the form. Its token, also set in a cookie, is checked at the POST (a login form another site
// posts cannot log a victim's browser into the attacker's account).
func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	tok := randomToken()
	h.setCookie(w, h.loginCookieName(), tok, 3600)
	h.render(w, nil, http.StatusOK, "login", "Log in", h.loginData(loginData{Next: safeNext(r.URL.Query().Get("next")), Token: tok}))
}

// clientKey is what the login limits count a client by: its address, and for IPv6 its /64, which one host
// usually has whole.
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() || a.Is4In6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// noteLimited reports whether a login refused by the limits for key should be recorded: once a minute.
func (h *Handler) noteLimited(key string) bool {
	now := h.o.Now()
	h.notedMu.Lock()
	defer h.notedMu.Unlock()
	if last, ok := h.noted[key]; ok && now.Sub(last) < time.Minute {
		return false
	}
	if len(h.noted) >= 10000 {
		clear(h.noted)
	}
	h.noted[key] = now
	return true
}

// safeNext keeps a redirect after login on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	req := &request{Request: r, ip: clientIP(r)}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	name, password, next := r.PostForm.Get("name"), r.PostForm.Get("password"), safeNext(r.PostForm.Get("next"))
	again := func(status int, msg string) {
		tok := randomToken()
		h.setCookie(w, h.loginCookieName(), tok, 3600)
		h.render(w, nil, status, "login", "Log in", h.loginData(loginData{Next: next, Error: msg, Name: name, Token: tok}))
	}
	c, err := r.Cookie(h.loginCookieName())
	if err != nil || !tokensEqual(r.PostForm.Get("csrf"), c.Value) {
		again(http.StatusForbidden, "The form expired: try again.")
		return
	}
	if len(name) > 64 || len(password) > 1024 {
		again(http.StatusBadRequest, "Wrong name or password.")
		return
	}
	recorded := name
	if ValidUserName(name) != nil {
		recorded = strconv.QuoteToASCII(name)
	}
	for _, k := range []struct {
		l   *limiter
		key string
	}{{h.byClient, clientKey(req.ip)}, {h.byUser, strings.ToLower(name)}} {
		if blocked, wait := k.l.blocked(k.key); blocked {
			// Each refusal is logged, and recorded once a minute per client and user: a guesser who keeps
			// trying must not fill the audit log.
			if h.noteLimited(clientKey(req.ip) + " " + strings.ToLower(name)) {
				req.ses = &session{user: recorded}
				h.record(req, "login_limited", "", "too many failed logins")
			} else {
				h.log.Info("review: login_limited", "user", recorded, "client", req.ip)
			}
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			again(http.StatusTooManyRequests, fmt.Sprintf("Too many failed logins: try again in %v.", wait.Round(time.Minute)+time.Minute))
			return
		}
	}
	select {
	case h.hashing <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	u, found := h.o.Users.Lookup(name)
	hash := u.Hash
	if !found {
		hash = dummyHash()
	}
	ok := verifyPassword(hash, password) && found
	<-h.hashing
	if !ok {
		h.byClient.fail(clientKey(req.ip))
		h.byUser.fail(strings.ToLower(name))
		req.ses = &session{user: recorded}
		reason := "wrong password"
		if !found {
			reason = "no such user"
		}
		h.record(req, "login_failed", "", reason)
		again(http.StatusUnauthorized, "Wrong name or password.")
		return
	}
	h.byUser.reset(strings.ToLower(name))
	tok, ses := h.sessions.create(u.Name, u.Role)
	req.ses = ses
	if err := h.record(req, "login", "", ""); err != nil {
		h.sessions.end(tok)
		again(http.StatusServiceUnavailable, "The audit log cannot be written, so no one can log in now.")
		return
	}
	h.setCookie(w, h.loginCookieName(), "", -1)
	h.setCookie(w, h.cookie, tok, 0)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, req *request) {
	if c, err := req.Cookie(h.cookie); err == nil {
		h.sessions.end(c.Value)
	}
	h.record(req, "logout", "", "")
	h.setCookie(w, h.cookie, "", -1)
	http.Redirect(w, req.Request, "/login", http.StatusSeeOther)
}

func (h *Handler) home(w http.ResponseWriter, req *request) {
	to := "/decisions"
	if h.o.Decisions == nil {
		to = "/quarantine"
	}
	http.Redirect(w, req.Request, to, http.StatusSeeOther)
}

// parseTime reads a form's time: a date, a date and a time (as <input type=datetime-local> sends it), or RFC
// 3339. Times without a zone are UTC.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (2026-01-02, 2026-01-02T15:04 or RFC 3339)", s)
}

type decisionsData struct {
	Q       url.Values
	Rows    []DecisionRow
	Older   string // the query of the next page
	Error   string
	Actions []string
	Events  []string
}

func (h *Handler) decisions(w http.ResponseWriter, req *request) {
	if h.o.Decisions == nil {
		h.failPage(w, req, http.StatusNotFound, "No decision records are configured.")
		return
	}
	v := req.URL.Query()
	d := decisionsData{Q: v, Actions: []string{"accept", "reject", "tempfail", "discard", "quarantine"},
		Events: []string{"decision", "pending", "review", "quarantine_release", "quarantine_delete", "quarantine_expiry",
			"recovery", "truncation"}}
	q := DecisionQuery{Sender: strings.TrimSpace(v.Get("sender")), Recipient: strings.TrimSpace(v.Get("rcpt")),
		User: strings.TrimSpace(v.Get("user")), Mailbox: v.Get("mailbox"), MessageID: strings.TrimSpace(v.Get("message_id")),
		Digest: strings.TrimSpace(v.Get("digest")), Action: v.Get("action"), Policy: strings.TrimSpace(v.Get("policy")),
		Plugin: strings.TrimSpace(v.Get("plugin")), Listener: strings.TrimSpace(v.Get("listener")),
		Protocol: v.Get("protocol"), Event: v.Get("event"), Tag: strings.TrimSpace(v.Get("tag")), Node: strings.TrimSpace(v.Get("node")), Limit: pageSize}
	var errs []string
	var err error
	if q.From, err = parseTime(v.Get("from")); err != nil {
		errs = append(errs, "From: "+err.Error())
	}
	if q.To, err = parseTime(v.Get("to")); err != nil {
		errs = append(errs, "To: "+err.Error())
	}
	if o := v.Get("offset"); o != "" {
		if q.Offset, err = strconv.Atoi(o); err != nil || q.Offset < 0 || q.Offset > maxOffset {
			errs = append(errs, fmt.Sprintf("offset: not a number from 0 to %d", maxOffset))
		}
	}
	if len(errs) > 0 {
		d.Error = strings.Join(errs, "; ")
		h.render(w, req, http.StatusBadRequest, "decisions", "Decisions", d)
		return
	}
	ctx, cancel := withTimeout(req.Request)
	defer cancel()
	recs, err := h.o.Decisions.Search(ctx, q)
	if err != nil {
		h.log.Error("review: decision search", "error", err)
		d.Error = "The search failed: " + err.Error()
		h.render(w, req, http.StatusInternalServerError, "decisions", "Decisions", d)
		return
	}
	d.Rows = recs
	if len(recs) == q.Limit && q.Offset+q.Limit <= maxOffset {
		older := url.Values{}
		for k, vs := range v {
			older[k] = vs
		}
		older.Set("offset", strconv.Itoa(q.Offset+q.Limit))
		d.Older = older.Encode()
	}
	h.render(w, req, http.StatusOK, "decisions", "Decisions", d)
}

// Paging of the decision search.
const (
	pageSize  = 100
	maxOffset = 9900
)

type decisionData struct {
	R       *audit.Record
	Node    string
	Outcome *audit.Reply
	JSON    string
}

func (h *Handler) decision(w http.ResponseWriter, req *request) {
	if h.o.Decisions == nil {
		h.failPage(w, req, http.StatusNotFound, "No decision records are configured.")
		return
	}
	seq, err := strconv.ParseUint(req.PathValue("seq"), 10, 64)
	if err != nil {
		h.failPage(w, req, http.StatusNotFound, "No such record.")
		return
	}
	ctx, cancel := withTimeout(req.Request)
	defer cancel()
	node := req.URL.Query().Get("node")
	row, err := h.o.Decisions.Record(ctx, node, seq)
	if errors.Is(err, ErrNotFound) {
		h.failPage(w, req, http.StatusNotFound, "No such record.")
		return
	}
	if err != nil {
		h.log.Error("review: decision record", "seq", seq, "error", err)
		h.failPage(w, req, http.StatusInternalServerError, "The record could not be read.")
		return
	}
	js, _ := json.MarshalIndent(&row.Record, "", "  ")
	h.render(w, req, http.StatusOK, "decision", fmt.Sprintf("Record %d", seq),
		decisionData{R: &row.Record, Node: row.Node, Outcome: row.Outcome, JSON: string(js)})
}

type quarantineData struct {
	Q       url.Values
	Entries []Entry
	Error   string
	Content bool // the role reads content (the Subject column)
}

func (h *Handler) quarantineList(w http.ResponseWriter, req *request) {
	if h.o.Quarantine == nil {
		h.failPage(w, req, http.StatusNotFound, "No quarantine is configured.")
		return
	}
	v := req.URL.Query()
	d := quarantineData{Q: v, Content: req.ses.role.MayReadContent()}
	f := QuarantineFilter{Listener: strings.TrimSpace(v.Get("listener")), Policy: strings.TrimSpace(v.Get("policy")),
		Sender: strings.TrimSpace(v.Get("sender")), Recipient: strings.TrimSpace(v.Get("rcpt")),
		User: strings.TrimSpace(v.Get("user")), MessageID: strings.TrimSpace(v.Get("message_id")), Limit: 200}
	var err1, err2 error
	f.From, err1 = parseTime(v.Get("from"))
	f.To, err2 = parseTime(v.Get("to"))
	if err := errors.Join(err1, err2); err != nil {
		d.Error = err.Error()
		h.render(w, req, http.StatusBadRequest, "quarantine", "Quarantine", d)
		return
	}
	ctx, cancel := withTimeout(req.Request)
	defer cancel()
	es, err := h.o.Quarantine.List(ctx, f)
	if err != nil {
		h.log.Error("review: quarantine list", "error", err)
		d.Error = "The quarantine could not be listed: " + err.Error()
		h.render(w, req, http.StatusInternalServerError, "quarantine", "Quarantine", d)
		return
	}
	d.Entries = es
	h.render(w, req, http.StatusOK, "quarantine", "Quarantine", d)
}

type messageData struct {
	E       Entry
	Content bool // the role reads content
	Act     bool // the role may release and delete
	View    *messageView
	Error   string
}

func (h *Handler) entry(w http.ResponseWriter, req *request) (Entry, bool) {
	if h.o.Quarantine == nil {
		h.failPage(w, req, http.StatusNotFound, "No quarantine is configured.")
		return Entry{}, false
	}
	ctx, cancel := withTimeout(req.Request)
	defer cancel()
	e, err := h.o.Quarantine.Get(ctx, req.PathValue("id"))
	if errors.Is(err, ErrNotFound) {
		h.failPage(w, req, http.StatusNotFound, "No such quarantined message.")
		return e, false
	}
	if err != nil {
		h.log.Error("review: quarantine entry", "id", req.PathValue("id"), "error", err)
		h.failPage(w, req, http.StatusInternalServerError, "The quarantined message could not be read.")
		return e, false
	}
	return e, true
}

func (h *Handler) message(w http.ResponseWriter, req *request) {
	e, ok := h.entry(w, req)
	if !ok {
		return
	}
	d := messageData{E: e, Content: req.ses.role.MayReadContent(), Act: req.ses.role.MayAct()}
	if !d.Content {
		d.E.Subject = ""
		h.render(w, req, http.StatusOK, "message", "Quarantined message", d)
		return
	}
	if err := h.record(req, "view_body", e.ID, ""); err != nil {
		h.failPage(w, req, http.StatusServiceUnavailable, "The view cannot be recorded, so the message is not shown: "+err.Error())
		return
	}
	ctx, cancel := withTimeout(req.Request)
	defer cancel()
	src, size, c, err := h.o.Quarantine.Open(ctx, e.ID)
	if err == nil {
		d.View, err = newMessageView(src, size)
		c.Close()
	}
	if err != nil {
		h.log.Error("review: opening a quarantined message", "id", e.ID, "error", err)
		d.Error = "The message could not be read: " + err.Error()
	}
	h.render(w, req, http.StatusOK, "message", "Quarantined message", d)
}

// download sends content as a file to save, never to display: application/octet-stream, attachment, nosniff
// (on every response), and a sandboxing policy in case a browser displays it anyway.
func download(w http.ResponseWriter, name string, size int64, r io.Reader) {
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": safeFilename(name)}))
	hd.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	if size >= 0 {
		hd.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	io.Copy(w, r)
}

// safeFilename keeps a download's name to what every browser saves as given: no path, no control characters,
// no leading dot.
func safeFilename(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`/\:*?"<>|`, r) || isBidiControl(r) {
			return '_'
		}
		return r
	}, name)
	name = strings.TrimLeft(strings.TrimSpace(name), ".")
	if name == "" {
		name = "part"
	}
	if len(name) > 200 {
		name = name[:200]
	}
	return name
}

func (h *Handler) downloadRaw(w http.ResponseWriter, req *request) {
	e, ok := h.entry(w, req)
	if !ok {
		return
	}
	if err := h.record(req, "download", e.ID, "original message"); err != nil {
		h.failPage(w, req, http.StatusServiceUnavailable, "The download cannot be recorded, so it is refused: "+err.Error())
		return
	}
	ctx, cancel := withTimeout(req.Request)
	defer cancel()
	src, size, c, err := h.o.Quarantine.Open(ctx, e.ID)
	if err != nil {
		h.failPage(w, req, http.StatusInternalServerError, "The message could not be read.")
		return
	}
	defer c.Close()
	download(w, e.ID+".eml", size, io.NewSectionReader(src, 0, size))
}

func (h *Handler) downloadPart(w http.ResponseWriter, req *request) {
	e, ok := h.entry(w, req)
	if !ok {
		return
	}
	id, err := strconv.Atoi(req.PathValue("part"))
	if err != nil || id < 0 {
		h.failPage(w, req, http.StatusNotFound, "No such part.")
		return
	}
	ctx, cancel := withTimeout(req.Request)
	defer cancel()
	src, size, c, err := h.o.Quarantine.Open(ctx, e.ID)
	if err != nil {
		h.failPage(w, req, http.StatusInternalServerError, "The message could not be read.")
		return
	}
	defer c.Close()
	r, name, err := partContent(src, size, id)
	if errors.Is(err, ErrNotFound) {
		h.failPage(w, req, http.StatusNotFound, "No such part.")
		return
	}
	if err != nil {
		h.failPage(w, req, http.StatusUnprocessableEntity, "The part cannot be decoded: "+err.Error())
		return
	}
	if err := h.record(req, "download", fmt.Sprintf("%s part %d", e.ID, id), ""); err != nil {
		h.failPage(w, req, http.StatusServiceUnavailable, "The download cannot be recorded, so it is refused: "+err.Error())
		return
	}
	if name == "" {
		name = fmt.Sprintf("%s-part%d.bin", e.ID, id)
	}
	download(w, name, -1, r)
}

type doneData struct {
	ID, What, Detail string
	Error            string
}

func (h *Handler) reason(w http.ResponseWriter, req *request) (string, bool) {
	reason := strings.TrimSpace(req.PostForm.Get("reason"))
	if reason == "" || len(reason) > maxReason {
		h.failPage(w, req, http.StatusBadRequest, fmt.Sprintf("Give a reason (at most %d characters): it goes into the audit log.", maxReason))
		return "", false
	}
	return reason, true
}

func (h *Handler) actor(req *request) Actor {
	return Actor{Name: req.ses.user, Role: req.ses.role, ClientIP: req.ip}
}

func (h *Handler) release(w http.ResponseWriter, req *request) {
	e, ok := h.entry(w, req)
	if !ok {
		return
	}
	reason, ok := h.reason(w, req)
	if !ok {
		return
	}
	ctx, cancel := withTimeout(req.Request)
	defer cancel()
	route, err := h.o.Quarantine.Release(ctx, e.ID, h.actor(req), reason)
	h.log.Info("review: release", "user", req.ses.user, "id", e.ID, "reason", reason, "route", route, "error", err)
	if err != nil {
		h.render(w, req, http.StatusBadGateway, "done", "Not released", doneData{ID: e.ID, What: "not released", Error: err.Error()})
		return
	}
	h.render(w, req, http.StatusOK, "done", "Released", doneData{ID: e.ID, What: "released", Detail: route})
}

func (h *Handler) delete(w http.ResponseWriter, req *request) {
	e, ok := h.entry(w, req)
	if !ok {
		return
	}
	reason, ok := h.reason(w, req)
	if !ok {
		return
	}
	ctx, cancel := withTimeout(req.Request)
	defer cancel()
	err := h.o.Quarantine.Delete(ctx, e.ID, h.actor(req), reason)
	h.log.Info("review: delete", "user", req.ses.user, "id", e.ID, "reason", reason, "error", err)
	if err != nil {
		h.render(w, req, http.StatusInternalServerError, "done", "Not deleted", doneData{ID: e.ID, What: "not deleted", Error: err.Error()})
		return
	}
	h.render(w, req, http.StatusOK, "done", "Deleted", doneData{ID: e.ID, What: "deleted"})
}

type usersData struct {
	Users    []User
	Sessions int
	Error    string
}

func (h *Handler) users(w http.ResponseWriter, req *request) {
	us := h.o.Users.All()
	sort.Slice(us, func(i, j int) bool { return us[i].Name < us[j].Name })
	d := usersData{Users: us, Sessions: h.sessions.count()}
	if err := h.o.Users.Err(); err != nil {
		d.Error = err.Error()
	}
	h.render(w, req, http.StatusOK, "users", "Users", d)
}
