package safetensors

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/ml/tensor"
)

// The PyTorch interop tests run testdata/torch_interop.py with Debian's
// python3-torch (apt-get install python3-torch). The script does not use the
// `safetensors` Python package: it parses and writes the format itself with
// json + struct and torch.frombuffer, so it is an independent implementation.
// Without /usr/bin/python3 or torch the tests skip, except under CI=true,
// where they fail.

const pythonPath = "/usr/bin/python3"

func requireTorch(t *testing.T) {
	t.Helper()
	reason := ""
	if _, err := os.Stat(pythonPath); err != nil {
		reason = pythonPath + " not found"
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, pythonPath, "-c", "import torch").CombinedOutput()
		if err != nil {
			reason = "torch cannot be imported by " + pythonPath + ": " + string(bytes.TrimSpace(out))
		}
	}
	if reason == "" {
		return
	}
	msg := "PyTorch interop test needs Debian's python3-torch (apt-get install -y python3-torch): " + reason
	testenv.MustRun(t, "%s", msg)
}

func runInterop(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pythonPath, append([]string{filepath.Join("testdata", "torch_interop.py")}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("torch_interop.py %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// parsePyFloat parses a Python repr() of a float ("nan", "-inf", "-0.0", ...).
func parsePyFloat(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return v
}

// sameFloat32 compares bits, treating any two NaNs as equal.
func sameFloat32(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

// closeFloat64 compares sums computed in different orders.
func closeFloat64(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	if math.IsInf(a, 0) || math.IsInf(b, 0) {
		return a == b
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// TestTorchLoadsTeemlFile: teeml writes, torch loads.
func TestTorchLoadsTeemlFile(t *testing.T) {
	requireTorch(t)
	ws := specialWeights()
	// Plus a larger tensor with deterministic pseudo-random values.
	big := tensor.Tensor{Name: "big.weight", Shape: []int{300, 37}, Data: make([]float32, 300*37)}
	x := uint32(12345)
	for i := range big.Data {
		x = x*1664525 + 1013904223
		big.Data[i] = float32(int32(x)) / (1 << 31) * 3
	}
	ws = append(ws, big)
	meta := map[string]string{"round": "3", "party": "hospital-a"}
	path := filepath.Join(t.TempDir(), "teeml.safetensors")
	if err := WriteFile(path, ws, meta); err != nil {
		t.Fatal(err)
	}

	var got struct {
		HeaderOrder []string          `json:"header_order"`
		Metadata    map[string]string `json:"metadata"`
		Tensors     map[string]struct {
			Dtype       string   `json:"dtype"`
			Shape       []int    `json:"shape"`
			Numel       int      `json:"numel"`
			Sum         string   `json:"sum"`
			WeightedSum string   `json:"weighted_sum"`
			Values      []string `json:"values"`
		} `json:"tensors"`
	}
	if err := json.Unmarshal(runInterop(t, "load", path), &got); err != nil {
		t.Fatal(err)
	}

	// torch sees the tensors in teeml's order, both in the header and in
	// teeml.order, and the metadata.
	var order []string
	if err := json.Unmarshal([]byte(got.Metadata[OrderKey]), &order); err != nil {
		t.Fatalf("teeml.order as seen by Python: %v", err)
	}
	if len(got.HeaderOrder) != len(ws) || len(order) != len(ws) || len(got.Tensors) != len(ws) {
		t.Fatalf("Python sees %d tensors (order %v), want %d", len(got.Tensors), got.HeaderOrder, len(ws))
	}
	for i, w := range ws {
		if got.HeaderOrder[i] != w.Name || order[i] != w.Name {
			t.Fatalf("position %d: header %q, teeml.order %q, want %q", i, got.HeaderOrder[i], order[i], w.Name)
		}
	}
	for k, v := range meta {
		if got.Metadata[k] != v {
			t.Fatalf("metadata %q = %q, want %q", k, got.Metadata[k], v)
		}
	}

	for _, w := range ws {
		pt, ok := got.Tensors[w.Name]
		if !ok {
			t.Fatalf("Python lacks %q", w.Name)
		}
		if pt.Dtype != "F32" || pt.Numel != len(w.Data) || len(pt.Shape) != len(w.Shape) {
			t.Fatalf("%q: Python sees %s %v (%d values)", w.Name, pt.Dtype, pt.Shape, pt.Numel)
		}
		for i := range w.Shape {
			if pt.Shape[i] != w.Shape[i] {
				t.Fatalf("%q: Python shape %v, want %v", w.Name, pt.Shape, w.Shape)
			}
		}
		var sum, wsum float64
		for i, v := range w.Data {
			sum += float64(v)
			wsum += float64(v) * float64(i)
		}
		if s := parsePyFloat(t, pt.Sum); !closeFloat64(s, sum) {
			t.Errorf("%q: torch sum %v, Go %v", w.Name, s, sum)
		}
		if s := parsePyFloat(t, pt.WeightedSum); !closeFloat64(s, wsum) {
			t.Errorf("%q: torch weighted sum %v, Go %v", w.Name, s, wsum)
		}
		if len(w.Data) <= 64 {
			if len(pt.Values) != len(w.Data) {
				t.Fatalf("%q: %d values from Python", w.Name, len(pt.Values))
			}
			for i, s := range pt.Values {
				if v := float32(parsePyFloat(t, s)); !sameFloat32(v, w.Data[i]) {
					t.Errorf("%q[%d]: torch %v, Go %v", w.Name, i, v, w.Data[i])
				}
			}
		}
	}
}

// TestTeemlReadsTorchFile: torch writes (reference layout, several dtypes),
// teeml reads.
func TestTeemlReadsTorchFile(t *testing.T) {
	requireTorch(t)
	path := filepath.Join(t.TempDir(), "torch.safetensors")
	var desc struct {
		Order []string `json:"order"`
	}
	if err := json.Unmarshal(runInterop(t, "write", path), &desc); err != nil {
		t.Fatal(err)
	}
	ws, meta, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if meta["format"] != "pt" || meta["source"] != "torch_interop.py" || len(meta) != 2 {
		t.Fatalf("metadata %v", meta)
	}
	// No teeml.order: tensors come back in data-offset order, which is the
	// layout order Python chose.
	if len(ws) != len(desc.Order) {
		t.Fatalf("%d tensors, Python wrote %d", len(ws), len(desc.Order))
	}
	for i, n := range desc.Order {
		if ws[i].Name != n {
			t.Fatalf("tensor %d is %q, want %q", i, ws[i].Name, n)
		}
	}
	get := func(name string) tensor.Tensor {
		t.Helper()
		w, ok := ws.Get(name)
		if !ok {
			t.Fatalf("missing %q", name)
		}
		return w
	}
	checkShape := func(name string, shape ...int) {
		t.Helper()
		w := get(name)
		if len(w.Shape) != len(shape) {
			t.Fatalf("%q: shape %v, want %v", name, w.Shape, shape)
		}
		for i := range shape {
			if w.Shape[i] != shape[i] {
				t.Fatalf("%q: shape %v, want %v", name, w.Shape, shape)
			}
		}
	}

	// Every dtype converts exactly as torch's own .float() does.
	for _, base := range []string{"f64", "f16_all", "bf16_all", "i64", "i32", "i16", "i8", "u8", "bool"} {
		src, conv := get(base), get(base+"_as_f32")
		if len(src.Data) != len(conv.Data) {
			t.Fatalf("%q: %d values, torch conversion has %d", base, len(src.Data), len(conv.Data))
		}
		bad := 0
		for i := range src.Data {
			if !sameFloat32(src.Data[i], conv.Data[i]) {
				if bad < 5 {
					t.Errorf("%q[%d]: teeml %v (%#x), torch %v (%#x)", base, i, src.Data[i], math.Float32bits(src.Data[i]), conv.Data[i], math.Float32bits(conv.Data[i]))
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%q: %d of %d values differ from torch", base, bad, len(src.Data))
		}
	}

	// And against values computed here.
	checkShape("f32", 2, 3, 4)
	for i, v := range get("f32").Data {
		if want := float32(i)*0.25 - 3; v != want {
			t.Fatalf("f32[%d] = %v, want %v", i, v, want)
		}
	}
	checkShape("f32_scalar")
	if d := get("f32_scalar").Data; len(d) != 1 || d[0] != 2.5 {
		t.Fatalf("f32_scalar %v", d)
	}
	checkShape("f32_empty", 0, 3)
	checkShape("f16_all", 256, 256)
	checkShape("bf16_all", 256, 256)
	f16 := get("f16_all").Data
	bf16 := get("bf16_all").Data
	for h := range 1 << 16 {
		if !sameFloat32(f16[h], float16ToFloat32(uint16(h))) {
			t.Fatalf("f16 pattern %#04x: %v", h, f16[h])
		}
		if want := math.Float32frombits(uint32(h) << 16); !sameFloat32(bf16[h], want) {
			t.Fatalf("bf16 pattern %#04x: %v", h, bf16[h])
		}
	}
	f64 := []float64{0, math.Copysign(0, -1), 1.0 / 3, 1e300, -1e300, math.NaN(), math.Inf(1), 1e-50, 3 * math.Ldexp(1, -149), 0.1}
	for i, v := range get("f64").Data {
		if !sameFloat32(v, float32(f64[i])) {
			t.Fatalf("f64[%d] = %v, want %v", i, v, float32(f64[i]))
		}
	}
	i64 := []int64{-5, 0, 7, 1<<40 + 1, 1<<53 + 1, math.MinInt64, math.MaxInt64, 16777217}
	for i, v := range get("i64").Data {
		if v != float32(i64[i]) {
			t.Fatalf("i64[%d] = %v, want %v", i, v, float32(i64[i]))
		}
	}
	checkShape("i32", 3, 4)
	for i, v := range get("i32").Data {
		if want := float32((i - 6) * 1000003); v != want {
			t.Fatalf("i32[%d] = %v, want %v", i, v, want)
		}
	}
	for i, v := range get("u8").Data {
		if want := float32(i * 51); v != want {
			t.Fatalf("u8[%d] = %v, want %v", i, v, want)
		}
	}
	if d := get("bool").Data; len(d) != 3 || d[0] != 1 || d[1] != 0 || d[2] != 1 {
		t.Fatalf("bool %v", d)
	}

	// What teeml read, written back by teeml, loads in torch with the same
	// values.
	out := filepath.Join(t.TempDir(), "back.safetensors")
	if err := WriteFile(out, ws, meta); err != nil {
		t.Fatal(err)
	}
	var back struct {
		HeaderOrder []string `json:"header_order"`
	}
	if err := json.Unmarshal(runInterop(t, "load", out), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.HeaderOrder) != len(ws) || back.HeaderOrder[0] != ws[0].Name {
		t.Fatalf("torch sees %v", back.HeaderOrder)
	}
}
