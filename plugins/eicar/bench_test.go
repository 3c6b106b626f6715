package main

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/postern/postern/internal/pluginharness"
)

// bigAttachment returns a message with a text part and a base64 attachment of n pseudo-random bytes.
func bigAttachment(n int) []byte {
	raw := make([]byte, n)
	x := uint32(2463534242)
	for i := range raw {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		raw[i] = byte(x)
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var body strings.Builder
	for len(enc) > 76 {
		body.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	body.WriteString(enc + "\r\n")
	return []byte("From: a@other.test\r\nTo: b@example.com\r\nSubject: data\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
		"--b\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		body.String() + "--b--\r\n")
}

func BenchmarkClean(b *testing.B) {
	harness.Bench(b, "{}", harness.Eml(b, "clean.eml"), pluginharness.Inbound)
}

func BenchmarkAttachment1MiB(b *testing.B) {
	harness.Bench(b, "{}", bigAttachment(1<<20), pluginharness.Inbound)
}
