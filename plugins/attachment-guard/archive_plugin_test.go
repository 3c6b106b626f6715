package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/pluginhost"
)

// withAttachment returns a message with a text body and one base64 attachment named name.
func withAttachment(name string, data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	var body strings.Builder
	for len(enc) > 76 {
		body.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	body.WriteString(enc + "\r\n")
	return []byte("From: x@other.test\r\nTo: alice@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/octet-stream; name=\"" + name + "\"\r\n" +
		"Content-Disposition: attachment; filename=\"" + name + "\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		body.String() + "--b--\r\n")
}

// TestArchivesInPlugin runs the built plugin on archives of every kind it lists, so the format libraries are
// exercised in WebAssembly, and checks that the reply text says what was found or which bound was hit.
func TestArchivesInPlugin(t *testing.T) {
	inner := buildZip(t, stored("deep/evil.exe", []byte("x")))
	nested := buildZip(t, stored("docs.zip", buildZip(t, deflated("photo.jpg", inner))))
	bomb := buildZip(t, deflated("big.zip", buildZip(t, stored("zeros.bin", make([]byte, 20<<20)))))
	dir := archiveDir(t)
	tool(t, dir, "7z", "a", "-bd", "a.7z", "report.txt", "setup.exe")
	tool(t, dir, "7z", "a", "-bd", "-psecret", "-mhe=on", "names.7z", "setup.exe")
	tool(t, dir, "tar", "-cJf", "a.tar.xz", "report.txt", "setup.exe")
	tool(t, dir, "tar", "-czf", "clean.tgz", "report.txt")
	tool(t, dir, "zip", "-q", "-P", "secret", "locked.zip", "report.txt")
	for _, tc := range []struct {
		name, cfg, file string
		data            []byte
		reasons         []string // nil: accepted
		text            string   // in the reply text
	}{
		{"nested zip", "{}", "photos.zip", nested, []string{"archive:extension:exe"}, `"evil.exe" inside the archive (file type .exe)`},
		{"depth bound", `{"archive_depth":2}`, "photos.zip", nested, []string{"incomplete:archive-depth"}, "archives nested more than 2 deep"},
		{"byte bound", "{}", "big.zip", bomb, []string{"incomplete:archive-bytes"}, "past the budget of 16777216 bytes"},
		{"entry bound", `{"archive_entries":1}`, "two.zip", buildZip(t, stored("a.txt", nil), stored("b.txt", nil)),
			[]string{"incomplete:archive-entries"}, "archive with more than 1 entries"},
		{"damaged", "{}", "cut.zip", nested[:200], []string{"incomplete:archive-damaged"}, "damaged archive"},
		{"rar", "{}", "a.rar", rar5([]string{"setup.exe"}, false), []string{"archive:extension:exe"}, `"setup.exe" inside the archive`},
		{"rar encrypted names", "{}", "a.rar", rar5(nil, true), []string{"incomplete:archive-encrypted-names"}, "file names are encrypted"},
		{"7z", "{}", "a.7z", readFile(t, filepath.Join(dir, "a.7z")), []string{"archive:extension:exe", "archive:magic:pe"}, "Windows executable content"},
		{"7z encrypted names", "{}", "names.7z", readFile(t, filepath.Join(dir, "names.7z")), []string{"incomplete:archive-encrypted-names"}, "file names are encrypted"},
		{"tar.xz", "{}", "a.tar.xz", readFile(t, filepath.Join(dir, "a.tar.xz")), []string{"archive:extension:exe", "archive:magic:pe"}, "setup.exe"},
		{"encrypted zip", "{}", "locked.zip", readFile(t, filepath.Join(dir, "locked.zip")), []string{"archive:encrypted"}, "encrypted archive"},
		{"encrypted zip allowed", `{"block_encrypted":false}`, "locked.zip", readFile(t, filepath.Join(dir, "locked.zip")), nil, ""},
		{"clean tar.gz", "{}", "clean.tgz", readFile(t, filepath.Join(dir, "clean.tgz")), nil, ""},
		{"archives off", `{"archives":false}`, "photos.zip", nested, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := withAttachment(tc.file, tc.data)
			o := harness.Run(t, harness.Load(t, tc.cfg), in)
			if got := reasonsOf(o.Res); !slices.Equal(got, tc.reasons) {
				t.Errorf("reasons = %q, want %q", got, tc.reasons)
			}
			if tc.reasons == nil {
				if o.Res.Verdict.Kind != pluginhost.Accept || !bytes.Equal(o.Out, in) {
					t.Errorf("verdict %+v, changes %v", o.Res.Verdict, o.Res.Changes.List())
				}
				return
			}
			v := o.Res.Verdict
			if v.Kind != pluginhost.Reject || !strings.Contains(v.Text, tc.file) || !strings.Contains(v.Text, tc.text) {
				t.Errorf("verdict = %+v, want a reject naming %q and saying %q", v, tc.file, tc.text)
			}
		})
	}
}

// TestManyEntriesInPlugin runs the built plugin on a ZIP of 70,000 entries with the executable last: every
// name is read within the plugin's time limit.
func TestManyEntriesInPlugin(t *testing.T) {
	files := make([]zipFile, 70000)
	for i := range files {
		files[i] = stored(fmt.Sprintf("f%d.txt", i), []byte("x"))
	}
	files[len(files)-1] = stored("last.exe", []byte("x"))
	o := harness.Run(t, harness.Load(t, "{}"), withAttachment("many.zip", buildZip(t, files...)))
	if got := reasonsOf(o.Res); !slices.Equal(got, []string{"archive:extension:exe"}) {
		t.Errorf("reasons = %q, want archive:extension:exe", got)
	}
	t.Logf("call took %v", o.Res.Duration)
}

// TestArchiveStrip checks that an archive that could not be inspected completely is a part like any other for
// strip: it is removed and the rest of the message delivered.
func TestArchiveStrip(t *testing.T) {
	in := withAttachment("a.rar", rar5(nil, true))
	o := harness.Run(t, harness.Load(t, `{"action":"strip"}`), in)
	if o.Res.Verdict.Kind != pluginhost.Accept || o.Res.Tags["attachment-guard.action"] != "strip" {
		t.Fatalf("verdict %+v, tags %v", o.Res.Verdict, o.Res.Tags)
	}
	if _, after := parts(t, o.Out); len(after) != 1 {
		t.Errorf("%d parts left, want the text alone", len(after))
	}
}
