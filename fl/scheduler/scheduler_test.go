package scheduler

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
)

// fakeClock is the scheduler's phase clock in tests: it moves only when
// told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// slowStrategy is FedAvg whose AggregateFit takes one minute of the fake
// clock.
type slowStrategy struct {
	strategy.FedAvg
	clock *fakeClock
}

func (s *slowStrategy) AggregateFit(r int, g tensor.Weights, res []strategy.FitResult) (tensor.Weights, strategy.AggregateReport, error) {
	s.clock.Advance(time.Minute)
	return s.FedAvg.AggregateFit(r, g, res)
}

// blockingEvaluator signals started when an evaluation begins and returns
// only once release is closed.
type blockingEvaluator struct {
	started chan int
	release chan struct{}
}

func (e *blockingEvaluator) Evaluate(ctx context.Context, r int, _ tensor.Weights) (map[string]float64, error) {
	e.started <- r
	select {
	case <-e.release:
		return map[string]float64{"test_accuracy": 0.75}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// phaseObserver records the evaluation and round events.
type phaseObserver struct {
	NopObserver
	mu        sync.Mutex
	evaluated []float64 // seconds per Evaluated call
	metrics   map[string]float64
	closed    []RoundSummary
}

func (o *phaseObserver) Evaluated(_ int, seconds float64, m map[string]float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.evaluated = append(o.evaluated, seconds)
	o.metrics = m
}

func (o *phaseObserver) RoundClosed(s RoundSummary) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = append(o.closed, s)
}

func weights() tensor.Weights {
	return tensor.Weights{{Name: "w", Shape: []int{2}, Data: []float32{1, 2}}}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// upload is a collaborator's whole upload of w for round r.
func upload(t *testing.T, s *Scheduler, name string, r int, w tensor.Weights) {
	t.Helper()
	release, err := s.BeginUpload(name, int64(r), nil)
	if err != nil {
		t.Fatalf("BeginUpload(%s, %d): %v", name, r, err)
	}
	defer release()
	if err := s.Accept(UpdateEvent{Round: r, Collaborator: name, NumExamples: 3}, w); err != nil {
		t.Fatalf("Accept(%s, %d): %v", name, r, err)
	}
}

// TestEvaluationIsItsOwnPhase: the server-side evaluation runs after
// AggregateFit and is timed apart from it. The evaluator blocks until the
// test has moved the clock by an hour: that hour must show up in
// EvaluateSeconds (and the Observer's Evaluated), never in
// AggregateSeconds, which is AggregateFit's minute alone.
func TestEvaluationIsItsOwnPhase(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	ev := &blockingEvaluator{started: make(chan int, 1), release: make(chan struct{})}
	obs := &phaseObserver{}
	s, err := New(Config{PlanHash: "plan", Strategy: &slowStrategy{clock: clock}, Evaluator: ev, Initial: weights(),
		Collaborators: []string{"a"}, Rounds: 1, DoneGrace: time.Nanosecond, Logger: quietLogger(), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	s.now = clock.Now
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		hist []RoundSummary
		err  error
	}
	done := make(chan result, 1)
	go func() {
		_, h, err := s.Run(ctx)
		done <- result{h, err}
	}()
	upload(t, s, "a", 1, weights())
	select {
	case r := <-ev.started:
		if r != 1 {
			t.Fatalf("evaluation of round %d, want 1", r)
		}
	case <-ctx.Done():
		t.Fatal("the evaluator was never called")
	}
	clock.Advance(time.Hour) // the evaluation takes an hour
	close(ev.release)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(res.hist) != 1 {
		t.Fatalf("%d summaries, want 1", len(res.hist))
	}
	sum := res.hist[0]
	if sum.AggregateSeconds != 60 {
		t.Errorf("AggregateSeconds = %v, want 60 (AggregateFit alone, without the evaluation)", sum.AggregateSeconds)
	}
	if sum.EvaluateSeconds != 3600 {
		t.Errorf("EvaluateSeconds = %v, want 3600", sum.EvaluateSeconds)
	}
	if sum.Seconds != 3660 {
		t.Errorf("Seconds = %v, want 3660 (aggregation and evaluation)", sum.Seconds)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.evaluated) != 1 || obs.evaluated[0] != 3600 || obs.metrics["test_accuracy"] != 0.75 {
		t.Errorf("Evaluated calls %v (metrics %v), want one of 3600 s", obs.evaluated, obs.metrics)
	}
	if len(obs.closed) != 1 || obs.closed[0].AggregateSeconds != 60 || obs.closed[0].EvaluateSeconds != 3600 {
		t.Errorf("RoundClosed summaries %+v", obs.closed)
	}
}

// evalStrategy is FedAvg with its own server-side evaluation.
type evalStrategy struct {
	strategy.FedAvg
	rounds []int
}

func (e *evalStrategy) Evaluate(_ context.Context, r int, _ tensor.Weights) (map[string]float64, error) {
	e.rounds = append(e.rounds, r)
	return nil, nil
}

// openObserver reports every opened round.
type openObserver struct {
	NopObserver
	opened chan int
}

func (o *openObserver) RoundOpened(r int) { o.opened <- r }

// TestStrategyEvaluatorIsTheDefault: a strategy implementing
// strategy.Evaluator evaluates every round when Config.Evaluator is unset.
func TestStrategyEvaluatorIsTheDefault(t *testing.T) {
	st := &evalStrategy{}
	obs := &openObserver{opened: make(chan int, 2)}
	s, err := New(Config{PlanHash: "plan", Strategy: st, Initial: weights(), Collaborators: []string{"a"}, Rounds: 2,
		DoneGrace: time.Nanosecond, Logger: quietLogger(), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := s.Run(ctx)
		done <- err
	}()
	for want := 1; want <= 2; want++ {
		select {
		case r := <-obs.opened:
			if r != want {
				t.Fatalf("round %d opened, want %d", r, want)
			}
		case <-ctx.Done():
			t.Fatalf("round %d never opened", want)
		}
		upload(t, s, "a", want, weights())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(st.rounds) != 2 || st.rounds[0] != 1 || st.rounds[1] != 2 {
		t.Errorf("evaluated rounds %v, want [1 2]", st.rounds)
	}
}

// TestRefusals: the scheduler's refusals carry the kind the transport maps
// to its codes, and the messages fl/protocol sends back.
func TestRefusals(t *testing.T) {
	s, err := New(Config{PlanHash: "plan", Strategy: &strategy.FedAvg{}, Initial: weights(), Collaborators: []string{"a", "b"},
		Rounds: 2, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error, k ErrorKind, msg string) {
		t.Helper()
		if !IsKind(err, k) || err.Error() != msg {
			t.Errorf("%s: %v, want kind %d %q", what, err, k, msg)
		}
	}
	_, _, err = s.Model("a", 2)
	check("model of round 2", err, Closed, "round 2 is not open (current round 1 of 2)")
	upload(t, s, "a", 1, weights())
	_, err = s.BeginUpload("a", 1, nil)
	check("second upload", err, Duplicate, `collaborator "a" already uploaded its update for round 1`)
	release, err := s.BeginUpload("b", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.BeginUpload("b", 1, nil)
	check("concurrent upload", err, Duplicate, `collaborator "b" is already uploading an update`)
	release()
	err = s.Report(MetricsEvent{Round: 1, Collaborator: "b", Task: "train"})
	check("metrics of task train", err, Invalid, `metrics from "b" for unknown task "train"`)
	if a, err := s.Tasks("a"); err != nil || a.Action != Wait || a.Round != 1 {
		t.Errorf("Tasks(a) after its upload = %+v, %v; want Wait in round 1", a, err)
	}
	// The round closes while b uploads: its update is late.
	release, err = s.BeginUpload("b", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	s.closeRound(1, ClosedPercentage)
	err = s.Accept(UpdateEvent{Round: 1, Collaborator: "b", NumExamples: 3}, weights())
	check("late update", err, Closed, "round 1 is closed (current round 1 of 2)")
}

// TestStragglerReportNamesWhatALateCollaboratorDoes (issue 23, defect 7):
// a collaborator that downloaded the round's model and is training when
// the round closes by straggler policy is reported as "training", never as
// "not seen this round" (closeRound negated the round number before the
// report was built, so every collaborator looked absent).
func TestStragglerReportNamesWhatALateCollaboratorDoes(t *testing.T) {
	var buf bytes.Buffer
	s, err := New(Config{PlanHash: "plan", Strategy: &strategy.FedAvg{}, Initial: weights(), Collaborators: []string{"a", "b", "c"},
		Rounds: 2, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := s.Tasks("b"); err != nil || a.Action != Run {
		t.Fatalf("Tasks(b) = %+v, %v; want Run", a, err)
	}
	if _, _, err := s.Model("b", 1); err != nil {
		t.Fatal(err)
	}
	s.ModelSent("b", 1, 10, 0.1)
	upload(t, s, "a", 1, weights())
	in := s.closeRound(1, ClosedPercentage)
	if !slices.Equal(in.stragglers, []string{"b", "c"}) {
		t.Errorf("stragglers %v, want [b c]", in.stragglers)
	}
	var line string
	for l := range strings.Lines(buf.String()) {
		if strings.Contains(l, "closes by straggler policy") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no straggler line in the log:\n%s", buf.String())
	}
	if !strings.Contains(line, "b: training (") {
		t.Errorf("straggler line does not say b is training: %s", line)
	}
	if strings.Contains(line, "b: not seen this round") {
		t.Errorf("straggler line says b was not seen although it is training: %s", line)
	}
	if !strings.Contains(line, "c: never connected") {
		t.Errorf("straggler line does not say c never connected: %s", line)
	}
}

// doubledPrefix matches an error text repeating its own prefix, e.g.
// "checkpoint: checkpoint: …".
var doubledPrefix = regexp.MustCompile(`(?:^|: )([a-z][a-z ]*): ([a-z][a-z ]*): `)

func hasDoubledPrefix(s string) bool {
	for _, m := range doubledPrefix.FindAllStringSubmatch(s, -1) {
		if m[1] == m[2] {
			return true
		}
	}
	return false
}

// TestCheckpointWriteErrorHasOnePrefix (issue 23, defect 10): the
// checkpoint of round 1 cannot be written (its directory does not exist);
// the run fails with one line naming the round and the checkpoint once
// ("checkpoint: checkpoint:" before: the scheduler wrapped Commit's error,
// which WriteCheckpoint had already prefixed).
func TestCheckpointWriteErrorHasOnePrefix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "checkpoint")
	s, err := New(Config{PlanHash: "plan", Strategy: &strategy.FedAvg{}, Initial: weights(), Collaborators: []string{"a"},
		Rounds: 2, DoneGrace: time.Nanosecond, Logger: quietLogger(),
		Commit: func(_ context.Context, c *Checkpoint) error { return WriteCheckpoint(path, c) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := s.Run(ctx)
		done <- err
	}()
	upload(t, s, "a", 1, weights())
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("the run did not end")
	}
	if err == nil {
		t.Fatal("the run succeeded although its checkpoint could not be written")
	}
	msg := err.Error()
	if strings.Count(msg, "checkpoint:") != 1 || !strings.HasPrefix(msg, "round 1: commit: checkpoint: ") ||
		!strings.Contains(msg, "no such file or directory") || strings.Contains(msg, "\n") {
		t.Errorf("run error %q, want one line: round 1: commit: checkpoint: <reason>", msg)
	}
	if hasDoubledPrefix(msg) {
		t.Errorf("doubled prefix in %q", msg)
	}
	if !hasDoubledPrefix("round 1: checkpoint: checkpoint: x") || hasDoubledPrefix("round 1: commit: checkpoint: x") {
		t.Error("hasDoubledPrefix does not recognise a doubled prefix")
	}
}
