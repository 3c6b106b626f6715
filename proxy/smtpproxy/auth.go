package smtpproxy

import (
	"bytes"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// authenticator checks credentials; it returns nil or the *smtp.SMTPError to give the client.
type authenticator func(identity, user, pass string) error

var errMalformedAuth = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
	Message: "Malformed authentication data"}

// plainServer is SASL PLAIN (RFC 4616) on the server side. go-sasl has one, but its errors are plain strings
// that go-smtp would turn into a 454 with the library's wording.
type plainServer struct {
	auth authenticator
	done bool
}

func (p *plainServer) Next(response []byte) (challenge []byte, done bool, err error) {
	if p.done {
		return nil, true, errMalformedAuth
	}
	if response == nil {
		return []byte{}, false, nil
	}
	p.done = true
	parts := bytes.Split(response, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return nil, true, errMalformedAuth
	}
	return nil, true, p.auth(string(parts[0]), string(parts[1]), string(parts[2]))
}

// loginServer is the obsolete but widespread LOGIN mechanism: user name and password in two steps.
type loginServer struct {
	auth  authenticator
	user  []byte
	state int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.state {
	case 0:
		l.state = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		if len(response) == 0 {
			return nil, true, errMalformedAuth
		}
		l.user = response
		l.state = 2
		return []byte("Password:"), false, nil
	case 2:
		l.state = 3
		return nil, true, l.auth("", string(l.user), string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}
