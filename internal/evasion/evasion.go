// Package evasion generates Postern's MIME evasion corpus: one message per technique that mail filters have been
// bypassed with, each hiding either eicar.zip (the EICAR anti-virus test file, zipped as eicar.com) or an
// executable's file name, and recording what it hides. The techniques are listed in testdata/evasion/README.md;
// testdata/evasion/techniques.tsv is generated from Cases (a test checks it is current), and
// `go generate ./internal/evasion` writes the messages themselves to testdata/evasion/messages/ (ignored by git:
// they hold the EICAR file, which anti-virus products on developers' machines would quarantine) for use with
// other tools.
//
// The messages are built in memory, deterministically, so tests need no files: see Cases.
package evasion

//go:generate go run ./gen -out ../../testdata/evasion

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/internal/mailenc"
)

// Classes of techniques, after how far a message strays from the standards. Valid and edge-case mail is what
// RFC 5322/2045-2049/2183/2231 allow; unusual mail is allowed but rare or obsolete; off-standard mail breaks a
// rule that some widely used mail client still tolerates and decodes.
const (
	Valid       = "valid"
	Edge        = "edge"
	Unusual     = "unusual"
	OffStandard = "off-standard"
)

// Payload kinds: what the message hides.
const (
	PayloadContent = "content" // the bytes of eicar.zip
	PayloadName    = "name"    // a file name with an executable extension (Case.Name)
)

// Case is one message of the corpus.
type Case struct {
	ID        string // file name without .eml, e.g. "base64-junk-characters"
	Class     string // Valid, Edge, Unusual or OffStandard
	Technique string // one line: what the message does
	Payload   string // PayloadContent or PayloadName
	Name      string // for PayloadName: the executable name a client shows; for PayloadContent: the attachment's name, if any
	Raw       []byte // the message, CRLF line endings unless the technique says otherwise
}

// EICAR returns the 68-byte EICAR test file. It is assembled here rather than written out, like in the README,
// so that no source file holds it whole.
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)
}

var zipOnce = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	f, err := w.CreateHeader(&zip.FileHeader{Name: "eicar.com", Method: zip.Deflate, Modified: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err == nil {
		_, err = f.Write(EICAR())
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		panic(err)
	}
	return b.Bytes()
})

// Zip returns eicar.zip: the EICAR file stored as eicar.com, deflated, in a ZIP archive.
func Zip() []byte { return zipOnce() }

// script is the harmless content of the parts whose name is the payload.
const script = "MsgBox \"This file name is the test: a filter must see it.\"\r\n"

// Cases returns the corpus, in a fixed order.
func Cases() []Case { return casesOnce() }

var casesOnce = sync.OnceValue(build)

const (
	header = "From: Mallory <mallory@evil.test>\r\nTo: alice@example.com\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
	body   = "--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nPlease see the attachment.\r\n"
)

// b64 is standard base64 in lines of 76.
func b64(data []byte) string { return wrap(base64.StdEncoding.EncodeToString(data), 76) }

func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + "\r\n")
		s = s[n:]
	}
	b.WriteString(s + "\r\n")
	return b.String()
}

func qp(data []byte) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Binary = true
	w.Write(data)
	w.Close()
	return strings.ReplaceAll(strings.ReplaceAll(b.String(), "\r\n", "\n"), "\n", "\r\n") + "\r\n"
}

// mixed wraps one attachment (its header fields and body) into a multipart/mixed message with a text part.
func mixed(subject, fields, content string) []byte {
	return []byte(header + "Subject: " + subject + "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n" +
		body + "--b\r\n" + fields + "\r\n" + content + "--b--\r\n")
}

// attachment is the standard header of the zip attachment.
const zipFields = "Content-Type: application/zip; name=\"eicar.zip\"\r\nContent-Disposition: attachment; filename=\"eicar.zip\"\r\n"

// insertEvery puts junk after every n characters of s (not across line breaks).
func insertEvery(s string, n int, junk string) string {
	var b strings.Builder
	k := 0
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if s[i] == '\r' || s[i] == '\n' {
			k = 0
			continue
		}
		k++
		if k%n == 0 && i+1 < len(s) && s[i+1] != '\r' {
			b.WriteString(junk)
		}
	}
	return b.String()
}

