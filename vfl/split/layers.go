// Package split holds the two halves of the split models of teeml vertical
// federated learning, with explicit forward and backward passes in plain Go.
//
// A follower owns a bottom Tower over its own columns and sends the tower's
// output (the activations "act1_f") to the leader; the leader owns its own
// tower, the head joining both and the labels, computes the loss and returns
// d loss / d act1_f to the follower, which back-propagates it through its
// tower. Two architectures are provided:
//
//   - lr: split logistic regression. The follower's tower is linear with one
//     output (x_f·w_f); the leader adds its own x_l·w_l + b and applies the
//     sigmoid.
//   - widedeep: the follower's tower embeds categorical columns and runs a
//     ReLU MLP to act1_f (width ActWidth); the leader runs its own tower,
//     concatenates ReLU(own) and ReLU(act1_f), applies a dense head and adds a
//     wide (linear, one-hot) part over its own columns.
//
// Batches are tiny (tens of rows) and so are the layers, so hand-written
// loops beat compiling a graph per step (the benchmark in vfl/run measures
// a whole iteration). Everything is deterministic for a given seed: the
// initialisation draws from a PCG stream and the loops run in a fixed order.
package split

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// param is one trainable tensor with its gradient and Adam moments.
type param struct {
	name  string
	shape []int
	w, g  []float32
	m, v  []float32
}

func newParam(name string, shape ...int) *param {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return &param{name: name, shape: shape, w: make([]float32, n), g: make([]float32, n), m: make([]float32, n), v: make([]float32, n)}
}

// initUniform fills p with U(-limit, limit), the Glorot limit for fanIn/fanOut.
func (p *param) initGlorot(rng *rand.Rand, fanIn, fanOut int) {
	limit := math.Sqrt(6 / float64(fanIn+fanOut))
	for i := range p.w {
		p.w[i] = float32((rng.Float64()*2 - 1) * limit)
	}
}

func (p *param) zeroGrad() { clear(p.g) }

// dense is a fully connected layer y = x·W + b, caching its input for the
// backward pass.
type dense struct {
	in, out int
	w, b    *param
	x       []float32 // cached input, batch×in
	y       []float32 // output buffer, batch×out
	dx      []float32 // input-gradient buffer
}

func newDense(name string, in, out int, rng *rand.Rand) *dense {
	d := &dense{in: in, out: out, w: newParam(name+"/kernel", in, out), b: newParam(name+"/bias", out)}
	d.w.initGlorot(rng, in, out)
	return d
}

func (d *dense) params() []*param { return []*param{d.w, d.b} }

func (d *dense) forward(x []float32, batch int) []float32 {
	d.x = x
	d.y = resize(d.y, batch*d.out)
	w, b := d.w.w, d.b.w
	for r := range batch {
		yr := d.y[r*d.out : (r+1)*d.out]
		copy(yr, b)
		xr := x[r*d.in : (r+1)*d.in]
		for i, xv := range xr {
			if xv == 0 {
				continue
			}
			wr := w[i*d.out : (i+1)*d.out]
			for j, wv := range wr {
				yr[j] += xv * wv
			}
		}
	}
	return d.y
}

// backward accumulates the parameter gradients for dy and returns dx.
func (d *dense) backward(dy []float32, batch int) []float32 {
	d.dx = resize(d.dx, batch*d.in)
	clear(d.dx)
	w, gw, gb := d.w.w, d.w.g, d.b.g
	for r := range batch {
		dyr := dy[r*d.out : (r+1)*d.out]
		xr := d.x[r*d.in : (r+1)*d.in]
		dxr := d.dx[r*d.in : (r+1)*d.in]
		for j, g := range dyr {
			gb[j] += g
		}
		for i, xv := range xr {
			wr := w[i*d.out : (i+1)*d.out]
			gwr := gw[i*d.out : (i+1)*d.out]
			var s float32
			for j, g := range dyr {
				gwr[j] += xv * g
				s += wr[j] * g
			}
			dxr[i] = s
		}
	}
	return d.dx
}

func resize(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// relu applies max(0, x) into out and returns it.
func relu(x, out []float32) []float32 {
	out = resize(out, len(x))
	for i, v := range x {
		out[i] = max(v, 0)
	}
	return out
}

// reluBackward returns dy masked by x > 0 (into out).
func reluBackward(x, dy, out []float32) []float32 {
	out = resize(out, len(x))
	for i, v := range x {
		if v > 0 {
			out[i] = dy[i]
		} else {
			out[i] = 0
		}
	}
	return out
}

// Adam is the optimiser both parties use (Kingma & Ba, 2015), with its step
// count kept so a checkpoint restores it exactly.
type Adam struct {
	LR, Beta1, Beta2, Eps float64
	T                     int64
}

// NewAdam returns Adam with the usual defaults and learning rate lr.
func NewAdam(lr float64) *Adam { return &Adam{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8} }

func (a *Adam) step(ps []*param) {
	a.T++
	b1, b2 := float32(a.Beta1), float32(a.Beta2)
	c1 := 1 - math.Pow(a.Beta1, float64(a.T))
	c2 := 1 - math.Pow(a.Beta2, float64(a.T))
	lr := float32(a.LR * math.Sqrt(c2) / c1)
	eps := float32(a.Eps * math.Sqrt(c2))
	for _, p := range ps {
		for i, g := range p.g {
			m := b1*p.m[i] + (1-b1)*g
			v := b2*p.v[i] + (1-b2)*g*g
			p.m[i], p.v[i] = m, v
			p.w[i] -= lr * m / (float32(math.Sqrt(float64(v))) + eps)
		}
	}
}

func checkFinite(what string, x []float32) error {
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("split: %s[%d] is %v", what, i, v)
		}
	}
	return nil
}
