package report

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/metrics"
	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/run"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/internal/testlog"
)

// federation runs a small simulated federation in this process (digits
// MLP, 3 rounds of 1 epoch, 2 collaborators over loopback RA-TLS) and
// returns its run directory.
func federation(t *testing.T) string {
	t.Helper()
	ws := filepath.Join(t.TempDir(), "ws")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	names, err := run.SetupSimulated(ctx, ws, "digits_mlp", 3, 1, 2, port)
	if err != nil {
		t.Fatal(err)
	}
	aggErr := make(chan error, 1)
	go func() {
		aggErr <- run.RunAggregator(ctx, run.AggregatorOptions{Workspace: ws, Logger: testlog.Discard()})
	}()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run.RunCollaborator(ctx, run.CollaboratorOptions{Workspace: ws, Name: n, ConnectTimeout: 30 * time.Second, Logger: testlog.Discard()}); err != nil {
				t.Errorf("%s: %v", n, err)
			}
		}()
	}
	wg.Wait()
	if err := <-aggErr; err != nil {
		t.Fatal(err)
	}
	hash, err := plan.ReadHashFile(filepath.Join(ws, filepath.FromSlash(workspace.HashFile)))
	if err != nil {
		t.Fatal(err)
	}
	return run.RunDir(ws, hash)
}

// rawRecords parses a metrics file with encoding/json into plain maps,
// independently of metrics.Record and Summarize.
func rawRecords(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue // a torn line; Summarize skips it too
		}
		out = append(out, m)
	}
	return out
}

func num(m map[string]any, k string) float64 {
	if v, ok := m[k].(float64); ok {
		return v
	}
	return math.NaN()
}

func metric(m map[string]any, k string) float64 {
	mm, _ := m["metrics"].(map[string]any)
	return num(mm, k)
}

func count(m map[string]any, k string) int {
	l, _ := m[k].([]any)
	return len(l)
}

// expectTables computes, from the raw records, the rows the report's
// tables must show (formatted as the report formats them).
func expectTables(recs []map[string]any, score string) (rounds map[string][]string, parts map[string][]string) {
	rounds, parts = map[string][]string{}, map[string][]string{}
	eval, aggSec, refused := map[float64]map[string]any{}, map[float64]float64{}, map[float64]int{}
	busy := map[float64]map[string]float64{}
	type acc struct {
		dl, tr, up, val                 []float64
		updates, rej, ref, attOK, attNo int
		bdl, bup                        float64
	}
	ps := map[string]*acc{}
	p := func(n string) *acc {
		if ps[n] == nil {
			ps[n] = &acc{}
		}
		return ps[n]
	}
	for _, r := range recs {
		rd, who := num(r, "round"), r["participant"].(string)
		switch r["phase"] {
		case "download", "train", "upload", "validate":
			if busy[rd] == nil {
				busy[rd] = map[string]float64{}
			}
			if v := num(r, "seconds"); !math.IsNaN(v) {
				busy[rd][who] += v
			}
		}
		switch r["phase"] {
		case "evaluate":
			eval[rd] = r
		case "aggregate":
			aggSec[rd] = num(r, "seconds")
		case "refused":
			refused[rd]++
			p(who).ref++
		case "rejected":
			p(who).rej++
		case "download":
			p(who).dl = append(p(who).dl, num(r, "seconds"))
			p(who).bdl += num(r, "bytes")
		case "train":
			p(who).updates++
			if r["source"] == "collaborator" {
				p(who).tr = append(p(who).tr, num(r, "seconds"))
			}
		case "upload":
			p(who).up = append(p(who).up, num(r, "seconds"))
			p(who).bup += num(r, "bytes")
		case "validate":
			if r["source"] == "collaborator" {
				p(who).val = append(p(who).val, num(r, "seconds"))
			}
		case "attestation":
			if r["result"] == "accepted" {
				p(who).attOK++
			} else {
				p(who).attNo++
			}
		}
	}
	for _, r := range recs {
		if r["phase"] != "round" {
			continue
		}
		rd := num(r, "round")
		ev := eval[rd]
		testLoss, testScore := math.NaN(), math.NaN()
		if ev != nil {
			testLoss, testScore = metric(ev, "test_loss"), metric(ev, "test_"+score)
		}
		as, ok := aggSec[rd]
		if !ok {
			as = math.NaN()
		}
		slowest, max := "-", -1.0
		names := make([]string, 0, len(busy[rd]))
		for n := range busy[rd] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if busy[rd][n] > max {
				slowest, max = fmt.Sprintf("%s (%.3f)", n, busy[rd][n]), busy[rd][n]
			}
		}
		rounds[fmt.Sprint(rd)] = []string{fmt.Sprint(rd), fmt.Sprint(count(r, "participants")), fmt.Sprint(count(r, "accepted")),
			fmt.Sprint(count(r, "rejected")), fmt.Sprint(refused[rd]), f(num(r, "seconds"), 3), slowest, f(as, 3),
			fmt.Sprint(int64(num(r, "bytes_in"))), fmt.Sprint(int64(num(r, "bytes_out"))),
			f(metric(r, "val_loss"), 4), f(metric(r, "val_"+score), 4), f(testLoss, 4), f(testScore, 4)}
	}
	avg := func(xs []float64) float64 {
		if len(xs) == 0 {
			return math.NaN()
		}
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	for n, a := range ps {
		parts[n] = []string{n, fmt.Sprint(a.updates), fmt.Sprint(a.rej), fmt.Sprint(a.ref), f(avg(a.dl), 3), f(avg(a.tr), 3),
			f(avg(a.up), 3), f(avg(a.val), 3), fmt.Sprint(int64(a.bdl)), fmt.Sprint(int64(a.bup)), fmt.Sprint(a.attOK), fmt.Sprint(a.attNo)}
	}
	return rounds, parts
}

