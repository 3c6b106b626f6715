package pluginhost

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testplugins"
)

// BenchmarkInstanceMemory measures what one more instance of each first-party plugin costs: its linear memory
// (the guest's heap, as the pool counts it) and the growth of the process's resident memory per instance, over
// ten instances created by holding them from the pool.
//
//	POSTERN_PLUGIN_DIR=$PWD/build/plugins go test -run '^$' -bench InstanceMemory -benchtime 1x ./proxy/pluginhost/
func BenchmarkInstanceMemory(b *testing.B) {
	const n = 10
	for _, name := range []string{"eicar", "attachment-guard", "dlp", "external-tag", "header-sanity"} {
		b.Run(name, func(b *testing.B) {
			wasm, err := os.ReadFile(testplugins.Path(b, "plugins/"+name))
			if err != nil {
				b.Fatal(err)
			}
			h := newHost(b)
			for b.Loop() {
				rss0 := residentBytes(b)
				p, err := h.Load(context.Background(), Config{Name: name, Wasm: wasm, PoolSize: n + 1})
				if err != nil {
					b.Fatal(err)
				}
				rss1 := residentBytes(b)
				held := make([]*instance, 0, n)
				for range n {
					in, err := p.acquire(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					held = append(held, in)
				}
				// The first acquire took the instance Load made: n-1 were created.
				rss2 := residentBytes(b)
				var linear uint64
				for _, in := range held {
					linear += uint64(in.mod.Memory().Size())
				}
				b.ReportMetric(float64(rss1-rss0)/(1<<20), "MiB-load")
				b.ReportMetric(float64(rss2-rss1)/float64(n-1)/(1<<20), "MiB-rss/instance")
				b.ReportMetric(float64(linear)/float64(n)/(1<<20), "MiB-linear/instance")
				for _, in := range held {
					p.release(in, true)
				}
				p.Close(context.Background())
			}
		})
	}
}

// residentBytes is the process's resident set size, after a GC so that freed Go memory does not hide growth.
func residentBytes(b *testing.B) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	s, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skip("no /proc/self/statm")
	}
	f := strings.Fields(string(s))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
