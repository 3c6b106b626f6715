package smtpproxy

import "github.com/postern/postern/proxy/pluginhost"

// What plugins see at each SMTP stage. The relay builds its hook inputs with these, and `postern explain` drives
// the same stages with them, so both give each hook the same facts.

// ConnectInput is the input of the connect hook: the connection and nothing else. HELO, the authenticated user
// and the upstream connection are not known yet; neither is any part of a transaction.
func ConnectInput(env pluginhost.Envelope) *pluginhost.Input {
	env.HELO, env.AuthUser = "", ""
	env.UpstreamTLSVersion, env.UpstreamTLSCipher = "", ""
	env.MailFrom, env.HasMailFrom, env.SMTPUTF8, env.Rcpts = "", false, false, nil
	return &pluginhost.Input{Env: env}
}

// TransactionInput is the input of the hooks of a transaction (mail_from, rcpt_to, message): the session, the
// sender (with its SMTPUTF8 parameter) and the recipients accepted so far (none at mail_from). The caller sets
// RcptCurrent at rcpt_to; the pipeline sets Msg at message.
func TransactionInput(env pluginhost.Envelope, from string, utf8 bool, rcpts []string) *pluginhost.Input {
	env.MailFrom, env.HasMailFrom, env.SMTPUTF8, env.Rcpts = from, true, utf8, rcpts
	return &pluginhost.Input{Env: env}
}
