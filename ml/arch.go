package ml

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph-building code reads much better unqualified
)

// initKind says how a parameter is initialised.
type initKind int

const (
	initZeros  initKind = iota
	initHe              // uniform ±sqrt(6/fanIn): layers followed by ReLU
	initGlorot          // uniform ±sqrt(6/(fanIn+fanOut)): output layers
	initEmbed           // uniform ±0.05 (Keras embedding default)
)

// paramDef is one trainable tensor of an architecture.
type paramDef struct {
	name          string
	shape         []int
	init          initKind
	fanIn, fanOut int
}

// arch is an architecture: its ordered parameters and its forward pass.
type arch struct {
	params []paramDef
	// forward maps x [B, InputDim] to the raw outputs [B, OutputDim]
	// (logits, or normalised regression values). p is indexed like params.
	forward func(p []*Node, x *Node) *Node
}

// buildArch lays out the parameters and forward pass for a resolved spec.
func buildArch(kind string, s *Spec) (*arch, error) {
	a := &arch{}
	out := s.OutputDim()
	switch kind {
	case KindLogReg, KindLinReg:
		d := a.dense("dense_0", s.InputDim, out, initGlorot)
		a.forward = func(p []*Node, x *Node) *Node { return d(p, x) }
	case KindMLP:
		tower := a.tower("", s.InputDim, s.Hidden, out)
		a.forward = func(p []*Node, x *Node) *Node { return tower(p, x) }
	case KindCNN:
		h, w, c := s.ImageShape[0], s.ImageShape[1], s.ImageShape[2]
		type convRef struct {
			k, pad, pool int
			w, b         int
		}
		var convs []convRef
		cin := c
		for i, l := range s.Conv {
			name := fmt.Sprintf("conv_%d", i)
			fan := l.Kernel * l.Kernel * cin
			wi := a.add(paramDef{name: name + "/weights", shape: []int{l.Kernel, l.Kernel, cin, l.Filters}, init: initHe, fanIn: fan, fanOut: l.Filters})
			bi := a.add(paramDef{name: name + "/biases", shape: []int{l.Filters}})
			convs = append(convs, convRef{k: l.Kernel, pad: l.Pad, pool: l.Pool, w: wi, b: bi})
			cin = l.Filters
		}
		oh, ow, oc, err := convOutputShape(h, w, c, s.Conv)
		if err != nil {
			return nil, err
		}
		tower := a.tower("", oh*ow*oc, s.Hidden, out)
		a.forward = func(p []*Node, x *Node) *Node {
			// Activations are laid out channels-first, [C, B, H, W], so that
			// every matmul of the im2col convolutions and of their gradients
			// has a layout the Go backend multiplies without transposing the
			// large patch matrices (see conv2D).
			batch := x.Shape().Dimensions[0]
			z := Reshape(x, batch, h, w, c)
			if c == 1 {
				z = Reshape(z, 1, batch, h, w)
			} else {
				z = TransposeAllAxes(z, 3, 0, 1, 2)
			}
			for _, cv := range convs {
				z = conv2D(z, p[cv.w], cv.k, cv.pad)
				z = relu(Add(z, Reshape(p[cv.b], -1, 1, 1, 1)))
				z = meanPool(z, cv.pool)
			}
			// Flatten in (h, w, c) order, i.e. channels-last like the input.
			z = TransposeAllAxes(z, 1, 2, 3, 0)
			return tower(p, Reshape(z, batch, -1))
		}
	case KindWideDeep:
		num := s.numericColumns()
		type embRef struct{ col, card, idx int }
		var embs []embRef
		wideIn := len(num)
		for i, cc := range s.Categorical {
			idx := a.add(paramDef{name: fmt.Sprintf("embedding_%d/embeddings", i), shape: []int{cc.Cardinality, s.EmbeddingDim}, init: initEmbed})
			embs = append(embs, embRef{col: cc.Index, card: cc.Cardinality, idx: idx})
			wideIn += cc.Cardinality
		}
		deepIn := len(num) + len(s.Categorical)*s.EmbeddingDim
		if deepIn == 0 {
			return nil, fmt.Errorf("ml: widedeep: no input columns")
		}
		deep := a.tower("deep/", deepIn, s.Hidden, out)
		wideW := a.add(paramDef{name: "wide/weights", shape: []int{wideIn, out}, init: initZeros, fanIn: wideIn, fanOut: out})
		a.forward = func(p []*Node, x *Node) *Node {
			var deepParts, wideParts []*Node
			if len(num) > 0 {
				xn := selectColumns(x, num)
				deepParts = append(deepParts, xn)
				wideParts = append(wideParts, xn)
			}
			for _, e := range embs {
				col := Slice(x, AxisRange(), AxisRange(e.col, e.col+1))
				col = Where(IsNaN(col), Scalar(x.Graph(), dtypes.Float32, -1), col)
				oneHot := OneHot(Reshape(ConvertDType(col, dtypes.Int32), -1), e.card, dtypes.Float32) // [B, card]
				wideParts = append(wideParts, oneHot)
				// Embedding lookup as a one-hot matmul: exact, and its gradient is a plain matmul.
				deepParts = append(deepParts, MatMul(oneHot, p[e.idx]))
			}
			deepOut := deep(p, concat(deepParts))
			return Add(deepOut, MatMul(concat(wideParts), p[wideW]))
		}
	default:
		return nil, fmt.Errorf("ml: unknown model kind %q", kind)
	}
	return a, nil
}

func (a *arch) add(d paramDef) int {
	a.params = append(a.params, d)
	return len(a.params) - 1
}

