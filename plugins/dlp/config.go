package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode/utf8"
)

// action is what the plugin does once a message holds at least min_matches numbers.
type action string

const (
	actionTag        action = "tag"
	actionQuarantine action = "quarantine"
	actionReject     action = "reject"
)

// UnmarshalJSON accepts the action names in any case and refuses anything else.
func (a *action) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("action: want a string, got %s", b)
	}
	switch v := action(strings.ToLower(strings.TrimSpace(s))); v {
	case actionTag, actionQuarantine, actionReject:
		*a = v
		return nil
	}
	return fmt.Errorf("action: unknown value %q (want tag, quarantine or reject)", s)
}

// config is the plugin's JSON configuration; README.md documents every key.
type config struct {
	Action        action   `json:"action"`
	MinMatches    int      `json:"min_matches"`
	ScorePerMatch float64  `json:"score_per_match"`
	Detect        []string `json:"detect"`
	ContentTypes  []string `json:"content_types"`
	Extensions    []string `json:"extensions"`
	Code          int      `json:"code"`
	Text          string   `json:"text"`
	// ActOnTruncated makes a part with more candidate numbers than the host reports count as reaching
	// min_matches: the plugin cannot vouch for what it did not see.
	ActOnTruncated *bool `json:"act_on_truncated"`

	cards, ibans bool
}

// actOnTruncated reports the act_on_truncated setting (default true).
func (c *config) actOnTruncated() bool { return c.ActOnTruncated == nil || *c.ActOnTruncated }

// Defaults. Text attachments are found by media type or, for the many mailers that send everything as
// application/octet-stream, by file extension. An attached message (message/rfc822) needs no entry: the host
// indexes its parts, which are scanned like any other.
var (
	defaultContentTypes = []string{"text/*", "application/json", "application/xml", "application/csv",
		"application/x-csv"}
	defaultExtensions = []string{"txt", "csv", "tsv", "json", "xml", "log", "eml"}
)

// defaultConfig is what an empty configuration ({}) means: tag, and score one point per number.
func defaultConfig() config {
	return config{
		Action:        actionTag,
		MinMatches:    1,
		ScorePerMatch: 1,
		Detect:        []string{"cards", "ibans"},
		// Copies: json.Decode reuses a slice's array, and parseConfig normalises in place.
		ContentTypes: slices.Clone(defaultContentTypes),
		Extensions:   slices.Clone(defaultExtensions),
		Code:         554,
		Text:         "message refused: it appears to contain payment card or bank account numbers",
	}
}

// parseConfig reads the JSON configuration over the defaults. Unknown keys and bad values are errors, so that
// the plugin fails to load instead of quietly protecting less than its administrator believes.
func parseConfig(data []byte) (config, error) {
	cfg := defaultConfig()
	if len(bytes.TrimSpace(data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return cfg, fmt.Errorf("dlp configuration: %w", err)
		}
	}
	if cfg.MinMatches < 1 {
		return cfg, fmt.Errorf("dlp configuration: min_matches %d: must be at least 1", cfg.MinMatches)
	}
	if cfg.ScorePerMatch < 0 || cfg.ScorePerMatch > 1000 {
		return cfg, fmt.Errorf("dlp configuration: score_per_match %g: must be between 0 and 1000", cfg.ScorePerMatch)
	}
	for _, d := range cfg.Detect {
		switch strings.ToLower(d) {
		case "cards":
			cfg.cards = true
		case "ibans":
			cfg.ibans = true
		default:
			return cfg, fmt.Errorf("dlp configuration: detect: unknown kind %q (want cards, ibans)", d)
		}
	}
	if !cfg.cards && !cfg.ibans {
		return cfg, fmt.Errorf("dlp configuration: detect is empty: nothing to look for")
	}
	for i, ct := range cfg.ContentTypes {
		ct = strings.ToLower(strings.TrimSpace(ct))
		if _, _, ok := strings.Cut(ct, "/"); !ok {
			return cfg, fmt.Errorf("dlp configuration: content_types: %q is not type/subtype", ct)
		}
		cfg.ContentTypes[i] = ct
	}
	for i, e := range cfg.Extensions {
		cfg.Extensions[i] = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(e)), ".")
	}
	if cfg.Code < 500 || cfg.Code > 599 {
		return cfg, fmt.Errorf("dlp configuration: code %d: a rejection needs a 5xx code", cfg.Code)
	}
	if err := checkReplyText(cfg.Text); err != nil {
		return cfg, fmt.Errorf("dlp configuration: text: %w", err)
	}
	return cfg, nil
}

// scans reports whether a leaf part with this content type and file name is text worth scanning.
func (c *config) scans(contentType, filename string) bool {
	for _, p := range c.ContentTypes {
		if p == contentType {
			return true
		}
		if typ, ok := strings.CutSuffix(p, "/*"); ok && strings.HasPrefix(contentType, typ+"/") {
			return true
		}
	}
	if filename == "" {
		return false
	}
	ext := strings.TrimPrefix(strings.ToLower(path.Ext(strings.TrimRight(filename, ". "))), ".")
	for _, e := range c.Extensions {
		if e != "" && e == ext {
			return true
		}
	}
	return false
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
