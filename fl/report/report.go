// Package report turns a run's metrics file (fl/metrics, JSONL) into what
// a person can look at: a PNG plot of accuracy and loss per round and a
// summary table per round and per participant (`teeml fl report`).
package report

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/teeml/teeml/fl/metrics"
	"github.com/teeml/teeml/internal/atomicfile"
)

// Output file names in the report directory.
const (
	PNGFile   = "report.png"
	TableFile = "report.md"
)

// RoundRow is one round of the summary. Missing values are NaN.
type RoundRow struct {
	Round                             int
	Participants, Accepted, Rejected  int
	Refused                           int // uploads the protocol refused
	Seconds                           float64
	BytesIn, BytesOut                 int64
	ValLoss, ValScore                 float64 // collaborators' validation of the round's input model
	LocalLoss, LocalScore             float64 // collaborators' validation of their locally trained models
	TestLoss, TestScore               float64 // aggregator's held-out test of the round's output model
	AggregateSeconds, EvaluateSeconds float64
	// Slowest is the participant with the largest download + train +
	// validate + upload seconds in the round (the round's critical path,
	// the first name on a tie), SlowestSeconds that sum.
	Slowest        string
	SlowestSeconds float64
	// Epsilon and Delta are the differential-privacy (ε, δ) spent after
	// the round, ClipNorm its clip norm and Sampled its sampled clients
	// (fl/privacy); NaN without DP.
	Epsilon, Delta, ClipNorm, Sampled float64
}

// ParticipantRow is one collaborator of the summary: means over the rounds
// it has records for (NaN if none).
type ParticipantRow struct {
	Name                                 string
	Updates                              int // accepted uploads (train records)
	Rejected, Refused                    int
	MeanDownload, MeanTrain, MeanUpload  float64
	MeanValidate                         float64
	BytesDownloaded, BytesUploaded       int64
	AttestAccepted, AttestRefused        int
	downloads, trains, uploads, validate []float64
}

// Summary is what the report shows.
type Summary struct {
	// Score names the quality metric plotted and tabled next to the loss:
	// "accuracy" for classification, "r2" for regression, "" if none.
	Score        string
	Rounds       []RoundRow
	Participants []ParticipantRow
	Records      int
	Resumes      int
	// Stopped is the one-line reason the federation stopped before its
	// last round (a privacy budget), "" if it did not.
	Stopped  string
	Warnings []string
}

