package main

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/pluginhost"
)

// TestEveryCandidateName: where mail clients disagree on a part's file name, every name the host lists is
// checked, not only the first; and a blocked part that the host found inside another (a uuencoded block) is not
// stripped but rejected.
func TestEveryCandidateName(t *testing.T) {
	msg := func(fields, body string) []byte {
		return []byte(strings.ReplaceAll("From: a@example.org\nTo: b@example.com\nSubject: x\nMIME-Version: 1.0\n"+
			"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhello\n--b\n"+fields+"\n\n"+body+"\n--b--\n", "\n", "\r\n"))
	}
	data := base64.StdEncoding.EncodeToString([]byte("harmless text"))
	for _, tc := range []struct {
		name, fields, body string
		files              string
	}{
		{"duplicate filename", "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n" +
			`Content-Disposition: attachment; filename="a.txt"; filename="a.vbs"`, data, "a.txt / a.vbs"},
		{"name against filename", "Content-Type: application/octet-stream; name=\"report.exe\"\nContent-Transfer-Encoding: base64\n" +
			`Content-Disposition: attachment; filename="report.pdf"`, data, "report.pdf / report.exe"},
		{"plain against RFC 2231", "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n" +
			`Content-Disposition: attachment; filename="a.txt"; filename*=utf-8''a.scr`, data, "a.scr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := harness.Run(t, harness.Load(t, "{}"), msg(tc.fields, tc.body))
			if o.Res.Verdict.Kind != pluginhost.Reject || o.Res.Tags["attachment-guard.files"] != tc.files {
				t.Errorf("verdict %+v, files %q, want reject of %q", o.Res.Verdict, o.Res.Tags["attachment-guard.files"], tc.files)
			}
		})
	}
	uu := "begin 644 run.vbs\n%35-G0F]X\n`\nend\n"
	o := harness.Run(t, harness.Load(t, `{"action": "strip"}`), msg("Content-Type: text/plain", "see below\n"+uu))
	if o.Res.Verdict.Kind != pluginhost.Reject || !strings.Contains(o.Res.Tags["attachment-guard.files"], "run.vbs") || o.Res.Changes.Len() != 0 {
		t.Errorf("uuencoded block with strip: verdict %+v, tags %v, %d changes", o.Res.Verdict, o.Res.Tags, o.Res.Changes.Len())
	}
}
