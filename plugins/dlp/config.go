package main

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/postern/postern/sdk/postern"
)

// The actions of the plugin once a message holds at least min_matches numbers.
const (
	actionTag        = postern.ActionTag
	actionQuarantine = postern.ActionQuarantine
	actionReject     = postern.ActionReject
)

// config is the plugin's JSON configuration; README.md documents every key.
type config struct {
	Action        postern.Action `json:"action"`
	MinMatches    int            `json:"min_matches"`
	ScorePerMatch float64        `json:"score_per_match"`
	Detect        []string       `json:"detect"`
	ContentTypes  []string       `json:"content_types"`
	Extensions    []string       `json:"extensions"`
	Code          int            `json:"code"`
	Text          string         `json:"text"`
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
	if err := postern.DecodeConfig(data, &cfg); err != nil {
		return cfg, fmt.Errorf("dlp configuration: %w", err)
	}
	if err := cfg.Action.Check(actionTag, actionQuarantine, actionReject); err != nil {
		return cfg, fmt.Errorf("dlp configuration: %w", err)
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
	if err := postern.CheckReplyCode(actionReject, cfg.Code); err != nil {
		return cfg, fmt.Errorf("dlp configuration: %w", err)
	}
	if err := postern.CheckReplyText(cfg.Text); err != nil {
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
