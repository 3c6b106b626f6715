// Command verdict is a Postern plugin that gives every message it is called on one configured verdict. It holds
// no rule of its own: the policy's `when` chooses the messages, so the rule stays in the configuration where an
// administrator reads it (policies/demo.hcl quarantines ambiguous or malformed mail that carries attachments
// with it). The reason names what the host flagged in the message, so the audit log and the quarantine say why.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o verdict.wasm . (see README.md).
package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/postern/postern/sdk/postern"
)

// config is the plugin's JSON configuration; see README.md.
type config struct {
	Action string `json:"action"`
	Text   string `json:"text"`
	Code   int    `json:"code"`
	// Flags appends the kinds of the host's defects and ambiguities to the text.
	Flags *bool `json:"flags"`
}

var cfg config

func init() {
	postern.OnInit(setup)
	postern.OnMessage(decide)
}

func main() {}

func setup() error {
	raw, err := postern.ConfigJSON()
	if err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	cfg, err = parseConfig(raw)
	return err
}

func parseConfig(data []byte) (config, error) {
	c := config{Action: "quarantine", Text: "held for review by policy"}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("verdict configuration: %w (the keys are listed in plugins/verdict/README.md)", err)
	}
	if c.Flags == nil {
		on := true
		c.Flags = &on
	}
	switch c.Action {
	case "quarantine", "tag":
		if c.Code != 0 {
			return c, fmt.Errorf("verdict configuration: code is only used with action reject or tempfail")
		}
	case "reject":
		if c.Code == 0 {
			c.Code = 550
		}
		if c.Code < 500 || c.Code > 599 {
			return c, fmt.Errorf("verdict configuration: code %d: a rejection needs a 5xx code", c.Code)
		}
	case "tempfail":
		if c.Code == 0 {
			c.Code = 451
		}
		if c.Code < 400 || c.Code > 499 {
			return c, fmt.Errorf("verdict configuration: code %d: a temporary failure needs a 4xx code", c.Code)
		}
	default:
		return c, fmt.Errorf("verdict configuration: action %q: use quarantine, reject, tempfail or tag", c.Action)
	}
	if len(c.Text) > 400 || !utf8.ValidString(c.Text) || strings.ContainsFunc(c.Text, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return c, fmt.Errorf("verdict configuration: text must be one line of at most 400 bytes of UTF-8")
	}
	return c, nil
}

// decide sets the configured verdict.
func decide(m *postern.Message) error {
	text := cfg.Text
	if *cfg.Flags {
		if f := flags(); f != "" {
			text = clip(text+" ("+f+")", 512)
			if err := m.Tag("verdict.flags", clip(f, 1024)); err != nil {
				return fmt.Errorf("tag: %w", err)
			}
		}
	}
	if err := m.Tag("verdict.action", cfg.Action); err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	var err error
	switch cfg.Action {
	case "quarantine":
		err = m.Quarantine(text)
	case "reject":
		err = m.Reject(cfg.Code, "5.7.1", text)
	case "tempfail":
		err = m.Tempfail(cfg.Code, "4.7.1", text)
	}
	if err != nil {
		return fmt.Errorf("setting the verdict: %w", err)
	}
	return nil
}

// flags summarises what the host flagged: "ambiguous: duplicate-parameter; malformed: bad-encoding".
func flags() string {
	var out []string
	for _, f := range []struct{ field, label string }{{"message.ambiguous", "ambiguous"}, {"message.malformed", "malformed"}} {
		vals, err := postern.Fields(f.field)
		if err != nil || len(vals) == 0 {
			continue // a host without the field, or nothing flagged
		}
		var kinds []string
		for _, v := range vals {
			k, _, _ := strings.Cut(v, ":")
			if !contains(kinds, k) {
				kinds = append(kinds, k)
			}
		}
		out = append(out, f.label+": "+strings.Join(kinds, ", "))
	}
	return strings.Join(out, "; ")
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// clip cuts s to at most n bytes at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
