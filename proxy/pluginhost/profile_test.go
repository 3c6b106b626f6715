package pluginhost

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/postern/postern/proxy/guestprof"
)

// profiledHost returns a host that profiles its plugins.
func profiledHost(t *testing.T) (*Host, *guestprof.Profiler) {
	t.Helper()
	prof := guestprof.New()
	h, err := NewHost(context.Background(), Options{Profiler: prof})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h, prof
}

// funcStats sums, per function name, the calls and the flat (self) time of a profile's samples, and records the
// call paths (root first) each function was seen on.
type funcStat struct {
	calls, flat, cum int64
	paths            []string
}

func funcStats(t *testing.T, p *profile.Profile) map[string]*funcStat {
	t.Helper()
	stats := map[string]*funcStat{}
	for _, s := range p.Sample {
		if len(s.Value) != 2 {
			t.Fatalf("sample has %d values, want 2 (calls, cpu)", len(s.Value))
		}
		names := make([]string, len(s.Location))
		for i, l := range s.Location {
			names[len(names)-1-i] = l.Line[0].Function.Name
		}
		leaf := names[len(names)-1]
		st := stats[leaf]
		if st == nil {
			st = &funcStat{}
			stats[leaf] = st
		}
		st.calls += s.Value[0]
		st.flat += s.Value[1]
		st.paths = append(st.paths, strings.Join(names, " > "))
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] {
				continue
			}
			seen[n] = true
			if stats[n] == nil {
				stats[n] = &funcStat{}
			}
			stats[n].cum += s.Value[1]
		}
	}
	return stats
}

func TestProfilerFindsHotFunction(t *testing.T) {
	h, prof := profiledHost(t)
	p := load(t, h, "profiled", nil)
	in := messageInput(t)
	for range 3 {
		wantOK(t, call(t, p, HookMessage, in))
	}
	var buf bytes.Buffer
	if _, err := prof.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	// What `go tool pprof` reads: a gzipped profile.proto.
	parsed, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.DefaultSampleType != "cpu" || len(parsed.SampleType) != 2 || parsed.SampleType[1].Unit != "nanoseconds" {
		t.Fatalf("sample types %v, default %q", parsed.SampleType, parsed.DefaultSampleType)
	}
	stats := funcStats(t, parsed)
	hot, cold, spin := stats["hot"], stats["cold"], stats["spin"]
	if hot == nil || cold == nil || spin == nil {
		t.Fatalf("profile lacks hot, cold or spin: %v", keys(stats))
	}
	if hot.calls != 3 || cold.calls != 3 || spin.calls != 6 {
		t.Errorf("calls: hot %d, cold %d, spin %d; want 3, 3, 6", hot.calls, cold.calls, spin.calls)
	}
	// The loop is in spin: its time is spin's flat time, and hot's cumulative time.
	if hot.cum <= 100*cold.cum {
		t.Errorf("hot's cumulative time %d ns is not far above cold's %d ns (20,000 times the loop)", hot.cum, cold.cum)
	}
	want := "profiled > postern_on_message > hot > spin"
	if !contains(spin.paths, want) {
		t.Errorf("spin's paths %q lack %q", spin.paths, want)
	}
	pc := stats["postern.part_count"]
	if pc == nil || pc.calls != 3 || !contains(pc.paths, "profiled > postern_on_message > postern.part_count") {
		t.Errorf("host function part_count not profiled under the hook: %+v", pc)
	}
}

func TestProfilerStopped(t *testing.T) {
	h, prof := profiledHost(t)
	p := load(t, h, "profiled", nil)
	wantOK(t, call(t, p, HookMessage, messageInput(t)))
	prof.Stop()
	// Calls after Stop still work (the listeners stay compiled in) but are not recorded.
	wantOK(t, call(t, p, HookMessage, messageInput(t)))
	stats := funcStats(t, prof.Profile())
	if hot := stats["hot"]; hot == nil || hot.calls != 1 {
		t.Fatalf("hot recorded %+v; want the one call made before Stop", hot)
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
