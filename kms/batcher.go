package kms

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/kms/store"
)

// batcher appends audit entries with group commit: concurrent requests'
// entries are committed together in one transaction (one fsync), and each
// request waits until its entry is durable. This is what lets the broker
// record every unwrap before releasing the key and still serve many
// unwraps per second.
type batcher struct {
	st     *store.Store
	macKey []byte
	anchor *anchor
	hist   prometheus.Histogram
	log    *slog.Logger

	reqs chan *pending
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type pending struct {
	body []byte
	res  chan result
}

type result struct {
	head audit.Head
	err  error
}

const maxBatch = 256

func newBatcher(st *store.Store, macKey []byte, a *anchor, hist prometheus.Histogram, log *slog.Logger) *batcher {
	b := &batcher{st: st, macKey: macKey, anchor: a, hist: hist, log: log,
		reqs: make(chan *pending, maxBatch), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

var errClosed = errors.New("audit writer closed")

// append waits until body is committed, or ctx ends (the entry may then
// still be committed: a caller that gave up gets nothing released).
func (b *batcher) append(ctx context.Context, body []byte) (audit.Head, error) {
	p := &pending{body: body, res: make(chan result, 1)}
	select {
	case b.reqs <- p:
	case <-b.stop:
		return audit.Head{}, errClosed
	case <-ctx.Done():
		return audit.Head{}, ctx.Err()
	}
	select {
	case r := <-p.res:
		return r.head, r.err
	case <-ctx.Done():
		return audit.Head{}, ctx.Err()
	}
}

func (b *batcher) run() {
	defer close(b.done)
	for {
		var first *pending
		select {
		case first = <-b.reqs:
		case <-b.stop:
			// Drain what was queued before the stop.
			for {
				select {
				case p := <-b.reqs:
					b.commit([]*pending{p})
				default:
					return
				}
			}
		}
		batch := []*pending{first}
	fill:
		for len(batch) < maxBatch {
			select {
			case p := <-b.reqs:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		b.commit(batch)
	}
}

func (b *batcher) commit(batch []*pending) {
	bodies := make([][]byte, len(batch))
	for i, p := range batch {
		bodies[i] = p.body
	}
	// The commit is not bound to any one caller's context: others in the
	// batch still wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	heads, err := b.st.Append(ctx, b.macKey, bodies)
	cancel()
	if err == nil {
		// Anchored before anyone is answered: every acknowledged entry is
		// covered by the anchor.
		if err = b.anchor.advance(heads[len(heads)-1]); err != nil {
			b.log.Error("kms: audit anchor write failed", "err", err)
		}
	}
	b.hist.Observe(float64(len(batch)))
	for i, p := range batch {
		if err != nil {
			p.res <- result{err: err}
		} else {
			p.res <- result{head: heads[i]}
		}
	}
}

func (b *batcher) close() {
	b.once.Do(func() { close(b.stop) })
	<-b.done
}
