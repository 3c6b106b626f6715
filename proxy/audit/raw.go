package audit

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// rawFields returns Record.Raw for r: the base64 of each client-supplied text field that is not valid UTF-8. The
// encoder would replace every invalid byte with U+FFFD, so "a\xff@x" and "a\xfe@x" would both read "a�@x"; the
// raw form keeps them apart. Valid fields, the usual case, add nothing.
func rawFields(r *Record) map[string]string {
	var raw map[string]string
	add := func(key, s string) {
		if utf8.ValidString(s) {
			return
		}
		if raw == nil {
			raw = map[string]string{}
		}
		raw[key] = base64.StdEncoding.EncodeToString([]byte(s))
	}
	add("session", r.Session)
	add("listener", r.Listener)
	add("auth_user", r.AuthUser)
	if r.MailFrom != nil {
		add("mail_from", *r.MailFrom)
	}
	for i, s := range r.Rcpts {
		add("rcpts["+strconv.Itoa(i)+"]", s)
	}
	for i, s := range r.RcptsAdded {
		add("rcpts_added["+strconv.Itoa(i)+"]", s)
	}
	add("message_id", r.MessageID)
	return raw
}
