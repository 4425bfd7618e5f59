package trees

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/dmitryikh/leaves"
)

// Format is a tree model file format LoadModel reads.
type Format string

const (
	// FormatTeeml is LightGBM's text format as teeml train writes it (its
	// parameters section holds teeml.* keys); teeml predicts it itself.
	FormatTeeml Format = "teeml"
	// FormatLightGBM is a model.txt written by LightGBM (v2, v3);
	// predicted through github.com/dmitryikh/leaves.
	FormatLightGBM Format = "lightgbm"
	// FormatXGBoost is XGBoost's binary model (Booster.save_model to a
	// name not ending in .json or .ubj; gbtree or dart); predicted through
	// leaves.
	FormatXGBoost Format = "xgboost"
)

// Predictor is a tree ensemble from any Format, predicting class
// probabilities or a regression value per row.
type Predictor struct {
	Format   Format
	Features int
	// Classes is 0 for regression (and other single raw outputs such as
	// LightGBM's poisson or lambdarank), otherwise the number of classes:
	// Predict returns one probability per class (binary: 2).
	Classes int
	// FeatureNames are the file's feature names (nil for XGBoost).
	FeatureNames []string
	// Objective is the file's own objective text.
	Objective string
	// Params is the file's parameters section (LightGBM text formats).
	Params map[string]string
	// Native is the model itself for FormatTeeml.
	Native *Model

	ens        *leaves.Ensemble
	rawOffset  float64 // added to leaves' raw XGBoost outputs (base_score as a margin)
	link       string  // XGBoost: "logistic", "softmax" or "" (raw)
	rawOutputs int
}

// errLeaves marks an input leaves failed on in a way checkXGBoost and
// parseText should have refused first (the fuzz target fails on it).
var errLeaves = errors.New("leaves failed on a model teeml's checks accepted")

// LoadModel reads a tree model file of any Format, detected from its
// content; name labels errors ("model NAME: reason", one line). A file that
// is neither format, or a corrupt or truncated one, is refused.
func LoadModel(b []byte, name string) (p *Predictor, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("model %s: %w: %s", name, errLeaves, oneLine(fmt.Sprint(r)))
		}
	}()
	switch {
	case bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("tree")):
		return loadText(b, name)
	case looksXGBoost(b):
		return loadXGBoost(b, name)
	case len(b) > 0 && (b[0] == '{' || b[0] == '['):
		return nil, fmt.Errorf("model %s: JSON: XGBoost JSON/UBJSON models are not read (save with Booster.save_model(\"model.bin\"), XGBoost's binary format)", name)
	}
	return nil, fmt.Errorf("model %s: unknown format: want a LightGBM text model (model.txt, first line \"tree\") or an XGBoost binary model", name)
}

// looksXGBoost: XGBoost 1.x files start with "binf"; older ones with the
// learner parameters, followed by the objective's length and name.
func looksXGBoost(b []byte) bool {
	if bytes.HasPrefix(b, []byte("binf")) {
		return true
	}
	if len(b) < xgbLearnerParam+8+4 {
		return false
	}
	n := b[xgbLearnerParam]
	return n > 0 && n < 64 && bytes.Equal(b[xgbLearnerParam+1:xgbLearnerParam+8], make([]byte, 7)) &&
		(bytes.HasPrefix(b[xgbLearnerParam+8:], []byte("binary:")) || bytes.HasPrefix(b[xgbLearnerParam+8:], []byte("multi:")) ||
			bytes.HasPrefix(b[xgbLearnerParam+8:], []byte("reg:")))
}

func loadText(b []byte, name string) (*Predictor, error) {
	m, err := parseText(bytes.NewReader(b), name, true)
	if err != nil {
		return nil, err
	}
	p := &Predictor{Features: len(m.FeatureNames), FeatureNames: m.FeatureNames, Objective: m.Objective, Params: m.Params}
	for k := range m.Params {
		if strings.HasPrefix(k, "teeml.") {
			p.Format, p.Native = FormatTeeml, m
			switch m.Objective {
			case ObjBinary:
				p.Classes = 2
			case ObjMulticlass:
				p.Classes = m.NumClass
			case ObjRegression:
			default:
				return nil, fmt.Errorf("model %s: teeml model with objective %q", name, m.Objective)
			}
			return p, nil
		}
	}
	p.Format = FormatLightGBM
	p.ens, err = leaves.LGEnsembleFromReader(bufio.NewReader(bytes.NewReader(b)), true)
	if err != nil {
		return nil, fmt.Errorf("model %s: LightGBM model: %s", name, oneLine(err.Error()))
	}
	// The objective decides the task; leaves applied the link (a forest,
	// average_output, averages outputs that are already probabilities).
	switch m.Objective {
	case ObjBinary:
		p.Classes = 2
	case ObjMulticlass:
		p.Classes = m.NumClass
	}
	if p.ens.NOutputGroups() != max(m.NumClass, 1) || (p.Classes == 0 && m.NumClass != 1) {
		return nil, fmt.Errorf("model %s: LightGBM model: objective %q with %d outputs: unsupported", name, m.Objective, p.ens.NOutputGroups())
	}
	return p, nil
}

