// Command render draws the panels of a Grafana dashboard as one HTML page, from the answers a real Prometheus gives
// to the dashboard's own queries: a picture of the dashboard for the documentation where Grafana itself is not
// available. It reads the dashboard JSON, runs each target's expression as a range query (a stat panel's as an
// instant query) with $__rate_interval and the dashboard's variables replaced, and writes each panel at its
// gridPos as an SVG chart with its legend. dist/grafana/render.sh runs it against a scraped `postern run`.
//
//	go run ./dist/grafana/render -prometheus http://127.0.0.1:9099 -dashboard dist/grafana/postern.json -out page.html
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

type dashboard struct {
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type        string                   `json:"type"`
	Title       string                   `json:"title"`
	GridPos     struct{ H, W, X, Y int } `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
}

// series is one line of a chart.
type series struct {
	name   string
	times  []float64
	values []float64
}

type promResult struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

func main() {
	var (
		prom     = flag.String("prometheus", "http://127.0.0.1:9090", "Prometheus `URL`")
		dashPath = flag.String("dashboard", "dist/grafana/postern.json", "the dashboard `FILE`")
		out      = flag.String("out", "dashboard.html", "the page to write")
		window   = flag.Duration("range", 10*time.Minute, "how far back the charts go")
		step     = flag.Duration("step", 5*time.Second, "the range queries' step")
		rate     = flag.String("rate-interval", "30s", "what $__rate_interval becomes")
		note     = flag.String("note", "", "a line of text under the title")
	)
	flag.Parse()
	b, err := os.ReadFile(*dashPath)
	if err != nil {
		log.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		log.Fatalf("%s: %v", *dashPath, err)
	}
	end := time.Now()
	start := end.Add(-*window)
	vars := strings.NewReplacer("$__rate_interval", *rate, "$instance", ".*", "${datasource}", "")

	var page strings.Builder
	rows := 0
	for _, p := range d.Panels {
		rows = max(rows, p.GridPos.Y+p.GridPos.H)
	}
	fmt.Fprintf(&page, pageHead, html.EscapeString(d.Title), rows, html.EscapeString(d.Title), html.EscapeString(*note))
	for _, p := range d.Panels {
		style := fmt.Sprintf("grid-column:%d / span %d;grid-row:%d / span %d", p.GridPos.X+1, p.GridPos.W, p.GridPos.Y+1, p.GridPos.H)
		if p.Type == "row" {
			fmt.Fprintf(&page, "<div class=row style=%q>%s</div>\n", style, html.EscapeString(p.Title))
			continue
		}
		var all []series
		for _, t := range p.Targets {
			expr := vars.Replace(t.Expr)
			s, err := query(*prom, expr, start, end, *step, p.Type == "stat")
			if err != nil {
				log.Fatalf("panel %q: %s: %v", p.Title, expr, err)
			}
			for i := range s {
				s[i].name = legend(t.LegendFormat, s[i].name)
			}
			all = append(all, s...)
		}
		fmt.Fprintf(&page, "<div class=panel style=%q><div class=title>%s</div>", style, html.EscapeString(p.Title))
		if p.Type == "stat" {
			writeStat(&page, all, p.FieldConfig.Defaults.Unit)
		} else {
			writeChart(&page, all, p.FieldConfig.Defaults.Unit, float64(start.Unix()), float64(end.Unix()), p.GridPos.H)
		}
		page.WriteString("</div>\n")
	}
	page.WriteString("</div></body></html>\n")
	if err := os.WriteFile(*out, []byte(page.String()), 0o644); err != nil {
		log.Fatal(err)
	}
}

// query asks Prometheus for expr over [start, end] (or at end, for an instant query). A series' name is its
// labels as JSON, for legend to format.
func query(prom, expr string, start, end time.Time, step time.Duration, instant bool) ([]series, error) {
	q := url.Values{"query": {expr}}
	path := "/api/v1/query_range"
	if instant {
		path = "/api/v1/query"
		q.Set("time", strconv.FormatInt(end.Unix(), 10))
	} else {
		q.Set("start", strconv.FormatInt(start.Unix(), 10))
		q.Set("end", strconv.FormatInt(end.Unix(), 10))
		q.Set("step", strconv.FormatFloat(step.Seconds(), 'f', -1, 64))
	}
	resp, err := http.Get(prom + path + "?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r promResult
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%s: %s", resp.Status, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("prometheus: %s", r.Error)
	}
	var out []series
	for _, res := range r.Data.Result {
		labels, _ := json.Marshal(res.Metric)
		s := series{name: string(labels)}
		points := res.Values
		if instant {
			points = [][2]any{res.Value}
		}
		for _, v := range points {
			ts, _ := v[0].(float64)
			str, _ := v[1].(string)
			f, err := strconv.ParseFloat(str, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				continue
			}
			s.times = append(s.times, ts)
			s.values = append(s.values, f)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

var legendVar = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// legend formats a series' name as Grafana's legendFormat does.
func legend(format, labelsJSON string) string {
	var labels map[string]string
	_ = json.Unmarshal([]byte(labelsJSON), &labels)
	if format == "" {
		return labelsJSON
	}
	return legendVar.ReplaceAllStringFunc(format, func(m string) string {
		return labels[legendVar.FindStringSubmatch(m)[1]]
	})
}

var palette = []string{"#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a", "#37872d", "#c4162a"}

// writeChart draws the series as lines on a time axis, with the y range and a legend.
func writeChart(w *strings.Builder, all []series, unit string, t0, t1 float64, h int) {
	const width = 500.0
	height := float64(h*30 - 70)
	lo, hi := 0.0, 0.0
	for _, s := range all {
		for _, v := range s.values {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if hi == lo {
		hi = lo + 1
	}
	// Room above the chart for the top axis label.
	fmt.Fprintf(w, `<svg viewBox="0 -8 %g %g" preserveAspectRatio="none">`, width+50, height+26)
	for i := 0; i <= 4; i++ {
		y := height - height*float64(i)/4
		fmt.Fprintf(w, `<line x1="50" x2="%g" y1="%g" y2="%g" class=gl /><text x="46" y="%g" class=axis text-anchor="end">%s</text>`,
			width+50, y, y, y+3, format(lo+(hi-lo)*float64(i)/4, unit))
	}
	for i := 0; i <= 4; i++ {
		x := 50 + width*float64(i)/4
		ts := time.Unix(int64(t0+(t1-t0)*float64(i)/4), 0).UTC().Format("15:04")
		fmt.Fprintf(w, `<text x="%g" y="%g" class=axis text-anchor="middle">%s</text>`, x, height+14, ts)
	}
	for i, s := range all {
		var pts strings.Builder
		for j := range s.values {
			x := 50 + width*(s.times[j]-t0)/(t1-t0)
			y := height - height*(s.values[j]-lo)/(hi-lo)
			fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
		}
		fmt.Fprintf(w, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.6" vector-effect="non-scaling-stroke" />`,
			pts.String(), palette[i%len(palette)])
	}
	w.WriteString("</svg><div class=legend>")
	if len(all) == 0 {
		w.WriteString("<span class=nodata>No data</span>")
	}
	for i, s := range all {
		last := ""
		if n := len(s.values); n > 0 {
			last = format(s.values[n-1], unit)
		}
		fmt.Fprintf(w, `<span><i style="background:%s"></i>%s <b>%s</b></span>`, palette[i%len(palette)], html.EscapeString(s.name), last)
	}
	w.WriteString("</div>")
}

