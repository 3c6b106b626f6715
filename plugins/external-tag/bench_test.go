package main

import (
	"testing"

	"github.com/postern/postern/internal/pluginharness"
)

func BenchmarkExternal(b *testing.B) {
	harness.Bench(b, `{"internal_domains":["example.com"]}`, harness.Eml(b, "external.eml"), pluginharness.Inbound)
}

func BenchmarkInternal(b *testing.B) {
	harness.Bench(b, `{"internal_domains":["example.com"]}`, harness.Eml(b, "internal.eml"), env("bob@example.com", "alice@example.com"))
}
