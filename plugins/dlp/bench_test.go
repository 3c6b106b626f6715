package main

import (
	"strings"
	"testing"

	"github.com/postern/postern/internal/pluginharness"
)

// bigText returns a message with a text body of about n bytes: prose with order numbers, dates and phone
// numbers, a card-like number failing Luhn every 50 lines (about 200 per MiB, under the host's match limit),
// and one card number at the end.
func bigText(n int) []byte {
	prose := "Order 2024-03-11-00042 shipped to +49 30 1234 5678; the parcel left the depot at 10:42 today.\r\n"
	var b strings.Builder
	b.WriteString("From: a@other.test\r\nTo: b@example.com\r\nSubject: report\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for i := 0; b.Len() < n; i++ {
		if i%50 == 0 {
			b.WriteString("Invoice 1234567812345670 ref 4111 1111 1111 1112.\r\n")
		}
		b.WriteString(prose)
	}
	b.WriteString("Card 4111 1111 1111 1111.\r\n")
	return []byte(b.String())
}

func BenchmarkCardText(b *testing.B) {
	harness.Bench(b, "{}", harness.Eml(b, "card-text.eml"), pluginharness.Inbound)
}

func BenchmarkText1MiB(b *testing.B) { harness.Bench(b, "{}", bigText(1<<20), pluginharness.Inbound) }
