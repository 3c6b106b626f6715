package main

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/postern/postern/internal/pluginharness"
)

// clean10KiB is a clean message of about 10 KiB: a text body and an 7 KiB PDF attachment in base64.
func clean10KiB() []byte {
	pdf := []byte("%PDF-1.4\n" + strings.Repeat("1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n", 140) + "%%EOF\n")
	enc := base64.StdEncoding.EncodeToString(pdf)
	var body strings.Builder
	for len(enc) > 76 {
		body.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	body.WriteString(enc + "\r\n")
	return []byte("From: Partner Sales <sales@other.test>\r\nTo: alice@example.com\r\nSubject: Quarterly report\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat("Hello Alice, the report is attached.\r\n", 20) +
		"--b\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + body.String() + "--b--\r\n")
}

func BenchmarkClean(b *testing.B) {
	harness.Bench(b, "{}", harness.Eml(b, "clean-pdf.eml"), pluginharness.Inbound)
}

func BenchmarkClean10KiB(b *testing.B) {
	harness.Bench(b, "{}", clean10KiB(), pluginharness.Inbound)
}

func BenchmarkSeveralStrip(b *testing.B) {
	harness.Bench(b, `{"action":"strip"}`, harness.Eml(b, "several.eml"), pluginharness.Inbound)
}

func BenchmarkZipWithExe(b *testing.B) {
	harness.Bench(b, "{}", harness.Eml(b, "zip-with-exe.eml"), pluginharness.Inbound)
}

// BenchmarkNestedZip measures a zip holding a zip holding an executable under an innocent name: two levels
// walked, two members decompressed.
func BenchmarkNestedZip(b *testing.B) {
	t := &testing.T{}
	inner := buildZip(t, stored("report.txt", []byte("numbers")), stored("deep/evil.exe", peFile(0x80, 4096)))
	data := withAttachment("photos.zip", buildZip(t, deflated("photo.jpg", inner), deflated("notes.txt", []byte("hi"))))
	harness.Bench(b, "{}", data, pluginharness.Inbound)
}
