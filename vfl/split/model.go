package split

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/teeml/teeml/ml/tensor"
)

// Kind names a split architecture.
type Kind string

const (
	KindLR       Kind = "lr"
	KindWideDeep Kind = "widedeep"
)

// ActName is the name of the follower's activations in the bridge's Data
// frames, and ActGradName that of their gradient (as in Fedlearner).
const (
	ActName     = "act1_f"
	ActGradName = "act1_f_grad"
)

// Column is one input column of a party: numeric (Cardinality 0) or
// categorical with values 0..Cardinality-1 (any other value encodes as
// "unknown category": a zero embedding / zero one-hot).
type Column struct {
	Name        string `json:"name"`
	Cardinality int    `json:"cardinality,omitempty"`
}

// Spec describes one party's half.
type Spec struct {
	Kind    Kind     `json:"kind"`
	Columns []Column `json:"columns"`
	// ActWidth is the width of act1_f (1 for lr).
	ActWidth int `json:"act_width"`
	// Hidden are the hidden layer widths of the (deep) towers (widedeep).
	Hidden []int `json:"hidden,omitempty"`
	// Embedding is the embedding width of categorical columns (widedeep).
	Embedding int `json:"embedding,omitempty"`
	// LearningRate of this party's Adam optimiser.
	LearningRate float64 `json:"learning_rate"`
	Seed         int64   `json:"seed"`
}

// Defaults for widedeep.
const (
	DefaultActWidth  = 16
	DefaultEmbedding = 4
)

// DefaultHidden is the default widedeep tower.
var DefaultHidden = []int{32}

// Validate checks the spec.
func (s Spec) Validate() error {
	switch s.Kind {
	case KindLR:
		if s.ActWidth != 1 {
			return fmt.Errorf("split: lr: act width %d, must be 1", s.ActWidth)
		}
	case KindWideDeep:
		if s.ActWidth < 1 || s.ActWidth > 1024 {
			return fmt.Errorf("split: widedeep: act width %d outside 1..1024", s.ActWidth)
		}
		if s.Embedding < 1 || s.Embedding > 256 {
			return fmt.Errorf("split: widedeep: embedding width %d outside 1..256", s.Embedding)
		}
		for _, h := range s.Hidden {
			if h < 1 || h > 4096 {
				return fmt.Errorf("split: widedeep: hidden width %d outside 1..4096", h)
			}
		}
	default:
		return fmt.Errorf("split: unknown model kind %q (want lr or widedeep)", s.Kind)
	}
	if !(s.LearningRate > 0 && s.LearningRate < 10) {
		return fmt.Errorf("split: learning rate %v outside (0, 10)", s.LearningRate)
	}
	for _, c := range s.Columns {
		if c.Cardinality < 0 || c.Cardinality > 1<<20 {
			return fmt.Errorf("split: column %q: cardinality %d outside 0..%d", c.Name, c.Cardinality, 1<<20)
		}
	}
	return nil
}

// Distinct PCG streams so the two parties never draw correlated weights.
const (
	streamFollower = 0x7666_6c2d_666f_6c6c // "vfl-foll"
	streamLeader   = 0x7666_6c2d_6c65_6164 // "vfl-lead"
)

// tower encodes a party's columns (numeric as is, categorical as an
// embedding or one-hot) and runs dense layers with ReLU between them; its
// output is linear.
type tower struct {
	cols   []Column
	emb    []*param // per column; nil for numeric or one-hot columns
	embDim int      // 0: categorical columns are one-hot
	layers []*dense
	inDim  int
	out    int

	enc       []float32   // encoded input, batch×inDim
	x         []float32   // raw input of the last forward
	pre, post [][]float32 // per hidden layer: pre-activation, post-ReLU
	buf       []float32
}

