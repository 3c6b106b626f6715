package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// eicarString is the standard 68-byte EICAR anti-virus test file. Scanners are expected to detect it; it is
// harmless by design, which makes it the usual way to check that a mail path is scanned at all.
const eicarString = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// eicarPattern is eicarString as an RE2 literal (regexp.QuoteMeta of it, written out so the guest does not link
// the regexp package just for quoting; a unit test checks the two agree).
const eicarPattern = `X5O!P%@AP\[4\\PZX54\(P\^\)7CC\)7\}\$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!\$H\+H\*`

// action is what the plugin does when it finds the test string.
type action string

const (
	actionReject     action = "reject"
	actionTempfail   action = "tempfail"
	actionQuarantine action = "quarantine"
	actionDiscard    action = "discard"
	actionTag        action = "tag"
)

// UnmarshalJSON accepts the action names in any case and refuses anything else.
func (a *action) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("action: want a string, got %s", b)
	}
	switch v := action(strings.ToLower(strings.TrimSpace(s))); v {
	case actionReject, actionTempfail, actionQuarantine, actionDiscard, actionTag:
		*a = v
		return nil
	}
	return fmt.Errorf("action: unknown value %q (want reject, tempfail, quarantine, discard or tag)", s)
}

// defaultCode is the SMTP reply code used when the configuration names none: 554 ("transaction failed") is
// the reply RFC 5321 gives for a refusal at the end of DATA.
func (a action) defaultCode() int {
	switch a {
	case actionReject:
		return 554
	case actionTempfail:
		return 451
	}
	return 0
}

// config is the plugin's JSON configuration; see README.md.
type config struct {
	Action action  `json:"action"`
	Code   int     `json:"code"`
	Text   string  `json:"text"`
	Score  float64 `json:"score"`
}

// defaultConfig is what an empty configuration ({}) means: reject like a virus scanner would.
func defaultConfig() config {
	return config{Action: actionReject, Text: "message contains the EICAR anti-virus test file"}
}

// parseConfig reads the JSON configuration over the defaults. Unknown keys are errors, so that a typo does not
// silently leave a protective default in place (or a permissive one).
func parseConfig(data []byte) (config, error) {
	cfg := defaultConfig()
	if len(strings.TrimSpace(string(data))) == 0 {
		return cfg, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("eicar configuration: %w", err)
	}
	switch {
	case cfg.Code == 0:
	case cfg.Action == actionReject && (cfg.Code < 500 || cfg.Code > 599):
		return cfg, fmt.Errorf("eicar configuration: code %d: a rejection needs a 5xx code", cfg.Code)
	case cfg.Action == actionTempfail && (cfg.Code < 400 || cfg.Code > 499):
		return cfg, fmt.Errorf("eicar configuration: code %d: a temporary failure needs a 4xx code", cfg.Code)
	case cfg.Action != actionReject && cfg.Action != actionTempfail:
		return cfg, fmt.Errorf("eicar configuration: code is only used with action reject or tempfail")
	}
	if cfg.Code == 0 {
		cfg.Code = cfg.Action.defaultCode()
	}
	if err := checkReplyText(cfg.Text); err != nil {
		return cfg, fmt.Errorf("eicar configuration: text: %w", err)
	}
	return cfg, nil
}

// checkReplyText applies the ABI's rules for reply text (printable UTF-8, no CR/LF, at most 512 bytes) at
// configuration time, so a bad text fails the load instead of every message.
func checkReplyText(s string) error {
	if len(s) > 512 {
		return fmt.Errorf("%d bytes, at most 512", len(s))
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}
