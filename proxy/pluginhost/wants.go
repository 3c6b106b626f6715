package pluginhost

import (
	"fmt"
	"strings"

	"github.com/postern/postern/proxy/message"
)

// Wants is what a plugin's message hook is for (ABI §2.2, postern_wants): a set of message shapes. A message of
// none of them cannot change the plugin's answer, so the host skips the call and records it as skipped. The zero
// value is every message.
type Wants uint32

// WantFiles: messages that may carry a file (ABI §2.2): a part other than an inline, unnamed text/plain or
// text/html body, a derived part, or anything the host cannot vouch for (a defect, an ambiguity, a bound).
const WantFiles Wants = 0x1

// knownWants are the bits this host honours; a declaration with any other bit is ignored whole (calling a plugin
// on every message is always safe, skipping on a bit the host does not understand is not).
const knownWants = WantFiles

// String names the set, for logs and traces: "files", or "" for every message.
func (w Wants) String() string {
	var names []string
	if w&WantFiles != 0 {
		names = append(names, "files")
	}
	if rest := w &^ knownWants; rest != 0 {
		names = append(names, fmt.Sprintf("%#x", uint32(rest)))
	}
	return strings.Join(names, ",")
}

// Wants returns the message shapes the plugin declared its message hook is for; 0 means every message.
func (p *Plugin) Wants() Wants { return p.wants }

// skipReason says why a message-hook call on in can be skipped, or "" when the plugin must run.
func (p *Plugin) skipReason(in *Input) string {
	if p.wants == 0 || in.Msg == nil || in.mayCarryFiles() {
		return ""
	}
	return "the message carries no file (the plugin wants only messages that may: postern_wants files)"
}

// mayCarryFiles reports whether the message has a part that is not a plain body, remembered for the chain.
func (in *Input) mayCarryFiles() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.shape == 0 {
		in.shape = 1
		if hasFiles(in.Msg) {
			in.shape = 2
		}
	}
	return in.shape == 2
}

// hasFiles is the WantFiles test. A plain body is an inline (no attachment disposition), unnamed text/plain or
// text/html leaf of the message's own structure, without defects, ambiguities or a bound: mail clients show it as
// text and offer nothing to save or run. Everything else may be a file, and so is a message with any defect or
// ambiguity (where clients may read it differently from the host).
func hasFiles(m *message.Message) bool {
	if len(m.Defects()) > 0 || len(m.Ambiguities()) > 0 {
		return true
	}
	parts := m.Parts()
	for i := range parts {
		p := &parts[i]
		if p.Derived != "" || p.Incomplete != "" || len(p.Defects) > 0 || len(p.Ambiguities) > 0 ||
			p.Filename != "" || len(p.Filenames) > 0 || p.Disposition == "attachment" {
			return true
		}
		if p.Multipart {
			continue
		}
		if p.ContentType != "text/plain" && p.ContentType != "text/html" {
			return true
		}
	}
	return false
}
