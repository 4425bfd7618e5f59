package wsdash_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/teeml/teeml/dashboard"
	"github.com/teeml/teeml/dashboard/flsource"
	"github.com/teeml/teeml/dashboard/wsdash"
	"github.com/teeml/teeml/fl/metrics"
	flrun "github.com/teeml/teeml/fl/run"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/kms/store"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/vfl/psi"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "copy the pages' screenshots into docs/dashboard/")

// chromium is Debian's browser (apt-get install chromium; .ci/run installs it).
const chromium = "/usr/bin/chromium"

var (
	browserCtx context.Context // one browser per test binary
	browserErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	cancel := func() {}
	if _, err := os.Stat(chromium); err != nil {
		browserErr = fmt.Errorf("no browser: %w (apt-get install chromium)", err)
	} else {
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
			chromedp.Flag("headless", "new"), chromedp.NoSandbox, chromedp.IgnoreCertErrors, chromedp.DisableGPU,
			chromedp.WindowSize(1280, 1000))
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		b, cancelBrowser := chromedp.NewContext(alloc)
		if err := chromedp.Do(b, chromedp.Navigate("about:blank")); err != nil {
			browserErr = fmt.Errorf("start %s: %w", chromium, err)
		}
		browserCtx = b
		cancel = func() { cancelBrowser(); cancelAlloc() }
	}
	code := m.Run()
	cancel()
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
	os.Exit(code)
}

// bin is the teeml binary, built once per test binary.
var bin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func teeml(t *testing.T) string {
	t.Helper()
	bin.once.Do(func() {
		bin.dir, bin.err = os.MkdirTemp("", "teeml-dashboard-test")
		if bin.err != nil {
			return
		}
		bin.path = filepath.Join(bin.dir, "teeml")
		if out, err := exec.Command("go", "build", "-o", bin.path, "github.com/teeml/teeml/cmd/teeml").CombinedOutput(); err != nil {
			bin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if bin.err != nil {
		t.Fatal(bin.err)
	}
	return bin.path
}

// fixture is one real run of a teeml command, made once per test binary
// and only read by the tests (tests that change files work on a copy).
type fixture struct {
	once sync.Once
	dir  string
	err  error
}

func (f *fixture) make(t *testing.T, name string, args ...string) string {
	t.Helper()
	exe := teeml(t)
	f.once.Do(func() {
		f.dir = filepath.Join(bin.dir, name)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, exe, append(args, "--dir", f.dir, "--log-level", "warn")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			f.err = fmt.Errorf("teeml %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if f.err != nil {
		t.Fatal(f.err)
	}
	return f.dir
}

var qs, vflqs fixture

// quickstart is a real encrypted quickstart: the teeml binary, a
// federation of two collaborators for two rounds, a key broker.
func quickstart(t *testing.T) string {
	return qs.make(t, "ws", "quickstart", "--encrypted", "--template", "digits_mlp", "--rounds", "2", "--epochs", "1",
		"--collaborators", "2", "--timeout", "120s")
}

// vflQuickstart is a real VFL quickstart (leader and follower processes,
// PSI, split logistic regression); it returns the plan directory.
func vflQuickstart(t *testing.T) string {
	return filepath.Join(vflqs.make(t, "vfl", "vfl", "quickstart", "--dataset", "breast_cancer", "--model", "lr", "--epochs", "2"), "breast_cancer")
}

// copyWorkspace copies the quickstart workspace src to dst with each
// file's permissions (the broker refuses a root key others can read).
func copyWorkspace(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		return os.Chmod(filepath.Join(dst, rel), fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func needBrowser(t *testing.T) {
	t.Helper()
	if browserErr != nil {
		testenv.MustRun(t, "browser tests: %v", browserErr)
	}
}

func startDashboard(t *testing.T, ws string) *wsdash.Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, err := wsdash.Start(ctx, wsdash.Options{Workspace: ws, KMSConfig: filepath.Join(ws, "kms.yaml"), Addr: "127.0.0.1:0",
		MetricsAddr: "127.0.0.1:0", Poll: 100 * time.Millisecond, Logger: testlog.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("dashboard: %v", err)
		}
	})
	return r
}

// console collects a tab's console errors and warnings, uncaught
// exceptions and browser log errors (CSP violations, failed loads).
type console struct {
	mu   sync.Mutex
	msgs []string
}

func (c *console) add(s string) {
	c.mu.Lock()
	c.msgs = append(c.msgs, s)
	c.mu.Unlock()
}

func (c *console) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.msgs
	c.msgs = nil
	return m
}

func (c *console) listen(ev any) {
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning || e.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, a.Description+string(a.Value))
			}
			c.add(fmt.Sprintf("console.%s: %s", e.Type, strings.Join(parts, " ")))
		}
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		c.add(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError {
			c.add(fmt.Sprintf("log %s: %s (%s)", e.Entry.Source, e.Entry.Text, e.Entry.URL))
		}
	}
}

// tab opens a tab in a fresh browser context (no cookies of other tests).
func tab(t *testing.T) (context.Context, *console) {
	t.Helper()
	needBrowser(t)
	c := &console{}
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext(), chromedp.WithListener(c.listen))
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelT)
	return ctx, c
}

