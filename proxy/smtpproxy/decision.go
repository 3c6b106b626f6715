package smtpproxy

import (
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
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
	text = cleanText(d.Text)
	if text == "" {
		text = defText
	}
	ec, _ := parseEnhanced(enh)
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: text}
}

// cleanText makes a reply text safe for one SMTP reply line: printable, valid UTF-8, at most 512 bytes.
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 512 {
		cut := 512
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
