package audit

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAppend measures one decision record (about 1 KiB) written with an fsync per record against a 1 s
// background fsync. Run it on the disk the log will live on: b.TempDir follows TMPDIR, and fsync on tmpfs costs
// nothing.
//
// The head variants keep the chain head too (one more small write and fsync per fsync of the log), and
// durable appends with AppendDurable, as the relay does before it sends a message on.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name     string
		interval time.Duration
		head     bool
		durable  bool
	}{{"sync=each", 0, false, false}, {"sync=1s", time.Second, false, false},
		{"sync=each,head", 0, true, false}, {"durable,head", time.Second, true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			opts := Options{Path: filepath.Join(dir, "audit.log"), SyncInterval: bc.interval}
			if bc.head {
				opts.HeadPath = filepath.Join(dir, "audit.head")
			}
			l := openLog(b, opts)
			appendFn := l.Append
			if bc.durable {
				appendFn = l.AppendDurable
			}
			defer l.Close()
			r := sampleRecord(1)
			b.ReportAllocs()
			for b.Loop() {
				if err := appendFn(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendParallel shows the shared fsync: with many sessions appending at once, one fsync covers all the
// records written while the previous one ran.
func BenchmarkAppendParallel(b *testing.B) {
	for _, bc := range []struct {
		name     string
		interval time.Duration
	}{{"sync=each", 0}, {"sync=1s", time.Second}} {
		b.Run(bc.name, func(b *testing.B) {
			l := openLog(b, Options{Path: filepath.Join(b.TempDir(), "audit.log"), SyncInterval: bc.interval})
			defer l.Close()
			b.SetParallelism(16) // sessions waiting on the disk, not CPUs
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.Append(sampleRecord(1)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	path := writeChain(b, b.TempDir(), 5000, Options{SyncInterval: time.Hour})
	fi, _ := os.Stat(path)
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, n, err := Verify(f, ""); err != nil || n != 5000 {
			b.Fatal(n, err)
		}
		f.Close()
	}
}

// BenchmarkEncode is the part of Append done outside the lock.
func BenchmarkEncode(b *testing.B) {
	r := sampleRecord(1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := body(r); err != nil {
			b.Fatal(err)
		}
	}
}
