package review

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// session is a logged-in user. The cookie carries a random token; the server keeps its SHA-256 only, so a
// memory dump or a debug listing of the table gives no usable cookie.
type session struct {
	user    string
	role    Role
	csrf    string // the token every POST of this session must carry
	created time.Time
	seen    time.Time
}

// sessions is the table of logged-in users, bounded in count and time: a session ends after IdleTimeout without
// a request and MaxAge after its login whatever happens; past MaxSessions the oldest session is ended.
type sessions struct {
	idle, maxAge time.Duration
	max          int
	now          func() time.Time

	mu sync.Mutex
	m  map[[32]byte]*session
}

func newSessions(idle, maxAge time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{idle: idle, maxAge: maxAge, max: max, now: now, m: map[[32]byte]*session{}}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for user and returns its cookie token.
func (s *sessions) create(user string, role Role) (string, *session) {
	tok := randomToken()
	now := s.now()
	ses := &session{user: user, role: role, csrf: randomToken(), created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	for len(s.m) >= s.max {
		var oldest [32]byte
		var t time.Time
		for k, v := range s.m {
			if t.IsZero() || v.created.Before(t) {
				oldest, t = k, v.created
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(tok))] = ses
	return tok, ses
}

// get returns the live session of the token and marks it used.
func (s *sessions) get(tok string) (*session, bool) {
	if tok == "" {
		return nil, false
	}
	k := sha256.Sum256([]byte(tok))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ses, ok := s.m[k]
	if !ok {
		return nil, false
	}
	if now.Sub(ses.seen) > s.idle || now.Sub(ses.created) > s.maxAge {
		delete(s.m, k)
		return nil, false
	}
	ses.seen = now
	c := *ses
	return &c, true
}

// end ends the token's session.
func (s *sessions) end(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(tok)))
}

// endUser ends every session of user (removed from the users file, or given another role).
func (s *sessions) endUser(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if v.user == user {
			delete(s.m, k)
		}
	}
}

func (s *sessions) expireLocked(now time.Time) {
	for k, v := range s.m {
		if now.Sub(v.seen) > s.idle || now.Sub(v.created) > s.maxAge {
			delete(s.m, k)
		}
	}
}

func (s *sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// tokensEqual compares two tokens in constant time.
func tokensEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// limiter counts failed logins per key (a client address, a user name) in a sliding window: past max failures
// within window the key is refused until its oldest failure leaves the window. A success does not reset a
// client's count (a guesser with one valid account must not reset it), but does reset the user's. The table is
// bounded: when full, the keys whose failures are oldest are forgotten first.
type limiter struct {
	max    int
	window time.Duration
	keys   int
	now    func() time.Time

	mu sync.Mutex
	m  map[string][]time.Time
}

func newLimiter(max int, window time.Duration, keys int, now func() time.Time) *limiter {
	return &limiter{max: max, window: window, keys: keys, now: now, m: map[string][]time.Time{}}
}

// blocked reports whether key is refused now, and for how long.
func (l *limiter) blocked(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	fs := l.pruneLocked(key, now)
	if len(fs) < l.max {
		return false, 0
	}
	return true, fs[len(fs)-l.max].Add(l.window).Sub(now)
}

// fail records a failure of key.
func (l *limiter) fail(key string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	fs := l.pruneLocked(key, now)
	if fs == nil && len(l.m) >= l.keys {
		l.evictLocked(now)
	}
	fs = append(fs, now)
	if len(fs) > l.max {
		fs = fs[len(fs)-l.max:]
	}
	l.m[key] = fs
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}

func (l *limiter) pruneLocked(key string, now time.Time) []time.Time {
	fs := l.m[key]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= l.window {
		i++
	}
	if i == len(fs) {
		delete(l.m, key)
		return nil
	}
	fs = fs[i:]
	l.m[key] = fs
	return fs
}

func (l *limiter) evictLocked(now time.Time) {
	for k := range l.m {
		l.pruneLocked(k, now)
	}
	for len(l.m) >= l.keys {
		var oldest string
		var t time.Time
		for k, fs := range l.m {
			if last := fs[len(fs)-1]; t.IsZero() || last.Before(t) {
				oldest, t = k, last
			}
		}
		delete(l.m, oldest)
	}
}
