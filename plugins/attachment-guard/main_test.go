package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/postern/postern/internal/pluginharness"
	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

// reasonsOf splits the attachment-guard.reasons tag.
func reasonsOf(res *pluginhost.Result) []string {
	if r := res.Tags["attachment-guard.reasons"]; r != "" {
		return strings.Split(r, ",")
	}
	return nil
}

func TestDetection(t *testing.T) {
	p := harness.Load(t, "{}")
	for _, tc := range []struct {
		file    string
		files   string   // the attachment-guard.files tag; "" for a message that passes
		reasons []string // the attachment-guard.reasons tag, in order
	}{
		{"clean-pdf.eml", "", nil},
		{"zip-clean.eml", "", nil},
		{"exe.eml", "setup.exe", []string{"extension:exe", "magic:pe"}},
		{"double-extension.eml", "invoice.pdf.exe", []string{"extension:exe", "double-extension:pdf.exe"}},
		// filename*0*=utf-8''ev; filename*1=il.exe
		{"rfc2231-continuation.eml", "evil.exe", []string{"extension:exe"}},
		// name="=?utf-8?B?...?=" without a Content-Disposition filename
		{"rfc2047-name.eml", "Rechnungübersicht.exe", []string{"extension:exe"}},
		// filename="holiday.scr. . "
		{"trailing-dot.eml", "holiday.scr", []string{"extension:scr"}},
		// A PE declared text/plain and named notes.txt.
		{"pe-as-text.eml", "notes.txt", []string{"magic:pe"}},
		{"declared-type.eml", "update.dat", []string{"content-type:application/x-msdownload"}},
		{"script.eml", "install.sh", []string{"magic:script"}},
		{"zip-with-exe.eml", "invoice.zip", []string{"archive:extension:exe", "archive:double-extension:pdf.exe", "archive:magic:pe"}},
		// contract<U+202E>fdp.scr, shown as contractrcs.pdf
		{"bidi-name.eml", "contract?fdp.scr", []string{"deceptive-name", "extension:scr"}},
		{"several.eml", "tool.exe, run.js", []string{"extension:exe", "magic:pe", "extension:js"}},
		{"whole-message-exe.eml", "payload.exe", []string{"extension:exe", "magic:pe"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			in := harness.Eml(t, tc.file)
			o := harness.Run(t, p, in)
			if o.Res.Changes.Len() != 0 || !bytes.Equal(o.Out, in) {
				t.Errorf("reject changed the message: %v", o.Res.Changes.List())
			}
			if tc.files == "" {
				if o.Res.Verdict.Kind != pluginhost.Accept || len(o.Res.Tags) != 0 || o.Res.Score != 0 {
					t.Errorf("clean message: verdict %+v, tags %v", o.Res.Verdict, o.Res.Tags)
				}
				return
			}
			v := o.Res.Verdict
			if v.Kind != pluginhost.Reject || v.Code != 554 || v.Enhanced != "5.7.1" {
				t.Errorf("verdict = %+v, want reject 554 5.7.1", v)
			}
			first := strings.Split(tc.files, ", ")[0]
			if !strings.Contains(v.Text, first) {
				t.Errorf("reply text %q does not name %q", v.Text, first)
			}
			if got := o.Res.Tags["attachment-guard.files"]; got != tc.files {
				t.Errorf("files = %q, want %q", got, tc.files)
			}
			if got := reasonsOf(o.Res); !slices.Equal(got, tc.reasons) {
				t.Errorf("reasons = %q, want %q", got, tc.reasons)
			}
			if got := o.Res.Tags["attachment-guard.action"]; got != "reject" {
				t.Errorf("action tag = %q", got)
			}
		})
	}
}

