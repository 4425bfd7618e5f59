package run

import (
	"context"
	"sync"
	"testing"
	"time"
)

// startAggregator runs the aggregator in a goroutine; the returned function
// waits for it and returns its error.
func startAggregator(ctx context.Context, o AggregatorOptions) (wait func() error) {
	done := make(chan error, 1)
	go func() { done <- RunAggregator(ctx, o) }()
	return func() error { return <-done }
}

// runCollaborators runs the named collaborators of ws concurrently until all
// have returned, and reports each failure as a test error. logs, when not
// nil, holds one buffer per name for that collaborator's log.
func runCollaborators(t *testing.T, ctx context.Context, ws string, names []string, logs []lockedBuf) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		log := quietLog()
		if logs != nil {
			log = logs[i].Logger()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = RunCollaborator(ctx, CollaboratorOptions{Workspace: ws, Name: n, ConnectTimeout: 30 * time.Second, Logger: log})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", names[i], err)
		}
	}
}

// runFederation runs the aggregator with options o and the named
// collaborators to the end; a failing aggregator fails the test with its
// output. It returns the aggregator's output.
func runFederation(t *testing.T, ctx context.Context, o AggregatorOptions, names []string, logs []lockedBuf) string {
	t.Helper()
	var out lockedBuf
	o.Out = &out
	if o.Logger == nil {
		o.Logger = quietLog()
	}
	wait := startAggregator(ctx, o)
	runCollaborators(t, ctx, o.Workspace, names, logs)
	if err := wait(); err != nil {
		t.Fatalf("aggregator: %v\n%s", err, out.String())
	}
	return out.String()
}
