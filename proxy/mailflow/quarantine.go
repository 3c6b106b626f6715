package mailflow

import (
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/quarantine"
)

// Quarantine is the store of withheld messages (package quarantine), shared by every listener of a proxy.
type Quarantine = quarantine.Store

// QuarantineRecord is the metadata kept beside each quarantined message (quarantine.Meta).
type QuarantineRecord = quarantine.Meta

// OpenQuarantine opens a quarantine directory without retention, audit or release routes: what a front end
// uses when it is given a directory rather than the proxy's shared store.
func OpenQuarantine(dir string) (*Quarantine, error) { return quarantine.OpenDir(dir) }

// QuarantineMeta is the metadata of a message withheld in a session: the envelope or mailbox from env, the
// decision, and what the indexed message says (Message-ID, Subject); msg may be nil. The caller sets ID, the
// message's reference in the session, and Size and SHA256.
func QuarantineMeta(session string, env *pluginhost.Envelope, d *policy.Decision, msg *message.Message) quarantine.Meta {
	m := quarantine.Meta{Listener: env.Listener, Protocol: env.Protocol, Direction: env.Direction,
		Session: session, ClientIP: env.ClientIP, HELO: env.HELO, TLS: env.TLSVersion, AuthUser: env.AuthUser,
		MailFrom: env.MailFrom, Rcpts: env.Rcpts, MailboxUser: env.MailboxUser, Mailbox: env.Mailbox,
		UID: env.UID, UIDValidity: env.UIDValidity, UIDL: env.UIDL, Command: env.Command, Decision: d}
	if msg != nil {
		if ids := msg.HeaderValues(0, "Message-Id", false); len(ids) > 0 {
			m.MessageID = ids[0]
		}
		if subj := msg.HeaderValues(0, "Subject", true); len(subj) > 0 {
			m.Subject = subj[0]
			if len(m.Subject) > 998 {
				m.Subject = m.Subject[:998]
			}
		}
	}
	return m
}
