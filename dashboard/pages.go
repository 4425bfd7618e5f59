package dashboard

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"mime"
	"net/http"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/teeml/teeml/attest/sim"
)

//go:embed assets
var assets embed.FS

// pages are the dashboard's pages, in navigation order.
var pages = []struct{ Path, Page, Name string }{
	{"/", "overview", "Overview"},
	{"/federation", "federation", "Federation"},
	{"/attestation", "attestation", "Attestation"},
	{"/fl", "fl", "FL runs"},
	{"/vfl", "vfl", "VFL sessions"},
	{"/kms", "kms", "Key broker"},
	{"/serving", "serving", "Serving & SQL"},
}

// Pages are the paths of the dashboard's pages.
func Pages() []string {
	out := make([]string, len(pages))
	for i, p := range pages {
		out[i] = p.Path
	}
	return out
}

// maxAuditRows bounds the audit entries shown (newest first).
const maxAuditRows = 500

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"ts":        formatTime,
	"f3":        func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) },
	"f4":        F4,
	"join":      func(s []string) string { return strings.Join(s, ", ") },
	"short":     short,
	"simPrefix": func() string { return sim.Prefix },
	"until":     until,
	"rate":      rate,
	"dur":       Dur,
}).ParseFS(assets, "assets/templates.html"))

// F4 is how the dashboard prints a metric: four decimals.
func F4(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }

