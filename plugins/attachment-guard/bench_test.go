package main

import (
	"testing"

	"github.com/postern/postern/internal/pluginharness"
)

func BenchmarkClean(b *testing.B) {
	harness.Bench(b, "{}", harness.Eml(b, "clean-pdf.eml"), pluginharness.Inbound)
}

func BenchmarkSeveralStrip(b *testing.B) {
	harness.Bench(b, `{"action":"strip"}`, harness.Eml(b, "several.eml"), pluginharness.Inbound)
}

func BenchmarkZipWithExe(b *testing.B) {
	harness.Bench(b, "{}", harness.Eml(b, "zip-with-exe.eml"), pluginharness.Inbound)
}
