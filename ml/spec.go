package ml

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/teeml/teeml/ml/datasets"
)

// Model kinds accepted by New.
const (
	KindLogReg   = "logreg"
	KindLinReg   = "linreg"
	KindMLP      = "mlp"
	KindCNN      = "cnn"
	KindWideDeep = "widedeep"
)

// Kinds lists the model kinds accepted by New, in a stable order.
func Kinds() []string {
	return []string{KindLogReg, KindLinReg, KindMLP, KindCNN, KindWideDeep}
}

// CategoricalColumn describes one categorical input column: X holds the
// category index (0..Cardinality-1) as a float32. Out-of-range or NaN values
// are treated as "unknown" (an all-zero one-hot row / zero embedding).
type CategoricalColumn struct {
	Index       int    `json:"index"` // column index in the dataset's X rows
	Name        string `json:"name,omitempty"`
	Cardinality int    `json:"cardinality"`
}

// ConvLayer is one convolution block of a CNN: a Kernel×Kernel convolution
// with Filters output channels (stride 1, Pad zero-padding on each side),
// ReLU, then Pool×Pool mean pooling (Pool ≤ 1 means no pooling).
type ConvLayer struct {
	Filters int `json:"filters"`
	Kernel  int `json:"kernel"`
	Pad     int `json:"pad"`
	Pool    int `json:"pool"`
}

// Spec describes a model's inputs, outputs and architecture options. It is
// derived from a dataset with SpecFor; the zero values of the architecture
// options mean "use the default for this kind", and New stores the resolved
// values, so Model.Spec() is complete and can be serialised to JSON to rebuild
// an identical model (see Model.Metadata and NewFromMetadata).
type Spec struct {
	Task       datasets.Task `json:"task"`
	InputDim   int           `json:"input_dim"`
	NumClasses int           `json:"num_classes,omitempty"` // classification only (≥ 2)
	// ImageShape is [height, width, channels] when the features are pixels.
	ImageShape  []int               `json:"image_shape,omitempty"`
	Categorical []CategoricalColumn `json:"categorical,omitempty"`

	// TargetMean and TargetStd (regression only) normalise the target: the
	// network learns (y-mean)/std and predictions are mapped back. SpecFor
	// sets them from the dataset's labels; zero std means no normalisation.
	TargetMean float64 `json:"target_mean,omitempty"`
	TargetStd  float64 `json:"target_std,omitempty"`

	// Hidden are the widths of the ReLU hidden layers: the MLP (default
	// [128, 64]), the CNN's dense head (default [100] for images ≥ 20 pixels
	// a side, [64] otherwise) and the Wide&Deep deep tower (default
	// [64, 32]). Ignored by logreg/linreg.
	Hidden []int `json:"hidden,omitempty"`
	// Conv are the CNN's convolution blocks. The default for images ≥ 20
	// pixels a side is BigDL's LeNet-5 layout ({6,5,0,2}, {12,5,0,2}, then
	// Hidden [100]: 28×28 → 24 → 12 → 8 → 4, 192 features) with ReLU and mean
	// pooling instead of tanh and max pooling; for smaller images (digits
	// 8×8) it is {16,3,1,2}, {32,3,1,2}.
	Conv []ConvLayer `json:"conv,omitempty"`
	// EmbeddingDim is the Wide&Deep embedding width per categorical column (default 8).
	EmbeddingDim int `json:"embedding_dim,omitempty"`
}

// SpecFor derives a Spec from a dataset: dimensions, task, classes, image
// shape, categorical columns with their cardinalities and (for regression)
// the target mean/std. Architecture options are left at their defaults.
func SpecFor(ds *datasets.Dataset) Spec {
	s := Spec{Task: ds.Task, InputDim: ds.D}
	if ds.Task == datasets.Classification {
		s.NumClasses = ds.NumClasses
	}
	if len(ds.ImageShape) > 0 {
		s.ImageShape = slices.Clone(ds.ImageShape)
	}
	for i, c := range ds.Columns {
		if c.IsCategorical() {
			s.Categorical = append(s.Categorical, CategoricalColumn{Index: i, Name: c.Name, Cardinality: len(c.Categories)})
		}
	}
	if ds.Task == datasets.Regression && len(ds.Y) > 0 {
		var sum, sq float64
		for _, y := range ds.Y {
			sum += float64(y)
		}
		mean := sum / float64(len(ds.Y))
		for _, y := range ds.Y {
			d := float64(y) - mean
			sq += d * d
		}
		s.TargetMean = mean
		s.TargetStd = math.Sqrt(sq / float64(len(ds.Y)))
		if !(s.TargetStd > 0) { // constant target: centre only
			s.TargetStd = 1
		}
	}
	return s
}

// JSON returns the spec as compact JSON.
func (s Spec) JSON() string {
	b, err := json.Marshal(s)
	if err != nil { // cannot happen: only plain fields
		panic(err)
	}
	return string(b)
}

// ParseSpec decodes a spec written by Spec.JSON.
func ParseSpec(data string) (Spec, error) {
	var s Spec
	if err := json.Unmarshal([]byte(data), &s); err != nil {
		return Spec{}, fmt.Errorf("ml: bad model spec: %w", err)
	}
	return s, nil
}

// binary reports whether the model uses a single sigmoid logit.
func (s Spec) binary() bool { return s.Task == datasets.Classification && s.NumClasses == 2 }

// OutputDim is the number of raw network outputs: 1 for regression and
// binary classification (one sigmoid logit), NumClasses otherwise.
func (s Spec) OutputDim() int {
	if s.Task == datasets.Classification && s.NumClasses > 2 {
		return s.NumClasses
	}
	return 1
}

