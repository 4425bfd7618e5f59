package split

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/teeml/teeml/ml/tensor"
)

func testSpec(kind Kind, cols []Column) Spec {
	s := Spec{Kind: kind, Columns: cols, LearningRate: 0.01, Seed: 3}
	if kind == KindWideDeep {
		s.ActWidth, s.Hidden, s.Embedding = 4, []int{5}, 3
	} else {
		s.ActWidth = 1
	}
	return s
}

var (
	followerCols = []Column{{Name: "a"}, {Name: "c", Cardinality: 3}, {Name: "b"}}
	leaderCols   = []Column{{Name: "d"}, {Name: "e", Cardinality: 2}}
)

func randomBatch(rng *rand.Rand, cols []Column, n int) []float32 {
	x := make([]float32, n*len(cols))
	for r := range n {
		for j, c := range cols {
			if c.Cardinality > 0 {
				x[r*len(cols)+j] = float32(rng.IntN(c.Cardinality))
			} else {
				x[r*len(cols)+j] = float32(rng.NormFloat64())
			}
		}
	}
	return x
}

// jointLoss runs both halves forward without updating anything.
func jointLoss(t *testing.T, f *Follower, l *Leader, xf, xl, y []float32, n int) float64 {
	t.Helper()
	act, err := f.Forward(xf, n)
	if err != nil {
		t.Fatal(err)
	}
	logits, err := l.forward(xl, act, n)
	if err != nil {
		t.Fatal(err)
	}
	s := 0.0
	for i, z := range logits {
		s += bceWithLogits(float64(z), float64(y[i]))
	}
	return s / float64(n)
}

// TestGradientsMatchFiniteDifferences checks the hand-written backward
// passes: the leader's d loss/d act1_f, and the follower's parameter
// gradients obtained by back-propagating it, against central differences
// of the joint loss.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	for _, kind := range []Kind{KindLR, KindWideDeep} {
		t.Run(string(kind), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			f, err := NewFollower(testSpec(kind, followerCols))
			if err != nil {
				t.Fatal(err)
			}
			l, err := NewLeader(testSpec(kind, leaderCols))
			if err != nil {
				t.Fatal(err)
			}
			// ref is an identical leader that TrainStep does not update.
			ref, _ := NewLeader(testSpec(kind, leaderCols))
			// Non-zero wide weights so every path carries gradient.
			for i := range l.wide.layers[0].w.w {
				l.wide.layers[0].w.w[i] = 0.1 * float32(i+1)
				ref.wide.layers[0].w.w[i] = 0.1 * float32(i+1)
			}
			const n = 6
			xf, xl := randomBatch(rng, followerCols, n), randomBatch(rng, leaderCols, n)
			y := []float32{0, 1, 1, 0, 1, 0}
			act, _ := f.Forward(xf, n)
			actCopy := append([]float32(nil), act...)
			_, dact, err := l.TrainStep(xl, actCopy, y, n)
			if err != nil {
				t.Fatal(err)
			}
			dact = append([]float32(nil), dact...)
			l = ref
			// d loss/d act by central differences through the leader alone.
			const eps = 1e-2
			lossAt := func(a []float32) float64 {
				lg, err := l.forward(xl, a, n)
				if err != nil {
					t.Fatal(err)
				}
				s := 0.0
				for i, z := range lg {
					s += bceWithLogits(float64(z), float64(y[i]))
				}
				return s / n
			}
			for i := range actCopy {
				if kind == KindWideDeep && math.Abs(float64(actCopy[i])) < 2*eps {
					continue // the ReLU's kink is within the finite-difference step
				}
				a := append([]float32(nil), actCopy...)
				a[i] += eps
				up := lossAt(a)
				a[i] -= 2 * eps
				down := lossAt(a)
				num := (up - down) / (2 * eps)
				if math.Abs(num-float64(dact[i])) > 2e-3+0.02*math.Abs(num) {
					t.Fatalf("d loss/d act[%d] = %v, finite difference %v", i, dact[i], num)
				}
			}
			// Follower parameter gradients: back-propagate dact without the
			// step (zero the learning rate's effect by inspecting p.g).
			if _, err := f.Forward(xf, n); err != nil {
				t.Fatal(err)
			}
			for _, p := range f.ps {
				p.zeroGrad()
			}
			f.tower.backward(dact, n)
			checked := 0
			for _, p := range f.ps {
				for _, i := range []int{0, len(p.w) / 2, len(p.w) - 1} {
					old := p.w[i]
					const h = 1e-3 // smaller than eps: fewer ReLU kinks crossed
					p.w[i] = old + h
					up := jointLoss(t, f, l, xf, xl, y, n)
					p.w[i] = old - h
					down := jointLoss(t, f, l, xf, xl, y, n)
					p.w[i] = old
					num := (up - down) / (2 * h)
					if math.Abs(num-float64(p.g[i])) > 2e-3+0.03*math.Abs(num) {
						t.Fatalf("%s[%d]: gradient %v, finite difference %v", p.name, i, p.g[i], num)
					}
					checked++
				}
			}
			if checked == 0 {
				t.Fatal("no follower parameter checked")
			}
		})
	}
}

