package message

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"
)

// benchMessage builds a typical message of about size bytes: a header of 20 fields, a text and an HTML
// alternative, and a base64 attachment that makes up the rest.
func benchMessage(size int) []byte {
	var b bytes.Buffer
	for i := range 12 {
		fmt.Fprintf(&b, "Received: from relay%d.example.net (relay%d.example.net [192.0.2.%d]) by mx.example.com\r\n\twith ESMTPS id %08x; Mon, 2 Mar 2026 10:00:%02d +0000\r\n", i, i, i, i*7919, i)
	}
	b.WriteString("From: Sender <sender@example.net>\r\nTo: alice@example.com\r\nSubject: quarterly report\r\n" +
		"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <bench@example.net>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"=_mixed_0123456789\"\r\n\r\n" +
		"This is a multi-part message in MIME format.\r\n" +
		"--=_mixed_0123456789\r\nContent-Type: multipart/alternative; boundary=\"=_alt_0123456789\"\r\n\r\n" +
		"--=_alt_0123456789\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	for range 20 {
		b.WriteString("Please find the quarterly report attached. Gr=C3=BC=C3=9Fe aus K=C3=B6ln.\r\n")
	}
	b.WriteString("--=_alt_0123456789\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n")
	for range 20 {
		b.WriteString("<p>Please find the quarterly report attached.</p>\r\n")
	}
	b.WriteString("</body></html>\r\n--=_alt_0123456789--\r\n\r\n" +
		"--=_mixed_0123456789\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n" +
		"Content-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	rest := size - b.Len() - len("\r\n--=_mixed_0123456789--\r\n")
	writeBase64Lines(&b, rest, func(i int) byte { return byte(i * 31) })
	b.WriteString("\r\n--=_mixed_0123456789--\r\n")
	return b.Bytes()
}

// writeBase64Lines writes about n bytes of base64 in 76-column lines.
func writeBase64Lines(b *bytes.Buffer, n int, gen func(int) byte) {
	raw := make([]byte, n*3/4*76/78)
	for i := range raw {
		raw[i] = gen(i)
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
}

func benchIndex(b *testing.B, raw []byte) {
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	r := bytes.NewReader(raw)
	for b.Loop() {
		if _, err := Parse(r, int64(len(raw)), Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIndex10KiB(b *testing.B) { benchIndex(b, benchMessage(10<<10)) }

func BenchmarkIndex1MiB(b *testing.B) { benchIndex(b, benchMessage(1<<20)) }

func BenchmarkIndexNestingBomb5000(b *testing.B) { benchIndex(b, []byte(nestingBomb(5000))) }

// BenchmarkDecode1MiB reads a 1 MiB base64 text part as UTF-8: as is (utf-8) and converted (iso-8859-1).
func BenchmarkDecode1MiB(b *testing.B) {
	for _, cs := range []string{"utf-8", "iso-8859-1"} {
		b.Run(cs, func(b *testing.B) {
			var msg bytes.Buffer
			msg.WriteString("Subject: text\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=" + cs +
				"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
			text := strings.Repeat("The quick brown fox jumps over the lazy dog; caf\xe9 cr\xe8me.\n", 1<<20/52)
			writeBase64Lines(&msg, len(text)*4/3*78/76, func(i int) byte { return text[i%len(text)] })
			raw := msg.Bytes()
			m, err := Parse(bytes.NewReader(raw), int64(len(raw)), Limits{})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(m.Parts()[0].Body.Len())
			b.ReportAllocs()
			for b.Loop() {
				r, err := m.Text(0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWriteUnchanged1MiB(b *testing.B) {
	raw := benchMessage(1 << 20)
	m, err := Parse(bytes.NewReader(raw), int64(len(raw)), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.WriteTo(io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteChanged1MiB adds a header, prefixes the subject and appends a banner to the
// quoted-printable text part (which is re-encoded): the rest is spliced.
func BenchmarkWriteChanged1MiB(b *testing.B) {
	raw := benchMessage(1 << 20)
	m, err := Parse(bytes.NewReader(raw), int64(len(raw)), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	var c Changes
	_ = c.AddHeader("X-Postern", "scanned")
	_ = c.PrefixSubject("[EXT]")
	_ = c.AppendBanner("External sender.", "<p>External sender.</p>")
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.WriteTo(io.Discard, &c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIndexParameterBomb indexes a 250 KiB header of repeated parameters: every reading is kept only up to
// a bound, so the cost stays linear.
func BenchmarkIndexParameterBomb(b *testing.B) {
	var h strings.Builder
	h.WriteString("Content-Type: multipart/mixed")
	for i := 0; h.Len() < 250<<10; i++ {
		fmt.Fprintf(&h, ";boundary=%d\r\n ", i)
	}
	h.WriteString("\r\n\r\nx\r\n")
	benchIndex(b, []byte(h.String()))
}