func loadXGBoost(b []byte, name string) (*Predictor, error) {
	h, err := checkXGBoost(b)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	p := &Predictor{Format: FormatXGBoost, Features: h.features, Objective: h.objective, rawOutputs: h.outputs}
	switch h.objective {
	case "binary:logistic":
		p.Classes, p.link = 2, "logistic"
		if h.outputs != 1 {
			return nil, fmt.Errorf("model %s: XGBoost model: binary:logistic with %d outputs", name, h.outputs)
		}
		// XGBoost 1.x ("binf") stores base_score as a probability and adds
		// its logit; older files store the margin itself, which leaves adds
		// as it is.
		if h.prefixBytes > 0 {
			if !(h.baseScore > 0 && h.baseScore < 1) {
				return nil, fmt.Errorf("model %s: XGBoost model: binary:logistic with base_score %v", name, h.baseScore)
			}
			p.rawOffset = math.Log(h.baseScore/(1-h.baseScore)) - h.baseScore
		}
	case "multi:softprob", "multi:softmax":
		if h.outputs < 2 {
			return nil, fmt.Errorf("model %s: XGBoost model: %s with %d output groups", name, h.objective, h.outputs)
		}
		p.Classes, p.link = h.outputs, "softmax"
	case "reg:squarederror", "reg:linear":
		if h.outputs != 1 {
			return nil, fmt.Errorf("model %s: XGBoost model: %s with %d outputs", name, h.objective, h.outputs)
		}
	default:
		return nil, fmt.Errorf("model %s: XGBoost model: objective %.40q: unsupported (want binary:logistic, multi:softprob, multi:softmax, reg:squarederror)", name, h.objective)
	}
	// leaves reads a copy adjusted to XGBoost's meaning: XGBoost 1.x writes
	// num_output_group 0 (deprecated) and keeps the classes in the
	// learner's num_class; and XGBoost goes left when x < split_cond
	// (float32), leaves when x <= it: for float32 inputs the same as
	// x <= the float32 just below split_cond.
	body := bytes.Clone(b)
	if h.patchGroups {
		binary.LittleEndian.PutUint32(body[h.groupsOffset:], uint32(h.outputs))
	}
	for _, off := range h.splits {
		c := math.Float32frombits(binary.LittleEndian.Uint32(body[off:]))
		binary.LittleEndian.PutUint32(body[off:], math.Float32bits(math.Nextafter32(c, float32(math.Inf(-1)))))
	}
	body = body[h.prefixBytes:]
	p.ens, err = leaves.XGEnsembleFromReader(bufio.NewReader(bytes.NewReader(body)), false)
	if err != nil {
		return nil, fmt.Errorf("model %s: XGBoost model: %s", name, oneLine(err.Error()))
	}
	if p.ens.NFeatures() > p.Features || p.ens.NRawOutputGroups() != h.outputs {
		return nil, fmt.Errorf("model %s: XGBoost model: leaves read %d features and %d outputs, the header says %d and %d",
			name, p.ens.NFeatures(), p.ens.NRawOutputGroups(), p.Features, h.outputs)
	}
	return p, nil
}

// Outputs is the number of values Predict returns per row: Classes, or 1.
func (p *Predictor) Outputs() int { return max(p.Classes, 1) }

// Predict maps n rows of Features raw values (NaN: missing) to n×Outputs
// values: class probabilities, or the regression value.
func (p *Predictor) Predict(x []float32, n int) ([]float64, error) {
	fv := make([]float64, len(x))
	for i, v := range x {
		fv[i] = float64(v)
	}
	return p.Predict64(fv, n)
}

// Predict64 is Predict for float64 rows: LightGBM compares features and
// thresholds as float64, so its models predict float64 inputs exactly as
// LightGBM does (XGBoost and teeml's own models use float32).
func (p *Predictor) Predict64(fv []float64, n int) (out []float64, err error) {
	if n < 0 || len(fv) != n*p.Features {
		return nil, fmt.Errorf("predict: %d values for %d rows of %d features", len(fv), n, p.Features)
	}
	k := p.Outputs()
	out = make([]float64, n*k)
	if p.Native != nil {
		row := make([]float32, p.Features)
		for i := range n {
			for j, v := range fv[i*p.Features : (i+1)*p.Features] {
				row[j] = float32(v)
			}
			y := p.Native.Predict(row)
			if p.Classes == 2 && len(y) == 1 {
				out[i*2], out[i*2+1] = 1-y[0], y[0]
			} else {
				copy(out[i*k:(i+1)*k], y)
			}
		}
		return out, nil
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("predict: %w: %s", errLeaves, oneLine(fmt.Sprint(r)))
		}
	}()
	if p.Format == FormatXGBoost {
		f32 := make([]float64, len(fv))
		for i, v := range fv {
			f32[i] = float64(float32(v))
		}
		fv = f32
	}
	groups := p.ens.NOutputGroups()
	raw := make([]float64, n*groups)
	if n > 0 {
		if err := p.ens.PredictDense(fv, n, p.Features, raw, 0, 1); err != nil {
			return nil, fmt.Errorf("predict: %s", oneLine(err.Error()))
		}
	}
	for i := range n {
		r, o := raw[i*groups:(i+1)*groups], out[i*k:(i+1)*k]
		switch {
		case p.link == "logistic":
			q := 1 / (1 + math.Exp(-(r[0] + p.rawOffset)))
			o[0], o[1] = 1-q, q
		case p.link == "softmax":
			copy(o, r)
			softmax(o)
		case p.Classes == 2 && groups == 1: // LightGBM binary: leaves applied the sigmoid
			o[0], o[1] = 1-r[0], r[0]
		default:
			copy(o, r)
		}
	}
	return out, nil
}

// PredictClass returns the most likely class of each row of probabilities
// Predict returned (classifiers only).
func (p *Predictor) PredictClass(probs []float64) []int {
	k := p.Outputs()
	cls := make([]int, len(probs)/k)
	for i := range cls {
		best := 0
		for c := 1; c < k; c++ {
			if probs[i*k+c] > probs[i*k+best] {
				best = c
			}
		}
		cls[i] = best
	}
	return cls
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