func TestTrainingLearnsSeparableData(t *testing.T) {
	for _, kind := range []Kind{KindLR, KindWideDeep} {
		rng := rand.New(rand.NewPCG(5, 6))
		sf, sl := testSpec(kind, followerCols), testSpec(kind, leaderCols)
		sf.LearningRate, sl.LearningRate = 0.05, 0.05
		f, _ := NewFollower(sf)
		l, _ := NewLeader(sl)
		const n = 64
		var last float64
		for step := range 300 {
			xf, xl := randomBatch(rng, followerCols, n), randomBatch(rng, leaderCols, n)
			y := make([]float32, n)
			for r := range n {
				// The label depends on both parties' features.
				if xf[r*3]+xl[r*2] > 0 {
					y[r] = 1
				}
			}
			act, _ := f.Forward(xf, n)
			loss, dact, err := l.TrainStep(xl, act, y, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Backward(dact); err != nil {
				t.Fatal(err)
			}
			if step == 299 {
				last = loss
			}
		}
		if last > 0.3 {
			t.Errorf("%s: loss %v after training on a linearly separable task, want < 0.3", kind, last)
		}
		if f.Steps() != 300 || l.Steps() != 300 {
			t.Errorf("%s: steps %d/%d, want 300", kind, f.Steps(), l.Steps())
		}
	}
}

func TestStateRoundTripResumesExactly(t *testing.T) {
	spec := testSpec(KindWideDeep, followerCols)
	rng := rand.New(rand.NewPCG(9, 9))
	a, _ := NewFollower(spec)
	step := func(f *Follower, x []float32) {
		if _, err := f.Forward(x, 4); err != nil {
			t.Fatal(err)
		}
		g := make([]float32, 4*spec.ActWidth)
		for i := range g {
			g[i] = float32(i%5) * 0.1
		}
		if err := f.Backward(g); err != nil {
			t.Fatal(err)
		}
	}
	xs := make([][]float32, 6)
	for i := range xs {
		xs[i] = randomBatch(rng, followerCols, 4)
	}
	for _, x := range xs[:3] {
		step(a, x)
	}
	st := a.State()
	b, _ := NewFollower(spec)
	if err := b.SetState(st); err != nil {
		t.Fatal(err)
	}
	for _, x := range xs[3:] {
		step(a, x)
		step(b, x)
	}
	wa, wb := a.Weights(), b.Weights()
	for i := range wa {
		for j := range wa[i].Data {
			if wa[i].Data[j] != wb[i].Data[j] {
				t.Fatalf("%s[%d]: %v after resume, %v uninterrupted", wa[i].Name, j, wb[i].Data[j], wa[i].Data[j])
			}
		}
	}
	if b.Steps() != 6 {
		t.Fatalf("steps %d, want 6", b.Steps())
	}
	// A state missing the optimiser is refused.
	if err := b.SetState(tensor.Weights(a.Weights())); err == nil {
		t.Fatal("state without optimiser moments accepted")
	}
}

func TestBackwardRefusesWrongShapeAndNonFinite(t *testing.T) {
	f, _ := NewFollower(testSpec(KindWideDeep, followerCols))
	x := randomBatch(rand.New(rand.NewPCG(1, 1)), followerCols, 2)
	if _, err := f.Forward(x, 2); err != nil {
		t.Fatal(err)
	}
	if err := f.Backward(make([]float32, 3)); err == nil {
		t.Fatal("wrong-size gradient accepted")
	}
	g := make([]float32, 8)
	g[2] = float32(math.NaN())
	if err := f.Backward(g); err == nil {
		t.Fatal("NaN gradient accepted")
	}
	if f.Steps() != 0 {
		t.Fatal("a refused gradient was applied")
	}
}

func TestEvaluate(t *testing.T) {
	// Perfect ranking: AUC 1; one inversion out of 2×2 pairs: 0.75; ties: 0.5.
	m := Evaluate([]float64{0.1, 0.2, 0.8, 0.9}, []float32{0, 0, 1, 1})
	if m.AUC != 1 || m.Accuracy != 1 {
		t.Fatalf("%+v", m)
	}
	m = Evaluate([]float64{0.1, 0.85, 0.8, 0.9}, []float32{0, 0, 1, 1})
	if m.AUC != 0.75 || m.Accuracy != 0.75 {
		t.Fatalf("%+v", m)
	}
	m = Evaluate([]float64{0.5, 0.5}, []float32{0, 1})
	if m.AUC != 0.5 || math.Abs(m.LogLoss-math.Log(2)) > 1e-12 {
		t.Fatalf("%+v", m)
	}
	if m := Evaluate([]float64{0.3, 0.4}, []float32{1, 1}); !math.IsNaN(m.AUC) {
		t.Fatalf("one class: AUC %v, want NaN", m.AUC)
	}
}
