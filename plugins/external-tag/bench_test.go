package main

import (
	"testing"
)

func BenchmarkExternal(b *testing.B) {
	benchCall(b, `{"internal_domains":["example.com"]}`, eml(b, "external.eml"), inbound)
}

func BenchmarkInternal(b *testing.B) {
	benchCall(b, `{"internal_domains":["example.com"]}`, eml(b, "internal.eml"), env("bob@example.com", "alice@example.com"))
}
