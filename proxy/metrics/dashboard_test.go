package metrics

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/metricstest"
)

// touchAll gives every Postern metric a sample, so that a scrape lists every family.
func touchAll() {
	l := NewListener("touch", "smtp")
	l.Accepted()
	l.Closed()
	l.Refused(RefusedSessions)
	l.BytesIn(1)
	l.BytesOut(1)
	Message("touch", "smtp", "message", "accept", "2xx")
	StageDecision("touch", "smtp", "rcpt_to", "reject", "5xx")
	UpstreamDial("touch", "smtp", errors.New("refused"))
	UpstreamError("touch", "smtp")
	Throttled("touch", "imap")
	PluginCall("touch", "message", time.Millisecond, KindTrap)
	PluginPoolWait("touch")
	p := RegisterPool("touch", func() (int, int) { return 1, 1 })
	_ = p
	PolicyEvaluation("message", time.Millisecond)
	AuditAppend(time.Millisecond, errors.New("full"))
	ConfigReload(nil)
	ConfigLoaded(strings.Repeat("0", 64))
	SetBuild("test", "")
	SetQuarantine(func() (int64, int64, error) { return 1, 2, nil })
}

// families scrapes the registry over HTTP with every metric touched and returns the names of the postern_
// families, with the series names a histogram adds.
func families(t *testing.T) (names map[string]bool, histograms map[string]bool) {
	touchAll()
	s := metricstest.Serve(t, Handler())
	names, histograms = map[string]bool{}, map[string]bool{}
	for name, f := range s {
		if !strings.HasPrefix(name, "postern_") {
			continue
		}
		names[name] = true
		if f.GetType().String() == "HISTOGRAM" {
			histograms[name] = true
		}
	}
	return names, histograms
}

var metricName = regexp.MustCompile(`\bpostern_[a-z0-9_]+`)

// seriesFamily maps a series name in a query (a histogram's _bucket, _sum, _count) to its family.
func seriesFamily(name string, histograms map[string]bool) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && histograms[base] {
			return base
		}
	}
	return name
}

// TestDashboardQueries checks that every query of the Grafana dashboard names metrics that exist, and that the
// dashboard shows every family.
func TestDashboardQueries(t *testing.T) {
	names, histograms := families(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "dist", "grafana", "postern.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{}
	queries := 0
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			used := metricName.FindAllString(q.Expr, -1)
			if len(used) == 0 {
				t.Errorf("panel %q: query %q names no Postern metric", p.Title, q.Expr)
			}
			for _, u := range used {
				f := seriesFamily(u, histograms)
				if !names[f] {
					t.Errorf("panel %q: query %q names %s, which Postern does not export", p.Title, q.Expr, u)
				}
				shown[f] = true
			}
		}
	}
	for n := range names {
		if !shown[n] {
			t.Errorf("the dashboard shows no panel of %s", n)
		}
	}
	if queries < 20 {
		t.Errorf("%d queries", queries)
	}
}

// TestMetricsDoc checks that docs/METRICS.md lists every family, and nothing that does not exist.
func TestMetricsDoc(t *testing.T) {
	names, histograms := families(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "METRICS.md"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `postern_") {
			continue
		}
		name := strings.Trim(strings.Fields(strings.TrimPrefix(line, "| "))[0], "`")
		listed[name] = true
		if !names[name] {
			t.Errorf("docs/METRICS.md lists %s, which Postern does not export", name)
		}
	}
	var missing []string
	for n := range names {
		if !listed[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	for _, n := range missing {
		t.Errorf("docs/METRICS.md does not list %s", n)
	}
	for _, m := range metricName.FindAllString(string(b), -1) {
		if f := seriesFamily(m, histograms); !names[f] {
			t.Errorf("docs/METRICS.md names %s, which Postern does not export", m)
		}
	}
}
