package pop3proxy

import (
	"bytes"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/postern/postern/proxy/pop3"
)

// Authentication is relayed: the client is logged in exactly when the upstream says +OK, and gets the upstream's
// reply, response code included ([AUTH], [IN-USE], [LOGIN-DELAY], [SYS/TEMP]).

func (ss *session) insecure() bool {
	if ss.authAllowed() {
		return false
	}
	return ss.fail(pop3.Err(pop3.CodeAuth, "Authentication needs TLS: use STLS first"))
}

func (ss *session) userCmd(cmd pop3.Command) bool {
	if !ss.authAllowed() {
		return ss.insecure()
	}
	if len(cmd.Args) != 1 {
		return ss.fail(pop3.Err("", "Usage: USER name"))
	}
	r, err := ss.up.cmd("USER " + cmd.Args[0])
	if err != nil {
		return ss.upstreamLost(err)
	}
	if r.OK {
		ss.user = cmd.Args[0]
	}
	return ss.relayed(r)
}

func (ss *session) pass(pop3.Command) bool {
	if !ss.authAllowed() {
		return ss.insecure()
	}
	pw := pop3.PassArgument(ss.cr.Line)
	if ss.user == "" {
		return ss.fail(pop3.Err("", "USER first"))
	}
	if pw == "" {
		return ss.fail(pop3.Err("", "Usage: PASS password"))
	}
	r, err := ss.up.cmd("PASS " + pw)
	if err != nil {
		return ss.upstreamLost(err)
	}
	user := ss.user
	ss.user = ""
	return ss.loggedIn(r, user, user)
}

func (ss *session) apop(cmd pop3.Command) bool {
	if ss.up.stamp == "" {
		return ss.fail(pop3.Err("", "APOP not available"))
	}
	if len(cmd.Args) != 2 {
		return ss.fail(pop3.Err("", "Usage: APOP name digest"))
	}
	// APOP sends no password: it may be relayed on a plain connection.
	r, err := ss.up.cmd("APOP " + cmd.Args[0] + " " + cmd.Args[1])
	if err != nil {
		return ss.upstreamLost(err)
	}
	return ss.loggedIn(r, cmd.Args[0], cmd.Args[0])
}

// auth runs RFC 5034's AUTH with the client (PLAIN or LOGIN), then logs in upstream with the same credentials:
// with the same mechanism when the upstream offers it, else the other one, else USER/PASS.
func (ss *session) auth(cmd pop3.Command) bool {
	if len(cmd.Args) == 0 {
		ss.reply(pop3.OK("Mechanisms follow"))
		pop3.WriteLines(ss.bw, []string{"PLAIN", "LOGIN"})
		return false
	}
	if !ss.authAllowed() {
		return ss.insecure()
	}
	mech := strings.ToUpper(cmd.Args[0])
	var ir []byte
	if len(cmd.Args) > 2 {
		return ss.fail(pop3.Err("", "Usage: AUTH mechanism [initial-response]"))
	}
	if len(cmd.Args) == 2 {
		b, err := pop3.DecodeSASL(cmd.Args[1])
		if err != nil {
			return ss.fail(pop3.Err(pop3.CodeAuth, "Invalid initial response"))
		}
		ir = b
	}
	var authz, user, pw string
	switch mech {
	case "PLAIN":
		if ir == nil {
			b, done := ss.challenge("")
			if b == nil {
				return done
			}
			ir = b
		}
		parts := bytes.Split(ir, []byte{0})
		if len(parts) != 3 || len(parts[1]) == 0 {
			return ss.fail(pop3.Err(pop3.CodeAuth, "Invalid PLAIN response"))
		}
		authz, user, pw = string(parts[0]), string(parts[1]), string(parts[2])
	case "LOGIN":
		if ir == nil {
			b, done := ss.challenge("Username:")
			if b == nil {
				return done
			}
			ir = b
		}
		user = string(ir)
		b, done := ss.challenge("Password:")
		if b == nil {
			return done
		}
		pw = string(b)
	default:
		return ss.fail(pop3.Err("", "Unsupported authentication mechanism"))
	}
	if strings.ContainsAny(user+authz+pw, "\r\n\x00") || user == "" {
		return ss.fail(pop3.Err(pop3.CodeAuth, "Invalid credentials"))
	}
	mailbox := user
	if authz != "" {
		mailbox = authz
	}
	r, err := ss.upstreamLogin(authz, user, pw)
	if err != nil {
		if errors.Is(err, errNoUpstreamMech) {
			return ss.fail(pop3.Err(pop3.CodeAuth, "Authorization identity not supported"))
		}
		return ss.upstreamLost(err)
	}
	return ss.loggedIn(r, user, mailbox)
}

