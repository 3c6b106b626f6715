package main

import (
	"fmt"

	"github.com/postern/postern/sdk/postern"
)

// eicarString is the standard 68-byte EICAR anti-virus test file. Scanners are expected to detect it; it is
// harmless by design, which makes it the usual way to check that a mail path is scanned at all.
const eicarString = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// eicarPattern is eicarString as an RE2 literal (regexp.QuoteMeta of it, written out so the guest does not link
// the regexp package just for quoting; a unit test checks the two agree).
const eicarPattern = `X5O!P%@AP\[4\\PZX54\(P\^\)7CC\)7\}\$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!\$H\+H\*`

// The actions the plugin can take when it finds the test string.
const (
	actionReject     = postern.ActionReject
	actionTempfail   = postern.ActionTempfail
	actionQuarantine = postern.ActionQuarantine
	actionDiscard    = postern.ActionDiscard
	actionTag        = postern.ActionTag
)

// defaultCode is the SMTP reply code used when the configuration names none: 554 ("transaction failed") is
// the reply RFC 5321 gives for a refusal at the end of DATA.
func defaultCode(a postern.Action) int {
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
	Action postern.Action `json:"action"`
	Code   int            `json:"code"`
	Text   string         `json:"text"`
	Score  float64        `json:"score"`
}

// defaultConfig is what an empty configuration ({}) means: reject like a virus scanner would.
func defaultConfig() config {
	return config{Action: actionReject, Text: "message contains the EICAR anti-virus test file"}
}

// parseConfig reads the JSON configuration over the defaults. Unknown keys are errors, so that a typo does not
// silently leave a protective default in place (or a permissive one).
func parseConfig(data []byte) (config, error) {
	cfg := defaultConfig()
	if err := postern.DecodeConfig(data, &cfg); err != nil {
		return cfg, fmt.Errorf("eicar configuration: %w", err)
	}
	if err := cfg.Action.Check(actionReject, actionTempfail, actionQuarantine, actionDiscard, actionTag); err != nil {
		return cfg, fmt.Errorf("eicar configuration: %w", err)
	}
	if cfg.Code == 0 {
		cfg.Code = defaultCode(cfg.Action)
	} else if err := postern.CheckReplyCode(cfg.Action, cfg.Code); err != nil {
		return cfg, fmt.Errorf("eicar configuration: %w", err)
	}
	if err := postern.CheckReplyText(cfg.Text); err != nil {
		return cfg, fmt.Errorf("eicar configuration: text: %w", err)
	}
	return cfg, nil
}
