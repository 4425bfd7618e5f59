package strategy

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/tensor"
)

func goodResults() []FitResult {
	return []FitResult{fit("g1", 10, fill(1)), fit("g2", 20, fill(2)), fit("g3", 30, fill(1.5)), fit("g4", 40, fill(0.5)), fit("g5", 50, fill(2.5))}
}

// TestValidationRejects runs every strategy on five good results plus one
// bad one, for every kind of bad result: the bad one must be rejected with
// a one-line reason naming the client and the check, and the aggregate must
// equal the strategy's aggregate of the good results alone.
func TestValidationRejects(t *testing.T) {
	withNaN := w2(1, 1, 1, 1, 1, float32(math.NaN()), 1)
	withInf := w2(1, float32(math.Inf(1)), 1, 1, 1, 1, 1)
	withNegInf := w2(1, 1, 1, 1, 1, 1, float32(math.Inf(-1)))
	renamed := fill(1)
	renamed[1].Name = "c"
	reshaped := fill(1)
	reshaped[1].Shape = []int{1, 3}
	reordered := tensor.Weights{fill(1)[1], fill(1)[0]}
	short := fill(1)
	short[0].Data = short[0].Data[:3]
	cases := []struct {
		name, check, key string
		bad              []FitResult
		v                Validator
	}{
		{"nan", "finite check", "bad", []FitResult{fit("bad", 10, withNaN)}, Validator{}},
		{"inf", "finite check", "bad", []FitResult{fit("bad", 10, withInf)}, Validator{}},
		{"-inf", "finite check", "bad", []FitResult{fit("bad", 10, withNegInf)}, Validator{}},
		{"nan with norm bound", "finite check", "bad", []FitResult{fit("bad", 10, withNaN)}, Validator{MaxUpdateNorm: 100}},
		{"name", "shape check", "bad", []FitResult{fit("bad", 10, renamed)}, Validator{}},
		{"shape", "shape check", "bad", []FitResult{fit("bad", 10, reshaped)}, Validator{}},
		{"order", "shape check", "bad", []FitResult{fit("bad", 10, reordered)}, Validator{}},
		{"missing tensor", "shape check", "bad", []FitResult{fit("bad", 10, fill(1)[:1])}, Validator{}},
		{"short data", "shape check", "bad", []FitResult{fit("bad", 10, short)}, Validator{}},
		{"no weights", "shape check", "bad", []FitResult{fit("bad", 10, nil)}, Validator{}},
		{"zero examples", "examples check", "bad", []FitResult{fit("bad", 0, fill(1))}, Validator{}},
		{"negative examples", "examples check", "bad", []FitResult{fit("bad", -5, fill(1))}, Validator{}},
		{"too many examples", "examples check", "bad", []FitResult{fit("bad", 1001, fill(1))}, Validator{MaxNumExamples: 1000}},
		{"norm", "norm check", "bad", []FitResult{fit("bad", 10, fill(4))}, Validator{MaxUpdateNorm: 10}}, // ‖4·1‖ = 4√7 ≈ 10.58; good ≤ 2.5√7 ≈ 6.6
		{"duplicate", "id check", "bad", []FitResult{fit("bad", 10, fill(1)), fit("bad", 10, fill(2))}, Validator{}},
		{"empty id", "id check", "#5", []FitResult{fit("", 10, fill(1))}, Validator{}},
	}
	good := goodResults()
	for _, c := range cases {
		results := append(slices.Clone(good), c.bad...)
		for _, name := range Names() {
			s, _ := New(name, Options{Validator: c.v})
			out, rep, err := s.AggregateFit(1, fill(0), results)
			if err != nil {
				t.Fatalf("%s / %s: %v", c.name, name, err)
			}
			reason, ok := rep.Rejected[c.key]
			if len(rep.Rejected) != 1 || !ok {
				t.Fatalf("%s / %s: rejected %v, want only %q", c.name, name, rep.Rejected, c.key)
			}
			if !strings.Contains(reason, c.check) || strings.Contains(reason, "\n") ||
				(c.key != "#5" && !strings.Contains(reason, `client "bad"`)) || (c.key == "#5" && !strings.Contains(reason, "result 5")) {
				t.Fatalf("%s / %s: reason %q, want one line naming the client and %q", c.name, name, reason, c.check)
			}
			if !slices.Equal(rep.Accepted, []string{"g1", "g2", "g3", "g4", "g5"}) {
				t.Fatalf("%s / %s: accepted %v", c.name, name, rep.Accepted)
			}
			ref, _ := New(name, Options{Validator: c.v})
			want, _, err := ref.AggregateFit(1, fill(0), good)
			if err != nil {
				t.Fatal(err)
			}
			if err := sameBits(out, want); err != nil {
				t.Fatalf("%s / %s: aggregate differs from the good-only one: %v", c.name, name, err)
			}
		}
	}
}

// TestValidationSeveralBad: several bad results in one round, in FedAvg's
// single-pass path (two non-finite ones found after the optimistic mean).
func TestValidationSeveralBad(t *testing.T) {
	results := append(goodResults(),
		fit("nan1", 10, w2(float32(math.NaN()), 1, 1, 1, 1, 1, 1)),
		fit("zero", 0, fill(1)),
		fit("inf2", 10, w2(1, 1, 1, 1, 1, 1, float32(math.Inf(1)))))
	out, rep, err := (&FedAvg{Options: Options{Workers: 3}}).AggregateFit(1, fill(0), results)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rejected) != 3 || !strings.Contains(rep.Rejected["nan1"], "finite check") || !strings.Contains(rep.Rejected["inf2"], "finite check") {
		t.Fatalf("rejected %v", rep.Rejected)
	}
	// (10·1 + 20·2 + 30·1.5 + 40·0.5 + 50·2.5)/150 = 240/150
	wantFlat(t, "fedavg", out, flat(fill(float32(240.0/150))))
}

