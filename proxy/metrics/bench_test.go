package metrics

import (
	"testing"
	"time"
)

// The cost of each hook on the paths they sit on: per message, per plugin call, per read or write of a client.

func BenchmarkMessage(b *testing.B) {
	for b.Loop() {
		Message("bench", "smtp", "message", "accept", ReplyClass("", 250))
	}
}

func BenchmarkPluginCall(b *testing.B) {
	for b.Loop() {
		PluginCall("bench", "message", 120*time.Microsecond, "")
	}
}

func BenchmarkClientBytes(b *testing.B) {
	l := NewListener("bench", "smtp")
	for b.Loop() {
		l.BytesIn(4096)
	}
}

func BenchmarkScrape(b *testing.B) {
	touchAll()
	for b.Loop() {
		if _, err := Registry.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