// writeStat writes a stat panel: the last value of each series.
func writeStat(w *strings.Builder, all []series, unit string) {
	w.WriteString("<div class=stat>")
	for _, s := range all {
		if n := len(s.values); n > 0 {
			fmt.Fprintf(w, "<span>%s</span>", format(s.values[n-1], unit))
		}
	}
	w.WriteString("</div>")
}

// format prints v in unit, shortly.
func format(v float64, unit string) string {
	suffix := map[string]string{"ops": "/s", "cps": "/s", "Bps": "B/s", "bytes": "B", "s": "s"}[unit]
	a := math.Abs(v)
	switch {
	case unit == "s" && a > 0 && a < 1:
		return strconv.FormatFloat(v*1000, 'g', 3, 64) + "ms"
	case a >= 1e9:
		return strconv.FormatFloat(v/1e9, 'g', 3, 64) + "G" + suffix
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M" + suffix
	case a >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k" + suffix
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64) + suffix
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + suffix
}

const pageHead = `<!doctype html><html><head><meta charset="utf-8"><title>%s</title><style>
body{margin:0;background:#111217;color:#ccccdc;font:12px Inter,Helvetica,Arial,sans-serif}
h1{font-size:16px;font-weight:500;margin:10px 12px 2px}
.note{margin:0 12px 6px;color:#8e8e9e}
.grid{display:grid;grid-template-columns:repeat(24,1fr);grid-template-rows:repeat(%d,30px);gap:6px;padding:6px 12px}
.row{font-size:14px;font-weight:500;align-self:end;border-bottom:1px solid #2c2d33}
.panel{background:#181b1f;border:1px solid #2c2d33;border-radius:3px;padding:4px 8px;overflow:hidden;display:flex;flex-direction:column}
.title{font-weight:500;margin-bottom:2px}
svg{flex:1;width:100%%;min-height:0}
line.gl{stroke:#2c2d33;stroke-width:1}
.axis{fill:#8e8e9e;font-size:9px}
.legend{font-size:10px;line-height:13px;max-height:40px;overflow:hidden}
.legend span{margin-right:10px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle}
.nodata{color:#8e8e9e}
.stat{font-size:34px;color:#73bf69;flex:1;display:flex;align-items:center;justify-content:center}
</style></head><body><h1>%s</h1><div class=note>%s</div><div class=grid>
`