// Dur prints seconds as the dashboard does: milliseconds below one second.
func Dur(s float64) string {
	if s < 1 {
		return strconv.FormatFloat(s*1000, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(s, 'f', 3, 64) + " s"
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

func until(t, now time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	d := t.Sub(now)
	if d <= 0 {
		return "expired"
	}
	if d >= 48*time.Hour {
		return fmt.Sprintf("in %d days", int(d/(24*time.Hour)))
	}
	return "in " + d.Round(time.Minute).String()
}

func rate(n int64, since, now time.Time) string {
	s := now.Sub(since).Seconds()
	if since.IsZero() || s <= 0 {
		return "–"
	}
	return strconv.FormatFloat(float64(n)/s, 'f', 2, 64)
}

type navItem struct {
	Path, Name string
	Here       bool
}

type metricCell struct {
	Name  string
	Value float64
	Has   bool
}

// runView is an FLRun with its charts.
type runView struct {
	FLRun
	MetricNames   []string
	AccuracyChart template.HTML
	LossChart     template.HTML
	PhaseChart    template.HTML
}

// MetricNamesOf returns r's cells in MetricNames order.
func (v runView) MetricNamesOf(r Round) []metricCell {
	out := make([]metricCell, len(v.MetricNames))
	for i, n := range v.MetricNames {
		val, ok := r.Metrics[n]
		out[i] = metricCell{Name: n, Value: val, Has: ok}
	}
	return out
}

type view struct {
	Title, Page, PageTitle string
	Nav                    []navItem
	Version                uint64
	Generated              time.Time
	Simulated              bool
	Banner                 string
	Errors                 []string

	Fed         *Federation
	Revoked     []Member
	Att         []Attestation
	Runs        []runView
	TotalRounds int
	Broker      *Broker
	AuditRows   []AuditEntry
	AuditShown  int
	Services    []ServiceStats
	VFL         []vflView
}

type vflView struct {
	VFLSession
	PSIChart template.HTML
}

func (d *Dashboard) static(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	if name == "" || strings.Contains(name, "/") || name == "templates.html" {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(assets, "assets/"+name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

func (d *Dashboard) page(w http.ResponseWriter, r *http.Request) {
	i := slices.IndexFunc(pages, func(p struct{ Path, Page, Name string }) bool { return p.Path == r.URL.Path })
	if i < 0 {
		http.NotFound(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	v := d.collect(ctx, pages[i].Page)
	v.PageTitle = pages[i].Name
	for _, p := range pages {
		v.Nav = append(v.Nav, navItem{Path: p.Path, Name: p.Name, Here: p.Path == r.URL.Path})
	}
	name := "layout"
	if r.URL.Query().Get("partial") == "1" {
		name = "content"
	}
	var buf bytes.Buffer
	if err := tmpl.ExecuteTemplate(&buf, name, v); err != nil {
		d.log.Error("dashboard: rendering", "page", v.Page, "err", err)
		http.Error(w, "dashboard: rendering "+v.Page+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// collect reads what page needs from the sources.
func (d *Dashboard) collect(ctx context.Context, page string) *view {
	ver, _ := d.watch()
	v := &view{Title: d.o.Title, Page: page, Version: ver, Generated: d.o.Now().UTC(), Banner: sim.Banner}
	fail := func(src string, err error) {
		d.srcErrs.WithLabelValues(src).Inc()
		d.log.Warn("dashboard: data source failed", "source", src, "err", err)
		v.Errors = append(v.Errors, src+": "+oneLine(err.Error()))
	}
	simulated := map[string]bool{} // peer → simulated
	need := func(p ...string) bool { return page == "overview" || slices.Contains(p, page) }
	if d.o.Federation != nil && need("federation", "fl") {
		f, err := d.o.Federation.Federation(ctx)
		if err != nil {
			fail("federation", err)
		} else if f != nil {
			v.Fed = f
			for _, m := range f.Members {
				if m.Simulated && m.Status != "revoked" {
					simulated[m.Name] = true
				}
				if m.Status == "revoked" {
					v.Revoked = append(v.Revoked, m)
				}
				if m.Simulated && page != "fl" {
					v.Simulated = true
				}
			}
		}
	}
	if d.o.Attestation != nil && need("attestation") {
		a, err := d.o.Attestation.Attestations(ctx)
		if err != nil {
			fail("attestation", err)
		}
		v.Att = a
		for _, x := range a {
			if x.Simulated {
				v.Simulated = true
			}
		}
	}
	if d.o.FL != nil && need("fl") {
		runs, err := d.o.FL.FLRuns(ctx)
		if err != nil {
			fail("fl", err)
		}
		for i, run := range runs {
			v.Runs = append(v.Runs, newRunView(run, i))
			v.TotalRounds += len(run.Rounds)
			for _, r := range run.Rounds {
				for _, p := range r.Participants {
					if simulated[p] {
						v.Simulated = true
					}
				}
			}
		}
	}
	if d.o.Broker != nil && need("kms") {
		b, err := d.o.Broker.Broker(ctx)
		if err != nil {
			fail("key broker", err)
		} else if b != nil {
			v.Broker = b
			for _, e := range b.Entries {
				if e.Simulated {
					v.Simulated = true
				}
			}
			n := len(b.Entries)
			rows := make([]AuditEntry, 0, min(n, maxAuditRows))
			for i := n - 1; i >= 0 && len(rows) < maxAuditRows; i-- {
				rows = append(rows, b.Entries[i])
			}
			v.AuditRows = rows
			if n > maxAuditRows {
				v.AuditShown = maxAuditRows
			}
		}
	}
	if d.o.VFL != nil && need("vfl") {
		ss, err := d.o.VFL.VFLSessions(ctx)
		if err != nil {
			fail("vfl", err)
		}
		for i, s := range ss {
			vv := vflView{VFLSession: s}
			if s.PSI != nil {
				if s.PSI.Simulated {
					v.Simulated = true
				}
				vv.PSIChart = barChart(fmt.Sprintf("psi-%d", i), "PSI set sizes", []bar{
					{Label: s.PSI.Self + " (here)", Key: "distinct", Value: float64(s.PSI.Distinct)},
					{Label: s.PSI.Peer + " (peer)", Key: "peer_distinct", Value: float64(s.PSI.PeerDistinct)},
					{Label: "intersection", Key: "intersection", Value: float64(s.PSI.Intersection)}}, count)
			}
			if s.Model != nil && s.Model.Simulated {
				v.Simulated = true
			}
			v.VFL = append(v.VFL, vv)
		}
	}
	if d.o.Services != nil && need("serving") {
		s, err := d.o.Services.Services(ctx)
		if err != nil {
			fail("services", err)
		}
		v.Services = s
	}
	return v
}

func newRunView(run FLRun, idx int) runView {
	v := runView{FLRun: run}
	seen := map[string]bool{}
	for _, r := range run.Rounds {
		for k := range r.Metrics {
			if (strings.HasSuffix(k, "accuracy") || strings.HasSuffix(k, "loss")) && !seen[k] {
				seen[k] = true
				v.MetricNames = append(v.MetricNames, k)
			}
		}
	}
	sort.Strings(v.MetricNames)
	var acc, loss []series
	for _, k := range v.MetricNames {
		s := series{Name: k}
		for _, r := range run.Rounds {
			if val, ok := r.Metrics[k]; ok {
				s.Points = append(s.Points, point{Round: r.Round, Value: val})
			}
		}
		if strings.HasSuffix(k, "accuracy") {
			acc = append(acc, s)
		} else {
			loss = append(loss, s)
		}
	}
	v.AccuracyChart = lineChart(fmt.Sprintf("accuracy-%d", idx), "Accuracy per round", acc)
	v.LossChart = lineChart(fmt.Sprintf("loss-%d", idx), "Loss per round", loss)
	var bars []bar
	for _, p := range run.Phases {
		if p.Phase == "download" || p.Phase == "train" || p.Phase == "upload" || p.Phase == "validate" || p.Phase == "aggregate" || p.Phase == "evaluate" {
			bars = append(bars, bar{Label: p.Participant + " · " + p.Phase, Key: p.Participant + "/" + p.Phase, Value: p.Mean()})
		}
	}
	v.PhaseChart = barChart(fmt.Sprintf("phases-%d", idx), "Mean seconds per phase", bars, Dur)
	return v
}

type point struct {
	Round int
	Value float64
}

type series struct {
	Name   string
	Points []point
}

// Chart geometry (viewBox units). The test reads these from the SVG's
// data-* attributes to check each point's position against its value.
const (
	chartW, chartH                 = 640, 272
	plotL, plotR, plotT, plotB     = 56.0, 620.0, 16.0, 210.0
	legendY                        = 262.0
	barRowH, barLabelW, barPlotMax = 18.0, 230.0, 380.0
)

// Scale returns a chart's y-axis range for values: the data's range
// padded by 5 % (a flat series gets ±0.5).
func Scale(values []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range values {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if len(values) == 0 {
		return 0, 1
	}
	if hi-lo < 1e-12 {
		return lo - 0.5, hi + 0.5
	}
	pad := (hi - lo) * 0.05
	return lo - pad, hi + pad
}

// Y is the y coordinate of v on a chart scaled to [lo, hi].
func Y(v, lo, hi float64) float64 { return plotB - (v-lo)/(hi-lo)*(plotB-plotT) }

func px(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func lineChart(id, title string, ss []series) template.HTML {
	var vals []float64
	minR, maxR := math.MaxInt, math.MinInt
	for _, s := range ss {
		for _, p := range s.Points {
			vals = append(vals, p.Value)
			minR, maxR = min(minR, p.Round), max(maxR, p.Round)
		}
	}
	var b strings.Builder
	esc := template.HTMLEscapeString
	fmt.Fprintf(&b, `<figure><figcaption>%s</figcaption>`, esc(title))
	if len(vals) == 0 {
		b.WriteString(`<p class="muted">No data yet.</p></figure>`)
		return template.HTML(b.String())
	}
	lo, hi := Scale(vals)
	x := func(r int) float64 {
		if maxR == minR {
			return (plotL + plotR) / 2
		}
		return plotL + float64(r-minR)/float64(maxR-minR)*(plotR-plotL)
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="%s" viewBox="0 0 %d %d" role="img" aria-label="%s" data-ymin="%s" data-ymax="%s">`,
		esc(id), chartW, chartH, esc(title), strconv.FormatFloat(lo, 'g', -1, 64), strconv.FormatFloat(hi, 'g', -1, 64))
	for i := 0; i <= 4; i++ {
		v := lo + (hi-lo)*float64(i)/4
		y := Y(v, lo, hi)
		fmt.Fprintf(&b, `<line class="grid" x1="%s" x2="%s" y1="%s" y2="%s"/><text x="%s" y="%s" text-anchor="end">%s</text>`,
			px(plotL), px(plotR), px(y), px(y), px(plotL-6), px(y+4), strconv.FormatFloat(v, 'g', 3, 64))
	}
	step := max(1, (maxR-minR+1)/12)
	for r := minR; r <= maxR; r += step {
		fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="middle">%d</text>`, px(x(r)), px(plotB+16), r)
	}
	fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="middle">round</text>`, px((plotL+plotR)/2), px(plotB+30))
	fmt.Fprintf(&b, `<line class="axis" x1="%s" x2="%s" y1="%s" y2="%s"/><line class="axis" x1="%s" x2="%s" y1="%s" y2="%s"/>`,
		px(plotL), px(plotR), px(plotB), px(plotB), px(plotL), px(plotL), px(plotT), px(plotB))
	for i, s := range ss {
		cls := fmt.Sprintf("s%d", i%5)
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, px(x(p.Round))+","+px(Y(p.Value, lo, hi)))
		}
		fmt.Fprintf(&b, `<polyline class="%s" points="%s"/>`, cls, strings.Join(pts, " "))
		for _, p := range s.Points {
			fmt.Fprintf(&b, `<circle class="%s" r="3" cx="%s" cy="%s" data-series="%s" data-round="%d" data-value="%s"><title>%s round %d: %s</title></circle>`,
				cls, px(x(p.Round)), px(Y(p.Value, lo, hi)), esc(s.Name), p.Round, strconv.FormatFloat(p.Value, 'g', -1, 64), esc(s.Name), p.Round, F4(p.Value))
		}
		fmt.Fprintf(&b, `<text class="legend %s" x="%s" y="%s">%s</text>`, cls, px(plotL+float64(i)*150), px(legendY), esc(s.Name))
	}
	b.WriteString(`</svg></figure>`)
	return template.HTML(b.String())
}

type bar struct {
	Label, Key string
	Value      float64
}

func count(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

func barChart(id, title string, bars []bar, format func(float64) string) template.HTML {
	var b strings.Builder
	esc := template.HTMLEscapeString
	fmt.Fprintf(&b, `<figure><figcaption>%s</figcaption>`, esc(title))
	if len(bars) == 0 {
		b.WriteString(`<p class="muted">No data yet.</p></figure>`)
		return template.HTML(b.String())
	}
	hi := 0.0
	for _, x := range bars {
		hi = math.Max(hi, x.Value)
	}
	if hi <= 0 {
		hi = 1
	}
	h := int(float64(len(bars))*barRowH + 24)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="%s" viewBox="0 0 %d %d" role="img" aria-label="%s" data-max="%s">`,
		esc(id), chartW, h, esc(title), strconv.FormatFloat(hi, 'g', -1, 64))
	for i, x := range bars {
		y := 4 + float64(i)*barRowH
		w := x.Value / hi * barPlotMax
		cls := fmt.Sprintf("s%d", i%5)
		fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="end">%s</text>`, px(barLabelW-6), px(y+12), esc(x.Label))
		fmt.Fprintf(&b, `<rect class="bar %s" x="%s" y="%s" width="%s" height="%s" data-key="%s" data-value="%s"><title>%s: %s</title></rect>`,
			cls, px(barLabelW), px(y+2), px(w), px(barRowH-5), esc(x.Key), strconv.FormatFloat(x.Value, 'g', -1, 64), esc(x.Label), format(x.Value))
		fmt.Fprintf(&b, `<text x="%s" y="%s">%s</text>`, px(barLabelW+w+4), px(y+12), format(x.Value))
	}
	b.WriteString(`</svg></figure>`)
	return template.HTML(b.String())
}