// parts parses a message and returns it with its raw part bodies, by file name (or content type for unnamed
// parts).
func parts(t *testing.T, data []byte) (*message.Message, map[string][]byte) {
	t.Helper()
	msg, err := message.Parse(bytes.NewReader(data), int64(len(data)), message.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if msg.Malformed() {
		t.Errorf("message is malformed: %v", msg.Defects())
	}
	bodies := map[string][]byte{}
	for _, p := range msg.Parts() {
		if p.Multipart {
			continue
		}
		r, err := msg.RawBody(p.ID)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		key := p.Filename
		if key == "" {
			key = p.ContentType
		}
		bodies[key] = b
	}
	return msg, bodies
}

func TestStrip(t *testing.T) {
	p := harness.Load(t, `{"action":"strip"}`)
	in := harness.Eml(t, "several.eml")
	o := harness.Run(t, p, in)
	if o.Res.Verdict.Kind != pluginhost.Accept {
		t.Fatalf("verdict = %+v, want accept", o.Res.Verdict)
	}
	if got := o.Res.Tags["attachment-guard.action"]; got != "strip" {
		t.Errorf("action tag = %q", got)
	}
	var ops []message.Op
	for _, c := range o.Res.Changes.List() {
		ops = append(ops, c.Op)
	}
	if want := []message.Op{message.OpRemovePart, message.OpRemovePart, message.OpSetHeader, message.OpAppendBanner}; !slices.Equal(ops, want) {
		t.Errorf("changes = %v, want %v", ops, want)
	}
	msg, after := parts(t, o.Out)
	_, before := parts(t, in)
	if _, ok := after["tool.exe"]; ok {
		t.Error("tool.exe is still there")
	}
	if _, ok := after["run.js"]; ok {
		t.Error("run.js is still there")
	}
	if !bytes.Equal(after["report.pdf"], before["report.pdf"]) {
		t.Error("report.pdf changed")
	}
	if got := msg.HeaderValues(0, "X-Postern-Attachments-Removed", true); !slices.Equal(got, []string{"tool.exe, run.js"}) {
		t.Errorf("X-Postern-Attachments-Removed = %q", got)
	}
	if note := string(after["text/plain"]); !strings.Contains(note, "removed 2 attachment(s)") || !strings.Contains(note, "tool.exe, run.js") ||
		!strings.HasPrefix(note, string(before["text/plain"])) {
		t.Errorf("text part after strip = %q", note)
	}
	// The stripped message passes the plugin.
	if again := harness.Run(t, p, o.Out); again.Res.Verdict.Kind != pluginhost.Accept || len(again.Res.Tags) != 0 {
		t.Errorf("stripped message: verdict %+v, tags %v", again.Res.Verdict, again.Res.Tags)
	}

	t.Run("no note, no header", func(t *testing.T) {
		o := harness.Run(t, harness.Load(t, `{"action":"strip","strip_note":"","strip_header":""}`), in)
		var ops []message.Op
		for _, c := range o.Res.Changes.List() {
			ops = append(ops, c.Op)
		}
		if want := []message.Op{message.OpRemovePart, message.OpRemovePart}; !slices.Equal(ops, want) {
			t.Errorf("changes = %v, want %v", ops, want)
		}
	})
	t.Run("custom note and header", func(t *testing.T) {
		o := harness.Run(t, harness.Load(t, `{"action":"strip","strip_note":"Removed by IT: {files} ({count})","strip_header":"X-Removed"}`), in)
		msg, after := parts(t, o.Out)
		if got := msg.HeaderValues(0, "X-Removed", false); !slices.Equal(got, []string{"tool.exe, run.js"}) {
			t.Errorf("X-Removed = %q", got)
		}
		if !strings.Contains(string(after["text/plain"]), "Removed by IT: tool.exe, run.js (2)") {
			t.Errorf("note = %q", after["text/plain"])
		}
	})
	t.Run("a message that is the attachment is rejected", func(t *testing.T) {
		o := harness.Run(t, p, harness.Eml(t, "whole-message-exe.eml"))
		if o.Res.Verdict.Kind != pluginhost.Reject || o.Res.Changes.Len() != 0 {
			t.Errorf("verdict %+v, changes %v", o.Res.Verdict, o.Res.Changes.List())
		}
		if got := o.Res.Tags["attachment-guard.action"]; got != "reject" {
			t.Errorf("action tag = %q, want reject", got)
		}
	})
	t.Run("an executable disguised as the attachment notes.txt", func(t *testing.T) {
		o := harness.Run(t, p, harness.Eml(t, "pe-as-text.eml"))
		_, after := parts(t, o.Out)
		if _, ok := after["notes.txt"]; ok || len(after) != 1 {
			t.Errorf("parts after strip: %d, notes.txt still there: %v", len(after), ok)
		}
	})
}

func TestActions(t *testing.T) {
	in := harness.Eml(t, "exe.eml")
	t.Run("quarantine", func(t *testing.T) {
		o := harness.Run(t, harness.Load(t, `{"action":"quarantine","score":4}`), in)
		if o.Res.Verdict.Kind != pluginhost.Quarantine || !strings.Contains(o.Res.Verdict.Text, "setup.exe") {
			t.Errorf("verdict = %+v", o.Res.Verdict)
		}
		if o.Res.Score != 4 || !bytes.Equal(o.Out, in) {
			t.Errorf("score %v, changes %v", o.Res.Score, o.Res.Changes.List())
		}
	})
	t.Run("tag", func(t *testing.T) {
		o := harness.Run(t, harness.Load(t, `{"action":"tag"}`), in)
		if o.Res.Verdict.Kind != pluginhost.Accept || o.Res.Tags["attachment-guard.action"] != "tag" ||
			o.Res.Tags["attachment-guard.files"] != "setup.exe" || !bytes.Equal(o.Out, in) {
			t.Errorf("verdict %+v, tags %v, changes %v", o.Res.Verdict, o.Res.Tags, o.Res.Changes.List())
		}
	})
	t.Run("code", func(t *testing.T) {
		o := harness.Run(t, harness.Load(t, `{"code":550}`), in)
		if o.Res.Verdict.Kind != pluginhost.Reject || o.Res.Verdict.Code != 550 {
			t.Errorf("verdict = %+v", o.Res.Verdict)
		}
	})
}

func TestListsAndSwitches(t *testing.T) {
	for _, tc := range []struct {
		cfg, file string
		reasons   []string // nil: the message passes
	}{
		{`{"remove_extensions":["exe"]}`, "double-extension.eml", nil},
		{`{"remove_extensions":["exe"]}`, "exe.eml", []string{"magic:pe"}},
		{`{"extensions":["pdf"]}`, "clean-pdf.eml", []string{"extension:pdf"}},
		{`{"extensions":["pdf"]}`, "rfc2231-continuation.eml", nil},
		{`{"add_extensions":[".PDF"]}`, "clean-pdf.eml", []string{"extension:pdf"}},
		{`{"remove_content_types":["application/x-msdownload"]}`, "declared-type.eml", nil},
		{`{"content_types":[]}`, "declared-type.eml", nil},
		{`{"add_content_types":["application/pdf"]}`, "clean-pdf.eml", []string{"content-type:application/pdf"}},
		{`{"sniff":[]}`, "pe-as-text.eml", nil},
		{`{"sniff":["elf"]}`, "pe-as-text.eml", nil},
		{`{"sniff":["pe"]}`, "pe-as-text.eml", []string{"magic:pe"}},
		{`{"sniff":["pe"]}`, "script.eml", nil},
		{`{"archives":false}`, "zip-with-exe.eml", nil},
		{`{"add_extensions":["pdf"]}`, "zip-clean.eml", []string{"archive:extension:pdf"}},
	} {
		t.Run(tc.cfg+" "+tc.file, func(t *testing.T) {
			o := harness.Run(t, harness.Load(t, tc.cfg), harness.Eml(t, tc.file))
			if got := reasonsOf(o.Res); !slices.Equal(got, tc.reasons) {
				t.Errorf("reasons = %q, want %q", got, tc.reasons)
			}
			want := pluginhost.Reject
			if tc.reasons == nil {
				want = pluginhost.Accept
			}
			if o.Res.Verdict.Kind != want {
				t.Errorf("verdict = %+v, want %v", o.Res.Verdict, want)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"action":"delete"}`:        "unknown value",
		`{"add_extension":["docm"]}`: `unknown key "add_extension"`,
		`{"sniff":["exe"]}`:          "unknown kind",
	} {
		_, err := harness.LoadErr(t, cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s) error = %v, want it to mention %q", cfg, err, want)
		}
	}
}

// TestCorpus runs the plugin over the shared corpus of real and malformed mail with action strip: no call may
// fail, a message with nothing to block must pass untouched, and a stripped message must pass a second run.
func TestCorpus(t *testing.T) {
	p := harness.Load(t, `{"action":"strip"}`)
	for _, f := range pluginharness.Corpus(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		o := harness.Run(t, p, data)
		if len(o.Res.Tags) == 0 {
			if o.Res.Verdict.Kind != pluginhost.Accept || !bytes.Equal(o.Out, data) {
				t.Errorf("%s: nothing found, but verdict %+v and changes %v", f, o.Res.Verdict, o.Res.Changes.List())
			}
			continue
		}
		t.Logf("%s: %s: %s", f, o.Res.Tags["attachment-guard.action"], o.Res.Tags["attachment-guard.reasons"])
		if o.Res.Verdict.Kind == pluginhost.Accept {
			if again := harness.Run(t, p, o.Out); len(again.Res.Tags) != 0 {
				t.Errorf("%s: still blocked after strip: %v", f, again.Res.Tags)
			}
		}
	}
}

// corpusFile reads a file of the shared corpus.
func corpusFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testplugins.Root(), "testdata", "corpus", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHostileCorpus checks the evasions collected in testdata/corpus/postern (see its README) are caught.
func TestHostileCorpus(t *testing.T) {
	p := harness.Load(t, "{}")
	for file, reason := range map[string]string{
		"postern/rfc2231-continuation.eml": "extension:exe",
		"postern/rfc2231-latin1.eml":       "extension:exe",
		"postern/rfc2231-gap.eml":          "extension:exe",
		"postern/filename-conflict.eml":    "extension:exe",
		"postern/rfc2047-name.eml":         "extension:exe",
		"postern/double-extension.eml":     "double-extension:pdf.exe",
		"postern/path-trailing-dot.eml":    "extension:exe",
		"postern/unterminated-quote.eml":   "extension:exe",
		"postern/forwarded-exe.eml":        "extension:exe",
		"postern/overlong-line.eml":        "incomplete:line-limit",
		"postern/giant-header.eml":         "incomplete:header-limit",
	} {
		t.Run(file, func(t *testing.T) {
			o := harness.Run(t, p, corpusFile(t, file))
			if o.Res.Verdict.Kind != pluginhost.Reject || !slices.Contains(reasonsOf(o.Res), reason) {
				t.Errorf("verdict %+v, reasons %q, want a reject for %s", o.Res.Verdict, reasonsOf(o.Res), reason)
			}
		})
	}
}

// nestingBomb returns a message whose executable attachment lies deeper than the host's MIME depth limit.
func nestingBomb(depth int) []byte {
	var b strings.Builder
	b.WriteString("From: x@other.test\r\nTo: alice@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n")
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: application/octet-stream; name=\"deep.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVo=\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return []byte(b.String())
}

func TestIncomplete(t *testing.T) {
	shallow, deep := nestingBomb(5), nestingBomb(40)
	if o := harness.Run(t, harness.Load(t, "{}"), shallow); !slices.Equal(reasonsOf(o.Res), []string{"extension:exe"}) {
		t.Errorf("5 levels: reasons %q", reasonsOf(o.Res))
	}
	o := harness.Run(t, harness.Load(t, "{}"), deep)
	if o.Res.Verdict.Kind != pluginhost.Reject || !slices.Equal(reasonsOf(o.Res), []string{"incomplete:depth-limit"}) ||
		o.Res.Tags["attachment-guard.files"] != "the message" {
		t.Errorf("40 levels: verdict %+v, tags %v", o.Res.Verdict, o.Res.Tags)
	}
	// strip cannot make an incompletely inspected message safe: it rejects.
	o = harness.Run(t, harness.Load(t, `{"action":"strip"}`), deep)
	if o.Res.Verdict.Kind != pluginhost.Reject || o.Res.Changes.Len() != 0 || o.Res.Tags["attachment-guard.action"] != "reject" {
		t.Errorf("strip, 40 levels: verdict %+v, tags %v, changes %v", o.Res.Verdict, o.Res.Tags, o.Res.Changes.List())
	}
	// With block_incomplete off, what was indexed is judged (nothing here).
	o = harness.Run(t, harness.Load(t, `{"block_incomplete":false}`), deep)
	if o.Res.Verdict.Kind != pluginhost.Accept || len(o.Res.Tags) != 0 {
		t.Errorf("block_incomplete false: verdict %+v, tags %v", o.Res.Verdict, o.Res.Tags)
	}
	o = harness.Run(t, harness.Load(t, `{"block_incomplete":false}`), corpusFile(t, "postern/overlong-line.eml"))
	if slices.Contains(reasonsOf(o.Res), "incomplete:line-limit") {
		t.Errorf("block_incomplete false: reasons %q", reasonsOf(o.Res))
	}
}

// manyExes returns a message with n executable attachments.
func manyExes(n int) []byte {
	var b strings.Builder
	b.WriteString("From: x@other.test\r\nTo: alice@example.com\r\nSubject: many\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nhi\r\n")
	for i := range n {
		fmt.Fprintf(&b, "--m\r\nContent-Type: application/octet-stream; name=\"f%d.exe\"\r\n\r\nx\r\n", i)
	}
	b.WriteString("--m--\r\n")
	return []byte(b.String())
}

func TestStripTooMany(t *testing.T) {
	p := harness.Load(t, `{"action":"strip"}`)
	o := harness.Run(t, p, manyExes(maxStrip))
	if o.Res.Verdict.Kind != pluginhost.Accept || o.Res.Tags["attachment-guard.action"] != "strip" {
		t.Errorf("%d parts: verdict %+v, action %q", maxStrip, o.Res.Verdict, o.Res.Tags["attachment-guard.action"])
	}
	o = harness.Run(t, p, manyExes(maxStrip+1))
	if o.Res.Verdict.Kind != pluginhost.Reject || o.Res.Tags["attachment-guard.action"] != "reject" || o.Res.Changes.Len() != 0 {
		t.Errorf("%d parts: verdict %+v, action %q", maxStrip+1, o.Res.Verdict, o.Res.Tags["attachment-guard.action"])
	}
}

// TestSkipsMessagesWithoutFiles: a message of inline text bodies only is skipped by the host (the plugin wants
// only messages that may carry a file), unless text_bodies or a text content type asks for it; an executable
// pasted as a body is then refused again.
func TestSkipsMessagesWithoutFiles(t *testing.T) {
	plain := []byte("From: a@other.test\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nJust text.\r\n")
	if res := harness.Run(t, harness.Load(t, `{}`), plain).Res; res.Skipped == "" || res.Verdict.Kind != pluginhost.Accept {
		t.Errorf("plain message: skipped %q, verdict %v; want skipped", res.Skipped, res.Verdict.Kind)
	}
	pasted := []byte("From: a@other.test\r\nTo: alice@example.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(peFile(0x80, 512)) + "\r\n")
	if res := harness.Run(t, harness.Load(t, `{}`), pasted).Res; res.Skipped == "" {
		t.Errorf("pasted executable body by default: skipped %q, verdict %v; want skipped", res.Skipped, res.Verdict.Kind)
	}
	for _, cfg := range []string{`{"text_bodies": true}`, `{"add_content_types": ["text/html"]}`} {
		p := harness.Load(t, cfg)
		if p.Wants() != 0 {
			t.Errorf("%s: the plugin wants %v, want every message", cfg, p.Wants())
		}
		if res := harness.Run(t, p, plain).Res; res.Skipped != "" || res.Verdict.Kind != pluginhost.Accept {
			t.Errorf("%s: plain message skipped %q, verdict %v", cfg, res.Skipped, res.Verdict.Kind)
		}
	}
	if res := harness.Run(t, harness.Load(t, `{"text_bodies": true}`), pasted).Res; res.Verdict.Kind != pluginhost.Reject {
		t.Errorf("text_bodies: pasted executable verdict %v, want reject", res.Verdict.Kind)
	}
	// A file makes the message one to inspect, whatever else it holds.
	if res := harness.Run(t, harness.Load(t, `{}`), harness.Eml(t, "clean-pdf.eml")).Res; res.Skipped != "" {
		t.Errorf("message with a PDF skipped: %s", res.Skipped)
	}
}
