package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestFLReportThroughBinary runs a small quickstart through the binary,
// follows its hint to `teeml fl report`, and checks the PNG and table;
// bad inputs give one-line errors and a non-zero exit.
func TestFLReportThroughBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a federation")
	}
	bin := buildTeeml(t)
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	out, errOut, code := run(t, bin, "quickstart", "--dir", ws, "--rounds", "2", "--epochs", "1", "--collaborators", "2",
		"--template", "digits_mlp", "--timeout", "2m", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("quickstart exit %d\n%s\n%s", code, out, errOut)
	}
	var runDir, metricsFile string
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "plot and summary table: teeml fl report "); ok {
			runDir = strings.TrimSpace(s)
		}
		if s, ok := strings.CutPrefix(l, "metrics of every round and participant: "); ok {
			metricsFile = strings.TrimSpace(s)
		}
	}
	if runDir == "" || metricsFile != filepath.Join(runDir, "metrics.jsonl") {
		t.Fatalf("quickstart does not point at the metrics file and report (run dir %q, file %q):\n%s", runDir, metricsFile, out)
	}
	rep := filepath.Join(dir, "report")
	out, errOut, code = run(t, bin, "fl", "report", runDir, "--out", rep)
	if code != 0 {
		t.Fatalf("fl report exit %d: %s", code, errOut)
	}
	for _, w := range []string{"| round | participants |", "| 2 | 2 | 2 | 0 | 0 |", "| col-1 | 2 |", "wrote " + filepath.Join(rep, "report.png")} {
		if !strings.Contains(out, w) {
			t.Errorf("fl report output lacks %q:\n%s", w, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(rep, "report.png"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 20<<10 {
		t.Fatalf("report.png: %d bytes starting %q", len(b), b[:min(8, len(b))])
	}
	if img, err := png.Decode(bytes.NewReader(b)); err != nil || img.Bounds().Dx() != 1152 || img.Bounds().Dy() != 480 {
		t.Fatalf("report.png does not decode to 1152×480: %v", err)
	}
	md, err := os.ReadFile(filepath.Join(rep, "report.md"))
	if err != nil || !strings.Contains(out, string(md)) {
		t.Errorf("report.md (%v) is not the printed table", err)
	}

	// Bad input.
	corrupt := filepath.Join(dir, "corrupt")
	if err := os.MkdirAll(corrupt, 0o755); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(metricsFile)
	os.WriteFile(filepath.Join(corrupt, "metrics.jsonl"), append(append([]byte{}, good...), "garbage\n"...), 0o644)
	lines := bytes.Count(good, []byte("\n")) + 1
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"fl", "report", filepath.Join(dir, "missing")}, "no such run directory"},
		{[]string{"fl", "report", corrupt}, "metrics.jsonl: line " + strconv.Itoa(lines)},
		{[]string{"fl", "report"}, "accepts 1 arg"},
		{[]string{"fl", "aggregator", "start", "-w", ws, "--metrics-addr", "256.0.0.1:1", "--log-level", "error"}, "256.0.0.1:1"},
	} {
		_, e, code := run(t, bin, c.args...)
		if code == 0 || strings.Count(strings.TrimSpace(e), "\n") != 0 || !strings.HasPrefix(e, "teeml: ") || !strings.Contains(e, c.want) {
			t.Errorf("%v: exit %d, stderr %q (want one line with %q)", c.args, code, e, c.want)
		}
	}
}