// tableRows returns the data rows of the Markdown table under heading.
func tableRows(t *testing.T, md, heading string) map[string][]string {
	t.Helper()
	i := strings.Index(md, "## "+heading)
	if i < 0 {
		t.Fatalf("report has no %q section:\n%s", heading, md)
	}
	rows := map[string][]string{}
	header := true
	for _, line := range strings.Split(md[i:], "\n")[1:] {
		if strings.HasPrefix(line, "## ") {
			break
		}
		if !strings.HasPrefix(line, "|") {
			continue
		}
		if header || strings.HasPrefix(line, "|---") {
			header = false
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows[cells[0]] = cells
	}
	return rows
}

func checkTables(t *testing.T, md string, recs []map[string]any, score string) {
	t.Helper()
	wantRounds, wantParts := expectTables(recs, score)
	for name, want := range map[string]map[string][]string{"Rounds": wantRounds, "Participants": wantParts} {
		got := tableRows(t, md, name)
		if len(got) != len(want) || len(got) == 0 {
			t.Errorf("%s table has %d rows, the metrics file gives %d", name, len(got), len(want))
		}
		for k, w := range want {
			if g := strings.Join(got[k], " | "); g != strings.Join(w, " | ") {
				t.Errorf("%s row %s:\n got  %s\n want %s", name, k, g, strings.Join(w, " | "))
			}
		}
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("%s is not a PNG: starts with %q", path, b[:min(8, len(b))])
	}
	if len(b) < 20<<10 {
		t.Errorf("%s is only %d bytes: a 1152×480 plot with axes, lines and legends is larger", path, len(b))
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if sz := img.Bounds().Size(); sz.X != 1152 || sz.Y != 480 {
		t.Errorf("%s is %v, want 1152×480", path, sz)
	}
	// Not a blank canvas: count distinct colours.
	colours := map[uint32]bool{}
	for y := 0; y < img.Bounds().Dy(); y += 3 {
		for x := 0; x < img.Bounds().Dx(); x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[r>>8<<16|g>>8<<8|bl>>8] = true
		}
	}
	if len(colours) < 8 {
		t.Errorf("%s has %d colours: blank plot?", path, len(colours))
	}
}

// TestReportOfRealFederation runs a real federation, then the report: a
// PNG of the right size, and tables whose every cell equals what the
// metrics file says.
func TestReportOfRealFederation(t *testing.T) {
	if raceEnabled {
		t.Skip("trains GoMLX models, whose kernels trip checkptr under -race")
	}
	rd := federation(t)
	out := filepath.Join(t.TempDir(), "report")
	res, err := Write(rd, out)
	if err != nil {
		t.Fatal(err)
	}
	if res.PNG != filepath.Join(out, PNGFile) || res.Table != filepath.Join(out, TableFile) {
		t.Errorf("outputs %s %s", res.PNG, res.Table)
	}
	checkPNG(t, res.PNG)
	md, err := os.ReadFile(res.Table)
	if err != nil {
		t.Fatal(err)
	}
	if string(md) != res.TableText {
		t.Error("report.md differs from the printed table")
	}
	if res.Summary.Score != "accuracy" || len(res.Summary.Rounds) != 3 || len(res.Summary.Participants) != 2 {
		t.Fatalf("summary: score %q, %d rounds, %d participants", res.Summary.Score, len(res.Summary.Rounds), len(res.Summary.Participants))
	}
	for _, r := range res.Summary.Rounds {
		if math.IsNaN(r.TestScore) || math.IsNaN(r.ValScore) || r.Participants != 2 {
			t.Errorf("round %d lacks metrics: %+v", r.Round, r)
		}
	}
	checkTables(t, string(md), rawRecords(t, filepath.Join(rd, metrics.FileName)), "accuracy")
	t.Logf("report:\n%s", md)
}

// TestReportSynthetic: a regression run (r2) written across a crash: the
// torn last line and the duplicated round are reported as warnings; a
// strategy rejection and a protocol refusal are counted.
func TestReportSynthetic(t *testing.T) {
	dir := t.TempDir()
	j, err := metrics.OpenJSONL(filepath.Join(dir, metrics.FileName), testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(j.Record(metrics.Record{Phase: metrics.PhaseAttestation, Participant: "bank-b", Result: metrics.AttestRefused, Role: "collaborator"}))
	for r := 1; r <= 4; r++ {
		for i, n := range []string{"bank-a", "bank-b"} {
			must(j.Record(metrics.Record{Round: r, Phase: metrics.PhaseDownload, Participant: n, Seconds: 0.1 * float64(i+1), Bytes: 100, Source: "collaborator"}))
			must(j.Record(metrics.Record{Round: r, Phase: metrics.PhaseTrain, Participant: n, Seconds: float64(r + i), Source: "collaborator", Examples: 7}))
			must(j.Record(metrics.Record{Round: r, Phase: metrics.PhaseUpload, Participant: n, Seconds: 0.25, Bytes: 90}))
		}
		rec := metrics.Record{Round: r, Phase: metrics.PhaseRound, Participant: metrics.Aggregator, Seconds: 2 + float64(r),
			BytesIn: 180, BytesOut: 200, Participants: []string{"bank-a", "bank-b"}, Accepted: []string{"bank-a", "bank-b"},
			Metrics: map[string]float64{"val_loss": 1 / float64(r), "val_r2": 1 - 1/float64(r+1)}}
		if r == 3 {
			must(j.Record(metrics.Record{Round: r, Phase: metrics.PhaseRejected, Participant: "bank-b", Reason: "strategy_norm"}))
			must(j.Record(metrics.Record{Round: r, Phase: metrics.PhaseRefused, Participant: "bank-a", Reason: "shape"}))
			rec.Accepted, rec.Rejected = []string{"bank-a"}, []string{"bank-b"}
		}
		must(j.Record(rec))
		if r == 2 { // the same round written twice (no resume)
			rec.Seconds = 9
			must(j.Record(rec))
		}
		must(j.Record(metrics.Record{Round: r, Phase: metrics.PhaseEvaluate, Participant: metrics.Aggregator, Seconds: 0.5,
			Metrics: map[string]float64{"test_loss": 2 / float64(r), "test_r2": 0.5}}))
	}
	must(j.Close())
	f, _ := os.OpenFile(filepath.Join(dir, metrics.FileName), os.O_APPEND|os.O_WRONLY, 0)
	// Round 5 was in progress when the aggregator stopped: one refusal and
	// a torn line.
	f.WriteString(`{"v":1,"round":5,"phase":"refused","participant":"bank-a","reason":"late"}` + "\n")
	f.WriteString(`{"v":1,"round":5,"pha`)
	f.Close()

	res, err := Write(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	checkPNG(t, filepath.Join(dir, PNGFile))
	s := res.Summary
	if s.Score != "r2" || len(s.Rounds) != 4 {
		t.Fatalf("score %q, %d rounds", s.Score, len(s.Rounds))
	}
	w := strings.Join(s.Warnings, "\n")
	for _, want := range []string{"incomplete last line", "round 2 has 2 round records", "round 5 has records but was not closed"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings %q lack %q", w, want)
		}
	}
	if s.Rounds[1].Seconds != 9 {
		t.Errorf("duplicated round: %v seconds, want the last record's 9", s.Rounds[1].Seconds)
	}
	md, _ := os.ReadFile(filepath.Join(dir, TableFile))
	checkTables(t, string(md), rawRecords(t, filepath.Join(dir, metrics.FileName)), "r2")
}

func TestReportErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, metrics.FileName), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	good := `{"v":1,"round":1,"phase":"round","participant":"aggregator"}` + "\n"
	for _, c := range []struct {
		dir  string
		want []string
	}{
		{filepath.Join(dir, "nope"), []string{"nope", "no such run directory"}},
		{write("nofile", ""), []string{metrics.FileName, "no records"}},
		{write("corrupt", good+good+"{\"v\":1,\n"), []string{filepath.Join("corrupt", metrics.FileName), "line 3"}},
		{write("norounds", `{"v":1,"round":0,"phase":"attestation","participant":"x"}`+"\n"), []string{"no round was recorded"}},
	} {
		out := filepath.Join(t.TempDir(), "out")
		_, err := Write(c.dir, out)
		if err == nil {
			t.Errorf("%s: no error", c.dir)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", c.dir, err, w)
			}
		}
		if _, serr := os.Stat(filepath.Join(out, PNGFile)); serr == nil {
			t.Errorf("%s: a report was written despite the error", c.dir)
		}
	}
	if err := os.Remove(filepath.Join(dir, "nofile", metrics.FileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(filepath.Join(dir, "nofile"), ""); err == nil || !strings.Contains(err.Error(), "no such file") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("run directory without metrics file: %v", err)
	}
}
