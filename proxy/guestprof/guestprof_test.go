package guestprof

import "testing"

// TestPluginKeys: the same module under the same name shares a profile (a reload); another module under that
// name (an upgrade while profiling) gets its own, told apart by its hash.
func TestPluginKeys(t *testing.T) {
	p := New()
	a := p.Plugin("dlp", "aaaaaaaaaaaaaaaaaaaa")
	if p.Plugin("dlp", "aaaaaaaaaaaaaaaaaaaa") != a {
		t.Error("a reload with the same module got a new profile")
	}
	b := p.Plugin("dlp", "bbbbbbbbbbbbbbbbbbbb")
	if b == a || b.name != "dlp (bbbbbbbbbbbb)" || a.name != "dlp" {
		t.Errorf("upgraded module: %q and %q", a.name, b.name)
	}
	if prof := p.Profile(); len(prof.Function) != 2 || prof.Function[0].Name != "dlp" || prof.Function[1].Name != "dlp (bbbbbbbbbbbb)" {
		t.Errorf("root frames %v", prof.Function)
	}
}
