package message

import (
	"strings"
	"testing"
)

func TestNormalizeFilename(t *testing.T) {
	tests := []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"a/b\\c.exe", "c.exe"},
		{`C:\Users\x\evil.exe`, "evil.exe"},
		{"../../etc/passwd", "passwd"},
		{"evil.exe.", "evil.exe"},
		{"evil.exe . . ", "evil.exe"},
		{"evil.exe/", "evil.exe"},
		{"  spaced.txt", "spaced.txt"},
		{"ev\x00il\t.e\x1bxe", "evil.exe"},
		{"ev\u0085il.exe", "evil.exe"},           // C1 control
		{"cafe\u0301.txt", "caf\u00e9.txt"},      // NFD to NFC
		{"bad\xffbyte.txt", "bad\ufffdbyte.txt"}, // invalid UTF-8 is replaced, not dropped
		{"..", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := NormalizeFilename(tc.in); got != tc.want {
			t.Errorf("NormalizeFilename(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFilename(t *testing.T) {
	tests := []struct {
		name, fields, want string
		defect             string // a kind the part must have, or ""
	}{
		{"disposition", `Content-Disposition: attachment; filename="a.pdf"`, "a.pdf", ""},
		{"content-type name", `Content-Type: application/pdf; name="b.pdf"`, "b.pdf", ""},
		{"disposition wins", "Content-Type: application/pdf; name=\"b.pdf\"\nContent-Disposition: attachment; filename=\"a.pdf\"", "a.pdf", KindBadHeader},
		{"continuation", `Content-Disposition: attachment; filename*0*=utf-8''ev; filename*1=il.exe`, "evil.exe", ""},
		{"continuation folded", "Content-Disposition: attachment;\n filename*0=\"ev\";\n filename*1=\"il.exe\"", "evil.exe", ""},
		{"continuation out of order", `Content-Disposition: attachment; filename*1=il.exe; filename*0=ev`, "evil.exe", ""},
		{"continuation in latin-1", `Content-Disposition: attachment; filename*0*=iso-8859-1''%E9v; filename*1=il.exe`, "\u00e9vil.exe", ""},
		{"continuation with a gap", `Content-Disposition: attachment; filename*0=ev; filename*2=il.exe`, "evil.exe", KindBadHeader},
		{"extended value", `Content-Disposition: attachment; filename*=UTF-8'en'%E2%82%AC%20rates.exe`, "\u20ac rates.exe", ""},
		{"extended beats plain", "Content-Disposition: attachment; filename=\"harmless.txt\"; filename*=utf-8''evil.exe", "evil.exe", KindBadHeader},
		{"unknown charset keeps ASCII", `Content-Disposition: attachment; filename*=x-martian''evil.exe`, "evil.exe", KindUnknownCharset},
		{"rfc 2047 in name", `Content-Type: application/octet-stream; name="=?utf-8?B?UmVjaG51bmcuZXhl?="`, "Rechnung.exe", ""},
		{"rfc 2047 latin-1", `Content-Disposition: attachment; filename="=?iso-8859-1?Q?R=E9sum=E9.doc?="`, "R\u00e9sum\u00e9.doc", ""},
		{"double extension", `Content-Disposition: attachment; filename="invoice.pdf.exe"`, "invoice.pdf.exe", ""},
		{"path and trailing dots", `Content-Disposition: attachment; filename="..\\..\\Startup/run.exe. . "`, "run.exe", ""},
		{"msie unescaped path", `Content-Disposition: attachment; filename="C:\dev\evil.exe"`, "evil.exe", ""},
		{"unterminated quote", `Content-Disposition: attachment; filename="evil.exe; size=12`, "evil.exe", KindBadHeader},
		{"unquoted with spaces", `Content-Disposition: attachment; filename=my evil.exe`, "my evil.exe", KindBadHeader},
		{"unquoted tspecials", `Content-Type: application/pdf; name=Invoice_(3).pdf`, "Invoice_(3).pdf", KindBadContentType},
		{"name on disposition", `Content-Disposition: attachment; name="x.exe"`, "x.exe", ""},
		{"duplicate filename", `Content-Disposition: attachment; filename=a.txt; filename=b.exe`, "a.txt", KindBadHeader},
		{"no name", `Content-Disposition: attachment`, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, crlf(tc.fields+"\n\nx\n"), Limits{})
			p := m.Parts()[0]
			if p.Filename != tc.want {
				t.Errorf("Filename = %q, want %q", p.Filename, tc.want)
			}
			if tc.defect == "" && p.Defects != nil {
				t.Errorf("defects %v", p.Defects)
			}
			if tc.defect != "" && !hasKind(p.Defects, tc.defect) {
				t.Errorf("want a %s defect, have %v", tc.defect, p.Defects)
			}
		})
	}
}