func login(t *testing.T, ctx context.Context, r *wsdash.Running) {
	t.Helper()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(r.Dashboard.LoginURL(r.URL())))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || !strings.HasSuffix(resp.URL, "/") {
		t.Fatalf("login: %d %s, want 200 on / after the redirect", resp.Status, resp.URL)
	}
}

// open loads path, waits until its event stream is connected, and saves a
// screenshot as name.png.
func open(t *testing.T, ctx context.Context, r *wsdash.Running, path, name string) {
	t.Helper()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(r.URL()+path))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 {
		t.Fatalf("%s: HTTP %d", path, resp.Status)
	}
	// Evaluate until the deadline: right after a navigation Chrome may
	// still swap the page's JavaScript context ("Cannot find context").
	var lastErr error
	if !testenv.WaitFor(10*time.Second, func() bool {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.getElementById('live') && document.getElementById('live').classList.contains('ok')`))
		lastErr = err
		return err == nil && ok
	}) {
		t.Fatalf("%s: the live-update stream did not connect within 10 s (last error: %v)", path, lastErr)
	}
	if name != "" {
		screenshot(t, ctx, name)
	}
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("TEEML_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "dashboard-"+name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", p, len(png))
	if *updateScreenshots {
		dst := filepath.Join("..", "..", "docs", "dashboard", name+".png")
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("updated %s", dst)
	}
}

func noConsoleErrors(t *testing.T, c *console, page string) {
	t.Helper()
	for _, m := range c.take() {
		t.Errorf("%s: %s", page, m)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	return v
}

// flDOM is what the FL page shows, read from the DOM.
type flDOM struct {
	Cells []struct {
		Round  int    `json:"round"`
		Metric string `json:"metric"`
		Text   string `json:"text"`
	} `json:"cells"`
	Points []struct {
		Chart  string  `json:"chart"`
		Series string  `json:"series"`
		Round  int     `json:"round"`
		Value  string  `json:"value"`
		CY     float64 `json:"cy"`
		YMin   float64 `json:"ymin"`
		YMax   float64 `json:"ymax"`
	} `json:"points"`
	Timeline []struct {
		Round        int    `json:"round"`
		Seconds      string `json:"seconds"`
		Participants string `json:"participants"`
		Accepted     string `json:"accepted"`
	} `json:"timeline"`
}

const flJS = `(() => {
  const q = s => Array.from(document.querySelectorAll(s));
  return {
    cells: q('section.run table.metrics tr[data-round] td[data-metric]').map(td => ({
      round: +td.parentElement.dataset.round, metric: td.dataset.metric, text: td.textContent.trim()})),
    points: q('section.run svg.chart circle[data-series]').map(c => ({
      chart: c.ownerSVGElement.id, series: c.dataset.series, round: +c.dataset.round, value: c.dataset.value,
      cy: +c.getAttribute('cy'), ymin: +c.ownerSVGElement.dataset.ymin, ymax: +c.ownerSVGElement.dataset.ymax})),
    timeline: q('section.run table.timeline tr[data-round]').map(tr => ({
      round: +tr.dataset.round, seconds: tr.querySelector('[data-field=seconds]').textContent.trim(),
      participants: tr.querySelector('[data-field=participants]').textContent.trim(),
      accepted: tr.querySelector('[data-field=accepted]').textContent.trim()})),
  };
})()`

// checkFL compares the FL page's numbers with the metrics file's records:
// every charted metric of every round in the table (as printed) and in its
// chart (the point's value, the chart's scale, the point's position), and
// the round timeline. It returns the mismatches.
func checkFL(dom flDOM, recs []metrics.Record) []string {
	var bad []string
	want := map[int]map[string]float64{} // round → metric → value
	eval := map[int]map[string]float64{}
	var rounds []metrics.Record
	for _, r := range recs {
		switch r.Phase {
		case metrics.PhaseRound:
			rounds = append(rounds, r)
			want[r.Round] = map[string]float64{}
			for k, v := range r.Metrics {
				want[r.Round][k] = v
			}
		case metrics.PhaseEvaluate:
			eval[r.Round] = r.Metrics
		}
	}
	for rd, m := range eval {
		for k, v := range m {
			if _, ok := want[rd][k]; !ok && want[rd] != nil {
				want[rd][k] = v
			}
		}
	}
	charted := func(k string) string {
		switch {
		case strings.HasSuffix(k, "accuracy"):
			return "accuracy-0"
		case strings.HasSuffix(k, "loss"):
			return "loss-0"
		}
		return ""
	}
	scale := map[string][]float64{}
	nWant := 0
	for _, m := range want {
		for k, v := range m {
			if c := charted(k); c != "" {
				scale[c] = append(scale[c], v)
				nWant++
			}
		}
	}
	if len(dom.Cells) != nWant || len(dom.Points) != nWant {
		bad = append(bad, fmt.Sprintf("%d table cells and %d chart points, want %d each", len(dom.Cells), len(dom.Points), nWant))
	}
	for _, c := range dom.Cells {
		v, ok := want[c.Round][c.Metric]
		if !ok {
			bad = append(bad, fmt.Sprintf("table: round %d %s shown but not in the metrics file", c.Round, c.Metric))
		} else if c.Text != dashboard.F4(v) {
			bad = append(bad, fmt.Sprintf("table: round %d %s shows %s, the metrics file has %v", c.Round, c.Metric, c.Text, v))
		}
	}
	axisBad := map[string]bool{}
	for _, p := range dom.Points {
		v, ok := want[p.Round][p.Series]
		if !ok || charted(p.Series) != p.Chart {
			bad = append(bad, fmt.Sprintf("chart %s: point %s round %d not in the metrics file", p.Chart, p.Series, p.Round))
			continue
		}
		got, err := strconv.ParseFloat(p.Value, 64)
		if err != nil || got != v {
			bad = append(bad, fmt.Sprintf("chart %s: %s round %d plots %s, the metrics file has %v", p.Chart, p.Series, p.Round, p.Value, v))
		}
		lo, hi := dashboard.Scale(scale[p.Chart])
		if (math.Abs(p.YMin-lo) > 1e-9 || math.Abs(p.YMax-hi) > 1e-9) && !axisBad[p.Chart] {
			axisBad[p.Chart] = true
			bad = append(bad, fmt.Sprintf("chart %s: y axis %v…%v, the metrics file's values need %v…%v", p.Chart, p.YMin, p.YMax, lo, hi))
		}
		if y := dashboard.Y(v, lo, hi); math.Abs(p.CY-y) > 0.01 {
			bad = append(bad, fmt.Sprintf("chart %s: %s round %d drawn at y=%.2f, its value %v belongs at y=%.2f", p.Chart, p.Series, p.Round, p.CY, v, y))
		}
	}
	if len(dom.Timeline) != len(rounds) {
		bad = append(bad, fmt.Sprintf("timeline: %d rounds, the metrics file has %d", len(dom.Timeline), len(rounds)))
	}
	for i, r := range rounds {
		if i >= len(dom.Timeline) {
			break
		}
		d := dom.Timeline[i]
		if d.Round != r.Round || d.Seconds != strconv.FormatFloat(r.Seconds, 'f', 3, 64) ||
			d.Participants != strconv.Itoa(len(r.Participants)) || d.Accepted != strings.Join(r.Accepted, ", ") {
			bad = append(bad, fmt.Sprintf("timeline: row %d shows round %d, %s s, %s participants, accepted %q; the metrics file has round %d, %.3f s, %d, %q",
				i, d.Round, d.Seconds, d.Participants, d.Accepted, r.Round, r.Seconds, len(r.Participants), strings.Join(r.Accepted, ", ")))
		}
	}
	return bad
}

func metricsFile(t *testing.T, ws string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(ws, "runs", "*", metrics.FileName))
	if err != nil || len(files) != 1 {
		t.Fatalf("metrics files %v (%v), want one", files, err)
	}
	return files[0]
}

func readMetrics(t *testing.T, path string) []metrics.Record {
	t.Helper()
	recs, _, err := metrics.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// auditLog reads the broker's audit entries straight from its store.
func auditLog(t *testing.T, ws string) []*audit.Record {
	t.Helper()
	st, err := store.OpenReadOnly(context.Background(), store.Config{Driver: "sqlite", Path: filepath.Join(ws, "kms", "kms.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []*audit.Record
	if err := st.Entries(context.Background(), 1, 0, func(e audit.Entry) error {
		r, err := audit.Decode(e.Body)
		out = append(out, r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPagesOfAQuickstart loads every page of a real encrypted quickstart
// in Chromium: the numbers in the DOM equal the metrics file's, the
// federation's and the audit log's; simulation is shown in red; no console
// error; one screenshot per page.
func TestPagesOfAQuickstart(t *testing.T) {
	needBrowser(t)
	ws := quickstart(t)
	r := startDashboard(t, ws)
	ctx, con := tab(t)
	login(t, ctx, r)
	noConsoleErrors(t, con, "login")

	simulated := func(page string, want bool) {
		t.Helper()
		type banner struct {
			Text  string `json:"text"`
			Color string `json:"color"`
		}
		b := eval[*banner](t, ctx, `(() => { const e = document.getElementById('simulated');
			return e ? {text: e.textContent, color: getComputedStyle(e).backgroundColor} : null; })()`)
		switch {
		case want && b == nil:
			t.Errorf("%s: no SIMULATION banner although simulated peers appear", page)
		case want && (!strings.HasPrefix(b.Text, "SIMULATION: ") || b.Color != "rgb(179, 38, 30)"):
			t.Errorf("%s: banner %q on %s, want the attest/sim banner on red", page, b.Text, b.Color)
		case !want && b != nil:
			t.Errorf("%s: SIMULATION banner on a page without peers", page)
		}
	}

	// Overview.
	open(t, ctx, r, "/", "overview")
	simulated("overview", true)
	noConsoleErrors(t, con, "/")

	// Federation: every member of the bundle, with role, status and serial.
	open(t, ctx, r, "/federation", "federation")
	simulated("federation", true)
	f, err := pki.LoadFederation(filepath.Join(ws, flsource.BundleFile), filepath.Join(ws, flsource.RootFile))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Name   string `json:"name"`
		Serial string `json:"serial"`
		Text   string `json:"text"`
	}
	rows := eval[[]row](t, ctx, `Array.from(document.querySelectorAll('#members tbody tr')).map(tr => ({name: tr.dataset.member, serial: tr.dataset.serial, text: tr.textContent}))`)
	if len(rows) != len(f.Members()) {
		t.Errorf("federation: %d members shown, the bundle has %d", len(rows), len(f.Members()))
	}
	for i, m := range f.Members() {
		if i < len(rows) && (rows[i].Name != m.Name || rows[i].Serial != m.Serial || !strings.Contains(rows[i].Text, m.Role) || !strings.Contains(rows[i].Text, string(m.Status))) {
			t.Errorf("federation: row %d %+v, the bundle has %s (%s, %s, %s)", i, rows[i], m.Name, m.Role, m.Status, m.Serial)
		}
	}
	noConsoleErrors(t, con, "/federation")

	// Attestation: per peer, the handshakes the aggregator verified.
	open(t, ctx, r, "/attestation", "attestation")
	simulated("attestation", true)
	path := metricsFile(t, ws)
	recs := readMetrics(t, path)
	accepted := map[string]int{}
	for _, rec := range recs {
		if rec.Phase == metrics.PhaseAttestation && rec.Result == "accepted" {
			accepted[rec.Participant]++
		}
	}
	if len(accepted) == 0 {
		t.Fatal("the quickstart recorded no attestation verdicts")
	}
	type att struct {
		Peer     string `json:"peer"`
		Accepted string `json:"accepted"`
		Text     string `json:"text"`
	}
	atts := eval[[]att](t, ctx, `Array.from(document.querySelectorAll('#attestations tbody tr')).map(tr => ({peer: tr.dataset.peer, accepted: tr.querySelector('[data-field=accepted]').textContent, text: tr.textContent}))`)
	for peer, n := range accepted {
		found := false
		for _, a := range atts {
			if a.Peer == peer {
				found = true
				if a.Accepted != strconv.Itoa(n) || !strings.Contains(a.Text, "sgx") || !strings.Contains(a.Text, "SIMULATION") {
					t.Errorf("attestation: %s shows %s accepted (%q), the metrics file has %d", peer, a.Accepted, a.Text, n)
				}
			}
		}
		if !found {
			t.Errorf("attestation: peer %s not shown", peer)
		}
	}
	noConsoleErrors(t, con, "/attestation")

	// FL runs: every charted number and the timeline.
	open(t, ctx, r, "/fl", "fl")
	simulated("fl", true)
	dom := eval[flDOM](t, ctx, flJS)
	if len(dom.Cells) == 0 {
		t.Fatal("fl: no metrics in the table")
	}
	for _, m := range checkFL(dom, recs) {
		t.Error("fl: " + m)
	}
	noConsoleErrors(t, con, "/fl")

	// Key broker: every audit entry, the chain verified.
	open(t, ctx, r, "/kms", "kms")
	simulated("kms", true)
	entries := auditLog(t, ws)
	type arow struct {
		Seq      string `json:"seq"`
		Decision string `json:"decision"`
		Text     string `json:"text"`
	}
	arows := eval[[]arow](t, ctx, `Array.from(document.querySelectorAll('#audit tbody tr')).map(tr => ({seq: tr.dataset.seq, decision: tr.querySelector('[data-field=decision]').textContent.trim(), text: tr.textContent}))`)
	if len(arows) != len(entries) {
		t.Errorf("kms: %d audit rows, the audit log has %d", len(arows), len(entries))
	}
	granted := 0
	for i, e := range entries {
		if e.Decision == audit.Granted {
			granted++
		}
		j := len(entries) - 1 - i // newest first
		if j < len(arows) && (arows[j].Seq != strconv.Itoa(i+1) || arows[j].Decision != e.Decision ||
			!strings.Contains(arows[j].Text, e.Op) || !strings.Contains(arows[j].Text, e.Caller.Name)) {
			t.Errorf("kms: audit row %+v, the log's entry %d is %s %s by %s", arows[j], i+1, e.Op, e.Decision, e.Caller.Name)
		}
	}
	status := eval[string](t, ctx, `document.getElementById('chain-status').textContent + ' ' + document.getElementById('chain-granted').textContent`)
	if status != "verified "+strconv.Itoa(granted) {
		t.Errorf("kms: chain %q, want verified with %d granted", status, granted)
	}
	noConsoleErrors(t, con, "/kms")

	open(t, ctx, r, "/serving", "serving")
	simulated("serving", false)
	noConsoleErrors(t, con, "/serving")
}

// shifted is an FL source whose last round's test_accuracy is off by
// 0.01: the wrong chart data the browser test must catch.
type shifted struct{ *flsource.Source }

func (s shifted) FLRuns(ctx context.Context) ([]dashboard.FLRun, error) {
	runs, err := s.Source.FLRuns(ctx)
	if err == nil && len(runs) > 0 && len(runs[0].Rounds) > 0 {
		rd := runs[0].Rounds[len(runs[0].Rounds)-1]
		rd.Metrics["test_accuracy"] += 0.01
	}
	return runs, err
}

// TestWrongChartDataIsCaught: the same check as TestPagesOfAQuickstart on
// a dashboard whose data source shifts one value detects it, in the table
// and in the chart.
func TestWrongChartDataIsCaught(t *testing.T) {
	needBrowser(t)
	ws := quickstart(t)
	src := flsource.New(ws)
	d, err := dashboard.New(dashboard.Options{Title: "shifted", Federation: src, FL: shifted{src}, Logger: testlog.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := dashboard.Serve(ctx, d, dashboard.ServeOptions{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	r := &wsdash.Running{Dashboard: d, Server: srv}
	bctx, con := tab(t)
	login(t, bctx, r)
	open(t, bctx, r, "/fl", "")
	recs := readMetrics(t, metricsFile(t, ws))
	bad := checkFL(eval[flDOM](t, bctx, flJS), recs)
	last := 0
	for _, rec := range recs {
		if rec.Phase == metrics.PhaseRound {
			last = rec.Round
		}
	}
	var table, chart bool
	for _, m := range bad {
		t.Logf("caught: %s", m)
		table = table || strings.HasPrefix(m, fmt.Sprintf("table: round %d test_accuracy", last))
		chart = chart || strings.Contains(m, fmt.Sprintf("test_accuracy round %d plots", last))
	}
	if !table || !chart {
		t.Errorf("the shifted test_accuracy of round %d was not caught in the table (%v) and the chart (%v): %q", last, table, chart, bad)
	}
	noConsoleErrors(t, con, "/fl")
}

// TestLiveRoundWithin2s: a round record appended to the metrics file (as
// the aggregator writes it when a round closes) appears on the open FL
// page within 2 s, without a reload.
func TestLiveRoundWithin2s(t *testing.T) {
	needBrowser(t)
	ws := filepath.Join(t.TempDir(), "ws")
	copyWorkspace(t, quickstart(t), ws)
	r := startDashboard(t, ws)
	ctx, con := tab(t)
	login(t, ctx, r)
	open(t, ctx, r, "/fl", "")
	eval[chromedp.Void](t, ctx, `window.teemlNotReloaded = true`)

	path := metricsFile(t, ws)
	recs := readMetrics(t, path)
	var last metrics.Record
	for _, rec := range recs {
		if rec.Phase == metrics.PhaseRound {
			last = rec
		}
	}
	next := last
	next.Round, next.Time = last.Round+1, time.Now().UTC()
	next.Metrics = map[string]float64{"val_accuracy": 0.4242, "val_loss": 1.2345}
	line, err := json.Marshal(next)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	sel := fmt.Sprintf(`table.metrics tr[data-round="%d"] td[data-metric="val_accuracy"]`, next.Round)
	got, err := chromedp.Run(ctx, chromedp.Poll[string](fmt.Sprintf(`(document.querySelector('%s') || {}).textContent`, sel),
		chromedp.WithPollingTimeout(2*time.Second), chromedp.WithPollingInterval(20*time.Millisecond)))
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("round %d not on the page %v after it was written: %v", next.Round, elapsed, err)
	}
	if got != "0.4242" {
		t.Errorf("round %d val_accuracy shows %q, want 0.4242", next.Round, got)
	}
	if !eval[bool](t, ctx, `window.teemlNotReloaded === true`) {
		t.Error("the page was reloaded")
	}
	t.Logf("round %d on the open page %v after it was written (limit 2 s)", next.Round, elapsed.Round(time.Millisecond))
	// The whole page still agrees with the file.
	for _, m := range checkFL(eval[flDOM](t, ctx, flJS), readMetrics(t, path)) {
		t.Error("fl after the update: " + m)
	}
	noConsoleErrors(t, con, "/fl live")
}

// TestBrowserWithoutTokenIsRefused: a browser without the login token or a
// client certificate gets 401 on every page, and a wrong token 403.
func TestBrowserWithoutTokenIsRefused(t *testing.T) {
	needBrowser(t)
	ws := quickstart(t)
	r := startDashboard(t, ws)
	ctx, _ := tab(t)
	for _, p := range dashboard.Pages() {
		resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(r.URL()+p))
		if err != nil {
			t.Fatal(err)
		}
		body := eval[string](t, ctx, `document.body.textContent`)
		if resp.Status != 401 || !strings.Contains(body, "not logged in") || strings.Contains(body, "col-1") {
			t.Errorf("%s without login: %d %q, want 401 and nothing of the federation", p, resp.Status, body)
		}
	}
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(r.URL()+"/login?token=wrong"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 403 {
		t.Errorf("wrong token: %d, want 403", resp.Status)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal(ctx.Err())
	}
}

// TestVFLPage loads the VFL page of a real VFL quickstart: each side's PSI
// sizes, checkpoints and model card as the files say, simulation in red.
func TestVFLPage(t *testing.T) {
	needBrowser(t)
	dir := vflQuickstart(t)
	ctx0, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := wsdash.Start(ctx0, wsdash.Options{Workspace: dir, Addr: "127.0.0.1:0", Logger: testlog.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, con := tab(t)
	login(t, ctx, r)
	con.take() // the overview reads a federation this VFL plan does not have: its error line is not a console error
	open(t, ctx, r, "/vfl", "vfl")
	type side struct {
		Run          string   `json:"run"`
		Role         string   `json:"role"`
		Distinct     string   `json:"distinct"`
		Peer         string   `json:"peer"`
		Intersection string   `json:"intersection"`
		Checkpoints  []string `json:"checkpoints"`
		Iterations   string   `json:"iterations"`
		AUC          string   `json:"auc"`
		Sim          bool     `json:"sim"`
	}
	sides := eval[[]side](t, ctx, `Array.from(document.querySelectorAll('section.vfl')).map(s => {
		const f = sel => { const e = s.querySelector(sel); return e ? e.textContent.trim() : ''; };
		return {run: s.dataset.run, role: s.dataset.role, distinct: f('[data-field=distinct]'), peer: f('[data-field=peer_distinct]'),
			intersection: f('[data-field=intersection]'), checkpoints: Array.from(s.querySelectorAll('tr[data-iteration]')).map(tr => tr.dataset.iteration),
			iterations: f('[data-field=iterations]'), auc: f('[data-metric=auc]'), sim: !!document.getElementById('simulated')};
	})`)
	states, _ := filepath.Glob(filepath.Join(dir, "runs", "*", "*"))
	if len(sides) != 2 || len(states) != 2 {
		t.Fatalf("%d sides shown, %d state directories", len(sides), len(states))
	}
	for _, st := range states {
		rec, err := psi.ReadSessionFile(filepath.Join(st, "psi", "session.json"))
		if err != nil {
			t.Fatal(err)
		}
		var card struct {
			Iterations int64              `json:"iterations"`
			Metrics    map[string]float64 `json:"test_metrics"`
		}
		role := filepath.Base(st)
		b, err := os.ReadFile(filepath.Join(st, "model", role+".model-card.json"))
		if err != nil || json.Unmarshal(b, &card) != nil {
			t.Fatalf("model card of %s: %v", role, err)
		}
		ck, _ := filepath.Glob(filepath.Join(st, "checkpoints", "ckpt-*.safetensors"))
		var its []string
		for _, c := range ck {
			n := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(c), "ckpt-"), ".safetensors")
			it, _ := strconv.ParseInt(n, 10, 64)
			its = append(its, strconv.FormatInt(it, 10))
		}
		found := false
		for _, sd := range sides {
			if sd.Role != role || sd.Run != filepath.Base(filepath.Dir(st)) {
				continue
			}
			found = true
			want := side{Run: sd.Run, Role: role, Distinct: strconv.Itoa(rec.Distinct), Peer: strconv.Itoa(rec.PeerDistinct),
				Intersection: strconv.Itoa(rec.Intersection), Checkpoints: its, Iterations: strconv.FormatInt(card.Iterations, 10), Sim: true}
			if auc, ok := card.Metrics["auc"]; ok { // the leader holds the labels: only its card has test metrics
				want.AUC = dashboard.F4(auc)
			}
			if fmt.Sprint(sd) != fmt.Sprint(want) {
				t.Errorf("%s shows %+v, the files say %+v", role, sd, want)
			}
		}
		if !found {
			t.Errorf("%s not shown", role)
		}
	}
	noConsoleErrors(t, con, "/vfl")
}

// TestAggregatorRoundsLiveInBrowser: the aggregator's own dashboard
// (`fl aggregator start --ui-addr`) is open in Chromium on the FL page
// before the collaborators connect; each round appears on the page, without
// a reload, within 2 s of the aggregator writing its record.
func TestAggregatorRoundsLiveInBrowser(t *testing.T) {
	needBrowser(t)
	const rounds = 3
	ws := filepath.Join(t.TempDir(), "ws")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := flrun.SetupSimulated(context.Background(), ws, "digits_mlp", rounds, 1, 2, port); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var aggOut testlog.Buffer
	aggErr := make(chan error, 1)
	go func() {
		// The dashboard outlives the run (until cancel below): the last
		// round may close before the page has fetched it.
		aggErr <- flrun.RunAggregator(ctx, flrun.AggregatorOptions{Workspace: ws, UIAddr: "127.0.0.1:0", UILinger: time.Minute, Out: &aggOut, Logger: testlog.Discard()})
	}()
	loginRE := regexp.MustCompile(`dashboard: one-time login: (https://\S+)`)
	var login string
	testenv.Eventually(t, 30*time.Second, "the aggregator's dashboard login line", func() bool {
		if m := loginRE.FindStringSubmatch(aggOut.String()); m != nil {
			login = m[1]
		}
		return login != ""
	})
	base := login[:strings.Index(login, "/login")]
	bctx, con := tab(t)
	if resp, err := chromedp.Run(bctx, chromedp.NavigateResponse(login)); err != nil || resp.Status != 200 {
		t.Fatalf("login: %v %v", resp, err)
	}
	resp, err := chromedp.Run(bctx, chromedp.NavigateResponse(base+"/fl"))
	if err != nil || resp.Status != 200 {
		t.Fatalf("/fl: %v %v", resp, err)
	}
	if !testenv.WaitFor(10*time.Second, func() bool {
		ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById('live').classList.contains('ok')`))
		return err == nil && ok
	}) {
		t.Fatal("the live-update stream did not connect")
	}
	eval[chromedp.Void](t, bctx, `window.teemlNotReloaded = true`)

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, n := range []string{"col-1", "col-2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = flrun.RunCollaborator(ctx, flrun.CollaboratorOptions{Workspace: ws, Name: n, ConnectTimeout: 30 * time.Second, Logger: testlog.Discard()})
		}()
	}
	seen := map[int]time.Time{}
	for rd := 1; rd <= rounds; rd++ {
		sel := fmt.Sprintf(`table.timeline tr[data-round="%d"]`, rd)
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector('%s') !== null`, sel),
			chromedp.WithPollingTimeout(90*time.Second), chromedp.WithPollingInterval(10*time.Millisecond))); err != nil {
			t.Fatalf("round %d never appeared: %v", rd, err)
		}
		seen[rd] = time.Now()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("col-%d: %v", i+1, err)
		}
	}
	if !eval[bool](t, bctx, `window.teemlNotReloaded === true`) {
		t.Error("the page was reloaded")
	}
	screenshot(t, bctx, "fl-live")
	noConsoleErrors(t, con, "aggregator /fl")
	testenv.Eventually(t, time.Minute, "the aggregator to finish the run", func() bool {
		return strings.Contains(aggOut.String(), "dashboard: kept for")
	})
	cancel()
	if err := <-aggErr; err != nil {
		t.Fatalf("aggregator: %v", err)
	}
	for _, rec := range readMetrics(t, metricsFile(t, ws)) {
		if rec.Phase != metrics.PhaseRound {
			continue
		}
		lag := seen[rec.Round].Sub(rec.Time)
		t.Logf("round %d on the page %v after the aggregator wrote it", rec.Round, lag.Round(time.Millisecond))
		if lag > 2*time.Second {
			t.Errorf("round %d appeared %v after it closed, limit 2 s", rec.Round, lag)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
