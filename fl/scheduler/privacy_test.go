package scheduler

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/fl/strategy"
)

const (
	dpQ, dpZ, dpDelta, dpBudget = 1.0, 4.0, 1e-5, 2.5
	dpRounds                    = 10
)

func dpStrategy(t *testing.T) *privacy.DPFedAvg {
	t.Helper()
	d, err := privacy.NewDPFedAvg(&strategy.FedAvg{}, privacy.Config{Clients: []string{"a", "b"}, SampleRate: dpQ,
		NoiseMultiplier: dpZ, Noise: privacy.NoiseCentral, ClipNorm: 1, Delta: dpDelta, EpsilonBudget: dpBudget,
		Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// dpObserver records opened rounds, closed summaries and the stop.
type dpObserver struct {
	NopObserver
	opened  chan int
	stopped chan string
}

func (o *dpObserver) RoundOpened(r int) { o.opened <- r }
func (o *dpObserver) FederationStopped(r int, reason string) {
	o.stopped <- reason
}

// runDP runs a federation of a and b until it ends, uploading in every
// opened round, and returns its history, the checkpoints and the stop
// reason seen by the observer.
func runDP(t *testing.T, st *privacy.DPFedAvg, resume *Checkpoint) ([]RoundSummary, map[int][]byte, *Scheduler, string) {
	t.Helper()
	obs := &dpObserver{opened: make(chan int, 1), stopped: make(chan string, 1)}
	ckpts := map[int][]byte{}
	s, err := New(Config{PlanHash: "plan", Strategy: st, Initial: weights(), Collaborators: []string{"a", "b"}, Rounds: dpRounds,
		DoneGrace: time.Nanosecond, Logger: quietLogger(), Observer: obs, Resume: resume,
		Commit: func(_ context.Context, c *Checkpoint) error {
			var b bytes.Buffer
			if err := EncodeCheckpoint(&b, c); err != nil {
				return err
			}
			ckpts[c.Round] = b.Bytes()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		h   []RoundSummary
		err error
	}
	done := make(chan result, 1)
	go func() {
		_, h, err := s.Run(ctx)
		done <- result{h, err}
	}()
	reason := ""
	for {
		select {
		case r := <-obs.opened:
			upload(t, s, "a", r, weights())
			upload(t, s, "b", r, weights())
		case reason = <-obs.stopped:
		case res := <-done:
			if res.err != nil {
				t.Fatal(res.err)
			}
			select {
			case reason = <-obs.stopped:
			default:
			}
			return res.h, ckpts, s, reason
		case <-ctx.Done():
			t.Fatal("federation did not finish")
		}
	}
}

// The privacy budget stops the federation cleanly before the first round
// that would exceed it (the round the accountant alone predicts), every
// round's ε is in its summary and checkpoint, and an aggregator resumed
// from a checkpoint continues with the same ε and stops at the same round.
func TestPrivacyBudgetStopsAndSurvivesResume(t *testing.T) {
	ref, _ := privacy.NewAccountant()
	stopBefore := 0
	var wantEps []float64
	for r := 1; r <= dpRounds; r++ {
		ref.Compose(dpQ, dpZ, 1)
		e, _ := ref.Epsilon(dpDelta)
		if e > dpBudget {
			stopBefore = r
			break
		}
		wantEps = append(wantEps, e)
	}
	if stopBefore < 4 || stopBefore > dpRounds {
		t.Fatalf("test parameters: stop before round %d", stopBefore)
	}

	h, ckpts, s, reason := runDP(t, dpStrategy(t), nil)
	if len(h) != stopBefore-1 {
		t.Fatalf("%d rounds ran, want %d (stop before round %d)", len(h), stopBefore-1, stopBefore)
	}
	var be *privacy.BudgetError
	if err := s.Stopped(); !errors.As(err, &be) || be.Round != stopBefore {
		t.Fatalf("Stopped() = %v, want a budget refusal of round %d", err, stopBefore)
	}
	if !strings.HasPrefix(reason, "privacy budget: round ") || strings.Contains(reason, "\n") {
		t.Errorf("observer's stop reason %q: want one line starting \"privacy budget: round \"", reason)
	}
	for i, sum := range h {
		if got := sum.Privacy[privacy.ReportEpsilon]; math.Abs(got-wantEps[i]) > 1e-12 {
			t.Errorf("round %d: ε %v, want %v", i+1, got, wantEps[i])
		}
	}

	// Resume from round 2's checkpoint with a fresh strategy.
	c, err := DecodeCheckpoint(bytes.NewReader(ckpts[2]))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.History[1].Privacy[privacy.ReportEpsilon]; got != wantEps[1] {
		t.Fatalf("checkpointed round-2 ε %v, want %v", got, wantEps[1])
	}
	fresh := dpStrategy(t)
	h2, _, s2, _ := runDP(t, fresh, c)
	if len(h2) != len(h) {
		t.Fatalf("resumed federation ran to round %d, want %d", len(h2), len(h))
	}
	for i := 2; i < len(h2); i++ {
		if got := h2[i].Privacy[privacy.ReportEpsilon]; math.Abs(got-wantEps[i]) > 1e-12 {
			t.Errorf("resumed round %d: ε %v, want %v (as without the restart)", i+1, got, wantEps[i])
		}
	}
	if err := s2.Stopped(); !errors.As(err, &be) || be.Round != stopBefore {
		t.Errorf("resumed Stopped() = %v, want a budget refusal of round %d", err, stopBefore)
	}

	// Resuming from the last checkpoint: the budget refuses at once.
	last, err := DecodeCheckpoint(bytes.NewReader(ckpts[stopBefore-1]))
	if err != nil {
		t.Fatal(err)
	}
	h3, _, s3, _ := runDP(t, dpStrategy(t), last)
	if len(h3) != stopBefore-1 || s3.Stopped() == nil {
		t.Errorf("resume after the last allowed round: %d rounds, stopped %v", len(h3), s3.Stopped())
	}
}
