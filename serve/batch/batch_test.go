package batch

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/testenv"
)

func double(ctx context.Context, x []float32, rows int) ([]float32, error) {
	y := make([]float32, rows)
	for i := range rows {
		y[i] = x[i*2] + x[i*2+1]
	}
	return y, nil
}

// TestGathersConcurrentRequestsIntoOneCall: eight requests that queue up
// while the model is busy with a first one are gathered into the next call
// (MaxBatch 8: it runs at once, well before the ten-second delay).
func TestGathersConcurrentRequestsIntoOneCall(t *testing.T) {
	var sizes []int
	var mu sync.Mutex
	release := make(chan struct{})
	b, err := New(Config{InDim: 2, OutDim: 1, MaxBatch: 8, MaxDelay: 10 * time.Second, MaxQueue: 64, Concurrency: 1,
		OnBatch: func(rows, reqs int) { mu.Lock(); sizes = append(sizes, rows); mu.Unlock() }},
		func(ctx context.Context, x []float32, rows int) ([]float32, error) {
			if x[1] == -1 { // the first request holds the model until the others queue
				<-release
			}
			return double(ctx, x, rows)
		})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := b.Do(context.Background(), []float32{0, -1}, 1)
		first <- err
	}()
	if !testenv.WaitFor(10*time.Second, func() bool { return b.inflight.Load() == 1 && b.QueueDepth() == 0 }) {
		t.Fatal("the first request did not reach the model")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			y, err := b.Do(context.Background(), []float32{float32(i), 100}, 1)
			if err == nil && y[0] != float32(i)+100 {
				err = errors.New("wrong row")
			}
			errs <- err
		}()
	}
	if !testenv.WaitFor(10*time.Second, func() bool { return b.QueueDepth() == 8 }) {
		t.Fatalf("%d of 8 requests queued", b.QueueDepth())
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != 8 {
		t.Fatalf("batch sizes %v, want [1 8]", sizes)
	}
}

