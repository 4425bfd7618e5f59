// Package batch is dynamic batching for one model: concurrent requests of a
// few rows each are queued, gathered into one batch of up to MaxBatch rows
// (waiting at most MaxDelay for more after the first, and only when
// requests have been overlapping), run through the model once, and the
// outputs handed back per request. A full queue refuses
// at once (back-pressure: HTTP 429, gRPC RESOURCE_EXHAUSTED) instead of
// growing; a request whose context ends while queued is dropped from its
// batch; Close stops intake and finishes what was accepted.
package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Func runs the model on rows rows of x (row-major, InDim per row) and
// returns rows×OutDim outputs.
type Func func(ctx context.Context, x []float32, rows int) ([]float32, error)

// Config sizes a Batcher.
type Config struct {
	InDim, OutDim int
	// MaxBatch is the most rows per model call (1: batching off).
	MaxBatch int
	// MaxDelay is the longest a batch waits for more requests after its
	// first (0: take only what is already queued). A batch waits only
	// while requests overlap: when most recent requests arrived to find
	// the model idle (no other request queued or running), the caller is
	// alone or the traffic a trickle, and waiting would only add the
	// delay to each request; under load batches form as configured.
	MaxDelay time.Duration
	// MaxQueue is how many requests may wait; one more is refused.
	MaxQueue int
	// Concurrency is how many batches run at once.
	Concurrency int
	// OnBatch, when set, is told each batch's size in rows and requests.
	OnBatch func(rows, requests int)
}

// Errors callers map to protocol statuses.
var (
	ErrQueueFull = errors.New("queue full")
	ErrClosed    = errors.New("shutting down")
)

type item struct {
	ctx  context.Context
	x    []float32
	rows int
	done chan result
}

type result struct {
	y   []float32
	err error
}

// Batcher batches calls to one Func. It is safe for concurrent use.
type Batcher struct {
	cfg    Config
	fn     Func
	queue  chan *item
	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup

	inflight atomic.Int64 // requests in Do
	// alone is the smoothed fraction of arrivals that found no other
	// request in flight, in units of 1/aloneOne (0 at start: wait as
	// configured).
	alone atomic.Int64
	// waits counts the batches that waited for company (tests read it).
	waits atomic.Int64
}

// New starts cfg.Concurrency workers.
func New(cfg Config, fn Func) (*Batcher, error) {
	if cfg.InDim <= 0 || cfg.OutDim <= 0 {
		return nil, fmt.Errorf("batch: input and output widths must be positive (%d, %d)", cfg.InDim, cfg.OutDim)
	}
	if cfg.MaxBatch <= 0 || cfg.MaxQueue <= 0 || cfg.Concurrency <= 0 || cfg.MaxDelay < 0 {
		return nil, fmt.Errorf("batch: max batch %d, max queue %d, concurrency %d must be positive, max delay %s not negative", cfg.MaxBatch, cfg.MaxQueue, cfg.Concurrency, cfg.MaxDelay)
	}
	b := &Batcher{cfg: cfg, fn: fn, queue: make(chan *item, cfg.MaxQueue)}
	for range cfg.Concurrency {
		b.wg.Add(1)
		go b.work()
	}
	return b, nil
}

// QueueDepth is the number of requests waiting.
func (b *Batcher) QueueDepth() int { return len(b.queue) }

// Do queues rows rows of x and waits for their outputs.
func (b *Batcher) Do(ctx context.Context, x []float32, rows int) ([]float32, error) {
	if rows <= 0 || len(x) != rows*b.cfg.InDim {
		return nil, fmt.Errorf("batch: %d values for %d rows of %d", len(x), rows, b.cfg.InDim)
	}
	it := &item{ctx: ctx, x: x, rows: rows, done: make(chan result, 1)}
	b.arrived()
	defer b.inflight.Add(-1)
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case b.queue <- it:
	default:
		b.mu.RUnlock()
		return nil, fmt.Errorf("%w (%d requests waiting)", ErrQueueFull, b.cfg.MaxQueue)
	}
	b.mu.RUnlock()
	select {
	case r := <-it.done:
		return r.y, r.err
	case <-ctx.Done():
		// The worker sees the context and skips or discards the item.
		return nil, ctx.Err()
	}
}

