package tensor

import (
	"math"
	"strings"
	"testing"
)

func mk() Weights {
	return Weights{
		{Name: "w", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}},
		{Name: "b", Shape: []int{2}, Data: []float32{-1, 0.5}},
		{Name: "s", Shape: []int{}, Data: []float32{10}},
	}
}

func other() Weights {
	return Weights{
		{Name: "w", Shape: []int{2, 2}, Data: []float32{0.5, -2, 1, 0}},
		{Name: "b", Shape: []int{2}, Data: []float32{1, 1}},
		{Name: "s", Shape: []int{}, Data: []float32{-4}},
	}
}

func flat(w Weights) []float32 {
	var out []float32
	for _, t := range w {
		out = append(out, t.Data...)
	}
	return out
}

func wantFlat(t *testing.T, what string, w Weights, want ...float32) {
	t.Helper()
	got := flat(w)
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}
}

// wantErr checks err is non-nil and mentions every fragment.
func wantErr(t *testing.T, what string, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("%s: error %q does not mention %q", what, err, f)
		}
	}
}

func TestNumElements(t *testing.T) {
	cases := []struct {
		shape []int
		want  int
	}{{nil, 1}, {[]int{}, 1}, {[]int{3}, 3}, {[]int{2, 3, 4}, 24}, {[]int{5, 0, 7}, 0}}
	for _, c := range cases {
		if got := NumElements(c.shape); got != c.want {
			t.Errorf("NumElements(%v) = %d, want %d", c.shape, got, c.want)
		}
	}
}

func TestTensorValidate(t *testing.T) {
	ok := []Tensor{
		{Name: "scalar", Shape: []int{}, Data: []float32{1}},
		{Name: "scalar-nil-shape", Data: []float32{1}},
		{Name: "empty", Shape: []int{0, 4}, Data: nil},
		{Name: "m", Shape: []int{2, 3}, Data: make([]float32, 6)},
	}
	for _, tt := range ok {
		if err := tt.Validate(); err != nil {
			t.Errorf("%s: %v", tt.Name, err)
		}
	}
	wantErr(t, "empty name", Tensor{Shape: []int{1}, Data: []float32{1}}.Validate(), "empty name")
	wantErr(t, "negative dim", Tensor{Name: "neg", Shape: []int{-1, -2}, Data: []float32{1, 2}}.Validate(), `"neg"`, "negative")
	wantErr(t, "too few", Tensor{Name: "short", Shape: []int{2, 3}, Data: make([]float32, 5)}.Validate(), `"short"`, "needs 6", "have 5")
	wantErr(t, "too many", Tensor{Name: "long", Shape: []int{2}, Data: make([]float32, 3)}.Validate(), `"long"`)
	wantErr(t, "scalar without data", Tensor{Name: "s", Shape: []int{}}.Validate(), `"s"`)
}

func TestWeightsValidate(t *testing.T) {
	if err := mk().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Weights{}).Validate(); err != nil {
		t.Fatal(err)
	}
	dup := append(mk(), Tensor{Name: "b", Shape: []int{1}, Data: []float32{0}})
	wantErr(t, "duplicate", dup.Validate(), `"b"`, "duplicate")
	bad := mk()
	bad[1].Data = bad[1].Data[:1]
	wantErr(t, "bad tensor", bad.Validate(), `"b"`)
}

func TestCloneIsDeep(t *testing.T) {
	w := mk()
	c := w.Clone()
	c[0].Data[0] = 99
	c[0].Shape[0] = 7
	c[1].Name = "renamed"
	if w[0].Data[0] != 1 || w[0].Shape[0] != 2 || w[1].Name != "b" {
		t.Fatal("Clone shares memory with the original")
	}
	tc := w[0].Clone()
	tc.Data[1] = 42
	if w[0].Data[1] != 2 {
		t.Fatal("Tensor.Clone shares data")
	}
}

func TestZerosLikeGetNumParams(t *testing.T) {
	w := mk()
	z := w.ZerosLike()
	if err := w.Compatible(z); err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "ZerosLike", z, 0, 0, 0, 0, 0, 0, 0)
	z[0].Shape[0] = 9
	if w[0].Shape[0] != 2 {
		t.Fatal("ZerosLike shares the shape slice")
	}
	if got, ok := w.Get("b"); !ok || got.Data[1] != 0.5 {
		t.Fatalf("Get(b) = %v, %v", got, ok)
	}
	if _, ok := w.Get("nope"); ok {
		t.Fatal("Get found a missing tensor")
	}
	if n := w.NumParams(); n != 7 {
		t.Fatalf("NumParams = %d", n)
	}
	if n := (Weights{}).NumParams(); n != 0 {
		t.Fatalf("empty NumParams = %d", n)
	}
}

func TestAddSubScale(t *testing.T) {
	w, o := mk(), other()
	sum, err := w.Add(o)
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "Add", sum, 1.5, 0, 4, 4, 0, 1.5, 6)
	diff, err := w.Sub(o)
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "Sub", diff, 0.5, 4, 2, 4, -2, -0.5, 14)
	wantFlat(t, "Scale", w.Scale(-2), -2, -4, -6, -8, 2, -1, -20)
	// None of them touch their inputs.
	wantFlat(t, "w after", w, 1, 2, 3, 4, -1, 0.5, 10)
	wantFlat(t, "o after", o, 0.5, -2, 1, 0, 1, 1, -4)
	// Results keep names and shapes.
	if err := sum.Compatible(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Scale(3).Compatible(w); err != nil {
		t.Fatal(err)
	}

	w.ScaleInPlace(0.5)
	wantFlat(t, "ScaleInPlace", w, 0.5, 1, 1.5, 2, -0.5, 0.25, 5)
}

