package imapproxy

import (
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/mailflow"
	"github.com/postern/postern/proxy/pluginhost"
)

// Append runs the outbound policy on a message the client stores (its Sent copy, a draft) before it is stored
// upstream: accept stores the message as the policy changed it and passes APPENDUID back; reject and quarantine
// answer NO with the plugin's text (a quarantined message is kept in the quarantine); discard answers OK and
// stores nothing, once its record is durable; tempfail, or anything that cannot be carried out, answers
// NO [UNAVAILABLE]. Nothing is stored upstream unless the policy accepted it, and an accepted message is OK only
// once the upstream said so.
func (ss *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	defer ss.begin()()
	sp, err := ss.mf.Receive(r)
	if errors.Is(err, mailflow.ErrTooLarge) {
		io.Copy(io.Discard, r)
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig,
			Text: fmt.Sprintf("Message too large (limit %d bytes)", ss.appendLimit)}
	}
	if err != nil {
		return nil, fmt.Errorf("reading the APPEND literal: %w", err)
	}
	defer sp.Close()
	if options == nil {
		options = &imap.AppendOptions{}
	}
	saved := ss.view.name
	ss.view.name = mailbox // the plugins' msg.mailbox is APPEND's target
	in := &pluginhost.Input{Env: ss.envelope("outbound", "append", 0, options.Time, options.Flags)}
	ss.view.name = saved
	in.Env.UIDValidity = 0
	out, err := ss.mf.Message(sp, mailflow.MessageInput{In: in, ID: ss.id + "-append-" + newID()})
	if err != nil {
		ss.log.Warn("appended message could not be indexed; not stored", "mailbox", mailbox, "err", err)
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
			Text: "Message could not be filtered, try again later"}
	}
	defer out.Close()
	no := func(code imap.ResponseCode, text string) (*imap.AppendData, error) {
		e := &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
		reply := audit.Reply{Status: audit.StatusIMAPNo, Text: text}
		if code != "" {
			reply.Text = "[" + string(code) + "] " + text
		}
		if err := out.RecordDurable(reply); err != nil {
			ss.log.Error("audit record not written", "err", err)
		}
		return nil, e
	}
	if out.Err != nil {
		ss.log.Warn("policy outcome could not be carried out; not stored", "mailbox", mailbox,
			"action", out.Action.String(), "err", out.Err)
		return no(imap.ResponseCodeUnavailable, "Message could not be filtered, try again later")
	}
	text := ""
	if out.Decision != nil {
		text = mailflow.ReplyText(out.Decision.Text)
	}
	switch out.Action {
	case pluginhost.Accept:
	case pluginhost.Tempfail:
		if text == "" {
			text = "Message temporarily refused, try again later"
		}
		return no(imap.ResponseCodeUnavailable, text)
	case pluginhost.Quarantine:
		if text == "" {
			text = "Message not stored: it was quarantined by the mail filter"
		}
		return no("", text+" (quarantine "+out.QuarantineID+")")
	case pluginhost.Discard:
		if err := out.RecordDurable(audit.Reply{Status: audit.StatusIMAPOK, Text: "APPEND completed (discarded)"}); err != nil {
			ss.log.Error("audit record not written; discard refused", "err", err)
			return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
				Text: "Decision could not be recorded, try again later"}
		}
		return nil, nil
	default: // reject
		if text == "" {
			text = "Message refused by the mail filter"
		}
		return no("", text)
	}
	body, size := out.Content()
	var data *imap.AppendData
	err = ss.wait(func() error {
		cmd := ss.up.c.Append(mailbox, size, options)
		_, werr := io.Copy(cmd, io.NewSectionReader(body, 0, size))
		cerr := cmd.Close()
		d, err := cmd.Wait()
		data = d
		if werr != nil {
			return werr
		}
		if cerr != nil {
			return cerr
		}
		return err
	})
	if err != nil {
		var ie *imap.Error
		reply := audit.Reply{Status: audit.StatusIMAPBye, Text: "Mail server not available"}
		if errors.As(err, &ie) {
			reply = audit.Reply{Status: string(ie.Type), Text: ie.Text}
		}
		out.Record(reply)
		return nil, err
	}
	out.Record(audit.Reply{Status: audit.StatusIMAPOK, Text: "APPEND completed"})
	if data == nil || data.UID == 0 {
		return nil, nil
	}
	return data, nil
}
