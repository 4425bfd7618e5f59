// Package batch is dynamic batching for one model: concurrent requests of a
// few rows each are queued, gathered into one batch of up to MaxBatch rows
// (waiting at most MaxDelay for more after the first, and only while
// another request is in flight that could join), run through the model
// once, and the outputs handed back per request. A full queue refuses
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
	// while some request in flight (in Do: queued, running, or just
	// answered) is not in it, and stops as soon as every request in flight
	// is: a lone caller, a trickle, or a fixed pool of callers each waiting
	// for its answer before its next request would otherwise pay the
	// delay for company that cannot come, while requests that queue up
	// during a model call are gathered by the next one. Nor does a batch
	// wait longer than what a call costs beyond its rows (the
	// fixed cost a of a call taking a + b·rows, estimated from recent
	// one-row and larger calls): waiting costs the idle model that long,
	// and saves at most one call's fixed cost per request gathered. A model
	// whose calls cost the same per row however many there are (a tree
	// ensemble: a ≈ 0) is never held.
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

	inflight atomic.Int64  // requests in Do
	left     chan struct{} // a request left Do (capacity 1: wakes a waiting batch)
	// one is the smoothed duration of one-row calls, perRow that of each
	// further row in larger calls, ns (0: none measured yet).
	one, perRow atomic.Int64
	now         func() time.Time // times model calls; tests replace it
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
	b := &Batcher{cfg: cfg, fn: fn, queue: make(chan *item, cfg.MaxQueue), now: time.Now, left: make(chan struct{}, 1)}
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
	if ctx.Value(arrivedKey{b}) == nil {
		_, leave := b.Arrive(ctx)
		defer leave()
	}
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

type arrivedKey struct{ b *Batcher }

// Arrive counts a request in flight before it reaches Do, while it is still
// being read and decoded, so that a batch forming meanwhile waits for it.
// Pass the returned context to Do and call leave once the request is done
// (Do returned, or it was refused on its way). Do counts requests that did
// not Arrive itself.
func (b *Batcher) Arrive(ctx context.Context) (context.Context, func()) {
	b.inflight.Add(1)
	var once sync.Once
	return context.WithValue(ctx, arrivedKey{b}, true), func() {
		once.Do(func() {
			b.inflight.Add(-1)
			select {
			case b.left <- struct{}{}:
			default:
			}
		})
	}
}

// othersInFlight tells whether a request in flight is not in a batch of n
// requests, i.e. whether anyone could still join it.
func (b *Batcher) othersInFlight(n int) bool { return b.inflight.Load() > int64(n) }

// waitFor is how long a batch waits for company: MaxDelay, but no longer
// than a call's fixed cost, and not at all when that is under a quarter of
// a one-row call (0: do not wait). Before a larger call has been measured
// the one-row call's whole duration stands in for it.
func (b *Batcher) waitFor() time.Duration {
	d := b.cfg.MaxDelay
	if one := b.one.Load(); one > 0 {
		fixed := one
		if pr := b.perRow.Load(); pr > 0 {
			fixed = max(one-pr, 0)
		}
		if fixed < one/4 {
			// Mostly per-row cost: a gathered request saves less than a
			// quarter of a call, and a short timer on a loaded machine
			// idles the model far longer than asked.
			fixed = 0
		}
		d = min(d, time.Duration(fixed))
	}
	return d
}

// measured updates the call-cost estimates with a call of rows rows that
// took d (weight 1/4; concurrent workers may lose an update to each other).
func (b *Batcher) measured(rows int, d time.Duration) {
	smooth := func(a *atomic.Int64, v int64) {
		if old := a.Load(); old == 0 {
			a.Store(max(v, 1))
		} else {
			a.Store(max(old+(v-old)/4, 1))
		}
	}
	if rows == 1 {
		smooth(&b.one, int64(d))
		return
	}
	if one := b.one.Load(); one > 0 {
		smooth(&b.perRow, max(int64(d)-one, 0)/int64(rows-1))
	}
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
			if b.cfg.MaxDelay > 0 && b.othersInFlight(1) {
				if d := b.waitFor(); d > 0 {
					b.waits.Add(1)
					if timer == nil {
						timer = time.NewTimer(d)
					} else {
						timer.Reset(d)
					}
					deadline = timer.C
				}
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
					if !b.othersInFlight(len(batch)) {
						// Every request in flight is in this batch: no
						// one is left to wait for.
						break gather
					}
					select {
					case it, ok = <-b.queue:
					case <-b.left:
						continue // look again who is in flight
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
	t0 := b.now()
	y, err := b.fn(ctx, x, rows)
	if err == nil {
		b.measured(rows, b.now().Sub(t0))
	}
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