// forwarded is a message that carries eicar.zip, to be attached to another.
func forwarded() string {
	return "From: Bob <bob@other.test>\r\nSubject: the file\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n" +
		"--inner\r\nContent-Type: text/plain\r\n\r\nhere it is\r\n--inner\r\n" + zipFields + "Content-Transfer-Encoding: base64\r\n\r\n" +
		b64(Zip()) + "--inner--\r\n"
}

// nameCase is a message whose payload is the executable name in the attachment's header fields.
func nameCase(id, class, technique, name, fields string) Case {
	return Case{ID: id, Class: class, Technique: technique, Payload: PayloadName, Name: name,
		Raw: mixed(technique, fields+"Content-Transfer-Encoding: base64\r\n", b64([]byte(script)))}
}

func contentCase(id, class, technique string, raw []byte) Case {
	return Case{ID: id, Class: class, Technique: technique, Payload: PayloadContent, Name: "eicar.zip", Raw: raw}
}

func build() []Case {
	zb := b64(Zip())
	z := Zip()
	oneLine := base64.StdEncoding.EncodeToString(z)
	half := len(z) / 2
	var deep strings.Builder
	deep.WriteString(header + "Subject: ten nested multiparts\r\nMIME-Version: 1.0\r\n")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=\"n%d\"\r\n\r\n--n%d\r\n", i, i)
	}
	deep.WriteString(zipFields + "Content-Transfer-Encoding: base64\r\n\r\n" + zb)
	for i := 9; i >= 0; i-- {
		fmt.Fprintf(&deep, "--n%d--\r\n", i)
	}
	lf := strings.ReplaceAll(string(mixed("bare LF line endings", zipFields+"Content-Transfer-Encoding: base64\r\n", zb)), "\r\n", "\n")

	cases := []Case{
		// --- content: the bytes of eicar.zip ---
		contentCase("base64-attachment", Valid, "the zip as an ordinary base64 attachment",
			mixed("base64 attachment", zipFields+"Content-Transfer-Encoding: base64\r\n", zb)),
		contentCase("base64-no-name", Valid, "application/octet-stream without any file name",
			mixed("no name", "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n", zb)),
		contentCase("qp-attachment", Valid, "the zip in quoted-printable",
			mixed("qp attachment", zipFields+"Content-Transfer-Encoding: quoted-printable\r\n", qp(z))),
		contentCase("forwarded-7bit", Valid, "a forwarded message/rfc822 carrying the zip",
			mixed("forwarded", "Content-Type: message/rfc822\r\n", forwarded())),
		contentCase("single-part", Valid, "the message is the attachment: no multipart at all",
			[]byte(header+"Subject: single part\r\nMIME-Version: 1.0\r\n"+zipFields+"Content-Transfer-Encoding: base64\r\n\r\n"+zb)),
		contentCase("cte-upper-case", Edge, "Content-Transfer-Encoding: BASE64 (tokens are case-insensitive)",
			mixed("upper-case CTE", zipFields+"Content-Transfer-Encoding: BASE64\r\n", zb)),
		contentCase("header-folding", Edge, "Content-Type and boundary folded over several lines, with tabs",
			[]byte(header+"Subject: folded\r\nMIME-Version: 1.0\r\nContent-Type:\r\n\tmultipart/mixed;\r\n\tboundary=\r\n \"b\"\r\n\r\n"+body+
				"--b\r\nContent-Type:\r\n application/zip;\r\n name=\"eicar.zip\"\r\nContent-Transfer-Encoding:\r\n base64\r\n\r\n"+zb+"--b--\r\n")),
		contentCase("boundary-special-chars", Edge, "a quoted boundary full of characters that need the quotes",
			[]byte(header+"Subject: special boundary\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"'()+_,-./:=? b\"\r\n\r\n"+
				"--'()+_,-./:=? b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--'()+_,-./:=? b\r\n"+zipFields+
				"Content-Transfer-Encoding: base64\r\n\r\n"+zb+"--'()+_,-./:=? b--\r\n")),
		contentCase("deep-nesting", Edge, "the attachment ten multipart levels down",
			[]byte(deep.String())),
		contentCase("base64-one-line", Unusual, "the whole base64 body on one line, longer than 76 characters",
			mixed("one line", zipFields+"Content-Transfer-Encoding: base64\r\n", oneLine+"\r\n")),
		contentCase("base64-no-padding", Unusual, "base64 without its final padding",
			mixed("no padding", zipFields+"Content-Transfer-Encoding: base64\r\n", strings.TrimRight(strings.TrimSpace(zb), "=")+"\r\n")),
		contentCase("base64-blanks", Unusual, "spaces and tabs inside and around the base64 lines",
			mixed("blanks", zipFields+"Content-Transfer-Encoding: base64\r\n", "  "+insertEvery(zb, 8, " \t"))),
		contentCase("missing-final-boundary", Unusual, "the multipart is never closed",
			[]byte(strings.TrimSuffix(string(mixed("unclosed", zipFields+"Content-Transfer-Encoding: base64\r\n", zb)), "--b--\r\n"))),
		contentCase("no-mime-version", Unusual, "no MIME-Version field: some filters then skip MIME parsing",
			[]byte(strings.Replace(string(mixed("no mime-version", zipFields+"Content-Transfer-Encoding: base64\r\n", zb)), "MIME-Version: 1.0\r\n", "", 1))),
		contentCase("bare-lf", Unusual, "LF line endings instead of CRLF", []byte(lf)),
		contentCase("base64-junk-characters", OffStandard, "characters outside the base64 alphabet between the letters (RFC 2045 §6.8: ignore them)",
			mixed("junk", zipFields+"Content-Transfer-Encoding: base64\r\n", insertEvery(zb, 5, "*!"))),
		contentCase("base64-stray-equals", OffStandard, "'=' characters scattered where no padding can be",
			mixed("stray =", zipFields+"Content-Transfer-Encoding: base64\r\n", insertEvery(zb, 8, "="))),
		contentCase("base64-after-padding", OffStandard, "two base64 runs each with its own padding, one after the other",
			mixed("after padding", zipFields+"Content-Transfer-Encoding: base64\r\n",
				base64.StdEncoding.EncodeToString(z[:half+1])+"\r\n"+base64.StdEncoding.EncodeToString(z[half+1:])+"\r\n")),
		contentCase("cte-quoted", OffStandard, "Content-Transfer-Encoding: \"base64\" in quotes",
			mixed("quoted CTE", zipFields+"Content-Transfer-Encoding: \"base64\"\r\n", zb)),
		contentCase("cte-comment", OffStandard, "Content-Transfer-Encoding: base64 (with a comment)",
			mixed("CTE comment", zipFields+"Content-Transfer-Encoding: base64 (binary data)\r\n", zb)),
		contentCase("qp-lower-case-hex", OffStandard, "quoted-printable with lower-case hex digits",
			mixed("qp lower", zipFields+"Content-Transfer-Encoding: quoted-printable\r\n", lowerHex(qp(z)))),
		contentCase("x-uuencode-part", OffStandard, "a part in Content-Transfer-Encoding: x-uuencode",
			mixed("x-uuencode", "Content-Type: application/zip; name=\"eicar.zip\"\r\nContent-Transfer-Encoding: x-uuencode\r\n", mailenc.UUEncode("eicar.zip", z))),
		contentCase("uuencode-in-text", OffStandard, "a uuencoded block inside the text body",
			[]byte(header+"Subject: uuencode in text\r\n\r\nThe file:\r\n\r\n"+mailenc.UUEncode("eicar.zip", z)+"\r\nbye\r\n")),
		contentCase("uuencode-in-base64-text", OffStandard, "a uuencoded block inside a base64-encoded text body",
			[]byte(header+"Subject: uuencode in base64 text\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
				b64([]byte("The file:\r\n\r\n"+mailenc.UUEncode("eicar.zip", z)+"\r\nbye\r\n")))),
		contentCase("yenc-in-text", OffStandard, "a yEnc block inside the text body",
			[]byte(header+"Subject: yEnc in text\r\n\r\nThe file:\r\n"+mailenc.YEncode("eicar.zip", z)+"bye\r\n")),
		contentCase("rfc822-base64", OffStandard, "a forwarded message/rfc822 in base64 (RFC 2046 forbids it; clients decode it)",
			mixed("rfc822 base64", "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n", b64([]byte(forwarded())))),
		contentCase("rfc822-qp", OffStandard, "a forwarded message/rfc822 in quoted-printable",
			mixed("rfc822 qp", "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n", qp([]byte(forwarded())))),
		contentCase("duplicate-boundary", OffStandard, "two boundary parameters; the zip is under the second",
			[]byte(header+"Subject: two boundaries\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"a\"; boundary=\"b\"\r\n\r\n"+
				"--a\r\nContent-Type: text/plain\r\n\r\nnothing to see\r\n--a--\r\n"+body+"--b\r\n"+zipFields+"Content-Transfer-Encoding: base64\r\n\r\n"+zb+"--b--\r\n")),
		contentCase("two-content-types", OffStandard, "Content-Type: text/plain, then a second Content-Type: multipart/mixed",
			[]byte(header+"Subject: two content types\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"+
				body+"--b\r\n"+zipFields+"Content-Transfer-Encoding: base64\r\n\r\n"+zb+"--b--\r\n")),
		contentCase("two-ctes", OffStandard, "Content-Transfer-Encoding: 7bit, then a second one: base64",
			mixed("two CTEs", zipFields+"Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n", zb)),
		contentCase("multipart-declared-base64", OffStandard, "a multipart that declares Content-Transfer-Encoding: base64 (ignored)",
			[]byte(strings.Replace(string(mixed("multipart base64", zipFields+"Content-Transfer-Encoding: base64\r\n", zb)), "MIME-Version: 1.0\r\n", "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n", 1))),
		contentCase("boundary-in-preamble", OffStandard, "the zip's part sits in the preamble behind a look-alike boundary the second Content-Type declares",
			[]byte(header+"Subject: preamble\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\nContent-Type: multipart/mixed; boundary=\"p\"\r\n\r\n"+
				"--p\r\n"+zipFields+"Content-Transfer-Encoding: base64\r\n\r\n"+zb+"--p--\r\n"+body+"--b--\r\n")),

		// --- names: an executable's file name ---
		nameCase("filename", Valid, "filename=\"invoice.vbs\"", "invoice.vbs",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"invoice.vbs\"\r\n"),
		nameCase("content-type-name", Valid, "only Content-Type name=", "invoice.exe",
			"Content-Type: application/octet-stream; name=\"invoice.exe\"\r\n"),
		nameCase("double-extension", Valid, "invoice.pdf.exe", "invoice.pdf.exe",
			"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n"),
		nameCase("rfc2231-continuation", Valid, "RFC 2231 continuations: filename*0*=utf-8''inv; filename*1=oice.exe", "invoice.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*0*=utf-8''inv; filename*1=oice.exe\r\n"),
		nameCase("rfc2231-encoded", Valid, "RFC 2231 percent-encoding: filename*=utf-8''invoice%2Eexe", "invoice.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=utf-8''invoice%2Eexe\r\n"),
		nameCase("folded-filename", Edge, "the filename parameter folded onto its own line", "invoice.vbs",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n\tfilename=\"invoice.vbs\"\r\n"),
		nameCase("extended-beats-plain", Edge, "filename=\"invoice.txt\" with filename*=utf-8''invoice.exe (RFC 2231 says the extended one wins)", "invoice.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"invoice.txt\"; filename*=utf-8''invoice.exe\r\n"),
		nameCase("latin1-name", Edge, "RFC 2231 in ISO-8859-1", "r\u00e9sum\u00e9.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=iso-8859-1''r%E9sum%E9.exe\r\n"),
		nameCase("rfc2047-name", Unusual, "an RFC 2047 encoded word in the name (not allowed in parameters, used by clients)", "invoice.exe",
			"Content-Type: application/octet-stream; name=\"=?utf-8?B?aW52b2ljZS5leGU=?=\"\r\n"),
		nameCase("name-vs-filename", Unusual, "Content-Type name=\"invoice.exe\", Content-Disposition filename=\"invoice.pdf\"", "invoice.exe",
			"Content-Type: application/pdf; name=\"invoice.exe\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n"),
		nameCase("disposition-name", Unusual, "Content-Disposition with name= instead of filename=", "invoice.vbs",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; name=\"invoice.vbs\"\r\n"),
		nameCase("trailing-dot", Unusual, "a trailing dot and spaces, which Windows drops: \"invoice.exe. \"", "invoice.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"invoice.exe. \"\r\n"),
		nameCase("windows-path", Unusual, "a Windows path in the name", "invoice.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"C:\\Users\\Public\\invoice.exe\"\r\n"),
		nameCase("duplicate-filename", OffStandard, "filename=\"invoice.txt\"; filename=\"invoice.vbs\"", "invoice.vbs",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"invoice.txt\"; filename=\"invoice.vbs\"\r\n"),
		nameCase("two-dispositions", OffStandard, "two Content-Disposition fields, the second naming the executable", "invoice.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"invoice.txt\"\r\nContent-Disposition: attachment; filename=\"invoice.exe\"\r\n"),
		nameCase("rfc2231-utf16", OffStandard, "RFC 2231 in UTF-16: clients read the name as UTF-16 or as bytes", "invoice.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=utf-16be''"+utf16Percent("invoice.exe")+"\r\n"),
		nameCase("rfc2231-gap", OffStandard, "continuations with a gap: filename*0=invoice; filename*2=.exe", "invoice.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*0=invoice; filename*2=.exe\r\n"),
		nameCase("rfc2231-unknown-charset", OffStandard, "RFC 2231 in a charset nobody knows", "invoice.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=x-unknown''invoice.exe\r\n"),
		nameCase("unterminated-quote", OffStandard, "filename=\"invoice.exe without its closing quote", "invoice.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"invoice.exe; size=100\r\n"),
		nameCase("unquoted-spaces", OffStandard, "an unquoted name with spaces", "my invoice.exe",
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=my invoice.exe\r\n"),
		nameCase("split-encoded-words", OffStandard, "the name in two RFC 2047 words", "invoice.exe",
			"Content-Type: application/octet-stream; name=\"=?utf-8?Q?invo?= =?utf-8?Q?ice.exe?=\"\r\n"),
		{ID: "uuencode-name", Class: OffStandard, Technique: "a uuencoded block in the text body whose begin line names the executable",
			Payload: PayloadName, Name: "invoice.vbs",
			Raw: []byte(header + "Subject: uuencode name\r\n\r\nAttached:\r\n\r\n" + mailenc.UUEncode("invoice.vbs", []byte(script)) + "\r\n")},
		{ID: "x-uuencode-name", Class: OffStandard, Technique: "an x-uuencode part named harmless whose begin line names the executable",
			Payload: PayloadName, Name: "invoice.vbs",
			Raw: mixed("x-uuencode name", "Content-Type: text/plain; name=\"notes.txt\"\r\nContent-Transfer-Encoding: x-uuencode\r\n", mailenc.UUEncode("invoice.vbs", []byte(script)))},
	}
	return cases
}

func lowerHex(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '=' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteString("=" + strings.ToLower(s[i+1:i+3]))
			i += 2
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func utf16Percent(s string) string {
	var b strings.Builder
	for _, r := range s {
		fmt.Fprintf(&b, "%%%02X%%%02X", byte(r>>8), byte(r))
	}
	return b.String()
}

// TSV returns the technique list as tab-separated lines: id, class, payload, name, technique.
func TSV() string {
	var b strings.Builder
	b.WriteString("id\tclass\tpayload\tname\ttechnique\n")
	for _, c := range Cases() {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Class, c.Payload, c.Name, c.Technique)
	}
	return b.String()
}