func TestQueueFullAndDrain(t *testing.T) {
	started, release := make(chan struct{}, 3), make(chan struct{})
	b, err := New(Config{InDim: 2, OutDim: 1, MaxBatch: 1, MaxQueue: 2, Concurrency: 1},
		func(ctx context.Context, x []float32, rows int) ([]float32, error) {
			started <- struct{}{}
			<-release
			return double(ctx, x, rows)
		})
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 3)
	do := func() { _, err := b.Do(context.Background(), []float32{1, 2}, 1); res <- err }
	go do()
	<-started // the worker holds the first request
	go do()
	go do()
	testenv.Eventually(t, 10*time.Second, "two requests queued", func() bool { return b.QueueDepth() == 2 })
	if _, err := b.Do(context.Background(), []float32{1, 2}, 1); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("fourth request: %v", err)
	}
	closed := make(chan error)
	go func() { closed <- b.Close(context.Background()) }()
	close(release)
	for range 3 {
		if err := <-res; err != nil {
			t.Fatalf("accepted request: %v", err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := b.Do(context.Background(), []float32{1, 2}, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestCancelledWhileQueuedIsDropped(t *testing.T) {
	started, release := make(chan struct{}, 4), make(chan struct{})
	var rows atomic.Int32
	b, _ := New(Config{InDim: 2, OutDim: 1, MaxBatch: 4, MaxQueue: 8, Concurrency: 1},
		func(ctx context.Context, x []float32, n int) ([]float32, error) {
			started <- struct{}{}
			<-release
			rows.Add(int32(n))
			return double(ctx, x, n)
		})
	defer b.Close(context.Background())
	go b.Do(context.Background(), []float32{1, 2}, 1)
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := b.Do(ctx, []float32{1, 2}, 1); errc <- err }()
	testenv.Eventually(t, 10*time.Second, "one request queued", func() bool { return b.QueueDepth() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	okc := make(chan error, 1)
	go func() { _, err := b.Do(context.Background(), []float32{3, 4}, 1); okc <- err }()
	close(release)
	if err := <-okc; err != nil {
		t.Fatal(err)
	}
	if rows.Load() != 2 { // the cancelled row never reached the model
		t.Fatalf("model saw %d rows", rows.Load())
	}
}

func TestModelErrorsAndBadInput(t *testing.T) {
	b, _ := New(Config{InDim: 2, OutDim: 1, MaxBatch: 4, MaxQueue: 8, Concurrency: 2},
		func(ctx context.Context, x []float32, n int) ([]float32, error) { return nil, errors.New("boom") })
	defer b.Close(context.Background())
	if _, err := b.Do(context.Background(), []float32{1, 2}, 1); err == nil || err.Error() != "boom" {
		t.Fatalf("model error: %v", err)
	}
	if _, err := b.Do(context.Background(), []float32{1, 2, 3}, 1); err == nil {
		t.Fatal("ragged input accepted")
	}
	if _, err := New(Config{InDim: 2, OutDim: 1}, double); err == nil {
		t.Fatal("zero config accepted")
	}
}

// TestLoneCallerIsNotHeld: a caller sending one request after another is
// never held for company (nobody else is in flight). Before, every batch
// waited MaxDelay: a lone caller paid the delay on each request
// (bench/serve.sh at concurrency 1: batching on gave 0.42× the throughput
// of batching off).
func TestLoneCallerIsNotHeld(t *testing.T) {
	b, err := New(Config{InDim: 2, OutDim: 1, MaxBatch: 8, MaxDelay: time.Hour, MaxQueue: 8, Concurrency: 1}, double)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const calls = 40
	for i := range calls {
		y, err := b.Do(ctx, []float32{float32(i), 1}, 1)
		if err != nil || y[0] != float32(i)+1 {
			t.Fatalf("call %d: %v %v", i, y, err)
		}
	}
	if w := b.waits.Load(); w != 0 {
		t.Errorf("%d of %d batches waited for company, want none", w, calls)
	}
}

// TestWaitIsBoundedByTheCallsFixedCost: the wait for company is bounded by
// the fixed cost of a call (a in a + b·rows), estimated from a one-row and a
// four-row call timed on a test clock: a model whose calls cost only per
// row (a tree ensemble) is not held at all, one with a fixed cost (a GoMLX
// execution) at most that long; before any call, MaxDelay.
func TestWaitIsBoundedByTheCallsFixedCost(t *testing.T) {
	for _, tc := range []struct {
		name          string
		fixed, perRow time.Duration
		want          time.Duration
	}{
		{"per-row cost only", 0, 100 * time.Microsecond, 0},
		{"fixed cost", 50 * time.Microsecond, 2 * time.Microsecond, 50 * time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1_000_000, 0)}
			b, err := New(Config{InDim: 2, OutDim: 1, MaxBatch: 8, MaxDelay: 5 * time.Millisecond, MaxQueue: 8, Concurrency: 1},
				func(ctx context.Context, x []float32, rows int) ([]float32, error) {
					clk.add(tc.fixed + time.Duration(rows)*tc.perRow)
					return double(ctx, x, rows)
				})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close(context.Background())
			b.now = clk.now
			if d := b.waitFor(); d != 5*time.Millisecond {
				t.Fatalf("before any call: wait %s, want MaxDelay", d)
			}
			if _, err := b.Do(context.Background(), []float32{1, 2}, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Do(context.Background(), []float32{1, 2, 3, 4, 5, 6, 7, 8}, 4); err != nil {
				t.Fatal(err)
			}
			if d := b.waitFor(); d != tc.want {
				t.Errorf("wait %s, want %s (one-row call %s, per further row %s)", d, tc.want,
					time.Duration(b.one.Load()), time.Duration(b.perRow.Load()))
			}
		})
	}
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestBatchStopsWaitingWhenEveryCallerIsIn: eight callers, each sending its
// next request only after its answer (a closed loop, like a client pool of
// fixed size), with MaxDelay an hour and room for 64 rows: once all eight
// are in the batch nobody else can come, so it runs at once instead of
// waiting the hour; every round answers all eight.
func TestBatchStopsWaitingWhenEveryCallerIsIn(t *testing.T) {
	b, batches := recording(t, Config{InDim: 2, OutDim: 1, MaxBatch: 64, MaxDelay: time.Hour, MaxQueue: 64, Concurrency: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 5 {
				y, err := b.Do(ctx, []float32{float32(i), float32(round)}, 1)
				if err != nil || y[0] != float32(i+round) {
					t.Errorf("caller %d round %d: %v %v", i, round, y, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	sizes := batches()
	total := 0
	for _, s := range sizes {
		total += s
	}
	if total != 40 {
		t.Errorf("batches %v hold %d rows, want 40", sizes, total)
	}
	t.Logf("batch sizes %v", sizes)
}

// TestArrivedRequestIsWaitedFor: a request counted in flight by Arrive
// (its body still being decoded) holds a forming batch until it joins, so
// both rows share one call even with an hour's MaxDelay.
func TestArrivedRequestIsWaitedFor(t *testing.T) {
	b, batches := recording(t, Config{InDim: 2, OutDim: 1, MaxBatch: 8, MaxDelay: time.Hour, MaxQueue: 8, Concurrency: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	actx, leave := b.Arrive(ctx)
	first := make(chan error, 1)
	go func() {
		y, err := b.Do(ctx, []float32{1, 2}, 1)
		if err == nil && y[0] != 3 {
			err = errors.New("wrong row")
		}
		first <- err
	}()
	if !testenv.WaitFor(10*time.Second, func() bool { return b.inflight.Load() == 2 && b.QueueDepth() == 0 }) {
		t.Fatal("the first request was not taken")
	}
	y, err := b.Do(actx, []float32{3, 4}, 1)
	leave()
	if err != nil || y[0] != 7 {
		t.Fatalf("arrived request: %v %v", y, err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if sizes := batches(); len(sizes) != 1 || sizes[0] != 2 {
		t.Fatalf("batch sizes %v, want one call of 2 rows", batches())
	}
	if n := b.inflight.Load(); n != 0 {
		t.Fatalf("%d requests still counted in flight", n)
	}
}

// recording starts a Batcher over double with cfg (OnBatch replaced) and
// returns it and a function giving the batch sizes in rows so far.
func recording(t *testing.T, cfg Config) (*Batcher, func() []int) {
	t.Helper()
	var sizes []int
	var mu sync.Mutex
	cfg.OnBatch = func(rows, _ int) { mu.Lock(); sizes = append(sizes, rows); mu.Unlock() }
	b, err := New(cfg, double)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	return b, func() []int { mu.Lock(); defer mu.Unlock(); return slices.Clone(sizes) }
}