func TestFilenameCorpus(t *testing.T) {
	tests := []struct{ file, want string }{
		{"rfc2231-continuation.eml", "evil.exe"},
		{"rfc2231-latin1.eml", "\u00e9vil.exe"},
		{"rfc2231-gap.eml", "evil.exe"},
		{"filename-conflict.eml", "evil.exe"},
		{"rfc2047-name.eml", "Rechnung.exe"},
		{"double-extension.eml", "invoice.pdf.exe"},
		{"path-trailing-dot.eml", "run.exe"},
		{"unterminated-quote.eml", "evil.exe"},
	}
	for _, tc := range tests {
		m := mustParse(t, readCorpus(t, "postern/"+tc.file), Limits{})
		if got := m.Parts()[2].Filename; got != tc.want {
			t.Errorf("%s: filename %q, want %q", tc.file, got, tc.want)
		}
	}
}

func TestParams(t *testing.T) {
	m := mustParse(t, crlf("Content-Type: Text/HTML; Charset=\"ISO-8859-1\"; Format=flowed; title*=utf-8''%C3%A9t%C3%A9\n\nx\n"), Limits{})
	p := m.Parts()[0]
	if p.ContentType != "text/html" || p.Charset != "iso-8859-1" || p.Params["format"] != "flowed" || p.Params["title"] != "\u00e9t\u00e9" {
		t.Errorf("%s %s %v", p.ContentType, p.Charset, p.Params)
	}
	// The boundary is not RFC 2047-decoded: it must match the delimiter lines byte for byte.
	raw := crlf("Content-Type: multipart/mixed; boundary=\"=?utf-8?q?x?=\"\n\n--=?utf-8?q?x?=\n\nx\n--=?utf-8?q?x?=--\n")
	m = mustParse(t, raw, Limits{})
	if len(m.Parts()) != 2 || m.Malformed() {
		t.Errorf("encoded-word boundary: %d parts, %v", len(m.Parts()), m.Defects())
	}
	if got := leadingType("multipart/mixed boundary=x", true); got != "multipart/mixed" {
		t.Errorf("leadingType = %q", got)
	}
	for _, v := range []string{"", "text", "/plain", "text/"} {
		if got := leadingType(v, true); got != "" {
			t.Errorf("leadingType(%q) = %q", v, got)
		}
	}
	if got := string(percentDecode("a%4G%41%")); got != "a%4GA%" {
		t.Errorf("percentDecode = %q", got)
	}
}

func TestDispositionTypes(t *testing.T) {
	for in, want := range map[string]string{"inline": "inline", "ATTACHMENT": "attachment", "form-data": "attachment", "": ""} {
		raw := "x: y\n\nb"
		if in != "" || want != "" {
			raw = "Content-Disposition: " + in + "\n\nb"
		}
		m := mustParse(t, raw, Limits{})
		if got := m.Parts()[0].Disposition; got != want {
			t.Errorf("%q: disposition %q, want %q", in, got, want)
		}
	}
	if strings.Contains(clip(strings.Repeat("x", 500)), strings.Repeat("x", 201)) {
		t.Error("clip does not clip")
	}
}
