package strategy

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/tensor"
)

// TestFedAvgHandComputed: small integers, weights chosen so the means are
// exact in binary floating point, must come out exactly.
func TestFedAvgHandComputed(t *testing.T) {
	g := fill(0)
	results := []FitResult{
		fit("c1", 1, w2(1, 2, 3, 4, 5, 6, 7)),
		fit("c2", 2, w2(3, 2, 1, 0, -1, -2, -3)),
		fit("c3", 5, w2(8, 0, 0, 8, 16, 1, 2)),
	}
	s := &FedAvg{}
	out, rep, err := s.AggregateFit(1, g, results)
	if err != nil {
		t.Fatal(err)
	}
	// (1·x1 + 2·x2 + 5·x3) / 8, by hand:
	// a: (1+6+40)/8, (2+4+0)/8, (3+2+0)/8, (4+0+40)/8; b: (5-2+80)/8, (6-4+5)/8, (7-6+10)/8
	wantFlat(t, "fedavg", out, []float32{47.0 / 8, 6.0 / 8, 5.0 / 8, 44.0 / 8, 83.0 / 8, 7.0 / 8, 11.0 / 8})
	if !slices.Equal(rep.Accepted, []string{"c1", "c2", "c3"}) || !slices.Equal(rep.Selected, rep.Accepted) || len(rep.Rejected) != 0 || rep.NumExamples != 8 || rep.Round != 1 {
		t.Fatalf("report %+v", rep)
	}

	// Weighting by examples: the same updates with other counts give another mean.
	results[0].NumExamples, results[2].NumExamples = 5, 1
	out, _, err = s.AggregateFit(2, g, results)
	if err != nil {
		t.Fatal(err)
	}
	// (5·x1 + 2·x2 + 1·x3) / 8
	wantFlat(t, "fedavg reweighted", out, []float32{19.0 / 8, 14.0 / 8, 17.0 / 8, 28.0 / 8, 39.0 / 8, 27.0 / 8, 31.0 / 8})

	// A total that is not a power of two: correctly rounded S/3.
	results = []FitResult{fit("x", 1, w2(1, 2, 3, 4, 5, 6, 7)), fit("y", 2, w2(1, 1, 1, 1, 1, 1, 100))}
	out, _, err = s.AggregateFit(3, g, results)
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "fedavg /3", out, []float32{float32(3.0 / 3), float32(4.0 / 3), float32(5.0 / 3), float32(6.0 / 3), float32(7.0 / 3), float32(8.0 / 3), float32(207.0 / 3)})

	// The inputs are not modified.
	wantFlat(t, "input", results[0].Weights, []float32{1, 2, 3, 4, 5, 6, 7})
	wantFlat(t, "global", g, []float32{0, 0, 0, 0, 0, 0, 0})
}

// TestFedAvgManyClients covers the 4-, 2- and 1-client blocks of the kernel
// (n = 1..11) against the exact weighted mean.
func TestFedAvgManyClients(t *testing.T) {
	for n := 1; n <= 11; n++ {
		var results []FitResult
		var sum, total float64
		for k := range n {
			v := float32(k*k - 3*k + 1)
			results = append(results, fit(string(rune('a'+k)), k+1, fill(v)))
			sum += float64(k+1) * float64(v)
			total += float64(k + 1)
		}
		out, _, err := (&FedAvg{}).AggregateFit(1, fill(0), results)
		if err != nil {
			t.Fatal(err)
		}
		want := float32(sum / total)
		for _, v := range flat(out) {
			if v != want {
				t.Fatalf("n=%d: got %v, want %v", n, v, want)
			}
		}
	}
}

