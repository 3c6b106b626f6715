package main

import (
	"testing"
)

func BenchmarkClean(b *testing.B) { benchCall(b, "{}", eml(b, "clean-pdf.eml"), inbound) }

func BenchmarkSeveralStrip(b *testing.B) {
	benchCall(b, `{"action":"strip"}`, eml(b, "several.eml"), inbound)
}

func BenchmarkZipWithExe(b *testing.B) { benchCall(b, "{}", eml(b, "zip-with-exe.eml"), inbound) }
