package main

import (
	"strings"
	"testing"

	"github.com/postern/postern/proxy/pluginhost"
)

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func TestVerdict(t *testing.T) {
	ambiguous := crlf("From: a@other.test\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n" +
		"--b\nContent-Disposition: attachment; filename=\"a.txt\"; filename=\"a.vbs\"\n\nx\n--b--\n")
	clean := crlf("From: a@other.test\nSubject: x\n\nhello\n")
	for _, tc := range []struct {
		config string
		msg    []byte
		kind   pluginhost.Kind
		code   int
		text   string
	}{
		{`{}`, ambiguous, pluginhost.Quarantine, 0, "held for review by policy (ambiguous: duplicate-parameter, conflicting-names; malformed: bad-header)"},
		{`{}`, clean, pluginhost.Quarantine, 0, "held for review by policy"},
		{`{"flags": false}`, ambiguous, pluginhost.Quarantine, 0, "held for review by policy"},
		{`{"action": "reject", "text": "no"}`, clean, pluginhost.Reject, 550, "no"},
		{`{"action": "tempfail", "code": 452, "text": "later"}`, clean, pluginhost.Tempfail, 452, "later"},
		{`{"action": "tag"}`, ambiguous, pluginhost.Accept, 0, ""},
	} {
		o := harness.Run(t, harness.Load(t, tc.config), tc.msg)
		v := o.Res.Verdict
		if v.Kind != tc.kind || v.Code != tc.code || v.Text != tc.text {
			t.Errorf("%s: verdict %+v, want %v %d %q", tc.config, v, tc.kind, tc.code, tc.text)
		}
		if o.Res.Tags["verdict.action"] == "" || o.Res.Changes.Len() != 0 {
			t.Errorf("%s: tags %v, changes %v", tc.config, o.Res.Tags, o.Res.Changes.List())
		}
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []string{`{"action": "drop"}`, `{"acton": "reject"}`, `{"action": "reject", "code": 451}`,
		`{"action": "quarantine", "code": 550}`, `{"text": "two\nlines"}`} {
		if _, err := parseConfig([]byte(c)); err == nil {
			t.Errorf("%s: accepted", c)
		}
	}
}
