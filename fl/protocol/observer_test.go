package protocol

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
)

// eventLog is an Observer that keeps every event.
type eventLog struct {
	mu      sync.Mutex
	opened  []int
	sent    []string // "round/name"
	sentB   int64
	metrics []MetricsEvent
	updates []UpdateEvent
	refused []string // "round/name/reason"
	closed  []RoundSummary
}

func (l *eventLog) RoundOpened(r int) { l.mu.Lock(); l.opened = append(l.opened, r); l.mu.Unlock() }
func (l *eventLog) ModelSent(r int, n string, b int64, _ float64) {
	l.mu.Lock()
	l.sent = append(l.sent, fmt.Sprintf("%d/%s", r, n))
	l.sentB += b
	l.mu.Unlock()
}
func (l *eventLog) MetricsReported(e MetricsEvent) {
	l.mu.Lock()
	l.metrics = append(l.metrics, e)
	l.mu.Unlock()
}
func (l *eventLog) UpdateReceived(e UpdateEvent) {
	l.mu.Lock()
	l.updates = append(l.updates, e)
	l.mu.Unlock()
}
func (l *eventLog) UpdateRefused(r int, n, reason, _ string) {
	l.mu.Lock()
	l.refused = append(l.refused, fmt.Sprintf("%d/%s/%s", r, n, reason))
	l.mu.Unlock()
}
func (l *eventLog) RoundClosed(s RoundSummary) {
	l.mu.Lock()
	l.closed = append(l.closed, s)
	l.mu.Unlock()
}

// slowTrainer is nopTrainer taking a known minimum time, so the reported
// timings can be checked against it.
type slowTrainer struct {
	nopTrainer
	train, eval time.Duration
}

func (s slowTrainer) Train(ctx context.Context, g tensor.Weights, c map[string]float64) (tensor.Weights, int, map[string]float64, error) {
	time.Sleep(s.train)
	return s.nopTrainer.Train(ctx, g, c)
}

func (s slowTrainer) Evaluate(ctx context.Context, w tensor.Weights) (int, float64, map[string]float64, error) {
	time.Sleep(s.eval)
	return s.nopTrainer.Evaluate(ctx, w)
}

// TestObserverEvents runs a two-round federation over RA-TLS with an
// Observer: protocol refusals are classified, and the collaborators'
// download, train and evaluation timings (new optional proto fields)
// reach the aggregator.
func TestObserverEvents(t *testing.T) {
	names := []string{"col-1", "col-2"}
	env := newFedEnv(t, names...)
	initial := testWeights([]int{3, 4}, []int{4})
	obs := &eventLog{}
	agg, err := NewAggregator(AggregatorConfig{
		PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: initial, Collaborators: names,
		Rounds: 2, RoundTimeout: time.Minute, RetryAfter: 20 * time.Millisecond, Logger: quiet(), Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := env.serve(agg, quiet())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	raw := flv1.NewAggregatorClient(env.dial(addr, env.leaf(env.members["col-1"], mrGood), quiet()))
	hdr := func() *flv1.Header {
		return &flv1.Header{Round: 1, Sender: "col-1", PlanHash: planHash, Kind: flv1.PayloadKind_PAYLOAD_KIND_UPDATE, NumExamples: 5}
	}
	_ = upload(ctx, raw, testWeights([]int{4, 3}, []int{4}), hdr(), false)
	_ = upload(ctx, raw, initial, hdr(), true)
	h := hdr()
	h.Round = 7
	_ = upload(ctx, raw, initial, h, false)
	h = hdr()
	h.NumExamples = 0
	_ = upload(ctx, raw, initial, h, false)

	run := make(chan error, 1)
	go func() { _, _, err := agg.Run(ctx); run <- err }()
	const trainTime, evalTime = 30 * time.Millisecond, 10 * time.Millisecond
	var wg sync.WaitGroup
	for _, n := range names {
		c, err := NewCollaborator(CollaboratorConfig{Name: n, PlanHash: planHash,
			Conn:    env.dial(addr, env.leaf(env.members[n], mrGood), quiet()),
			Trainer: slowTrainer{train: trainTime, eval: evalTime}, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil {
				t.Errorf("%s: %v", n, err)
			}
		}()
	}
	wg.Wait()
	if err := <-run; err != nil {
		t.Fatal(err)
	}

	obs.mu.Lock()
	defer obs.mu.Unlock()
	if want := []string{"1/col-1/shape", "1/col-1/checksum", "1/col-1/wrong_round", "1/col-1/examples"}; !slices.Equal(obs.refused, want) {
		t.Errorf("refusals %v, want %v", obs.refused, want)
	}
	if !slices.Equal(obs.opened, []int{1, 2}) {
		t.Errorf("rounds opened %v", obs.opened)
	}
	if len(obs.sent) != 4 || obs.sentB <= 0 {
		t.Errorf("models sent %v (%d bytes), want 4", obs.sent, obs.sentB)
	}
	if len(obs.updates) != 4 {
		t.Fatalf("%d updates, want 4", len(obs.updates))
	}
	for _, u := range obs.updates {
		if u.TrainSeconds < trainTime.Seconds() || u.DownloadSeconds <= 0 || u.Bytes <= 0 || u.Seconds <= 0 || u.NumExamples != 10 {
			t.Errorf("update %+v: want train ≥ %v, download, bytes and upload seconds > 0", u, trainTime)
		}
	}
	if len(obs.metrics) != 8 {
		t.Fatalf("%d metrics events, want 8 (2 tasks × 2 collaborators × 2 rounds)", len(obs.metrics))
	}
	for _, m := range obs.metrics {
		if m.Seconds < evalTime.Seconds() || m.Metrics["accuracy"] != 0.5 {
			t.Errorf("metrics %+v: want seconds ≥ %v", m, evalTime)
		}
	}
	if len(obs.closed) != 2 {
		t.Fatalf("%d rounds closed", len(obs.closed))
	}
	for _, s := range obs.closed {
		if s.AggregateSeconds <= 0 || s.AggregateSeconds > s.Seconds || len(s.Accepted) != 2 {
			t.Errorf("round summary %+v", s)
		}
	}
}