func newTower(prefix string, cols []Column, embDim int, hidden []int, out int, rng *rand.Rand) *tower {
	t := &tower{cols: cols, embDim: embDim, out: out, emb: make([]*param, len(cols))}
	for i, c := range cols {
		switch {
		case c.Cardinality == 0:
			t.inDim++
		case embDim > 0:
			p := newParam(prefix+"embedding_"+strconv.Itoa(i)+"/embeddings", c.Cardinality, embDim)
			// Small normal-ish init, as Keras' default uniform(-0.05, 0.05).
			for j := range p.w {
				p.w[j] = float32(rng.Float64()*0.1 - 0.05)
			}
			t.emb[i] = p
			t.inDim += embDim
		default:
			t.inDim += c.Cardinality
		}
	}
	in := t.inDim
	for i, h := range hidden {
		t.layers = append(t.layers, newDense(prefix+"dense_"+strconv.Itoa(i), in, h, rng))
		in = h
	}
	t.layers = append(t.layers, newDense(prefix+"dense_"+strconv.Itoa(len(hidden)), in, out, rng))
	t.pre = make([][]float32, len(hidden))
	t.post = make([][]float32, len(hidden))
	return t
}

func (t *tower) params() []*param {
	var ps []*param
	for _, p := range t.emb {
		if p != nil {
			ps = append(ps, p)
		}
	}
	for _, l := range t.layers {
		ps = append(ps, l.params()...)
	}
	return ps
}

// category returns the category index of v for column c, or -1.
func category(v float32, card int) int {
	if v != v || v < 0 || v >= float32(card) {
		return -1
	}
	return int(v)
}

func (t *tower) encode(x []float32, batch int) []float32 {
	d := len(t.cols)
	t.enc = resize(t.enc, batch*t.inDim)
	clear(t.enc)
	for r := range batch {
		row := x[r*d : (r+1)*d]
		o := t.enc[r*t.inDim : (r+1)*t.inDim]
		k := 0
		for i, c := range t.cols {
			switch {
			case c.Cardinality == 0:
				o[k] = row[i]
				k++
			case t.emb[i] != nil:
				if cat := category(row[i], c.Cardinality); cat >= 0 {
					copy(o[k:k+t.embDim], t.emb[i].w[cat*t.embDim:(cat+1)*t.embDim])
				}
				k += t.embDim
			default:
				if cat := category(row[i], c.Cardinality); cat >= 0 {
					o[k+cat] = 1
				}
				k += c.Cardinality
			}
		}
	}
	return t.enc
}

func (t *tower) forward(x []float32, batch int) []float32 {
	t.x = x
	h := t.encode(x, batch)
	for i, l := range t.layers {
		h = l.forward(h, batch)
		if i < len(t.layers)-1 {
			t.pre[i] = h
			t.post[i] = relu(h, t.post[i])
			h = t.post[i]
		}
	}
	return h
}

// backward accumulates gradients for d output (batch×out).
func (t *tower) backward(dout []float32, batch int) {
	g := dout
	for i := len(t.layers) - 1; i >= 0; i-- {
		g = t.layers[i].backward(g, batch)
		if i > 0 {
			t.buf = reluBackward(t.pre[i-1], g, t.buf)
			g = t.buf
		}
	}
	if t.embDim == 0 {
		return
	}
	d := len(t.cols)
	for r := range batch {
		row := t.x[r*d : (r+1)*d]
		gr := g[r*t.inDim : (r+1)*t.inDim]
		k := 0
		for i, c := range t.cols {
			switch {
			case c.Cardinality == 0:
				k++
			case t.emb[i] != nil:
				if cat := category(row[i], c.Cardinality); cat >= 0 {
					eg := t.emb[i].g[cat*t.embDim : (cat+1)*t.embDim]
					for j := range eg {
						eg[j] += gr[k+j]
					}
				}
				k += t.embDim
			default:
				k += c.Cardinality
			}
		}
	}
}

// Follower is the follower's half: its tower.
type Follower struct {
	spec  Spec
	tower *tower
	opt   *Adam
	batch int
	ps    []*param
}