var errNoUpstreamMech = errors.New("the upstream offers no mechanism for an authorization identity")

// upstreamLogin logs in upstream with the client's credentials.
func (ss *session) upstreamLogin(authz, user, pw string) (pop3.Response, error) {
	mechs := map[string]bool{}
	for _, m := range ss.up.caps["SASL"] {
		mechs[strings.ToUpper(m)] = true
	}
	var mech sasl.Client
	switch {
	case mechs["PLAIN"]:
		mech = sasl.NewPlainClient(authz, user, pw)
	case authz != "":
		return pop3.Response{}, errNoUpstreamMech
	case mechs["LOGIN"]:
		mech = sasl.NewLoginClient(user, pw)
	}
	if mech != nil {
		ss.up.deadline()
		r, err := ss.up.c.Auth(mech)
		if err != nil {
			return r, &upstreamError{err}
		}
		return r, nil
	}
	r, err := ss.up.cmd("USER " + user)
	if err != nil || !r.OK {
		return r, err
	}
	return ss.up.cmd("PASS " + pw)
}

// challenge sends a SASL challenge and reads the client's response. nil is a refusal already answered; done then
// says whether the session ends.
func (ss *session) challenge(text string) (resp []byte, done bool) {
	if text == "" {
		ss.bw.WriteString("+ \r\n") // an empty challenge (RFC 5034 §4)
	} else {
		ss.bw.WriteString("+ " + pop3.EncodeSASL([]byte(text)) + "\r\n")
	}
	if err := ss.bw.Flush(); err != nil {
		return nil, true
	}
	line, err := ss.cr.ReadLine()
	if err != nil {
		if errors.Is(err, pop3.ErrLineTooLong) {
			ss.reply(pop3.Err(pop3.CodeAuth, "Response too long"))
		}
		return nil, true
	}
	b, err := pop3.DecodeSASL(string(line))
	if errors.Is(err, pop3.ErrAuthCancelled) {
		return nil, ss.fail(pop3.Err(pop3.CodeAuth, "Authentication cancelled"))
	}
	if err != nil {
		return nil, ss.fail(pop3.Err(pop3.CodeAuth, "Invalid base64 response"))
	}
	return b, false
}

// loggedIn finishes a relayed login: on the upstream's +OK the maildrop is listed and the client gets the +OK;
// otherwise the client gets the upstream's -ERR.
func (ss *session) loggedIn(r pop3.Response, authUser, mailbox string) bool {
	if !r.OK {
		ss.log.Info("login refused by the upstream", "user", authUser, "reply", r.Line())
		return ss.relayed(r)
	}
	drop, err := ss.loadMaildrop()
	if err != nil {
		if isUpstreamError(err) {
			return ss.upstreamLost(err)
		}
		ss.log.Warn("maildrop not served", "user", mailbox, "err", err)
		ss.reply(pop3.Err(pop3.CodeSysPerm, err.Error()))
		return true
	}
	ss.drop, ss.authUser, ss.mailbox = drop, authUser, mailbox
	ss.log.Info("logged in", "user", authUser, "mailbox", mailbox, "messages", len(drop.msgs))
	ss.reply(r)
	return false
}