// Summarize computes the summary of a run's records. A round's numbers
// come from its "round" record (and "evaluate"/"aggregate" records); if a
// round appears more than once (a file written across a crash without
// resume), the last one counts and a warning says so.
func Summarize(recs []metrics.Record) *Summary {
	s := &Summary{Records: len(recs), Score: scoreMetric(recs)}
	rounds := map[int]*RoundRow{}
	seen := map[int]int{}
	row := func(r int) *RoundRow {
		if rounds[r] == nil {
			nan := math.NaN()
			rounds[r] = &RoundRow{Round: r, ValLoss: nan, ValScore: nan, LocalLoss: nan, LocalScore: nan,
				TestLoss: nan, TestScore: nan, AggregateSeconds: nan, EvaluateSeconds: nan,
				Epsilon: nan, Delta: nan, ClipNorm: nan, Sampled: nan}
		}
		return rounds[r]
	}
	busy := map[int]map[string]float64{} // round → participant → seconds of its phases
	addBusy := func(r metrics.Record) {
		if busy[r.Round] == nil {
			busy[r.Round] = map[string]float64{}
		}
		busy[r.Round][r.Participant] += r.Seconds
	}
	parts := map[string]*ParticipantRow{}
	part := func(n string) *ParticipantRow {
		if parts[n] == nil {
			parts[n] = &ParticipantRow{Name: n}
		}
		return parts[n]
	}
	get := func(m map[string]float64, k string) float64 {
		if v, ok := m[k]; ok && k != "" {
			return v
		}
		return math.NaN()
	}
	for _, r := range recs {
		switch r.Phase {
		case metrics.PhaseRound:
			seen[r.Round]++
			refused := 0
			if old := rounds[r.Round]; old != nil {
				refused = old.Refused
			}
			x := row(r.Round)
			x.Participants, x.Accepted, x.Rejected = len(r.Participants), len(r.Accepted), len(r.Rejected)
			x.Refused = refused
			x.Seconds, x.BytesIn, x.BytesOut = r.Seconds, r.BytesIn, r.BytesOut
			x.ValLoss, x.LocalLoss = get(r.Metrics, "val_loss"), get(r.Metrics, "local_val_loss")
			if s.Score != "" {
				x.ValScore, x.LocalScore = get(r.Metrics, "val_"+s.Score), get(r.Metrics, "local_val_"+s.Score)
			}
			x.Epsilon, x.Delta = get(r.Metrics, "dp_epsilon"), get(r.Metrics, "dp_delta")
			x.ClipNorm, x.Sampled = get(r.Metrics, "dp_clip_norm"), get(r.Metrics, "dp_sampled")
		case metrics.PhaseEvaluate:
			x := row(r.Round)
			x.TestLoss, x.EvaluateSeconds = get(r.Metrics, "test_loss"), r.Seconds
			if s.Score != "" {
				x.TestScore = get(r.Metrics, "test_"+s.Score)
			}
		case metrics.PhaseAggregate:
			row(r.Round).AggregateSeconds = r.Seconds
		case metrics.PhaseStopped:
			s.Stopped = fmt.Sprintf("before round %d: %s", r.Round, r.Message)
		case metrics.PhaseRefused:
			row(r.Round).Refused++
			part(r.Participant).Refused++
		case metrics.PhaseRejected:
			part(r.Participant).Rejected++
		case metrics.PhaseDownload:
			addBusy(r)
			p := part(r.Participant)
			p.downloads = append(p.downloads, r.Seconds)
			p.BytesDownloaded += r.Bytes
		case metrics.PhaseTrain:
			addBusy(r)
			p := part(r.Participant)
			p.Updates++
			if r.Source == "collaborator" {
				p.trains = append(p.trains, r.Seconds)
			}
		case metrics.PhaseUpload:
			addBusy(r)
			p := part(r.Participant)
			p.uploads = append(p.uploads, r.Seconds)
			p.BytesUploaded += r.Bytes
		case metrics.PhaseValidate:
			addBusy(r)
			if r.Source == "collaborator" {
				p := part(r.Participant)
				p.validate = append(p.validate, r.Seconds)
			}
		case metrics.PhaseAttestation:
			if r.Result == metrics.AttestAccepted {
				part(r.Participant).AttestAccepted++
			} else {
				part(r.Participant).AttestRefused++
			}
		case metrics.PhaseResume:
			s.Resumes++
		}
	}
	for _, r := range slices.Sorted(maps.Keys(seen)) {
		if seen[r] > 1 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("round %d has %d round records (written across a restart without resume); the last one is shown", r, seen[r]))
		}
	}
	for _, r := range slices.Sorted(maps.Keys(rounds)) {
		x := rounds[r]
		if seen[r] == 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("round %d has records but was not closed (in progress, or the aggregator stopped): not in the table", r))
			continue
		}
		for _, n := range slices.Sorted(maps.Keys(busy[r])) {
			if v := busy[r][n]; x.Slowest == "" || v > x.SlowestSeconds {
				x.Slowest, x.SlowestSeconds = n, v
			}
		}
		s.Rounds = append(s.Rounds, *x)
	}
	for _, n := range slices.Sorted(maps.Keys(parts)) {
		p := parts[n]
		p.MeanDownload, p.MeanTrain, p.MeanUpload, p.MeanValidate = mean(p.downloads), mean(p.trains), mean(p.uploads), mean(p.validate)
		s.Participants = append(s.Participants, *p)
	}
	return s
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// scoreMetric picks the quality metric present in the records.
func scoreMetric(recs []metrics.Record) string {
	has := map[string]bool{}
	for _, r := range recs {
		if r.Phase != metrics.PhaseRound && r.Phase != metrics.PhaseEvaluate {
			continue
		}
		for k := range r.Metrics {
			has[k] = true
		}
	}
	for _, c := range []string{"accuracy", "r2"} {
		if has["val_"+c] || has["test_"+c] || has["local_val_"+c] {
			return c
		}
	}
	return ""
}

