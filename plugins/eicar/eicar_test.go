package main

import (
	"regexp"
	"strings"
	"testing"
)

func TestEICARPattern(t *testing.T) {
	if len(eicarString) != 68 {
		t.Fatalf("EICAR string has %d bytes, want 68", len(eicarString))
	}
	if want := regexp.QuoteMeta(eicarString); eicarPattern != want {
		t.Fatalf("eicarPattern = %s, want regexp.QuoteMeta(eicarString) = %s", eicarPattern, want)
	}
	re := regexp.MustCompile(eicarPattern)
	if !re.MatchString("junk " + eicarString + "\r\n") {
		t.Error("pattern does not find the EICAR string")
	}
	if re.MatchString(strings.Replace(eicarString, "EICAR", "EICAS", 1)) {
		t.Error("pattern finds an altered string")
	}
}

func TestParseConfig(t *testing.T) {
	cfg, err := parseConfig([]byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Action != actionReject || cfg.Code != 554 || cfg.Score != 0 || !strings.Contains(cfg.Text, "EICAR") {
		t.Errorf("defaults = %+v", cfg)
	}
	cfg, err = parseConfig([]byte(`{"action":"TempFail"}`))
	if err != nil || cfg.Action != actionTempfail || cfg.Code != 451 {
		t.Errorf("tempfail: cfg = %+v, err = %v", cfg, err)
	}
	cfg, err = parseConfig([]byte(`{"action":"reject","code":550,"text":"no test viruses here","score":5}`))
	if err != nil || cfg.Code != 550 || cfg.Text != "no test viruses here" || cfg.Score != 5 {
		t.Errorf("reject 550: cfg = %+v, err = %v", cfg, err)
	}
	for in, want := range map[string]string{
		`{"action":"drop"}`:                           "unknown value",
		`{"action":5}`:                                "want a string",
		`{"acton":"tag"}`:                             `unknown key "acton" (known keys: action, code, score, text)`,
		`{"code":250}`:                                "5xx",
		`{"action":"tempfail","code":550}`:            "4xx",
		`{"action":"tag","code":550}`:                 "only used",
		`{"text":"two\r\nlines"}`:                     "control character",
		`{"text":"` + strings.Repeat("x", 513) + `"}`: "at most 512",
		`[`: "the document is cut short",
	} {
		_, err := parseConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseConfig(%.40s) error = %v, want it to mention %q", in, err, want)
		}
	}
}
