// Package ml is teeml's machine-learning core: a small set of models
// (logistic/linear regression, MLP, CNN, Wide&Deep) built as GoMLX
// computation graphs and executed by GoMLX's pure-Go backend
// (github.com/gomlx/compute/gobackend: no cgo, no XLA, builds with
// CGO_ENABLED=0).
//
// A Model owns its parameters; they are exchanged with the rest of teeml
// only as tensor.Weights (ordered, named float32 tensors), so federated
// averaging, safetensors files and split models never see GoMLX types.
// (kind, Spec, seed) determine the initial weights bit for bit (a
// SplitMix64 stream, independent of Go version and platform), and Spec is
// plain JSON (Model.Metadata / NewFromMetadata) so a weights file can carry
// what is needed to rebuild its model.
//
// Output conventions: regression models have one output (trained on the
// target normalised by Spec.TargetMean/TargetStd, predicted in target
// units); binary classification uses one sigmoid logit (Predict reports
// [1-p, p]); more than two classes use softmax over NumClasses logits —
// so "logreg" is binary logistic regression for 2 classes and multinomial
// (softmax) regression otherwise.
//
// Graphs are built with GoMLX's core/graph package (autodiff via
// graph.Gradient) and the optimizers (SGD with momentum, Adam; L2 weight
// decay) are graph ops in the train-step graph; parameters and optimizer
// state stay backend tensors between steps. Each Model compiles one
// train-step graph per (optimizer, batch size) and one prediction graph per
// evaluation batch size, and reuses them across Train/Evaluate/SetWeights
// calls. Convolutions are im2col + matmul and pooling is mean pooling
// (MaxPool has no gradient in the Go backend, and its ConvGeneral is ~20×
// slower than im2col).
//
// Threads: SetThreads(n) sets GOMAXPROCS and the backend's worker pool;
// results do not depend on the thread count.
//
// A Model may be used from several goroutines (its methods serialise on an
// internal mutex), and several models may train concurrently.
package ml

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/tensor"
)

// Metadata keys written by Model.Metadata (e.g. into a safetensors header).
const (
	MetaKind = "teeml.model.kind"
	MetaSpec = "teeml.model.spec"
	MetaSeed = "teeml.model.seed"
)

// Model is a trainable model. Create it with New.
type Model struct {
	mu      sync.Mutex
	trainMu sync.Mutex // serialises Train calls; mu is released during the callbacks
	kind    string
	spec    Spec
	seed    int64
	arch    *arch
	backend compute.Backend

	// params are the current parameter values, on the backend, in arch order.
	params []*tensors.Tensor

	// Compiled executables, built once per model and reused by every
	// Train/Predict call (graph.Exec caches one compiled graph per input shape).
	predictExec *graph.Exec
	trainExecs  map[string]*graph.Exec
	compiles    atomic.Int64 // graph constructions, for tests
}

// New builds a model of the given kind ("logreg", "linreg", "mlp", "cnn",
// "widedeep") for spec, with initial weights drawn deterministically from
// seed: the same (kind, spec, seed) gives bit-identical weights everywhere.
func New(kind string, spec Spec, seed int64) (*Model, error) {
	rs, err := spec.resolve(kind)
	if err != nil {
		return nil, err
	}
	a, err := buildArch(kind, &rs)
	if err != nil {
		return nil, err
	}
	b, err := Backend()
	if err != nil {
		return nil, err
	}
	m := &Model{kind: kind, spec: rs, seed: seed, arch: a, backend: b, trainExecs: map[string]*graph.Exec{}}
	for i, v := range initParams(a.params, seed) {
		m.params = append(m.params, tensors.FromFlatDataAndDimensions(v, a.params[i].shape...))
	}
	return m, nil
}

