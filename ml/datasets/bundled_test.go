package datasets

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestBundledShapesAndLabels(t *testing.T) {
	cases := []struct {
		name       string
		n, d       int
		task       Task
		classes    int
		image      []int
		minX, maxX float32 // bounds of the non-missing feature values
		missing    bool    // some features are NaN
	}{
		{"digits", 1797, 64, Classification, 10, []int{8, 8, 1}, 0, 16, false},
		{"breast_cancer", 569, 30, Classification, 2, nil, 0, 4254, false},
		{"diabetes", 442, 10, Regression, 0, nil, 0.0009, 301, false},
		{"credit", 4454, 13, Classification, 2, nil, 0, 1e6, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds, err := Load(c.name)
			if err != nil {
				t.Fatal(err)
			}
			if ds.N != c.n || ds.D != c.d || len(ds.X) != c.n*c.d || len(ds.Y) != c.n || len(ds.Columns) != c.d {
				t.Fatalf("shape N=%d D=%d len(X)=%d len(Y)=%d cols=%d, want %dx%d", ds.N, ds.D, len(ds.X), len(ds.Y), len(ds.Columns), c.n, c.d)
			}
			if ds.Task != c.task || ds.NumClasses != c.classes || !slices.Equal(ds.ImageShape, c.image) {
				t.Fatalf("task %q classes %d image %v", ds.Task, ds.NumClasses, ds.ImageShape)
			}
			if len(ds.IDs) != ds.N || ds.IDs[123] != c.name+"-000123" {
				t.Fatalf("IDs: len %d, [123]=%q", len(ds.IDs), ds.IDs[123])
			}
			sawNaN := false
			for _, v := range ds.X {
				if isNaN(v) {
					sawNaN = true
				} else if v < c.minX || v > c.maxX {
					t.Fatalf("feature value %v outside [%v, %v]", v, c.minX, c.maxX)
				}
			}
			if sawNaN != c.missing {
				t.Fatalf("missing values present=%v, want %v", sawNaN, c.missing)
			}
			if c.task == Classification {
				counts := make([]int, c.classes)
				for _, y := range ds.Y {
					if y != float32(int(y)) || y < 0 || int(y) >= c.classes {
						t.Fatalf("label %v outside 0..%d", y, c.classes-1)
					}
					counts[int(y)]++
				}
				for k, n := range counts {
					if n == 0 {
						t.Fatalf("class %d has no rows", k)
					}
				}
				if len(ds.ClassNames) != c.classes {
					t.Fatalf("class names %v", ds.ClassNames)
				}
			} else {
				for _, y := range ds.Y {
					if !(y >= 25 && y <= 346) { // diabetes target range
						t.Fatalf("target %v outside [25, 346]", y)
					}
				}
			}
			// List must describe the dataset as loaded.
			for _, info := range List() {
				if info.Name == c.name && (info.Rows != ds.N || info.Features != ds.D || info.Task != ds.Task || info.NumClasses != ds.NumClasses || !info.Bundled) {
					t.Fatalf("List says %+v", info)
				}
			}
		})
	}
}

func TestBreastCancerCoding(t *testing.T) {
	ds, err := Load("breast_cancer")
	if err != nil {
		t.Fatal(err)
	}
	// sklearn: 212 malignant (0), 357 benign (1); the first row is malignant
	// with mean radius 17.99.
	var n0, n1 int
	for _, y := range ds.Y {
		if y == 0 {
			n0++
		} else {
			n1++
		}
	}
	if n0 != 212 || n1 != 357 || ds.ClassNames[0] != "malignant" || ds.Row(0)[0] != 17.99 || ds.Y[0] != 0 {
		t.Fatalf("malignant %d benign %d names %v first %v/%v", n0, n1, ds.ClassNames, ds.Row(0)[0], ds.Y[0])
	}
	if ds.Columns[0].Name != "mean radius" || ds.Columns[29].Name != "worst fractal dimension" {
		t.Fatalf("columns %q..%q", ds.Columns[0].Name, ds.Columns[29].Name)
	}
}

func TestDiabetesRaw(t *testing.T) {
	ds, err := Load("diabetes")
	if err != nil {
		t.Fatal(err)
	}
	// First raw row: 59 2 32.1 101 157 93.2 38 4 4.8598 87, target 151.
	want := []float32{59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87}
	if !slices.Equal(ds.Row(0), want) || ds.Y[0] != 151 {
		t.Fatalf("row 0 = %v / %v", ds.Row(0), ds.Y[0])
	}
	if got := columnNames(ds); strings.Join(got, " ") != "age sex bmi bp s1 s2 s3 s4 s5 s6" {
		t.Fatalf("columns %v", got)
	}
}

func TestCredit(t *testing.T) {
	ds, err := Load("credit")
	if err != nil {
		t.Fatal(err)
	}
	wantCols := []string{"Seniority", "Home", "Time", "Age", "Marital", "Records", "Job", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"}
	if got := columnNames(ds); !slices.Equal(got, wantCols) {
		t.Fatalf("columns %v", got)
	}
	cat := map[string]bool{"Home": true, "Marital": true, "Records": true, "Job": true}
	for _, c := range ds.Columns {
		if c.IsCategorical() != cat[c.Name] {
			t.Fatalf("column %s categorical=%v", c.Name, c.IsCategorical())
		}
	}
	if !slices.Equal(ds.ClassNames, []string{"bad", "good"}) {
		t.Fatalf("class names %v", ds.ClassNames)
	}
	// Category values are indices within range (or NaN).
	for j, c := range ds.Columns {
		if !c.IsCategorical() {
			continue
		}
		for i := range ds.N {
			v := ds.Row(i)[j]
			if !isNaN(v) && (v != float32(int(v)) || int(v) >= len(c.Categories)) {
				t.Fatalf("%s row %d: category %v of %v", c.Name, i, v, c.Categories)
			}
		}
	}
}

func TestLoadUnknown(t *testing.T) {
	_, err := Load("foo")
	want := `datasets: unknown dataset "foo" (known: breast_cancer, credit, diabetes, digits, fashion_mnist, mnist)`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

func TestListIncludesIDX(t *testing.T) {
	infos := List()
	if len(infos) != 6 {
		t.Fatalf("List has %d entries", len(infos))
	}
	for _, info := range infos {
		idx := info.Name == "mnist" || info.Name == "fashion_mnist"
		if info.Bundled == idx || !strings.Contains(info.Source, "IDX") == idx || info.Licence == "" {
			t.Fatalf("%+v", info)
		}
	}
}

func TestPrepare(t *testing.T) {
	for _, name := range []string{"digits", "breast_cancer", "diabetes", "credit"} {
		train, test, err := Prepare(name, 0.25, 7)
		if err != nil {
			t.Fatal(err)
		}
		if train.N+test.N != registry[name].info.Rows {
			t.Fatalf("%s: %d+%d rows", name, train.N, test.N)
		}
		for _, ds := range []*Dataset{train, test} {
			for _, v := range ds.X {
				if isNaN(v) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s: non-finite %v after Prepare", name, v)
				}
				if name == "digits" && (v < 0 || v > 1) {
					t.Fatalf("digits pixel %v outside [0,1]", v)
				}
			}
		}
	}
	if _, _, err := Prepare("nope", 0.2, 1); err == nil {
		t.Fatal("Prepare of an unknown dataset succeeded")
	}
}
