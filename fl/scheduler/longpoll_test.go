package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/strategy"
)

// TestTasksWaitLongPoll: a collaborator that finished the round is held
// by TasksWait and released with RUN as soon as the next round opens (not
// at the end of its wait), then with DONE when the federation finishes; a
// wait that runs out answers WAIT with held set; a caller that goes away
// is released with its context's error.
func TestTasksWaitLongPoll(t *testing.T) {
	ev := &blockingEvaluator{started: make(chan int, 1), release: make(chan struct{})}
	s, err := New(Config{PlanHash: "plan", Strategy: &strategy.FedAvg{}, Evaluator: ev, Initial: weights(), Collaborators: []string{"a"},
		Rounds: 2, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Round 1 is open: an answer at once, not held.
	a, held, err := s.TasksWait(ctx, "a", time.Hour)
	if err != nil || a.Action != Run || a.Round != 1 || held {
		t.Fatalf("round 1: %+v held %v err %v, want RUN 1 at once", a, held, err)
	}
	upload(t, s, "a", 1, weights())

	// Nothing to do until round 2 opens: a short wait runs out with WAIT.
	a, held, err = s.TasksWait(ctx, "a", 20*time.Millisecond)
	if err != nil || a.Action != Wait || !held {
		t.Fatalf("after the upload: %+v held %v err %v, want a held WAIT", a, held, err)
	}
	// Without a wait the answer is WAIT at once (the old polling).
	if a, held, err = s.TasksWait(ctx, "a", 0); err != nil || a.Action != Wait || held {
		t.Fatalf("no wait: %+v held %v err %v, want WAIT at once", a, held, err)
	}
	// A caller that goes away is released.
	gone, stop := context.WithCancel(ctx)
	stop()
	if _, _, err := s.TasksWait(gone, "a", time.Hour); err != context.Canceled {
		t.Fatalf("cancelled caller: %v, want context.Canceled", err)
	}

	// A long poll is held until Run opens round 2 (an hour's wait: only the
	// round opening can end it before the test's deadline). Round 2 opens
	// only after the evaluation of round 1, which waits until the poll is
	// held.
	type answer struct {
		a    Assignment
		held bool
		err  error
	}
	runDone := make(chan error, 1)
	go func() { _, _, err := s.Run(ctx); runDone <- err }()
	if r := <-ev.started; r != 1 {
		t.Fatalf("evaluation of round %d, want 1", r)
	}
	polled := make(chan answer, 1)
	go func() {
		a, held, err := s.TasksWait(ctx, "a", time.Hour)
		polled <- answer{a, held, err}
	}()
	for s.polls.Load() != 1 {
		select {
		case <-ctx.Done():
			t.Fatal("the long poll was never held")
		case <-time.After(time.Millisecond):
		}
	}
	ev.release <- struct{}{}
	got := <-polled
	if got.err != nil || got.a.Action != Run || got.a.Round != 2 || !got.held {
		t.Fatalf("long poll across the round's close: %+v, want a held RUN 2", got)
	}
	upload(t, s, "a", 2, weights())
	go func() {
		<-ev.started
		ev.release <- struct{}{}
	}()
	// A poll after the last upload is held (unless Run was quicker) and
	// answered DONE once the last round is aggregated.
	a, _, err = s.TasksWait(ctx, "a", time.Hour)
	got = answer{a: a, err: err}
	if got.err != nil || got.a.Action != Done {
		t.Fatalf("long poll at the end: %+v, want DONE", got)
	}
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
}