// f formats a float for the table ("-" if missing).
func f(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

// Markdown writes the summary as Markdown tables.
func (s *Summary) Markdown(w io.Writer) error {
	var b bytes.Buffer
	score := s.Score
	if score == "" {
		score = "score"
	}
	fmt.Fprintf(&b, "# Federated run report\n\n%d records, %d rounds, %d participants", s.Records, len(s.Rounds), len(s.Participants))
	if s.Resumes > 0 {
		fmt.Fprintf(&b, ", %d resume(s) after a restart", s.Resumes)
	}
	b.WriteString(".\n\n")
	if s.Stopped != "" {
		fmt.Fprintf(&b, "Stopped early %s\n\n", s.Stopped)
	}
	b.WriteString("## Rounds\n\n")
	b.WriteString("val_*: collaborators' validation of the round's input global model (sample-weighted); test_*: the aggregator's held-out test of the round's aggregate. " +
		"slowest: the participant whose download + validation + train + upload seconds were largest (the round waits for it).\n\n")
	fmt.Fprintf(&b, "| round | participants | accepted | rejected | refused | seconds | slowest (s) | aggregate s | bytes in | bytes out | val_loss | val_%s | test_loss | test_%s |\n", score, score)
	b.WriteString("|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range s.Rounds {
		slowest := "-"
		if r.Slowest != "" {
			slowest = fmt.Sprintf("%s (%s)", mdEscape(r.Slowest), f(r.SlowestSeconds, 3))
		}
		fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %s | %s | %s | %d | %d | %s | %s | %s | %s |\n",
			r.Round, r.Participants, r.Accepted, r.Rejected, r.Refused, f(r.Seconds, 3), slowest, f(r.AggregateSeconds, 3),
			r.BytesIn, r.BytesOut, f(r.ValLoss, 4), f(r.ValScore, 4), f(r.TestLoss, 4), f(r.TestScore, 4))
	}
	privacyTable(&b, s.Rounds)
	b.WriteString("\n## Participants\n\n")
	b.WriteString("Mean seconds per round: download and train as measured by the collaborator (download falls back to the aggregator's send time for collaborators that do not report it), upload as measured by the aggregator.\n\n")
	b.WriteString("| participant | updates | rejected | refused | mean download s | mean train s | mean upload s | mean validate s | bytes downloaded | bytes uploaded | attestation accepted | attestation refused |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range s.Participants {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s | %s | %s | %d | %d | %d | %d |\n",
			mdEscape(p.Name), p.Updates, p.Rejected, p.Refused, f(p.MeanDownload, 3), f(p.MeanTrain, 3), f(p.MeanUpload, 3),
			f(p.MeanValidate, 3), p.BytesDownloaded, p.BytesUploaded, p.AttestAccepted, p.AttestRefused)
	}
	if len(s.Warnings) > 0 {
		b.WriteString("\n## Warnings\n\n")
		for _, w := range s.Warnings {
			fmt.Fprintf(&b, "- %s\n", w)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// privacyTable writes the differential-privacy section when any round
// was accounted: the (ε, δ) spent after each round.
func privacyTable(b *bytes.Buffer, rows []RoundRow) {
	if !slices.ContainsFunc(rows, func(r RoundRow) bool { return !math.IsNaN(r.Epsilon) }) {
		return
	}
	b.WriteString("\n## Differential privacy\n\nε spent after each round at the plan's δ (RDP accountant, fl/privacy; docs/privacy.md).\n\n")
	b.WriteString("| round | ε | δ | clip norm | sampled |\n|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %d | %s | %s | %s | %s |\n", r.Round, f(r.Epsilon, 4), fmt.Sprintf("%.3g", r.Delta), f(r.ClipNorm, 4), f(r.Sampled, 0))
	}
}

// mdEscape keeps a participant name from breaking the table.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ").Replace(s)
}

// Result is what Write produced.
type Result struct {
	Summary   *Summary
	PNG       string
	Table     string
	Input     string
	TableText string
}

// Write reads the metrics file of runDir (a run directory holding
// metrics.jsonl, or the file itself) and writes report.png and report.md
// into outDir (default: the run directory), each atomically.
func Write(runDir, outDir string) (*Result, error) {
	in := runDir
	if st, err := os.Stat(runDir); err == nil && st.IsDir() {
		in = filepath.Join(runDir, metrics.FileName)
	} else if err != nil {
		return nil, fmt.Errorf("report: %s: no such run directory or metrics file", runDir)
	}
	recs, warnings, err := metrics.ReadFile(in)
	if err != nil {
		return nil, err
	}
	s := Summarize(recs)
	s.Warnings = append(warnings, s.Warnings...)
	if len(s.Rounds) == 0 {
		return nil, fmt.Errorf("report: %s: no round was recorded yet (%d records)", in, len(recs))
	}
	if outDir == "" {
		outDir = filepath.Dir(in)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	res := &Result{Summary: s, Input: in, PNG: filepath.Join(outDir, PNGFile), Table: filepath.Join(outDir, TableFile)}
	var tb bytes.Buffer
	if err := s.Markdown(&tb); err != nil {
		return nil, err
	}
	res.TableText = tb.String()
	if err := atomicfile.WriteFile(res.PNG, 0o644, s.PNG); err != nil {
		return nil, fmt.Errorf("report: %s: %w", res.PNG, err)
	}
	if err := atomicfile.WriteBytes(res.Table, tb.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("report: %s: %w", res.Table, err)
	}
	return res, nil
}