// dense adds a fully connected layer and returns its (linear) function.
func (a *arch) dense(name string, in, out int, init initKind) func(p []*Node, x *Node) *Node {
	wi := a.add(paramDef{name: name + "/weights", shape: []int{in, out}, init: init, fanIn: in, fanOut: out})
	bi := a.add(paramDef{name: name + "/biases", shape: []int{out}})
	return func(p []*Node, x *Node) *Node {
		return Add(MatMul(x, p[wi]), InsertAxes(p[bi], 0))
	}
}

// tower adds ReLU hidden layers followed by a linear output layer, named
// prefix+"dense_<i>".
func (a *arch) tower(prefix string, in int, hidden []int, out int) func(p []*Node, x *Node) *Node {
	var layers []func(p []*Node, x *Node) *Node
	for i, h := range hidden {
		layers = append(layers, a.dense(fmt.Sprintf("%sdense_%d", prefix, i), in, h, initHe))
		in = h
	}
	last := a.dense(fmt.Sprintf("%sdense_%d", prefix, len(hidden)), in, out, initGlorot)
	return func(p []*Node, x *Node) *Node {
		for _, l := range layers {
			x = relu(l(p, x))
		}
		return last(p, x)
	}
}

func relu(x *Node) *Node { return Where(GreaterOrEqual(x, ZerosLike(x)), x, ZerosLike(x)) }

func concat(parts []*Node) *Node {
	if len(parts) == 1 {
		return parts[0]
	}
	return Concatenate(parts, -1)
}

// selectColumns returns x[:, cols] built from slices of contiguous runs.
func selectColumns(x *Node, cols []int) *Node {
	var parts []*Node
	for i := 0; i < len(cols); {
		j := i + 1
		for j < len(cols) && cols[j] == cols[j-1]+1 {
			j++
		}
		parts = append(parts, Slice(x, AxisRange(), AxisRange(cols[i], cols[j-1]+1)))
		i = j
	}
	return concat(parts)
}

// conv2D is a stride-1 convolution of x [C, B, H, W] (channels-first) with
// kernel [k, k, C, O] and zero padding pad, returning [O, B, H', W']. It is
// computed as im2col — the k² shifted windows stacked into a patch matrix
// Pᵀ [k·k·C, B·H'·W'] — and one matmul Wᵀ·Pᵀ. With this orientation the
// forward product and both gradient products (W·G and G·P) all have the
// contracting axis where the Go backend's matmul wants it, so the big patch
// and gradient matrices are never transposed. The backend's own
// ConvGeneral (and its gradient) is ~20× slower on MNIST-sized inputs, and
// Pad has no gradient there, so padding concatenates zeros.
func conv2D(x, kernel *Node, k, pad int) *Node {
	if pad > 0 {
		x = zeroPad(x, 2, pad)
		x = zeroPad(x, 3, pad)
	}
	d := x.Shape().Dimensions
	c, b, h, w := d[0], d[1], d[2], d[3]
	oh, ow := h-k+1, w-k+1
	var pt *Node
	if k == 1 {
		pt = x
	} else {
		parts := make([]*Node, 0, k*k)
		for i := 0; i < k; i++ {
			for j := 0; j < k; j++ {
				parts = append(parts, Slice(x, AxisRange(), AxisRange(), AxisRange(i, i+oh), AxisRange(j, j+ow)))
			}
		}
		pt = Stack(parts, 0) // [k*k, C, B, oh, ow]: row index (i·k+j)·C+c, like the kernel's
	}
	o := kernel.Shape().Dimensions[3]
	wt := Transpose(Reshape(kernel, k*k*c, o), 0, 1) // [O, k*k*C], small
	y := MatMul(wt, Reshape(pt, k*k*c, b*oh*ow))
	return Reshape(y, o, b, oh, ow)
}

// zeroPad pads axis of x with n zeros on both sides.
func zeroPad(x *Node, axis, n int) *Node {
	dims := x.Shape().Clone().Dimensions
	dims[axis] = n
	z := Zeros(x.Graph(), shapes.Make(x.DType(), dims...))
	return Concatenate([]*Node{z, x, z}, axis)
}

// meanPool averages non-overlapping pool×pool windows of x [C, B, H, W]
// (cropping a remainder), via reshape + mean, whose gradient is a broadcast.
func meanPool(x *Node, pool int) *Node {
	if pool <= 1 {
		return x
	}
	d := x.Shape().Dimensions
	c, b, h, w := d[0], d[1], d[2], d[3]
	oh, ow := h/pool, w/pool
	if oh*pool != h || ow*pool != w {
		x = Slice(x, AxisRange(), AxisRange(), AxisRange(0, oh*pool), AxisRange(0, ow*pool))
	}
	x = Reshape(x, c, b, oh, pool, ow, pool)
	return ReduceMean(x, 3, 5)
}

// initParams draws the initial values of the architecture's parameters.
func initParams(defs []paramDef, seed int64) [][]float32 {
	r := newRNG(seed, 1)
	out := make([][]float32, len(defs))
	for i, d := range defs {
		n := 1
		for _, s := range d.shape {
			n *= s
		}
		v := make([]float32, n)
		switch d.init {
		case initHe:
			lim := math.Sqrt(6 / float64(max(d.fanIn, 1)))
			for j := range v {
				v[j] = r.uniform(lim)
			}
		case initGlorot:
			lim := math.Sqrt(6 / float64(max(d.fanIn+d.fanOut, 1)))
			for j := range v {
				v[j] = r.uniform(lim)
			}
		case initEmbed:
			for j := range v {
				v[j] = r.uniform(0.05)
			}
		}
		out[i] = v
	}
	return out
}