func TestFedAvgMetrics(t *testing.T) {
	r1 := fit("c1", 1, fill(1))
	r1.Metrics = map[string]float64{"loss": 1, "accuracy": 0.5}
	r2 := fit("c2", 3, fill(2))
	r2.Metrics = map[string]float64{"loss": 2, "accuracy": math.NaN()}
	_, rep, err := (&FedAvg{}).AggregateFit(1, fill(0), []FitResult{r1, r2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Metrics["loss"] != 1.75 || rep.Metrics["accuracy"] != 0.5 || rep.NumExamples != 4 {
		t.Fatalf("metrics %v, examples %d", rep.Metrics, rep.NumExamples)
	}
}

func TestWeightedMean(t *testing.T) {
	dst := fill(0)
	if err := WeightedMean(dst, []tensor.Weights{fill(1), fill(4)}, []float64{3, 1}, 2); err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "mean", dst, []float32{1.75, 1.75, 1.75, 1.75, 1.75, 1.75, 1.75})
	for _, c := range []struct {
		name string
		ups  []tensor.Weights
		coef []float64
	}{
		{"no updates", nil, nil},
		{"count mismatch", []tensor.Weights{fill(1)}, []float64{1, 2}},
		{"negative", []tensor.Weights{fill(1), fill(2)}, []float64{2, -1}},
		{"nan", []tensor.Weights{fill(1)}, []float64{math.NaN()}},
		{"zero sum", []tensor.Weights{fill(1)}, []float64{0}},
		{"shape", []tensor.Weights{fill(1)[:1]}, []float64{1}},
	} {
		if err := WeightedMean(fill(0), c.ups, c.coef, 1); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

// Inputs of the FedOpt tests: Δ = avg − g = [0.5, 0, −1, 0.25, 0, 0.5, 0].
var (
	optGlobal  = w2(1, 0.5, -2, 0, 3, -1, 0.25)
	optResults = []FitResult{
		fit("c1", 1, w2(0, 0.5, -3, 1, 3, 1, 0.25)),
		fit("c2", 3, w2(2, 0.5, -3, 0, 3, -1, 0.25)),
	} // avg = [1.5, 0.5, −3, 0.25, 3, −0.5, 0.25]
)

// TestFedOptOneStep checks FedAdam, FedYogi and FedAdagrad against values
// computed by hand from Reddi et al.'s update (m, v from zero, Flower's
// defaults), for two rounds.
//
// Round 1 by hand: Adam: m = 0.1Δ, √v = 0.1|Δ|, so w = g + 0.1·sign(Δ).
// Adagrad: m = Δ, √v = |Δ|, w = g + 0.1·sign(Δ). Yogi: v = 0.01Δ²,
// w = g + 0.01·0.1Δ/(0.1|Δ| + 0.001), e.g. 1 + 0.0005/0.051 = 1.00980392.
// Round 2 (same results, global = round-1 output), e.g. Adam's first
// coordinate: Δ = 0.4, m = 0.9·0.05 + 0.1·0.4 = 0.085, v = 0.99·0.0025 +
// 0.01·0.16 = 0.004075, w = 1.1 + 0.1·0.085/√0.004075 = 1.23315427.
func TestFedOptOneStep(t *testing.T) {
	cases := []struct {
		s      *FedOpt
		r1, r2 []float64
	}{
		{NewFedAdam(Options{}),
			[]float64{1.1, 0.5, -2.1, 0.1, 3, -0.9, 0.25},
			[]float64{1.23315427, 0.5, -2.23416408, 0.229099437, 3.0, -0.766845728, 0.25}},
		{NewFedYogi(Options{}),
			[]float64{1.00980392, 0.5, -2.00990099, 0.00961538462, 3.0, -0.990196078, 0.25},
			[]float64{1.02304223, 0.5, -2.02323756, 0.02265791, 3.0, -0.976957771, 0.25}},
		{NewFedAdagrad(Options{}),
			[]float64{1.1, 0.5, -2.1, 0.1, 3, -0.9, 0.25},
			[]float64{1.1624695, 0.5, -2.16689647, 0.151449575, 3.0, -0.837530496, 0.25}},
	}
	for _, c := range cases {
		out1, rep, err := c.s.AggregateFit(1, optGlobal, optResults)
		if err != nil {
			t.Fatal(err)
		}
		wantClose(t, c.s.Name()+" round 1", out1, c.r1, 1e-6)
		if rep.NumExamples != 4 {
			t.Errorf("%s: report %+v", c.s.Name(), rep)
		}
		out2, _, err := c.s.AggregateFit(2, out1, optResults)
		if err != nil {
			t.Fatal(err)
		}
		wantClose(t, c.s.Name()+" round 2", out2, c.r2, 1e-6)
	}
}

// TestFedYogiShrinksV exercises Yogi's other branch (v > Δ²: v decreases
// by (1−β₂)Δ², where Adam would give β₂v + (1−β₂)Δ²).
func TestFedYogiShrinksV(t *testing.T) {
	one := func(v float32) tensor.Weights {
		return tensor.Weights{{Name: "x", Shape: []int{1}, Data: []float32{v}}}
	}
	s := NewFedYogi(Options{})
	out1, _, err := s.AggregateFit(1, one(0), []FitResult{fit("c", 1, one(1))}) // Δ = 1: v = 0.01
	if err != nil {
		t.Fatal(err)
	}
	avg2 := out1[0].Data[0] + 0.05
	d2 := float64(avg2) - float64(out1[0].Data[0]) // ≈ 0.05
	if _, _, err := s.AggregateFit(2, out1, []FitResult{fit("c", 1, one(avg2))}); err != nil {
		t.Fatal(err)
	}
	st, _ := s.State()
	v, _ := st.Tensors.Get("v/x")
	want := 0.01 - 0.01*d2*d2 // ≈ 0.009975 (Adam: 0.009925)
	if got := float64(v.Data[0]); math.Abs(got-want) > 1e-9 {
		t.Fatalf("yogi v = %.9g, want %.9g", got, want)
	}
	if st.Scalars["step"] != 2 {
		t.Fatalf("step %v", st.Scalars["step"])
	}
}

func TestFedOptParams(t *testing.T) {
	for _, mut := range []func(*FedOpt){
		func(s *FedOpt) { s.Eta = 0 },
		func(s *FedOpt) { s.Tau = 0 },
		func(s *FedOpt) { s.Beta1 = 1 },
		func(s *FedOpt) { s.Beta2 = -0.1 },
		func(s *FedOpt) { s.Variant = "sgd" },
	} {
		s := NewFedAdam(Options{})
		mut(s)
		if _, _, err := s.AggregateFit(1, optGlobal, optResults); err == nil {
			t.Errorf("%+v: no error", s)
		}
	}
}

// TestStateRestore: a FedAdam restored from a saved state continues
// bit-identically to one that was never interrupted.
func TestStateRestore(t *testing.T) {
	a := NewFedAdam(Options{})
	st0, err := a.State()
	if err != nil || len(st0.Tensors) != 0 || st0.Scalars["step"] != 0 {
		t.Fatalf("initial state %+v, %v", st0, err)
	}
	out1, _, err := a.AggregateFit(1, optGlobal, optResults)
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.State()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Tensors) != 4 || st.Tensors[0].Name != "m/a" || st.Tensors[3].Name != "v/b" || st.Scalars["step"] != 1 {
		t.Fatalf("state %+v", st)
	}
	b := NewFedAdam(Options{})
	if err := b.Restore(st); err != nil {
		t.Fatal(err)
	}
	st.Tensors[0].Data[0] = 1234 // Restore copied
	outA, _, err := a.AggregateFit(2, out1, optResults)
	if err != nil {
		t.Fatal(err)
	}
	outB, _, err := b.AggregateFit(2, out1, optResults)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameBits(outA, outB); err != nil {
		t.Fatal(err)
	}

	// A fresh state restores to "not started".
	if err := b.Restore(st0); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.State(); len(st.Tensors) != 0 {
		t.Fatalf("restored empty state has %d tensors", len(st.Tensors))
	}

	// Bad states.
	good, _ := a.State()
	bad := []State{
		{Strategy: "fedyogi", Tensors: good.Tensors, Scalars: good.Scalars},
		{Strategy: "fedadam", Tensors: good.Tensors},
		{Strategy: "fedadam", Tensors: good.Tensors[:3], Scalars: good.Scalars},
		{Strategy: "fedadam", Tensors: tensor.Weights{good.Tensors[2], good.Tensors[3], good.Tensors[0], good.Tensors[1]}, Scalars: good.Scalars},
		{Strategy: "fedadam", Tensors: tensor.Weights{good.Tensors[0], good.Tensors[1], good.Tensors[2], {Name: "v/b", Shape: []int{2}, Data: []float32{0, 0}}}, Scalars: good.Scalars},
		{Strategy: "fedadam", Tensors: good.Tensors, Scalars: map[string]float64{"step": 1.5}},
	}
	for i, s := range bad {
		if err := NewFedAdam(Options{}).Restore(s); err == nil {
			t.Errorf("bad state %d restored", i)
		}
	}
	nan := good.Tensors.Clone()
	nan[0].Data[0] = float32(math.NaN())
	if err := NewFedAdam(Options{}).Restore(State{Strategy: "fedadam", Tensors: nan, Scalars: good.Scalars}); err == nil {
		t.Error("NaN state restored")
	}

	// A restored state for another model is refused at aggregation.
	c := NewFedAdam(Options{})
	if err := c.Restore(good); err != nil {
		t.Fatal(err)
	}
	other := tensor.Weights{{Name: "z", Shape: []int{1}, Data: []float32{0}}}
	if _, _, err := c.AggregateFit(3, other, []FitResult{fit("c", 1, other)}); err == nil || !strings.Contains(err.Error(), "optimiser state") {
		t.Fatalf("mismatched state: %v", err)
	}

	// Stateless strategies.
	for _, s := range allStrategies(t, Options{}) {
		if strings.HasPrefix(s.Name(), "fedadam") || strings.HasPrefix(s.Name(), "fedyogi") || strings.HasPrefix(s.Name(), "fedadagrad") {
			continue
		}
		st, err := s.State()
		if err != nil || st.Strategy != s.Name() {
			t.Fatalf("%s: state %+v, %v", s.Name(), st, err)
		}
		if err := s.Restore(st); err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		if err := s.Restore(State{Strategy: "other"}); err == nil {
			t.Fatalf("%s: restored a foreign state", s.Name())
		}
		if err := s.Restore(State{Strategy: s.Name(), Tensors: fill(0)}); err == nil {
			t.Fatalf("%s: restored tensors", s.Name())
		}
	}
}

func TestConfigure(t *testing.T) {
	o := Options{FitConfig: func(r int) Config { return Config{"local_epochs": 2, KeyProximalMu: 99} }}
	prox := &FedProx{FedAvg: FedAvg{Options: o}, Mu: 0.1}
	c := prox.ConfigureFit(3, nil)
	if c[KeyProximalMu] != 0.1 || c["local_epochs"] != 2 || c[KeyRound] != 3 || len(c) != 3 {
		t.Fatalf("fedprox config %v", c)
	}
	if c := (&FedAvg{Options: o}).ConfigureFit(1, nil); c[KeyProximalMu] != 99 || c[KeyRound] != 1 {
		t.Fatalf("fedavg config %v", c)
	}
	if c := NewFedYogi(Options{}).ConfigureFit(1, nil); c[KeyEtaL] != 0.0316 {
		t.Fatalf("fedyogi config %v", c)
	}
	o.EvaluateConfig = func(int) Config { return Config{"batch": 64} }
	if c := (&Median{Options: o}).ConfigureEvaluate(4); c["batch"] != 64 || c[KeyRound] != 4 {
		t.Fatalf("evaluate config %v", c)
	}
	// FedProx aggregates like FedAvg.
	results := []FitResult{fit("a", 1, fill(1)), fit("b", 3, fill(3))}
	out, _, err := prox.AggregateFit(1, fill(0), results)
	if err != nil {
		t.Fatal(err)
	}
	wantFlat(t, "fedprox", out, flat(fill(2.5)))
}

func TestNew(t *testing.T) {
	for _, name := range Names() {
		s, err := New(name, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Name() != name {
			t.Errorf("New(%q).Name() = %q", name, s.Name())
		}
	}
	if _, err := New("fedsgd", Options{}); err == nil {
		t.Error("unknown strategy accepted")
	}
}

func TestAggregateEvaluate(t *testing.T) {
	for _, s := range allStrategies(t, Options{}) {
		loss, m, err := s.AggregateEvaluate(1, []EvalResult{
			{Client: "a", NumExamples: 1, Loss: 1, Metrics: map[string]float64{"accuracy": 0.5}},
			{Client: "b", NumExamples: 3, Loss: 3, Metrics: map[string]float64{"accuracy": 1, "auc": 0.9}},
			{Client: "c", NumExamples: 0, Loss: 100},
			{Client: "d", NumExamples: 5, Loss: math.Inf(1)},
		})
		if err != nil || loss != 2.5 || m["accuracy"] != 0.875 || m["auc"] != 0.9 || len(m) != 2 {
			t.Fatalf("%s: loss %v metrics %v err %v", s.Name(), loss, m, err)
		}
		if _, _, err := s.AggregateEvaluate(1, []EvalResult{{Client: "c", NumExamples: 0, Loss: 1}}); err == nil {
			t.Fatalf("%s: no error without usable results", s.Name())
		}
	}
}

func TestProximal(t *testing.T) {
	w := w2(1, 2, 3, 4, 5, 6, 7)
	g := w2(1, 1, 1, 1, 1, 1, 1)
	grad := w2(0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)
	if err := AddProximalGradient(grad, w, g, 0.25); err != nil {
		t.Fatal(err)
	}
	// 0.5 + 0.25·(w − 1)
	wantFlat(t, "proximal gradient", grad, []float32{0.5, 0.75, 1, 1.25, 1.5, 1.75, 2})
	p, err := ProximalTerm(w, g, 0.25)
	if err != nil || p != 0.125*(0+1+4+9+16+25+36) {
		t.Fatalf("proximal term %v, %v", p, err)
	}
	if err := AddProximalGradient(grad, w, g[:1], 1); err == nil {
		t.Error("mismatched global accepted")
	}
	if err := AddProximalGradient(grad[:1], w, g, 1); err == nil {
		t.Error("mismatched gradient accepted")
	}
	if _, err := ProximalTerm(w[:1], g, 1); err == nil {
		t.Error("mismatched term accepted")
	}
}

// TestProximalInTrainer plugs AddProximalGradient into a plain gradient
// descent loop, as a client trainer would (loss gradient, then the proximal
// term, then the optimiser step). For the local loss ½‖w − a‖² the FedProx
// objective ½‖w − a‖² + (μ/2)‖w − w_g‖² has its minimum at
// (a + μ·w_g)/(1 + μ); the loop must reach it, and without the term reach a.
func TestProximalInTrainer(t *testing.T) {
	a := w2(1, -2, 3, 0.5, 4, -1, 2)
	g := w2(0, 0, 1, 1, 2, 2, -2)
	for _, mu := range []float64{0, 0.5, 3} {
		w := g.Clone() // local training starts from the global model
		for range 200 {
			grad, _ := w.Sub(a) // ∇ ½‖w − a‖²
			if err := AddProximalGradient(grad, w, g, mu); err != nil {
				t.Fatal(err)
			}
			_ = w.AddScaledInPlace(-0.1, grad)
		}
		for i, v := range flat(a) {
			want := (float64(v) + mu*float64(flat(g)[i])) / (1 + mu)
			if got := float64(flat(w)[i]); math.Abs(got-want) > 1e-5 {
				t.Fatalf("μ=%v: coordinate %d converged to %v, want %v", mu, i, got, want)
			}
		}
	}
}
