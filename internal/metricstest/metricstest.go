// Package metricstest reads Prometheus metrics the way Prometheus does, for tests: an HTTP scrape parsed with the
// Prometheus text parser, and look-ups of samples by their labels.
package metricstest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one parsed /metrics answer, by family name.
type Scrape map[string]*dto.MetricFamily

// Get fetches url and parses it with the Prometheus text parser.
func Get(t testing.TB, url string) Scrape {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return Parse(t, resp.Body)
}

// Parse parses metrics in the Prometheus text format (a whole scrape, or sample lines picked from one).
func Parse(t testing.TB, r io.Reader) Scrape {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parsing metrics: %v", err)
	}
	return fams
}

// Serve scrapes h (a /metrics handler) over HTTP.
func Serve(t testing.TB, h http.Handler) Scrape {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	return Get(t, srv.URL)
}

// Value is the sum of the samples of family name whose labels include want (a counter's or gauge's value, a
// histogram's count); ok is false when there is none.
func (s Scrape) Value(name string, want map[string]string) (v float64, ok bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, w := range want {
			if have[k] != w {
				continue next
			}
		}
		ok = true
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	}
	return v, ok
}

// Must is Value for a sample that must be there.
func (s Scrape) Must(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := s.Value(name, labels)
	if !ok {
		t.Fatalf("no %s%v in the scrape", name, labels)
	}
	return v
}

// Label is the value of label name on the first sample of family, "" if none.
func (s Scrape) Label(family, name string) string {
	for _, m := range s[family].GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
	}
	return ""
}

// L builds a label set from key, value pairs.
func L(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Rise fails t unless the sample rose by at least atLeast from before to after.
func Rise(t testing.TB, before, after Scrape, name string, labels map[string]string, atLeast float64) {
	t.Helper()
	b, _ := before.Value(name, labels)
	a, ok := after.Value(name, labels)
	if !ok || a-b < atLeast {
		t.Errorf("%s%v: %v → %v, want a rise of at least %v", name, labels, b, a, atLeast)
	}
}
