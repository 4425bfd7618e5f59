package metrics

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/internal/testlog"
)

func nan() float64 { return math.NaN() }
func inf() float64 { return math.Inf(1) }

// memRecorder keeps records in memory.
type memRecorder struct {
	recs  []Record
	syncs int
	fail  bool
}

func (m *memRecorder) Record(r Record) error {
	if m.fail {
		return errors.New("disk full")
	}
	m.recs = append(m.recs, r)
	return nil
}
func (m *memRecorder) Sync() error { m.syncs++; return nil }

func (m *memRecorder) find(phase, who string, round int) []Record {
	var out []Record
	for _, r := range m.recs {
		if r.Phase == phase && r.Participant == who && r.Round == round {
			out = append(out, r)
		}
	}
	return out
}

// feed drives o through two rounds: col-1 (reports its timings), col-2 (an
// older collaborator without timings, rejected by the strategy in round 2),
// col-3 (downloads in round 2 but never uploads), one protocol refusal and
// attestation verdicts.
func feed(o *Observer) {
	o.Attestation("col-1", "127.0.0.1:1", "collaborator", AttestAccepted, "")
	o.Attestation("", "127.0.0.1:2", "collaborator", AttestRefused, `peer "x" (unverified): policy refused`)
	o.RoundOpened(1)
	for r := 1; r <= 2; r++ {
		o.ModelSent(r, "col-1", 1000, 0.01)
		o.ModelSent(r, "col-2", 1000, 0.02)
		o.MetricsReported(protocol.MetricsEvent{Round: r, Collaborator: "col-1", Task: protocol.TaskAggregatedModelValidation,
			NumExamples: 10, Loss: 0.5, Metrics: map[string]float64{"accuracy": 0.8}, Seconds: 0.1})
		o.UpdateReceived(protocol.UpdateEvent{Round: r, Collaborator: "col-1", NumExamples: 10, Bytes: 900, Seconds: 0.05,
			DownloadSeconds: 0.2, TrainSeconds: 1.5, Metrics: map[string]float64{"train_loss": 0.4}})
		o.UpdateReceived(protocol.UpdateEvent{Round: r, Collaborator: "col-2", NumExamples: 5, Bytes: 900, Seconds: 0.06})
		sum := protocol.RoundSummary{Round: r, Participants: []string{"col-1", "col-2"}, Accepted: []string{"col-1", "col-2"},
			EvalLoss: 0.5, EvalMetrics: map[string]float64{"accuracy": 0.8}, Seconds: 3, AggregateSeconds: 0.25,
			BytesIn: 1800, BytesOut: 2000}
		if r == 2 {
			o.ModelSent(r, "col-3", 1000, 0.03)
			o.UpdateRefused(r, "col-2", "shape", "update does not fit")
			sum.Accepted = []string{"col-1"}
			sum.Rejected = map[string]string{"col-2": `client "col-2": norm check: update norm 9 exceeds the bound 1`}
			sum.EvalLoss = nan()
		}
		o.RoundOpened(r + 1)
		o.Evaluated(r, 0.3, map[string]float64{"test_accuracy": 0.5 + 0.25*float64(r), "test_loss": 0.6})
		o.RoundClosed(sum)
	}
}

