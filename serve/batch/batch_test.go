package batch

import (
	"context"
	"errors"
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

func TestGathersConcurrentRequestsIntoOneCall(t *testing.T) {
	var calls atomic.Int32
	var sizes []int
	var mu sync.Mutex
	b, err := New(Config{InDim: 2, OutDim: 1, MaxBatch: 8, MaxDelay: 10 * time.Second, MaxQueue: 64, Concurrency: 1,
		OnBatch: func(rows, reqs int) { mu.Lock(); sizes = append(sizes, rows); mu.Unlock() }},
		func(ctx context.Context, x []float32, rows int) ([]float32, error) {
			calls.Add(1)
			return double(ctx, x, rows)
		})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
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
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Eight rows fill the batch: it runs at once, well before the delay.
	if calls.Load() != 1 || len(sizes) != 1 || sizes[0] != 8 {
		t.Fatalf("%d calls, batch sizes %v", calls.Load(), sizes)
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

// TestLoneCallerIsNotHeld: a caller sending one request after another
// (each finds the model idle) stops being held for company after four
// requests; eight callers at once still gather into one batch
// (TestGathersConcurrentRequestsIntoOneCall). Before, every batch waited
// MaxDelay: a lone caller paid the delay on each request (bench/serve.sh at
// concurrency 1: batching on gave 0.42× the throughput of batching off).
func TestLoneCallerIsNotHeld(t *testing.T) {
	b, err := New(Config{InDim: 2, OutDim: 1, MaxBatch: 8, MaxDelay: 20 * time.Millisecond, MaxQueue: 8, Concurrency: 1}, double)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	const calls = 40
	for i := range calls {
		y, err := b.Do(context.Background(), []float32{float32(i), 1}, 1)
		if err != nil || y[0] != float32(i)+1 {
			t.Fatalf("call %d: %v %v", i, y, err)
		}
	}
	// The fraction found alone after k lone arrivals is 1-(3/4)^k: below
	// 3/4 for k ≤ 4.
	if w := b.waits.Load(); w != 4 {
		t.Errorf("%d of %d batches waited for company, want the first 4", w, calls)
	}
}
