package main

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	s, err := parseConfig([]byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if s.action != actionReject || s.code != 554 || !s.archives || len(s.sniff) != len(allKinds) ||
		len(s.extensions) != len(defaultExtensions) || len(s.contentTypes) != len(defaultContentTypes) ||
		s.stripNote != defaultStripNote || s.stripHeader != defaultStripHeader || s.score != 0 {
		t.Errorf("defaults = %+v", s)
	}
	s, err = parseConfig([]byte(`{"action":"Strip","add_extensions":["DOCM"],"remove_extensions":[".exe"],` +
		`"add_content_types":["Application/X-Foo; x=1"],"sniff":["pe"],"archives":false,"code":550,` +
		`"strip_note":"","strip_header":"","score":3}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.action != actionStrip || !s.extensions["docm"] || s.extensions["exe"] || !s.contentTypes["application/x-foo"] ||
		len(s.sniff) != 1 || !s.sniff["pe"] || s.archives || s.code != 550 || s.stripNote != "" || s.stripHeader != "" ||
		s.score != 3 {
		t.Errorf("parsed = %+v", s)
	}
	for in, want := range map[string]string{
		`{"action":"delete"}`:          "unknown value",
		`{"extension":["exe"]}`:        `unknown key "extension" (known keys: action, add_content_types,`,
		`{"sniff":["pdf"]}`:            "unknown kind",
		`{"content_types":["exe"]}`:    "type/subtype",
		`{"code":250}`:                 "5xx",
		`{"strip_header":"X Removed"}`: "not allowed",
		`{"strip_note":"` + strings.Repeat("x", 500) + ` {files}"}`: "break it into lines",
		`{"archives":"yes"}`: "archives: want true or false, got a string",
	} {
		_, err := parseConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseConfig(%.60s) error = %v, want it to mention %q", in, err, want)
		}
	}
	// A note on several lines may be long in total.
	if _, err := parseConfig([]byte(`{"strip_note":"` + strings.Repeat("x", 300) + `\n{files}\n` + strings.Repeat("y", 300) + `"}`)); err != nil {
		t.Errorf("multi-line note: %v", err)
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"invoice.pdf.exe":       "invoice.pdf.exe",
		"contract\u202Efdp.scr": "contract?fdp.scr",
		"a\r\nb\x00c\x7f":       "a??b?c?",
		"Rechnungübersicht.exe": "Rechnungübersicht.exe",
		"bad\xffutf8":           "bad?utf8",
	} {
		if got := printable(in, 100); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
	if got := printable("ääää", 5); got != "ää" {
		t.Errorf("cut inside a character: %q", got)
	}
}