// NewFollower builds the follower's half with weights drawn from spec.Seed.
func NewFollower(spec Spec) (*Follower, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if len(spec.Columns) == 0 {
		return nil, errors.New("split: follower has no columns")
	}
	rng := rand.New(rand.NewPCG(uint64(spec.Seed), streamFollower))
	var t *tower
	if spec.Kind == KindLR {
		t = newTower("follower/", spec.Columns, 0, nil, 1, rng)
	} else {
		t = newTower("follower/deep/", spec.Columns, spec.Embedding, spec.Hidden, spec.ActWidth, rng)
	}
	f := &Follower{spec: spec, tower: t, opt: NewAdam(spec.LearningRate)}
	f.ps = t.params()
	return f, nil
}

// Spec returns the follower's spec.
func (f *Follower) Spec() Spec { return f.spec }

// Forward computes act1_f (batch×ActWidth) for x (batch×len(Columns)). The
// result is valid until the next call.
func (f *Follower) Forward(x []float32, batch int) ([]float32, error) {
	if len(x) != batch*len(f.spec.Columns) {
		return nil, fmt.Errorf("split: follower forward: %d values for %d rows of %d columns", len(x), batch, len(f.spec.Columns))
	}
	f.batch = batch
	return f.tower.forward(x, batch), nil
}

// Backward back-propagates the leader's d loss/d act1_f through the tower of
// the last Forward and applies one optimiser step.
func (f *Follower) Backward(dact []float32) error {
	if want := f.batch * f.spec.ActWidth; len(dact) != want || want == 0 {
		return fmt.Errorf("split: follower backward: gradient has %d values, want %d (batch %d × width %d)", len(dact), want, f.batch, f.spec.ActWidth)
	}
	if err := checkFinite(ActGradName, dact); err != nil {
		return err
	}
	for _, p := range f.ps {
		p.zeroGrad()
	}
	f.tower.backward(dact, f.batch)
	f.opt.step(f.ps)
	return nil
}

// Steps returns the number of optimiser steps applied.
func (f *Follower) Steps() int64 { return f.opt.T }

// Weights returns a copy of the trained parameters.
func (f *Follower) Weights() tensor.Weights { return weights(f.ps) }

// State returns parameters and optimiser state, for checkpoints.
func (f *Follower) State() tensor.Weights { return state(f.ps, f.opt) }

// SetState restores a State.
func (f *Follower) SetState(w tensor.Weights) error { return setState(f.ps, f.opt, w) }

// SetWeights restores exported weights (for inference).
func (f *Follower) SetWeights(w tensor.Weights) error { return setWeights(f.ps, w) }

// Leader is the leader's half: its own towers, the head and the loss.
type Leader struct {
	spec Spec
	// lr: wide only; widedeep: deep tower + head + wide.
	deep *tower
	head *dense
	wide *tower
	opt  *Adam
	ps   []*param

	batch              int
	deepOut, actIn     []float32 // pre-ReLU inputs of the head
	hcat, dh, dact, dl []float32
	logits             []float32
}

// NewLeader builds the leader's half; spec.ActWidth is the width of the
// follower's act1_f.
func NewLeader(spec Spec) (*Leader, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(spec.Seed), streamLeader))
	l := &Leader{spec: spec, opt: NewAdam(spec.LearningRate)}
	if spec.Kind == KindWideDeep && len(spec.Columns) > 0 {
		l.deep = newTower("leader/deep/", spec.Columns, spec.Embedding, spec.Hidden, spec.ActWidth, rng)
		l.ps = append(l.ps, l.deep.params()...)
	}
	if spec.Kind == KindWideDeep {
		in := spec.ActWidth
		if l.deep != nil {
			in += spec.ActWidth
		}
		l.head = newDense("leader/head", in, 1, rng)
		l.ps = append(l.ps, l.head.params()...)
	}
	l.wide = newTower("leader/wide/", spec.Columns, 0, nil, 1, rng)
	if spec.Kind == KindWideDeep {
		// The wide part starts at zero, as ml's widedeep does: the deep
		// part carries the early signal.
		clear(l.wide.layers[0].w.w)
	}
	l.ps = append(l.ps, l.wide.params()...)
	return l, nil
}

