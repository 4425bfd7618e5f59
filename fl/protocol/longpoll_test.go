package protocol

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/strategy"
)

// TestLongPollStartsRoundsAtOnce: collaborators that finished a round
// hold a GetTasks long poll and start the next round when it opens. The
// aggregator's WAIT hint is an hour and the collaborators would sleep a
// minute on it, so the three rounds finish within the test's 60 s only if
// no collaborator ever waits for a poll interval. Then the old behaviour:
// an aggregator that does not hold calls (MaxLongPoll < 0) is polled at
// its retry_after_ms, and a collaborator that does not ask for a long
// poll (as before wait_ms existed) is answered at once.
func TestLongPollStartsRoundsAtOnce(t *testing.T) {
	names := []string{"col-1", "col-2"}
	env := newFedEnv(t, names...)
	run := func(t *testing.T, retryAfter, maxLongPoll, longPoll time.Duration) {
		agg, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{},
			Initial: testWeights([]int{3, 4}, []int{4}), Collaborators: names, Rounds: 3, RoundTimeout: time.Minute,
			RetryAfter: retryAfter, MaxLongPoll: maxLongPoll, StatusEvery: time.Minute, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		addr := env.serve(agg, quiet())
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		aggErr := make(chan error, 1)
		go func() { _, _, err := agg.Run(ctx); aggErr <- err }()
		var wg sync.WaitGroup
		errs := make([]error, len(names))
		for i, n := range names {
			c, err := NewCollaborator(CollaboratorConfig{Name: n, PlanHash: planHash, Conn: env.dial(addr, env.leaf(env.members[n], mrGood), quiet()),
				Trainer: nopTrainer{}, MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Minute, LongPoll: longPoll, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = c.Run(ctx) }()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", names[i], err)
			}
		}
		if err := <-aggErr; err != nil {
			t.Fatal(err)
		}
	}
	t.Run("long poll", func(t *testing.T) { run(t, time.Hour, 0, 0) })
	t.Run("aggregator without long poll", func(t *testing.T) { run(t, 10*time.Millisecond, -1, 0) })
	t.Run("collaborator without long poll", func(t *testing.T) { run(t, 10*time.Millisecond, 0, -1) })
}