func TestValidationTooFew(t *testing.T) {
	results := []FitResult{fit("g1", 1, fill(1)), fit("g2", 1, fill(2)), fit("bad", 1, w2(1, 1, 1, 1, 1, 1, float32(math.NaN())))}
	for _, name := range Names() {
		s, _ := New(name, Options{Validator: Validator{MinAccepted: 3}})
		out, rep, err := s.AggregateFit(7, fill(0), results)
		if err == nil || out != nil || !strings.Contains(err.Error(), "round 7") {
			t.Fatalf("%s: err %v", name, err)
		}
		if _, ok := rep.Rejected["bad"]; !ok || len(rep.Accepted) != 2 {
			t.Fatalf("%s: report %+v", name, rep)
		}
	}
	// Default minimum is 1: everything rejected is an error.
	for _, name := range Names() {
		s, _ := New(name, Options{})
		if _, rep, err := s.AggregateFit(1, fill(0), results[2:]); err == nil || len(rep.Rejected) != 1 {
			t.Fatalf("%s: err %v, report %+v", name, err, rep)
		}
		if _, _, err := s.AggregateFit(1, fill(0), nil); err == nil {
			t.Fatalf("%s: no results accepted", name)
		}
	}
}

func TestValidationGlobal(t *testing.T) {
	bad := fill(0)
	bad[1].Name = "a" // duplicate name
	for _, name := range Names() {
		s, _ := New(name, Options{})
		if _, _, err := s.AggregateFit(1, bad, goodResults()); err == nil {
			t.Errorf("%s: invalid global accepted", name)
		}
		if _, _, err := s.AggregateFit(1, nil, goodResults()); err == nil {
			t.Errorf("%s: empty global accepted", name)
		}
	}
}

func TestValidatorExported(t *testing.T) {
	v := Validator{MaxUpdateNorm: 5.5} // g2: 2√7 ≈ 5.29 passes; g5: 2.5√7 ≈ 6.61, far: 3√7 ≈ 7.94 do not
	idx, rep, err := v.Validate(2, fill(0), append(goodResults(), fit("far", 1, fill(3))), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idx, []int{0, 1, 2, 3}) || rep.Round != 2 || !strings.Contains(rep.Rejected["g5"], "norm check") || !strings.Contains(rep.Rejected["far"], "norm check") {
		t.Fatalf("idx %v report %+v", idx, rep)
	}
	if math.Abs(rep.UpdateNorms["g2"]-2*math.Sqrt(7)) > 1e-12 {
		t.Fatalf("norms %v", rep.UpdateNorms)
	}
}

// TestDerivedNormBound: NormFactor bounds updates by a multiple of the
// round's median norm, from MinNormSample finite updates on; an explicit
// MaxUpdateNorm replaces it. Global is 0, so an update fill(v) has norm
// v·√7.
func TestDerivedNormBound(t *testing.T) {
	global := fill(0)
	v := Validator{NormFactor: 3}
	res := []FitResult{fit("a", 10, fill(1)), fit("b", 10, fill(1.2)), fit("c", 10, fill(3.5)), fit("d", 10, fill(2.9))}
	// median of {1, 1.2, 2.9, 3.5}·√7 is 2.05·√7; bound 6.15·√7: all pass.
	if _, rep, err := v.Validate(1, global, res, 1); err != nil || len(rep.Rejected) != 0 {
		t.Errorf("within 3× the median: rejected %v, %v", rep.Rejected, err)
	}
	res = append(res, fit("x", 10, fill(40)), fit("y", 10, fill(float32(math.NaN()))))
	// finite norms {1, 1.2, 2.9, 3.5, 40}: median 2.9, bound 8.7 (·√7).
	acc, rep, err := v.Validate(1, global, res, 1)
	if err != nil || len(acc) != 4 || len(rep.Rejected) != 2 || !strings.Contains(rep.Rejected["x"], "norm check") ||
		!strings.Contains(rep.Rejected["x"], "3 × the round's median norm") || !strings.Contains(rep.Rejected["y"], "finite check") {
		t.Errorf("derived bound: accepted %v, rejected %v, %v", rep.Accepted, rep.Rejected, err)
	}
	// Below MinNormSample finite updates no derived bound applies.
	two := []FitResult{fit("a", 10, fill(1)), fit("x", 10, fill(40))}
	if _, rep, err := v.Validate(1, global, two, 1); err != nil || len(rep.Rejected) != 0 {
		t.Errorf("two updates: rejected %v, %v", rep.Rejected, err)
	}
	// An explicit bound replaces the derived one.
	v.MaxUpdateNorm = 1.1 * math.Sqrt(7)
	if acc, rep, err := v.Validate(1, global, res[:4], 1); err != nil || len(acc) != 1 || !strings.Contains(rep.Rejected["b"], "exceeds the bound 2.91") {
		t.Errorf("explicit bound: accepted %v, rejected %v, %v", rep.Accepted, rep.Rejected, err)
	}
	// FedAvg applies the derived bound on its single-pass path too.
	s := &FedAvg{Options: Options{Validator: Validator{NormFactor: 3}}}
	if _, rep, err := s.AggregateFit(1, global, res[:5]); err != nil || len(rep.Rejected) != 1 || rep.Rejected["x"] == "" {
		t.Errorf("FedAvg with NormFactor: rejected %v, %v", rep.Rejected, err)
	}
}
