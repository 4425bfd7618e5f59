// Package tensor holds teeml's exchange format for model parameters: an
// ordered list of named float32 tensors. Everything that moves weights between
// parties (federated averaging, split models, serving, safetensors files) works
// on this type, so no package outside ml needs to know GoMLX internals.
package tensor

import (
	"fmt"
	"math"
	"slices"
)

// Tensor is a named, dense, row-major float32 tensor.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// NumElements returns the product of the shape (1 for a scalar).
func NumElements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Validate checks that the data length matches the shape and that the name
// is set.
func (t Tensor) Validate() error {
	if t.Name == "" {
		return fmt.Errorf("tensor: empty name")
	}
	n := 1
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return fmt.Errorf("tensor %q: shape %v: element count overflows", t.Name, t.Shape)
		}
		n *= d
	}
	if n != len(t.Data) {
		return fmt.Errorf("tensor %q: shape %v needs %d values, have %d", t.Name, t.Shape, n, len(t.Data))
	}
	return nil
}

// Clone returns a deep copy.
func (t Tensor) Clone() Tensor {
	return Tensor{Name: t.Name, Shape: append([]int(nil), t.Shape...), Data: append([]float32(nil), t.Data...)}
}

// Weights is an ordered list of named tensors. The order is part of the
// model's identity: two Weights are compatible only when names and shapes
// match position by position.
type Weights []Tensor

// Validate checks every tensor and that names are unique.
func (w Weights) Validate() error {
	seen := make(map[string]bool, len(w))
	for _, t := range w {
		if err := t.Validate(); err != nil {
			return err
		}
		if seen[t.Name] {
			return fmt.Errorf("tensor %q: duplicate name", t.Name)
		}
		seen[t.Name] = true
	}
	return nil
}

// Compatible reports, as an error naming the first difference, whether o has
// the same names and shapes in the same order as w.
func (w Weights) Compatible(o Weights) error {
	if len(w) != len(o) {
		return fmt.Errorf("weights: %d tensors, other has %d", len(w), len(o))
	}
	for i := range w {
		if w[i].Name != o[i].Name {
			return fmt.Errorf("weights: tensor %d is %q, other has %q", i, w[i].Name, o[i].Name)
		}
		if !slices.Equal(w[i].Shape, o[i].Shape) {
			return fmt.Errorf("weights: tensor %q has shape %v, other has %v", w[i].Name, w[i].Shape, o[i].Shape)
		}
		if len(w[i].Data) != len(o[i].Data) {
			return fmt.Errorf("weights: tensor %q has %d values, other has %d", w[i].Name, len(w[i].Data), len(o[i].Data))
		}
	}
	return nil
}

// Clone returns a deep copy.
func (w Weights) Clone() Weights {
	out := make(Weights, len(w))
	for i, t := range w {
		out[i] = t.Clone()
	}
	return out
}

// ZerosLike returns weights with the same names and shapes, all zero.
func (w Weights) ZerosLike() Weights {
	out := make(Weights, len(w))
	for i, t := range w {
		out[i] = Tensor{Name: t.Name, Shape: append([]int(nil), t.Shape...), Data: make([]float32, len(t.Data))}
	}
	return out
}

// Get returns the tensor with the given name.
func (w Weights) Get(name string) (Tensor, bool) {
	for _, t := range w {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// NumParams is the total number of scalar parameters.
func (w Weights) NumParams() int {
	n := 0
	for _, t := range w {
		n += len(t.Data)
	}
	return n
}

// Add returns w + o.
func (w Weights) Add(o Weights) (Weights, error) {
	out := w.Clone()
	if err := out.AddScaledInPlace(1, o); err != nil {
		return nil, err
	}
	return out, nil
}

// Sub returns w - o.
func (w Weights) Sub(o Weights) (Weights, error) {
	out := w.Clone()
	if err := out.AddScaledInPlace(-1, o); err != nil {
		return nil, err
	}
	return out, nil
}

// Scale returns s·w.
func (w Weights) Scale(s float32) Weights {
	out := w.Clone()
	out.ScaleInPlace(s)
	return out
}

// ScaleInPlace multiplies every value by s.
func (w Weights) ScaleInPlace(s float32) {
	for _, t := range w {
		for j := range t.Data {
			t.Data[j] *= s
		}
	}
}

// AddScaledInPlace sets w ← w + s·o (an axpy), after checking compatibility.
func (w Weights) AddScaledInPlace(s float32, o Weights) error {
	if err := w.Compatible(o); err != nil {
		return err
	}
	for i, t := range w {
		od := o[i].Data
		for j := range t.Data {
			t.Data[j] += s * od[j]
		}
	}
	return nil
}

// Dot is the inner product of w and o seen as flat vectors, accumulated in float64.
func (w Weights) Dot(o Weights) (float64, error) {
	if err := w.Compatible(o); err != nil {
		return 0, err
	}
	var s float64
	for i, t := range w {
		for j, v := range t.Data {
			s += float64(v) * float64(o[i].Data[j])
		}
	}
	return s, nil
}

// L2Norm is the Euclidean norm of all values.
func (w Weights) L2Norm() float64 {
	d, _ := w.Dot(w)
	return math.Sqrt(d)
}

// AllFinite reports the first tensor holding a NaN or ±Inf.
func (w Weights) AllFinite() error {
	for _, t := range w {
		for j, v := range t.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("tensor %q: non-finite value %v at index %d", t.Name, v, j)
			}
		}
	}
	return nil
}
