package ml

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/teeml/teeml/ml/datasets"
)

// maxEvalBatch bounds the rows per prediction graph execution.
const maxEvalBatch = 512

// Metrics are evaluation results. Loss is the mean cross-entropy
// (classification) or MSE in target units (regression). Accuracy is set for
// classification, AUC (ROC, from the positive-class probability) for binary
// classification when both classes occur, RMSE/MAE/R2 for regression;
// fields that do not apply are zero and omitted from JSON.
type Metrics struct {
	Task     datasets.Task `json:"task"`
	N        int           `json:"n"`
	Loss     float64       `json:"loss"`
	Accuracy float64       `json:"accuracy,omitempty"`
	AUC      float64       `json:"auc,omitempty"`
	RMSE     float64       `json:"rmse,omitempty"`
	MAE      float64       `json:"mae,omitempty"`
	R2       float64       `json:"r2,omitempty"`
	hasAUC   bool
}

// HasAUC reports whether AUC was computed.
func (m Metrics) HasAUC() bool { return m.hasAUC }

// Map returns the metrics that apply to the task, by name.
func (m Metrics) Map() map[string]float64 {
	out := map[string]float64{"loss": m.Loss}
	if m.Task == datasets.Classification {
		out["accuracy"] = m.Accuracy
		if m.hasAUC {
			out["auc"] = m.AUC
		}
	} else {
		out["rmse"], out["mae"], out["r2"] = m.RMSE, m.MAE, m.R2
	}
	return out
}

// String formats the applicable metrics, e.g. "loss=0.1234 accuracy=0.9722".
func (m Metrics) String() string {
	mp := m.Map()
	keys := make([]string, 0, len(mp))
	for k := range mp {
		keys = append(keys, k)
	}
	order := map[string]int{"loss": 0, "accuracy": 1, "auc": 2, "rmse": 3, "mae": 4, "r2": 5}
	slices.SortFunc(keys, func(a, b string) int { return order[a] - order[b] })
	var sb strings.Builder
	for i, k := range keys {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%s=%.4f", k, mp[k])
	}
	return sb.String()
}

// Predict returns, for every row of ds, the class probabilities
// (classification: N×NumClasses, binary as [1-p, p]) or the predicted target
// (regression: N×1), row-major. Labels are not needed.
func (m *Model) Predict(ds *datasets.Dataset) ([]float32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkDataset(ds, false); err != nil {
		return nil, err
	}
	return m.predict(ds.X, ds.N)
}

// PredictX is Predict on raw rows: x holds n rows of InputDim features.
func (m *Model) PredictX(x []float32, n int) ([]float32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.spec.InputDim
	if n <= 0 || len(x) != n*d {
		return nil, fmt.Errorf("ml: PredictX: need n > 0 rows of %d features, got %d values for n=%d", d, len(x), n)
	}
	if err := m.checkFeatures(x, d); err != nil {
		return nil, fmt.Errorf("ml: PredictX: %w", err)
	}
	return m.predict(x, n)
}

// PredictClasses returns the most probable class of every row (classification only).
func (m *Model) PredictClasses(ds *datasets.Dataset) ([]int, error) {
	if m.spec.Task != datasets.Classification {
		return nil, fmt.Errorf("ml: PredictClasses on a %s model", m.spec.Task)
	}
	p, err := m.Predict(ds)
	if err != nil {
		return nil, err
	}
	return argmaxRows(p, m.spec.NumClasses), nil
}

func argmaxRows(p []float32, k int) []int {
	out := make([]int, len(p)/k)
	for i := range out {
		row := p[i*k : (i+1)*k]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		out[i] = best
	}
	return out
}

// predict runs the forward pass in padded batches and post-processes the raw
// outputs in Go (softmax/sigmoid in float64, or de-normalisation).
func (m *Model) predict(x []float32, n int) ([]float32, error) {
	raw, err := m.rawOutputs(x, n)
	if err != nil {
		return nil, err
	}
	s := &m.spec
	switch {
	case s.Task == datasets.Regression:
		if s.TargetStd > 0 {
			for i, v := range raw {
				raw[i] = float32(float64(v)*s.TargetStd + s.TargetMean)
			}
		}
		return raw, nil
	case s.binary():
		out := make([]float32, 2*n)
		for i, z := range raw {
			p := sigmoid(float64(z))
			out[2*i], out[2*i+1] = float32(1-p), float32(p)
		}
		return out, nil
	default:
		k := s.NumClasses
		out := make([]float32, n*k)
		for i := 0; i < n; i++ {
			softmaxInto(out[i*k:(i+1)*k], raw[i*k:(i+1)*k])
		}
		return out, nil
	}
}

