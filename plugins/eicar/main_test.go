package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/postern/postern/internal/pluginharness"
	"github.com/postern/postern/proxy/pluginhost"
)

func TestDetection(t *testing.T) {
	p := harness.Load(t, "{}")
	for _, tc := range []struct {
		file  string
		found string // the eicar.found tag, "" for a clean message
	}{
		{"clean.eml", ""},
		{"eicar-altered.eml", ""},
		{"eicar-body.eml", "part 0"},
		{"eicar-base64.eml", "part 2 (eicar.com)"},
		{"eicar-qp-softbreak.eml", "part 0"},
		{"eicar-forwarded.eml", "(eicar.com)"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			in := harness.Eml(t, tc.file)
			o := harness.Run(t, p, in)
			if !bytes.Equal(o.Out, in) || o.Res.Changes.Len() != 0 {
				t.Errorf("the plugin changed the message: %v", o.Res.Changes.List())
			}
			if tc.found == "" {
				if o.Res.Verdict.Kind != pluginhost.Accept || len(o.Res.Tags) != 0 || o.Res.Score != 0 {
					t.Errorf("clean message: verdict %+v, tags %v, score %v", o.Res.Verdict, o.Res.Tags, o.Res.Score)
				}
				return
			}
			v := o.Res.Verdict
			if v.Kind != pluginhost.Reject || v.Code != 554 || v.Enhanced != "5.7.1" || !strings.Contains(v.Text, "EICAR") {
				t.Errorf("verdict = %+v, want reject 554 5.7.1 naming EICAR", v)
			}
			if got := o.Res.Tags["eicar.found"]; !strings.Contains(got, tc.found) {
				t.Errorf("eicar.found = %q, want it to contain %q", got, tc.found)
			}
			if !logged(o.Res, "EICAR test file found") {
				t.Errorf("no warning logged: %v", o.Res.Logs)
			}
		})
	}
}

func logged(res *pluginhost.Result, s string) bool {
	for _, l := range res.Logs {
		if strings.Contains(l.Text, s) {
			return true
		}
	}
	return false
}

func TestActions(t *testing.T) {
	for _, tc := range []struct {
		cfg   string
		want  pluginhost.Verdict
		score float64
	}{
		{`{"action":"tempfail"}`, pluginhost.Verdict{Kind: pluginhost.Tempfail, Code: 451, Enhanced: "4.7.1",
			Text: "message contains the EICAR anti-virus test file"}, 0},
		{`{"action":"quarantine","text":"EICAR seen"}`, pluginhost.Verdict{Kind: pluginhost.Quarantine, Text: "EICAR seen"}, 0},
		{`{"action":"discard"}`, pluginhost.Verdict{Kind: pluginhost.Discard}, 0},
		{`{"action":"tag","score":7.5}`, pluginhost.Verdict{Kind: pluginhost.Accept}, 7.5},
		{`{"code":550,"text":"no test viruses, please","score":1}`, pluginhost.Verdict{Kind: pluginhost.Reject,
			Code: 550, Enhanced: "5.7.1", Text: "no test viruses, please"}, 1},
	} {
		t.Run(tc.cfg, func(t *testing.T) {
			o := harness.Run(t, harness.Load(t, tc.cfg), harness.Eml(t, "eicar-base64.eml"))
			if o.Res.Verdict != tc.want {
				t.Errorf("verdict = %+v, want %+v", o.Res.Verdict, tc.want)
			}
			if o.Res.Score != tc.score {
				t.Errorf("score = %v, want %v", o.Res.Score, tc.score)
			}
			if o.Res.Tags["eicar.found"] == "" {
				t.Errorf("no eicar.found tag: %v", o.Res.Tags)
			}
			// The configuration never makes a clean message fail.
			if c := harness.Run(t, harness.Load(t, tc.cfg), harness.Eml(t, "clean.eml")); c.Res.Verdict.Kind != pluginhost.Accept || c.Res.Score != 0 {
				t.Errorf("clean message: %+v, score %v", c.Res.Verdict, c.Res.Score)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"action":"delete"}`:              "unknown value",
		`{"actoin":"tag"}`:                 `unknown key "actoin"`,
		`{"action":"tempfail","code":554}`: "4xx",
	} {
		_, err := harness.LoadErr(t, cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s) error = %v, want it to mention %q", cfg, err, want)
		}
	}
}

// TestCorpus runs the plugin over the shared corpus of real and malformed mail: none of it holds the test
// string, so every message must be accepted untouched and no call may fail.
func TestCorpus(t *testing.T) {
	p := harness.Load(t, "{}")
	for _, f := range pluginharness.Corpus(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		o := harness.Run(t, p, data)
		if o.Res.Verdict.Kind != pluginhost.Accept || !bytes.Equal(o.Out, data) {
			t.Errorf("%s: verdict %+v, changes %v", f, o.Res.Verdict, o.Res.Changes.List())
		}
	}
}