func TestObserverRecords(t *testing.T) {
	m := &memRecorder{}
	feed(NewObserver(m, nil, testlog.Discard()))
	if m.syncs != 2 {
		t.Errorf("%d syncs, want one per round", m.syncs)
	}
	one := func(phase, who string, round int) Record {
		t.Helper()
		rs := m.find(phase, who, round)
		if len(rs) != 1 {
			t.Fatalf("%d %s records of %s in round %d, want 1", len(rs), phase, who, round)
		}
		return rs[0]
	}
	// The collaborator's own download time wins over the send time.
	if d := one(PhaseDownload, "col-1", 1); d.Seconds != 0.2 || d.Source != "collaborator" || d.Bytes != 1000 {
		t.Errorf("col-1 download %+v", d)
	}
	// Without timings (older collaborator): the aggregator's send time.
	if d := one(PhaseDownload, "col-2", 2); d.Seconds != 0.02 || d.Source != "aggregator" {
		t.Errorf("col-2 download %+v", d)
	}
	if tr := one(PhaseTrain, "col-2", 1); tr.Seconds != 0 || tr.Source != "" || tr.Examples != 5 {
		t.Errorf("col-2 train %+v", tr)
	}
	if tr := one(PhaseTrain, "col-1", 2); tr.Seconds != 1.5 || tr.Metrics["train_loss"] != 0.4 {
		t.Errorf("col-1 train %+v", tr)
	}
	// col-3 never uploaded: its download is still recorded at round end.
	if d := one(PhaseDownload, "col-3", 2); d.Bytes != 1000 || d.Seconds != 0.03 {
		t.Errorf("col-3 download %+v", d)
	}
	if r := one(PhaseRejected, "col-2", 2); r.Reason != "strategy_norm" || !strings.Contains(r.Message, "norm check") {
		t.Errorf("rejection %+v", r)
	}
	if r := one(PhaseRefused, "col-2", 2); r.Reason != "shape" {
		t.Errorf("refusal %+v", r)
	}
	rd := one(PhaseRound, Aggregator, 2)
	if rd.BytesIn != 1800 || rd.BytesOut != 2000 || rd.Bytes != 3800 || len(rd.Rejected) != 1 || len(rd.Accepted) != 1 {
		t.Errorf("round 2 %+v", rd)
	}
	if _, ok := rd.Metrics["val_loss"]; !ok || !math.IsNaN(rd.Metrics["val_loss"]) {
		// The Recorder sees NaN; the JSONL writer drops it.
		t.Errorf("round 2 val_loss %v, want NaN passed through", rd.Metrics)
	}
	if a := one(PhaseAggregate, Aggregator, 1); a.Seconds != 0.25 {
		t.Errorf("aggregate %+v", a)
	}
	if e := one(PhaseEvaluate, Aggregator, 2); e.Metrics["test_accuracy"] != 1 {
		t.Errorf("evaluate %+v", e)
	}
	if a := one(PhaseAttestation, "unknown@127.0.0.1:2", 0); a.Result != AttestRefused || a.Role != "collaborator" {
		t.Errorf("attestation %+v", a)
	}
}

// TestObserverKeepsRecorderFailure: a failed write is logged once and kept
// (Err), even when later writes succeed: the scheduler fails the run with it.
func TestObserverKeepsRecorderFailure(t *testing.T) {
	var log testlog.Buffer
	m := &memRecorder{fail: true}
	o := NewObserver(m, nil, log.Logger())
	if err := o.Err(); err != nil {
		t.Fatalf("Err before any record: %v", err)
	}
	feed(o)
	if n := strings.Count(log.String(), "record not written"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, log.String())
	}
	m.fail = false
	o.RoundOpened(9)
	o.Evaluated(9, 1, nil)
	if err := o.Err(); err == nil || err.Error() != "disk full" {
		t.Errorf("Err after a failed write and a good one = %v, want the first failure", err)
	}
	if len(m.recs) != 1 {
		t.Errorf("%d records after recovery, want 1", len(m.recs))
	}
}