// rawOutputs returns the network outputs [n, OutputDim] for rows x.
func (m *Model) rawOutputs(x []float32, n int) ([]float32, error) {
	if m.predictExec == nil {
		P := len(m.params)
		e, err := NewExec(m.backend, func(g *Graph, in []*Node) []*Node {
			m.compiles.Add(1)
			return []*Node{m.arch.forward(in[:P], in[P])}
		})
		if err != nil {
			return nil, fmt.Errorf("ml: building predict graph: %w", err)
		}
		m.predictExec = e.WithName(m.kind + "_predict").SetMaxCache(-1)
	}
	d, k := m.spec.InputDim, m.spec.OutputDim()
	// One compiled graph per batch size: full batches of maxEvalBatch, or a
	// single batch rounded up to a multiple of 32 for small inputs.
	bs := min(maxEvalBatch, (n+31)/32*32)
	out := make([]float32, 0, n*k)
	xb := make([]float32, bs*d)
	args := make([]any, 0, len(m.params)+1)
	for lo := 0; lo < n; lo += bs {
		hi := min(lo+bs, n)
		copy(xb, x[lo*d:hi*d])
		clear(xb[(hi-lo)*d:])
		xt := tensors.FromFlatDataAndDimensions(xb, bs, d)
		args = args[:0]
		for _, p := range m.params {
			args = append(args, p)
		}
		args = append(args, xt)
		res, err := m.predictExec.Exec(args...)
		xt.FinalizeAll()
		if err != nil {
			return nil, fmt.Errorf("ml: predict: %w", err)
		}
		err = tensors.ConstFlatData(res[0], func(flat []float32) {
			out = append(out, flat[:(hi-lo)*k]...)
		})
		res[0].FinalizeAll()
		if err != nil {
			return nil, fmt.Errorf("ml: predict: %w", err)
		}
	}
	return out, nil
}

func shapeF32(dims []int) shapes.Shape { return shapes.Make(dtypes.Float32, dims...) }

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

func softmaxInto(dst, logits []float32) {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	for j, v := range logits {
		dst[j] = float32(math.Exp(float64(v)-mx) / sum)
	}
}

// Evaluate computes the loss and task metrics of the model on ds.
func (m *Model) Evaluate(ds *datasets.Dataset) (Metrics, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkDataset(ds, true); err != nil {
		return Metrics{}, err
	}
	raw, err := m.rawOutputs(ds.X, ds.N)
	if err != nil {
		return Metrics{}, err
	}
	s := &m.spec
	met := Metrics{Task: s.Task, N: ds.N}
	n := ds.N
	switch {
	case s.Task == datasets.Regression:
		pred := make([]float64, n)
		for i, v := range raw {
			pred[i] = float64(v)
			if s.TargetStd > 0 {
				pred[i] = pred[i]*s.TargetStd + s.TargetMean
			}
		}
		met.RMSE, met.MAE, met.R2 = regressionMetrics(pred, ds.Y)
		met.Loss = met.RMSE * met.RMSE
	case s.binary():
		var loss float64
		correct := 0
		scores := make([]float64, n)
		for i, z := range raw {
			zf := float64(z)
			y := float64(ds.Y[i])
			// BCE with logits, stable form.
			loss += math.Max(zf, 0) - zf*y + math.Log1p(math.Exp(-math.Abs(zf)))
			scores[i] = zf
			if (zf > 0) == (ds.Y[i] == 1) {
				correct++
			}
		}
		met.Loss = loss / float64(n)
		met.Accuracy = float64(correct) / float64(n)
		if auc, ok := ROCAUC(scores, ds.Y); ok {
			met.AUC, met.hasAUC = auc, true
		}
	default:
		k := s.NumClasses
		var loss float64
		correct := 0
		for i := 0; i < n; i++ {
			row := raw[i*k : (i+1)*k]
			mx := math.Inf(-1)
			best := 0
			for j, v := range row {
				if float64(v) > mx {
					mx, best = float64(v), j
				}
			}
			var sum float64
			for _, v := range row {
				sum += math.Exp(float64(v) - mx)
			}
			y := int(ds.Y[i])
			loss += -(float64(row[y]) - mx - math.Log(sum))
			if best == y {
				correct++
			}
		}
		met.Loss = loss / float64(n)
		met.Accuracy = float64(correct) / float64(n)
	}
	return met, nil
}

func regressionMetrics(pred []float64, y []float32) (rmse, mae, r2 float64) {
	n := float64(len(y))
	var mean float64
	for _, v := range y {
		mean += float64(v)
	}
	mean /= n
	var sse, sae, sst float64
	for i, p := range pred {
		e := p - float64(y[i])
		sse += e * e
		sae += math.Abs(e)
		d := float64(y[i]) - mean
		sst += d * d
	}
	rmse = math.Sqrt(sse / n)
	mae = sae / n
	if sst > 0 {
		r2 = 1 - sse/sst
	}
	return
}

// ROCAUC is the area under the ROC curve of scores against binary labels
// (1 = positive, anything else negative), computed as the Mann–Whitney U
// statistic with tied scores sharing their average rank. ok is false when
// only one class is present.
func ROCAUC(scores []float64, labels []float32) (auc float64, ok bool) {
	n := len(scores)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	var pos, neg, rankSumPos float64
	for i := 0; i < n; {
		j := i
		for j < n && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		avgRank := float64(i+j+1) / 2 // ranks are 1-based: i+1 .. j
		for t := i; t < j; t++ {
			if labels[idx[t]] == 1 {
				pos++
				rankSumPos += avgRank
			} else {
				neg++
			}
		}
		i = j
	}
	if pos == 0 || neg == 0 {
		return 0, false
	}
	return (rankSumPos - pos*(pos+1)/2) / (pos * neg), true
}
