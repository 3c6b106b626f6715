package postern

import (
	"strings"
	"testing"
)

func TestDecodeConfigErrors(t *testing.T) {
	type nested struct {
		Mode string `json:"mode"`
	}
	type cfg struct {
		Action  Action   `json:"action"`
		Min     int      `json:"min_matches"`
		Score   float64  `json:"score"`
		On      *bool    `json:"enabled"`
		List    []string `json:"list"`
		Inner   nested   `json:"inner"`
		Ignored string   `json:"-"`
		private int      //lint:ignore U1000 an unexported field is not a configuration key, which the test checks
	}
	for in, want := range map[string]string{
		`{"acton":"tag"}`:         `unknown key "acton" (known keys: action, enabled, inner, list, min_matches, score)`,
		`{"inner":{"mdoe":"x"}}`:  `unknown key "mdoe"`,
		`{"min_matches":"2"}`:     "min_matches: want a whole number, got a string",
		`{"min_matches":1.5}`:     "min_matches: want a whole number, got number 1.5",
		`{"score":"high"}`:        "score: want a number, got a string",
		`{"enabled":"yes"}`:       "enabled: want true or false, got a string",
		`{"list":"a"}`:            "list: want a list, got a string",
		`{"inner":[]}`:            "inner: want an object, got a list",
		`{"inner":{"mode":1}}`:    "inner.mode: want a string, got number",
		`[1]`:                     "the configuration: want an object, got a list",
		`{"action":1}`:            "action: want a string, got 1",
		`{"score":1,}`:            "not valid JSON at offset 12: invalid character '}'",
		`{"score":1`:              "not valid JSON: the document is cut short",
		`{"score":1} {"score":2}`: "data after the JSON document",
		`{"Ignored":"x"}`:         `unknown key "Ignored"`,
		`{"private":1}`:           `unknown key "private"`,
	} {
		var c cfg
		err := DecodeConfig([]byte(in), &c)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("DecodeConfig(%s) = %v, want %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "json:") {
			t.Errorf("DecodeConfig(%s) = %v: a decoder's error, not the configuration's words", in, err)
		}
	}
	c := cfg{Min: 7}
	if err := DecodeConfig([]byte(` {"action":" Quarantine "} `), &c); err != nil || c.Action != ActionQuarantine || c.Min != 7 {
		t.Errorf("decoded %+v, %v", c, err)
	}
	if err := DecodeConfig(nil, &c); err != nil {
		t.Errorf("empty configuration: %v", err)
	}
}

func TestActionCheck(t *testing.T) {
	if err := ActionTag.Check(ActionReject, ActionTag); err != nil {
		t.Error(err)
	}
	err := Action("drop").Check(ActionReject, ActionQuarantine, ActionTag)
	if err == nil || err.Error() != `action: unknown value "drop" (want reject, quarantine or tag)` {
		t.Errorf("Check = %v", err)
	}
}

func TestCheckReplyCode(t *testing.T) {
	for _, tc := range []struct {
		a    Action
		code int
		want string
	}{
		{ActionReject, 554, ""},
		{ActionReject, 451, "a rejection needs a 5xx code"},
		{ActionTempfail, 451, ""},
		{ActionTempfail, 554, "a temporary failure needs a 4xx code"},
		{ActionTag, 554, "only used with action reject or tempfail"},
	} {
		err := CheckReplyCode(tc.a, tc.code)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckReplyCode(%s, %d) = %v, want %q", tc.a, tc.code, err, tc.want)
		}
	}
}

func TestCheckReplyText(t *testing.T) {
	for s, want := range map[string]string{
		"message refused":        "",
		"a\r\nb":                 "control character U+000D",
		"tab\there":              "control character U+0009",
		"\xff":                   "not valid UTF-8",
		strings.Repeat("x", 512): "",
		strings.Repeat("x", 513): "513 bytes, at most 512",
	} {
		err := CheckReplyText(s)
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("CheckReplyText(%.20q) = %v, want %q", s, err, want)
		}
	}
}
