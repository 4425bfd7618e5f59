package datasets

import (
	"math"
	"strings"
	"testing"
)

func TestPipelineJSONRoundTripAppliesIdentically(t *testing.T) {
	for _, name := range []string{"credit", "digits"} {
		train, test, err := LoadSplit(name, 0.2, 7)
		if err != nil {
			t.Fatal(err)
		}
		p := FitPipeline(name, train)
		q, err := ParsePipeline(p.JSON())
		if err != nil {
			t.Fatal(err)
		}
		a, err := p.Apply(test)
		if err != nil {
			t.Fatal(err)
		}
		b, err := q.Apply(test)
		if err != nil {
			t.Fatal(err)
		}
		for i := range a.X {
			if math.Float32bits(a.X[i]) != math.Float32bits(b.X[i]) {
				t.Fatalf("%s: value %d differs after JSON round trip: %v vs %v", name, i, a.X[i], b.X[i])
			}
			if math.IsNaN(float64(a.X[i])) {
				t.Fatalf("%s: NaN left at %d after pipeline", name, i)
			}
		}
		if name == "digits" && (p.Standardizer != nil || p.PixelScale != 1.0/16) {
			t.Fatalf("digits pipeline should only scale pixels by 1/16: %+v", p)
		}
	}
}

func TestPipelineMatchesPrepare(t *testing.T) {
	train, test, err := Prepare("breast_cancer", 0.25, 3)
	if err != nil {
		t.Fatal(err)
	}
	rtrain, rtest, err := LoadSplit("breast_cancer", 0.25, 3)
	if err != nil {
		t.Fatal(err)
	}
	p := FitPipeline("breast_cancer", rtrain)
	ptest, err := p.Apply(rtest)
	if err != nil {
		t.Fatal(err)
	}
	if train.N != rtrain.N || test.N != ptest.N {
		t.Fatalf("sizes differ")
	}
	for i := range test.X {
		if test.X[i] != ptest.X[i] {
			t.Fatalf("value %d: Prepare %v, pipeline %v", i, test.X[i], ptest.X[i])
		}
	}
}

func TestPipelineRejectsWrongWidth(t *testing.T) {
	train, _, err := LoadSplit("diabetes", 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := FitPipeline("diabetes", train)
	other, err := Load("breast_cancer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Apply(other); err == nil || !strings.Contains(err.Error(), "expects 10 feature columns") {
		t.Fatalf("err = %v", err)
	}
	if _, err := ParsePipeline(`{"imputer":{"Columns":["a"],"Values":[]}}`); err == nil {
		t.Fatal("inconsistent imputer accepted")
	}
}