// Close refuses new requests, answers every accepted one, and waits for
// the workers (or for ctx).
func (b *Batcher) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.queue)
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

const aloneOne = 1 << 16

// arrived counts a request in and updates the smoothed fraction of
// arrivals that found the model idle (an exponentially weighted mean,
// weight 1/4). Concurrent arrivals may lose an update to each other: it
// is an estimate.
func (b *Batcher) arrived() {
	var sample int64
	if b.inflight.Add(1) == 1 {
		sample = aloneOne
	}
	old := b.alone.Load()
	b.alone.Store(old + (sample-old)/4)
}

// shouldWait tells whether a batch should wait for more requests: only
// when fewer than three in four recent requests arrived alone.
func (b *Batcher) shouldWait() bool {
	return b.cfg.MaxDelay > 0 && b.alone.Load() < aloneOne*3/4
}

func (b *Batcher) work() {
	defer b.wg.Done()
	var timer *time.Timer
	for first := range b.queue {
		if first.ctx.Err() != nil {
			first.done <- result{err: first.ctx.Err()}
			continue
		}
		batch, rows := []*item{first}, first.rows
		if rows < b.cfg.MaxBatch {
			var deadline <-chan time.Time
			if b.shouldWait() {
				b.waits.Add(1)
				if timer == nil {
					timer = time.NewTimer(b.cfg.MaxDelay)
				} else {
					timer.Reset(b.cfg.MaxDelay)
				}
				deadline = timer.C
			}
		gather:
			for rows < b.cfg.MaxBatch {
				var it *item
				var ok bool
				if deadline == nil {
					select {
					case it, ok = <-b.queue:
					default:
						break gather
					}
				} else {
					select {
					case it, ok = <-b.queue:
					case <-deadline:
						deadline = nil
						break gather
					}
				}
				if !ok {
					break
				}
				if it.ctx.Err() != nil {
					it.done <- result{err: it.ctx.Err()}
					continue
				}
				if rows+it.rows > b.cfg.MaxBatch {
					// Does not fit: run it next, alone or with others.
					b.run(batch, rows)
					batch, rows = []*item{it}, it.rows
					continue
				}
				batch, rows = append(batch, it), rows+it.rows
			}
			if deadline != nil {
				// Since Go 1.23 a stopped timer delivers no stale value:
				// nothing to drain before the next Reset.
				timer.Stop()
			}
		}
		b.run(batch, rows)
	}
}

// run calls the model once for batch and hands each item its rows.
func (b *Batcher) run(batch []*item, rows int) {
	x := batch[0].x
	if len(batch) > 1 {
		x = make([]float32, 0, rows*b.cfg.InDim)
		for _, it := range batch {
			x = append(x, it.x...)
		}
	}
	if b.cfg.OnBatch != nil {
		b.cfg.OnBatch(rows, len(batch))
	}
	ctx := batch[0].ctx
	if len(batch) > 1 {
		ctx = context.WithoutCancel(ctx) // one request's cancellation must not fail the others
	}
	y, err := b.fn(ctx, x, rows)
	if err == nil && len(y) != rows*b.cfg.OutDim {
		err = fmt.Errorf("batch: model returned %d outputs for %d rows of %d", len(y), rows, b.cfg.OutDim)
	}
	off := 0
	for _, it := range batch {
		if err != nil {
			it.done <- result{err: err}
			continue
		}
		n := it.rows * b.cfg.OutDim
		it.done <- result{y: y[off : off+n : off+n]}
		off += n
	}
}