// Spec returns the leader's spec.
func (l *Leader) Spec() Spec { return l.spec }

// forward returns the logits (batch) for the leader's rows x and the
// follower's act.
func (l *Leader) forward(x, act []float32, batch int) ([]float32, error) {
	if len(x) != batch*len(l.spec.Columns) {
		return nil, fmt.Errorf("split: leader forward: %d values for %d rows of %d columns", len(x), batch, len(l.spec.Columns))
	}
	if len(act) != batch*l.spec.ActWidth {
		return nil, fmt.Errorf("split: leader forward: %s has %d values, want %d (batch %d × width %d)", ActName, len(act), batch*l.spec.ActWidth, batch, l.spec.ActWidth)
	}
	if err := checkFinite(ActName, act); err != nil {
		return nil, err
	}
	l.batch = batch
	l.logits = resize(l.logits, batch)
	wide := l.wide.forward(x, batch)
	copy(l.logits, wide)
	if l.spec.Kind == KindLR {
		for r := range batch {
			l.logits[r] += act[r]
		}
		return l.logits, nil
	}
	a := l.spec.ActWidth
	in := l.head.in
	l.actIn = act
	l.hcat = resize(l.hcat, batch*in)
	if l.deep != nil {
		l.deepOut = l.deep.forward(x, batch)
	}
	for r := range batch {
		h := l.hcat[r*in : (r+1)*in]
		k := 0
		if l.deep != nil {
			for j, v := range l.deepOut[r*a : (r+1)*a] {
				h[j] = max(v, 0)
			}
			k = a
		}
		for j, v := range act[r*a : (r+1)*a] {
			h[k+j] = max(v, 0)
		}
	}
	head := l.head.forward(l.hcat, batch)
	for r := range batch {
		l.logits[r] += head[r]
	}
	return l.logits, nil
}

// Predict returns P(y=1) per row.
func (l *Leader) Predict(x, act []float32, batch int) ([]float64, error) {
	logits, err := l.forward(x, act, batch)
	if err != nil {
		return nil, err
	}
	p := make([]float64, batch)
	for i, z := range logits {
		p[i] = sigmoid(float64(z))
	}
	return p, nil
}

// TrainStep runs forward, the mean binary cross-entropy against y (0/1),
// backward and one optimiser step on the leader's parameters. It returns
// the loss and d loss/d act1_f (batch×ActWidth, valid until the next call).
func (l *Leader) TrainStep(x, act, y []float32, batch int) (float64, []float32, error) {
	if len(y) != batch {
		return 0, nil, fmt.Errorf("split: leader train step: %d labels for %d rows", len(y), batch)
	}
	logits, err := l.forward(x, act, batch)
	if err != nil {
		return 0, nil, err
	}
	for _, p := range l.ps {
		p.zeroGrad()
	}
	l.dl = resize(l.dl, batch)
	loss := 0.0
	for r, z := range logits {
		p := sigmoid(float64(z))
		loss += bceWithLogits(float64(z), float64(y[r]))
		l.dl[r] = float32((p - float64(y[r])) / float64(batch))
	}
	loss /= float64(batch)
	a := l.spec.ActWidth
	l.dact = resize(l.dact, batch*a)
	l.wide.backward(l.dl, batch)
	if l.spec.Kind == KindLR {
		copy(l.dact, l.dl)
	} else {
		dh := l.head.backward(l.dl, batch)
		in := l.head.in
		k := 0
		if l.deep != nil {
			k = a
			l.dh = resize(l.dh, batch*a)
			for r := range batch {
				for j := range a {
					if l.deepOut[r*a+j] > 0 {
						l.dh[r*a+j] = dh[r*in+j]
					} else {
						l.dh[r*a+j] = 0
					}
				}
			}
		}
		for r := range batch {
			for j := range a {
				if l.actIn[r*a+j] > 0 {
					l.dact[r*a+j] = dh[r*in+k+j]
				} else {
					l.dact[r*a+j] = 0
				}
			}
		}
		if l.deep != nil {
			l.deep.backward(l.dh, batch)
		}
	}
	l.opt.step(l.ps)
	return loss, l.dact, nil
}

