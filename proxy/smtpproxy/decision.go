package smtpproxy

import (
	"strconv"

	"github.com/emersion/go-smtp"
	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// refusal returns the reply for a reject or tempfail decision, nil for any other action. Codes and texts that do
// not fit the action (a "reject" with a 4xx code, a multi-line text) are replaced by the defaults: the class of
// the reply must always say what the policy decided.
func refusal(d *policy.Decision) *smtp.SMTPError {
	var (
		class   int
		code    int
		enh     string
		text    string
		defText string
	)
	switch d.Action {
	case pluginhost.Reject:
		class, code, enh, defText = 5, 550, "5.7.1", "Message rejected by policy"
		switch d.Hook {
		case pluginhost.HookMailFrom:
			defText = "Sender rejected by policy"
		case pluginhost.HookRcptTo:
			defText = "Recipient rejected by policy"
		case pluginhost.HookConnect:
			defText = "Service refused by policy"
		}
	case pluginhost.Tempfail:
		class, code, enh, defText = 4, 451, "4.7.1", "Temporarily refused by policy, try again later"
	default:
		return nil
	}
	if d.Code/100 == class && d.Code%100 < 60 {
		code = d.Code
	}
	if ec, ok := parseEnhanced(d.Enhanced); ok && ec[0] == class {
		enh = d.Enhanced
	}
	text = mailflow.ReplyText(d.Text)
	if text == "" {
		text = defText
	}
	ec, _ := parseEnhanced(enh)
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: text}
}

// Statuses of the audit record's reply when the client never got one: replyCut when its session was cut at the
// shutdown deadline (or by Close) while the message was being handled, replyGone when the client left while its
// message was evaluated. The text says what the reply would have been, since it may be the upstream's acceptance.
const (
	replyCut  = "cut"
	replyGone = "gone"
)

// auditReply is the reply as the audit log records it: e, or, once the client can no longer get it, replyCut or
// replyGone.
func (cs *connState) auditReply(e *smtp.SMTPError) audit.Reply {
	r := recordedReply(e)
	status, why := "", ""
	switch {
	case cs.cutOff.Load():
		status, why = replyCut, "the session was cut at the shutdown deadline"
	case cs.clientGone.Load():
		status, why = replyGone, "the client left while its message was evaluated"
	default:
		return r
	}
	would := strconv.Itoa(r.Code)
	if r.Enhanced != "" {
		would += " " + r.Enhanced
	}
	return audit.Reply{Status: status, Text: "no reply: " + why + " (the reply would have been " + would + " " + r.Text + ")"}
}

// recordedReply is an SMTP reply as the audit log records it.
func recordedReply(e *smtp.SMTPError) audit.Reply {
	if e == nil {
		return audit.Reply{}
	}
	return audit.Reply{Code: e.Code, Enhanced: enhanced(e), Text: e.Message}
}
