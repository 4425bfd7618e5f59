package metrics_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/metrics"
	"github.com/teeml/teeml/fl/scheduler"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/ml/tensor"
)

// TestFailedMetricsWriteFailsTheRun (issue 23, defect 10): the metrics
// file is on a full device (/dev/full: every write fails with ENOSPC).
// The first round's records cannot be written, so the run fails with the
// reason, and the round is not committed (no checkpoint of a round whose
// records were lost). Before, the failure was only a warning and the run
// completed.
func TestFailedMetricsWriteFailsTheRun(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	var log testlog.Buffer
	j, err := metrics.OpenJSONL("/dev/full", log.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	commits := 0
	w := tensor.Weights{{Name: "w", Shape: []int{2}, Data: []float32{1, 2}}}
	s, err := scheduler.New(scheduler.Config{PlanHash: "plan", Strategy: &strategy.FedAvg{}, Initial: w,
		Collaborators: []string{"a"}, Rounds: 2, DoneGrace: time.Nanosecond, Logger: log.Logger(),
		Observer: metrics.NewObserver(j, nil, log.Logger()),
		Commit:   func(context.Context, *scheduler.Checkpoint) error { commits++; return nil }})
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
	release, err := s.BeginUpload("a", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Accept(scheduler.UpdateEvent{Round: 1, Collaborator: "a", NumExamples: 3}, w)
	release()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("the run did not end")
	}
	if err == nil {
		t.Fatal("the run succeeded although no metrics record could be written")
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "round 1: metrics: /dev/full: ") || !strings.Contains(msg, "no space left on device") ||
		strings.Contains(msg, "\n") {
		t.Errorf("run error %q, want one line naming round 1, the metrics file and ENOSPC", msg)
	}
	if commits != 0 {
		t.Errorf("round committed %d times although its records were lost", commits)
	}
	t.Log(err)
}