// NewFromMetadata rebuilds a model (with fresh weights from the recorded
// seed, or 0) from metadata written by Model.Metadata; load the trained
// weights with SetWeights afterwards.
func NewFromMetadata(md map[string]string) (*Model, error) {
	kind, ok := md[MetaKind]
	if !ok {
		return nil, fmt.Errorf("ml: metadata has no %q", MetaKind)
	}
	specJSON, ok := md[MetaSpec]
	if !ok {
		return nil, fmt.Errorf("ml: metadata has no %q", MetaSpec)
	}
	spec, err := ParseSpec(specJSON)
	if err != nil {
		return nil, err
	}
	var seed int64
	if s, ok := md[MetaSeed]; ok {
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			return nil, fmt.Errorf("ml: bad %s %q", MetaSeed, s)
		}
	}
	return New(kind, spec, seed)
}

// Kind returns the model kind given to New.
func (m *Model) Kind() string { return m.kind }

// Spec returns the resolved spec (defaults filled in).
func (m *Model) Spec() Spec {
	s, _ := m.spec.resolve(m.kind) // cheap deep copy; cannot fail, it was resolved before
	return s
}

// Seed returns the initialisation seed given to New.
func (m *Model) Seed() int64 { return m.seed }

// OutputDim is the width of each row returned by Predict: NumClasses for
// classification (2 for binary), 1 for regression.
func (m *Model) OutputDim() int {
	if m.spec.Task == datasets.Classification {
		return m.spec.NumClasses
	}
	return 1
}

// Metadata describes the model (kind, spec JSON, seed) as string pairs, for
// a safetensors header; NewFromMetadata reverses it.
func (m *Model) Metadata() map[string]string {
	return map[string]string{
		MetaKind: m.kind,
		MetaSpec: m.spec.JSON(),
		MetaSeed: strconv.FormatInt(m.seed, 10),
	}
}

// NumParams is the total number of scalar parameters.
func (m *Model) NumParams() int {
	n := 0
	for _, d := range m.arch.params {
		n += tensor.NumElements(d.shape)
	}
	return n
}

// String is a one-line description.
func (m *Model) String() string {
	return fmt.Sprintf("%s(%d params, %s)", m.kind, m.NumParams(), m.spec.JSON())
}

// Weights returns a copy of the current parameters, in a fixed order with
// stable names such as "dense_0/weights", "dense_0/biases", "conv_0/weights"
// ([k, k, in, out]), "embedding_0/embeddings", "wide/weights".
func (m *Model) Weights() tensor.Weights {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := make(tensor.Weights, len(m.params))
	for i, p := range m.params {
		d := m.arch.params[i]
		data, err := tensors.CopyFlatData[float32](p)
		if err != nil { // only if the tensor was finalized, which the model never leaves it in
			panic(fmt.Sprintf("ml: reading %s: %v", d.name, err))
		}
		w[i] = tensor.Tensor{Name: d.name, Shape: append([]int(nil), d.shape...), Data: data}
	}
	return w
}

// SetWeights replaces the parameters with a copy of w, which must have the
// same names and shapes in the same order as Weights() (checked with
// tensor.Weights.Compatible) and only finite values.
func (m *Model) SetWeights(w tensor.Weights) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.template().Compatible(w); err != nil {
		return fmt.Errorf("ml: SetWeights on %s: %w", m.kind, err)
	}
	if err := w.AllFinite(); err != nil {
		return fmt.Errorf("ml: SetWeights on %s: %w", m.kind, err)
	}
	for i, t := range w {
		old := m.params[i]
		m.params[i] = tensors.FromFlatDataAndDimensions(t.Data, t.Shape...)
		old.FinalizeAll()
	}
	return nil
}

// template returns names and shapes (no data beyond zero-length checks) of the parameters.
func (m *Model) template() tensor.Weights {
	w := make(tensor.Weights, len(m.arch.params))
	for i, d := range m.arch.params {
		w[i] = tensor.Tensor{Name: d.name, Shape: d.shape, Data: make([]float32, tensor.NumElements(d.shape))}
	}
	return w
}