// Steps returns the number of optimiser steps applied.
func (l *Leader) Steps() int64 { return l.opt.T }

// Weights returns a copy of the trained parameters.
func (l *Leader) Weights() tensor.Weights { return weights(l.ps) }

// State returns parameters and optimiser state, for checkpoints.
func (l *Leader) State() tensor.Weights { return state(l.ps, l.opt) }

// SetState restores a State.
func (l *Leader) SetState(w tensor.Weights) error { return setState(l.ps, l.opt, w) }

// SetWeights restores exported weights (for inference).
func (l *Leader) SetWeights(w tensor.Weights) error { return setWeights(l.ps, w) }

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// bceWithLogits is -[y log σ(z) + (1-y) log(1-σ(z))], computed stably.
func bceWithLogits(z, y float64) float64 {
	return max(z, 0) - z*y + math.Log1p(math.Exp(-math.Abs(z)))
}

func weights(ps []*param) tensor.Weights {
	w := make(tensor.Weights, len(ps))
	for i, p := range ps {
		w[i] = tensor.Tensor{Name: p.name, Shape: append([]int(nil), p.shape...), Data: append([]float32(nil), p.w...)}
	}
	return w
}

const (
	adamM = "adam/m/"
	adamV = "adam/v/"
	adamT = "adam/t"
)

func state(ps []*param, opt *Adam) tensor.Weights {
	w := weights(ps)
	for _, p := range ps {
		w = append(w, tensor.Tensor{Name: adamM + p.name, Shape: append([]int(nil), p.shape...), Data: append([]float32(nil), p.m...)})
		w = append(w, tensor.Tensor{Name: adamV + p.name, Shape: append([]int(nil), p.shape...), Data: append([]float32(nil), p.v...)})
	}
	// The step count is stored as two float32 halves (exact up to 2^48).
	hi, lo := float32(opt.T>>24), float32(opt.T&(1<<24-1))
	return append(w, tensor.Tensor{Name: adamT, Shape: []int{2}, Data: []float32{hi, lo}})
}

func setWeights(ps []*param, w tensor.Weights) error {
	for _, p := range ps {
		t, ok := w.Get(p.name)
		if !ok {
			return fmt.Errorf("split: weights lack tensor %q", p.name)
		}
		if len(t.Data) != len(p.w) || !slices.Equal(t.Shape, p.shape) {
			return fmt.Errorf("split: tensor %q has shape %v, model needs %v", p.name, t.Shape, p.shape)
		}
		copy(p.w, t.Data)
	}
	return nil
}

func setState(ps []*param, opt *Adam, w tensor.Weights) error {
	if err := setWeights(ps, w); err != nil {
		return err
	}
	for _, p := range ps {
		for _, mv := range []struct {
			prefix string
			dst    []float32
		}{{adamM, p.m}, {adamV, p.v}} {
			t, ok := w.Get(mv.prefix + p.name)
			if !ok || len(t.Data) != len(mv.dst) {
				return fmt.Errorf("split: checkpoint lacks optimiser state %q", mv.prefix+p.name)
			}
			copy(mv.dst, t.Data)
		}
	}
	t, ok := w.Get(adamT)
	if !ok || len(t.Data) != 2 {
		return fmt.Errorf("split: checkpoint lacks optimiser step count %q", adamT)
	}
	opt.T = int64(t.Data[0])<<24 | int64(t.Data[1])
	return nil
}