func TestAddScaledInPlace(t *testing.T) {
	w, o := mk(), other()
	if err := w.AddScaledInPlace(2, o); err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "axpy", w, 2, -2, 5, 4, 1, 2.5, 2)
	wantFlat(t, "o unchanged", o, 0.5, -2, 1, 0, 1, 1, -4)

	// w + s·w with w aliased to itself.
	a := mk()
	if err := a.AddScaledInPlace(1, a); err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "self", a, 2, 4, 6, 8, -2, 1, 20)

	// On incompatible input nothing is changed.
	w2 := mk()
	bad := other()
	bad[2].Shape = []int{1}
	wantErr(t, "incompatible", w2.AddScaledInPlace(1, bad), `"s"`)
	wantFlat(t, "unchanged after error", w2, 1, 2, 3, 4, -1, 0.5, 10)
}

func TestCompatibleErrors(t *testing.T) {
	w := mk()
	if err := w.Compatible(other()); err != nil {
		t.Fatal(err)
	}
	if err := (Weights{}).Compatible(nil); err != nil {
		t.Fatal(err)
	}

	short := other()[:2]
	wantErr(t, "count", w.Compatible(short), "3 tensors", "other has 2")

	renamed := other()
	renamed[1].Name = "bias"
	wantErr(t, "name", w.Compatible(renamed), "tensor 1", `"b"`, `"bias"`)

	reordered := other()
	reordered[0], reordered[1] = reordered[1], reordered[0]
	wantErr(t, "order", w.Compatible(reordered), "tensor 0", `"w"`, `"b"`)

	reshaped := other()
	reshaped[0].Shape = []int{4}
	wantErr(t, "shape", w.Compatible(reshaped), `"w"`, "[2 2]", "[4]")

	rank := other()
	rank[2].Shape = []int{1}
	wantErr(t, "rank", w.Compatible(rank), `"s"`, "[]", "[1]")

	// Same shape, but the data does not match it: still an error naming the
	// tensor, so arithmetic never indexes out of range.
	truncated := other()
	truncated[1].Data = truncated[1].Data[:1]
	wantErr(t, "data length", w.Compatible(truncated), `"b"`, "2 values", "other has 1")

	for name, f := range map[string]func() error{
		"Add": func() error { _, err := w.Add(truncated); return err },
		"Sub": func() error { _, err := w.Sub(renamed); return err },
		"Dot": func() error { _, err := w.Dot(reshaped); return err },
	} {
		wantErr(t, name, f(), "weights:")
	}
}

func TestDotAndL2Norm(t *testing.T) {
	w, o := mk(), other()
	d, err := w.Dot(o)
	if err != nil {
		t.Fatal(err)
	}
	// 0.5-4+3+0 + -1+0.5 + -40
	if d != -41 {
		t.Fatalf("Dot = %v, want -41", d)
	}
	if d2, _ := o.Dot(w); d2 != d {
		t.Fatalf("Dot not symmetric: %v vs %v", d2, d)
	}
	n := Weights{{Name: "v", Shape: []int{2}, Data: []float32{3, 4}}, {Name: "z", Shape: []int{0}}}
	if got := n.L2Norm(); got != 5 {
		t.Fatalf("L2Norm = %v, want 5", got)
	}
	if got := (Weights{}).L2Norm(); got != 0 {
		t.Fatalf("empty L2Norm = %v", got)
	}

	// Accumulation is in float64: 1e8 + 1 + ... would be lost in float32.
	big := Weights{{Name: "x", Shape: []int{3}, Data: []float32{1e4, 1, 1}}}
	dd, _ := big.Dot(big)
	if dd != 1e8+2 {
		t.Fatalf("Dot = %v, want %v (float64 accumulation)", dd, 1e8+2)
	}
	// Squares beyond the float32 range do not overflow.
	huge := Weights{{Name: "h", Shape: []int{2}, Data: []float32{math.MaxFloat32, math.MaxFloat32}}}
	if got, want := huge.L2Norm(), math.Sqrt2*math.MaxFloat32; math.Abs(got-want) > 1e-9*want {
		t.Fatalf("L2Norm = %v, want %v", got, want)
	}
}

func TestAllFinite(t *testing.T) {
	if err := mk().AllFinite(); err != nil {
		t.Fatal(err)
	}
	extreme := Weights{{Name: "x", Shape: []int{3}, Data: []float32{math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32}}}
	if err := extreme.AllFinite(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		v    float32
		desc string
	}{
		{float32(math.NaN()), "NaN"},
		{float32(math.Inf(1)), "+Inf"},
		{float32(math.Inf(-1)), "-Inf"},
	} {
		w := mk()
		w[1].Data[1] = c.v
		wantErr(t, c.desc, w.AllFinite(), `tensor "b"`, c.desc, "index 1")
	}
	// The first offender is reported.
	w := mk()
	w[2].Data[0] = float32(math.NaN())
	w[0].Data[3] = float32(math.Inf(1))
	wantErr(t, "first", w.AllFinite(), `tensor "w"`, "index 3")
}

func TestValidateRejectsOverflowingShape(t *testing.T) {
	err := Tensor{Name: "huge", Shape: []int{1 << 32, 1 << 32}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "overflows") {
		t.Fatalf("err = %v", err)
	}
}