func TestStrategyReason(t *testing.T) {
	for msg, want := range map[string]string{
		`client "a": finite check: tensor w has NaN`:     "strategy_finite",
		`client "a": norm check: update norm`:            "strategy_norm",
		`result 3: id check: empty client id`:            "strategy_id",
		`client "x: evil check: y": something else`:      "strategy_other",
		`krum: not among the selected`:                   "strategy_other",
		`client "a": examples check: NumExamples = 0, w`: "strategy_examples",
	} {
		if got := StrategyReason(msg); got != want {
			t.Errorf("StrategyReason(%q) = %s, want %s", msg, got, want)
		}
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestPrometheusEndpoint serves /metrics on loopback, feeds two rounds and
// scrapes: every series carries the fed values; Close stops the server.
func TestPrometheusEndpoint(t *testing.T) {
	prom := NewProm()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := Serve(ctx, "127.0.0.1:0", prom, testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + srv.Addr() + "/metrics"
	before := scrape(t, url)
	if !strings.Contains(before, "teeml_fl_rounds_completed_total 0") {
		t.Errorf("fresh registry lacks rounds_completed 0:\n%s", before)
	}
	j, _ := openT(t, filepath.Join(t.TempDir(), FileName))
	feed(NewObserver(j, prom, testlog.Discard()))
	body := scrape(t, url)
	for _, want := range []string{
		"teeml_fl_rounds_completed_total 2",
		"teeml_fl_round_seconds_count 2",
		"teeml_fl_round_seconds_sum 6",
		"teeml_fl_current_round 3",
		"teeml_fl_participants 2",
		"teeml_fl_bytes_sent_total 5000",
		"teeml_fl_bytes_received_total 3600",
		"teeml_fl_updates_received_total 4",
		`teeml_fl_updates_rejected_total{reason="shape"} 1`,
		`teeml_fl_updates_rejected_total{reason="strategy_norm"} 1`,
		`teeml_fl_attestation_results_total{result="accepted",role="collaborator"} 1`,
		`teeml_fl_attestation_results_total{result="refused",role="collaborator"} 1`,
		`teeml_fl_phase_seconds_count{phase="train"} 2`,
		`teeml_fl_phase_seconds_count{phase="download"} 5`,
		`teeml_fl_global_model_metric{metric="accuracy",source="validation"} 0.8`,
		`teeml_fl_global_model_metric{metric="test_accuracy",source="test"} 1`,
		"process_open_fds",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	// Round 2's validation loss was NaN: the gauge keeps round 1's value
	// rather than exporting NaN.
	if !strings.Contains(body, `teeml_fl_global_model_metric{metric="loss",source="validation"} 0.5`) {
		t.Errorf("validation loss gauge wrong")
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	cl := &http.Client{Timeout: 2 * time.Second}
	if resp, err := cl.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("server still answers after Close")
	}
}

// The server also stops when its context ends (the run's end).
func TestPrometheusStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := Serve(ctx, "127.0.0.1:0", NewProm(), testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server did not stop")
	}
	if _, err := Serve(context.Background(), "256.0.0.1:1", NewProm(), testlog.Discard()); err == nil || !strings.Contains(err.Error(), "256.0.0.1:1") {
		t.Errorf("bad address: %v", err)
	}
}

// TestPrometheusPrivacySpent: a round with privacy accounting sets the
// privacy gauges; a round without leaves them unset.
func TestPrometheusPrivacySpent(t *testing.T) {
	prom := NewProm()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := Serve(ctx, "127.0.0.1:0", prom, testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + srv.Addr() + "/metrics"
	j, _ := openT(t, filepath.Join(t.TempDir(), FileName))
	o := NewObserver(j, prom, testlog.Discard())
	o.RoundClosed(protocol.RoundSummary{Round: 1, EvalLoss: 1})
	if body := scrape(t, url); strings.Contains(body, "teeml_fl_privacy_spent{") {
		t.Errorf("privacy gauge set without privacy:\n%s", body)
	}
	o.RoundClosed(protocol.RoundSummary{Round: 2, EvalLoss: 1, Privacy: map[string]float64{"dp_epsilon": 2.5, "dp_delta": 1e-5}})
	body := scrape(t, url)
	for _, want := range []string{`teeml_fl_privacy_spent{param="epsilon"} 2.5`, `teeml_fl_privacy_spent{param="delta"} 1e-05`} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s:\n%s", want, body)
		}
	}
}
