package strategy

import (
	"sync"
	"sync/atomic"

	"github.com/teeml/teeml/ml/tensor"
)

// spanSize is the number of coordinates one task handles: 16384 float32
// (64 KiB) per client stream, with its float64 accumulator (128 KiB) in L2.
// It is a constant so that the split of the work, and with it every
// floating-point result, depends only on the tensor shapes.
const spanSize = 1 << 14

// maxGroups bounds the number of span groups of a reduction (each holds
// one partial result); groups are fixed by the span count alone.
const maxGroups = 64

// span is the coordinate range [lo, hi) of tensor t.
type span struct{ t, lo, hi int }

// makeSpans cuts every tensor of w into spans of at most spanSize coordinates.
func makeSpans(w tensor.Weights) []span {
	n := 0
	for _, t := range w {
		n += (len(t.Data) + spanSize - 1) / spanSize
	}
	out := make([]span, 0, n)
	for i, t := range w {
		for lo := 0; lo < len(t.Data); lo += spanSize {
			out = append(out, span{i, lo, min(lo+spanSize, len(t.Data))})
		}
	}
	return out
}

// groupBounds splits n spans into g = min(n, maxGroups) contiguous groups
// of near-equal size: group i is spans [b[i], b[i+1]).
func groupBounds(n int) []int {
	g := min(n, maxGroups)
	b := make([]int, g+1)
	for i := range b {
		b[i] = i * n / max(g, 1)
	}
	return b
}

// runTasks calls fn(worker, task) for task = 0..n-1 on at most workers
// goroutines, each with a distinct worker index in [0, workers), handing out
// tasks dynamically. With one worker (or one task) it runs inline.
func runTasks(workers, n int, fn func(worker, task int)) {
	workers = max(1, min(workers, n))
	if workers == 1 {
		for i := range n {
			fn(0, i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(w, i)
			}
		}()
	}
	wg.Wait()
}

// scratch is the per-worker reusable memory of a strategy.
type scratch struct {
	acc  []float64   // spanSize accumulators
	xs   [][]float32 // one span view per client
	vals []float32   // one value per client (order statistics)
	keys []int32     // n rows of sort keys (sorting network)
}

// pool keeps per-worker scratch and sorting networks between rounds.
type pool struct {
	ws   []scratch
	nets map[int][][2]int32
}

// network returns the cached sorting network for n inputs.
func (p *pool) network(n int) [][2]int32 {
	if p.nets == nil {
		p.nets = map[int][][2]int32{}
	}
	net, ok := p.nets[n]
	if !ok {
		net = batcherNetwork(n)
		p.nets[n] = net
	}
	return net
}

// networkKeys is the size of a worker's key scratch: n rows of
// networkKeys/n coordinates, 16 KiB in all, so a block stays in L1.
const networkKeys = 4096

// get returns the scratch slots for workers, each with room for n clients.
func (p *pool) get(workers, n int) []scratch {
	for len(p.ws) < workers {
		p.ws = append(p.ws, scratch{})
	}
	for i := range p.ws[:workers] {
		s := &p.ws[i]
		if cap(s.acc) < spanSize {
			s.acc = make([]float64, spanSize)
		}
		if cap(s.xs) < n {
			s.xs = make([][]float32, n)
			s.vals = make([]float32, n)
		}
		if s.keys == nil {
			s.keys = make([]int32, networkKeys)
		}
		s.xs = s.xs[:n]
		s.vals = s.vals[:n]
	}
	return p.ws[:workers]
}

// views fills xs with the span sp of each selected update.
func views(xs [][]float32, results []FitResult, sel []int, sp span) {
	for k, i := range sel {
		xs[k] = results[i].Weights[sp.t].Data[sp.lo:sp.hi]
	}
}