// resolve checks the spec against the kind and fills in default options.
func (s Spec) resolve(kind string) (Spec, error) {
	s.ImageShape = slices.Clone(s.ImageShape)
	s.Categorical = slices.Clone(s.Categorical)
	s.Hidden = slices.Clone(s.Hidden)
	s.Conv = slices.Clone(s.Conv)
	if s.InputDim <= 0 {
		return s, fmt.Errorf("ml: %s: input dimension must be positive, got %d", kind, s.InputDim)
	}
	switch s.Task {
	case datasets.Classification:
		if s.NumClasses < 2 {
			return s, fmt.Errorf("ml: %s: classification needs at least 2 classes, got %d", kind, s.NumClasses)
		}
	case datasets.Regression:
		s.NumClasses = 0
		if s.TargetStd < 0 || math.IsNaN(s.TargetStd) || math.IsInf(s.TargetStd, 0) || math.IsNaN(s.TargetMean) || math.IsInf(s.TargetMean, 0) {
			return s, fmt.Errorf("ml: %s: invalid target normalisation mean=%v std=%v", kind, s.TargetMean, s.TargetStd)
		}
	default:
		return s, fmt.Errorf("ml: %s: unknown task %q", kind, s.Task)
	}
	for _, h := range s.Hidden {
		if h <= 0 {
			return s, fmt.Errorf("ml: %s: hidden widths must be positive, got %v", kind, s.Hidden)
		}
	}
	switch kind {
	case KindLogReg:
		if s.Task != datasets.Classification {
			return s, fmt.Errorf("ml: logreg needs a classification dataset, got %s (use linreg)", s.Task)
		}
		s.Hidden, s.Conv, s.EmbeddingDim = nil, nil, 0
	case KindLinReg:
		if s.Task != datasets.Regression {
			return s, fmt.Errorf("ml: linreg needs a regression dataset, got %s (use logreg)", s.Task)
		}
		s.Hidden, s.Conv, s.EmbeddingDim = nil, nil, 0
	case KindMLP:
		if len(s.Hidden) == 0 {
			s.Hidden = []int{128, 64}
		}
		s.Conv, s.EmbeddingDim = nil, 0
	case KindCNN:
		if len(s.ImageShape) != 3 {
			return s, fmt.Errorf("ml: cnn needs an image dataset (image shape [H W C]), got image shape %v", s.ImageShape)
		}
		h, w, c := s.ImageShape[0], s.ImageShape[1], s.ImageShape[2]
		if h <= 0 || w <= 0 || c <= 0 || h*w*c != s.InputDim {
			return s, fmt.Errorf("ml: cnn: image shape %v does not match input dimension %d", s.ImageShape, s.InputDim)
		}
		big := min(h, w) >= 20
		if len(s.Conv) == 0 {
			if big {
				s.Conv = []ConvLayer{{Filters: 6, Kernel: 5, Pad: 0, Pool: 2}, {Filters: 12, Kernel: 5, Pad: 0, Pool: 2}}
			} else {
				s.Conv = []ConvLayer{{Filters: 16, Kernel: 3, Pad: 1, Pool: 2}, {Filters: 32, Kernel: 3, Pad: 1, Pool: 2}}
			}
		}
		if len(s.Hidden) == 0 {
			if big {
				s.Hidden = []int{100}
			} else {
				s.Hidden = []int{64}
			}
		}
		if _, _, _, err := convOutputShape(h, w, c, s.Conv); err != nil {
			return s, err
		}
		s.EmbeddingDim = 0
	case KindWideDeep:
		seen := map[int]bool{}
		for _, cc := range s.Categorical {
			if cc.Index < 0 || cc.Index >= s.InputDim || seen[cc.Index] {
				return s, fmt.Errorf("ml: widedeep: bad categorical column index %d (input dimension %d)", cc.Index, s.InputDim)
			}
			if cc.Cardinality <= 0 {
				return s, fmt.Errorf("ml: widedeep: categorical column %d has cardinality %d", cc.Index, cc.Cardinality)
			}
			seen[cc.Index] = true
		}
		slices.SortFunc(s.Categorical, func(a, b CategoricalColumn) int { return a.Index - b.Index })
		if len(s.Hidden) == 0 {
			s.Hidden = []int{64, 32}
		}
		if s.EmbeddingDim <= 0 {
			s.EmbeddingDim = 8
		}
		s.Conv = nil
	default:
		return s, fmt.Errorf("ml: unknown model kind %q (want one of logreg, linreg, mlp, cnn, widedeep)", kind)
	}
	// Kinds other than widedeep read categorical columns as plain numbers;
	// the Categorical list then only documents the input.
	return s, nil
}

// convOutputShape returns the spatial size and channels after the conv blocks.
func convOutputShape(h, w, c int, layers []ConvLayer) (int, int, int, error) {
	for i, l := range layers {
		if l.Filters <= 0 || l.Kernel <= 0 || l.Pad < 0 {
			return 0, 0, 0, fmt.Errorf("ml: cnn: conv layer %d has invalid options %+v", i, l)
		}
		h = h + 2*l.Pad - l.Kernel + 1
		w = w + 2*l.Pad - l.Kernel + 1
		if l.Pool > 1 {
			h /= l.Pool
			w /= l.Pool
		}
		if h <= 0 || w <= 0 {
			return 0, 0, 0, fmt.Errorf("ml: cnn: conv layer %d shrinks the image to nothing", i)
		}
		c = l.Filters
	}
	return h, w, c, nil
}

// numericColumns returns the indices of the non-categorical columns.
func (s Spec) numericColumns() []int {
	cat := make(map[int]bool, len(s.Categorical))
	for _, c := range s.Categorical {
		cat[c.Index] = true
	}
	var out []int
	for i := 0; i < s.InputDim; i++ {
		if !cat[i] {
			out = append(out, i)
		}
	}
	return out
}
