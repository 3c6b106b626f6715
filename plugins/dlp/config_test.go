package main

import (
	"slices"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	cfg, err := parseConfig([]byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Action != actionTag || cfg.MinMatches != 1 || cfg.ScorePerMatch != 1 || !cfg.cards || !cfg.ibans ||
		cfg.Code != 554 || !slices.Equal(cfg.ContentTypes, defaultContentTypes) {
		t.Errorf("defaults = %+v", cfg)
	}
	cfg, err = parseConfig([]byte(`{"action":"Quarantine","min_matches":3,"score_per_match":2.5,"detect":["cards"],` +
		`"content_types":["Text/Plain"],"extensions":[".CSV"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Action != actionQuarantine || cfg.MinMatches != 3 || cfg.ScorePerMatch != 2.5 || !cfg.cards || cfg.ibans ||
		!slices.Equal(cfg.ContentTypes, []string{"text/plain"}) || !slices.Equal(cfg.Extensions, []string{"csv"}) {
		t.Errorf("parsed = %+v", cfg)
	}
	// Normalising a configured list must not have changed the defaults.
	if d := defaultConfig(); !slices.Equal(d.ContentTypes, defaultContentTypes) || defaultContentTypes[0] != "text/*" {
		t.Errorf("defaults changed: %v", d.ContentTypes)
	}
	for in, want := range map[string]string{
		`{"action":"drop"}`:          "unknown value",
		`{"min_matches":0}`:          "at least 1",
		`{"score_per_match":-1}`:     "between 0 and 1000",
		`{"detect":["ssn"]}`:         "unknown kind",
		`{"detect":[]}`:              "nothing to look for",
		`{"content_types":["text"]}`: "type/subtype",
		`{"code":451}`:               "5xx",
		`{"text":"a\nb"}`:            "control character",
		`{"min_match":2}`:            `unknown key "min_match" (known keys: act_on_truncated, action,`,
		`{"min_matches":"2"}`:        "min_matches: want a whole number, got a string",
	} {
		_, err := parseConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseConfig(%s) error = %v, want it to mention %q", in, err, want)
		}
	}
}

func TestScans(t *testing.T) {
	cfg := defaultConfig()
	for _, tc := range []struct {
		ct, name string
		want     bool
	}{
		{"text/plain", "", true},
		{"text/html", "", true},
		{"text/csv", "export.csv", true},
		{"application/json", "", true},
		{"application/octet-stream", "export.CSV", true},
		{"application/octet-stream", "export.csv. ", true},
		{"application/octet-stream", "photo.jpg", false},
		{"application/pdf", "statement.pdf", false},
		{"image/png", "", false},
		{"textual/plain", "", false},
	} {
		if got := cfg.scans(tc.ct, tc.name); got != tc.want {
			t.Errorf("scans(%q, %q) = %v, want %v", tc.ct, tc.name, got, tc.want)
		}
	}
}
