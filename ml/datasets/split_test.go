package datasets

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func mustLoad(t testing.TB, name string) *Dataset {
	t.Helper()
	ds, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestSplitDeterministic(t *testing.T) {
	ds := mustLoad(t, "digits")
	tr1, te1 := Split(ds, 0.2, 42)
	tr2, te2 := Split(ds, 0.2, 42)
	if !slices.Equal(te1.IDs, te2.IDs) || !slices.Equal(tr1.IDs, tr2.IDs) || !slices.Equal(te1.X, te2.X) {
		t.Fatal("same seed gave different splits")
	}
	_, te3 := Split(ds, 0.2, 43)
	if slices.Equal(te1.IDs, te3.IDs) {
		t.Fatal("different seeds gave the same split")
	}
	// Every row in exactly one part, features and labels travel with the ID.
	if tr1.N+te1.N != ds.N {
		t.Fatalf("%d + %d != %d", tr1.N, te1.N, ds.N)
	}
	byID := map[string]int{}
	for i, id := range ds.IDs {
		byID[id] = i
	}
	seen := map[string]bool{}
	for _, part := range []*Dataset{tr1, te1} {
		for k, id := range part.IDs {
			if seen[id] {
				t.Fatalf("row %s in both parts", id)
			}
			seen[id] = true
			i := byID[id]
			if !slices.Equal(part.Row(k), ds.Row(i)) || part.Y[k] != ds.Y[i] {
				t.Fatalf("row %s: data does not follow its ID", id)
			}
		}
	}
	if len(seen) != ds.N {
		t.Fatalf("%d rows covered, want %d", len(seen), ds.N)
	}
}

func TestSplitStratified(t *testing.T) {
	ds := mustLoad(t, "breast_cancer") // 212 malignant, 357 benign
	train, test := Split(ds, 0.3, 1)
	frac := func(d *Dataset) float64 {
		n := 0
		for _, y := range d.Y {
			if y == 0 {
				n++
			}
		}
		return float64(n) / float64(d.N)
	}
	all := frac(ds)
	if math.Abs(frac(train)-all) > 0.005 || math.Abs(frac(test)-all) > 0.005 {
		t.Fatalf("malignant share all %.4f train %.4f test %.4f", all, frac(train), frac(test))
	}
	// round(0.3*212) + round(0.3*357) = 64 + 107.
	if test.N != 171 {
		t.Fatalf("test has %d rows, want 171", test.N)
	}
	// Every digits class keeps its share within one row's rounding.
	dg := mustLoad(t, "digits")
	_, dt := Split(dg, 0.2, 9)
	all10, test10 := make([]int, 10), make([]int, 10)
	for _, y := range dg.Y {
		all10[int(y)]++
	}
	for _, y := range dt.Y {
		test10[int(y)]++
	}
	for c := range 10 {
		if want := int(math.Round(0.2 * float64(all10[c]))); test10[c] != want {
			t.Fatalf("class %d: %d test rows, want %d", c, test10[c], want)
		}
	}
}

func TestSplitRegressionAndPanics(t *testing.T) {
	ds := mustLoad(t, "diabetes")
	train, test := Split(ds, 0.25, 3)
	if test.N != 111 || train.N != 331 {
		t.Fatalf("diabetes split %d/%d", train.N, test.N)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Split with fraction 1.5 did not panic")
		}
	}()
	Split(ds, 1.5, 0)
}

func TestImputer(t *testing.T) {
	ds := mustLoad(t, "credit")
	train, test := Split(ds, 0.2, 5)
	im := FitImputer(train)
	for _, part := range []*Dataset{train, test} {
		out, err := im.Apply(part)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range out.X {
			if isNaN(v) {
				t.Fatalf("NaN left at row %d column %s", i/out.D, out.Columns[i%out.D].Name)
			}
		}
		// The input is not modified.
		if !slices.ContainsFunc(part.X, isNaN) {
			t.Fatal("Apply changed its input")
		}
	}
	// Policy: numeric → median, categorical → most frequent.
	small := &Dataset{Name: "t", N: 5, D: 2,
		Columns: []Column{{Name: "num"}, {Name: "cat", Categories: []string{"a", "b", "c"}}},
		X:       []float32{1, 0, nan(), 0, 10, nan(), 3, 2, 100, 1}}
	im = FitImputer(small)
	// num: median of 1, 3, 10, 100; cat: 0 is most frequent (its median would be 0.5).
	if im.Values[0] != 6.5 || im.Values[1] != 0 {
		t.Fatalf("fill values %v, want [6.5 0]", im.Values)
	}
	filled, _ := im.Apply(small)
	if filled.Row(1)[0] != 6.5 || filled.Row(2)[1] != 0 || filled.Row(4)[0] != 100 {
		t.Fatalf("filled rows %v", filled.X)
	}
	other := &Dataset{Name: "o", N: 1, D: 2, Columns: []Column{{Name: "num"}, {Name: "other"}}, X: []float32{1, 1}}
	if _, err := im.Apply(other); err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("mismatched columns: err = %v", err)
	}
}

func nan() float32 { return float32(math.NaN()) }

func TestStandardizer(t *testing.T) {
	ds := mustLoad(t, "credit")
	train, test := Split(ds, 0.2, 5)
	im := FitImputer(train)
	train, _ = im.Apply(train)
	test, _ = im.Apply(test)
	st := FitStandardizer(train)
	out, err := st.Apply(train)
	if err != nil {
		t.Fatal(err)
	}
	for j, c := range out.Columns {
		var sum, ss float64
		for i := range out.N {
			sum += float64(out.Row(i)[j])
		}
		mean := sum / float64(out.N)
		for i := range out.N {
			d := float64(out.Row(i)[j]) - mean
			ss += d * d
		}
		sd := math.Sqrt(ss / float64(out.N))
		if c.IsCategorical() {
			for i := range out.N {
				if out.Row(i)[j] != train.Row(i)[j] {
					t.Fatalf("categorical %s changed", c.Name)
				}
			}
			continue
		}
		if math.Abs(mean) > 1e-4 || math.Abs(sd-1) > 1e-3 {
			t.Fatalf("%s: mean %g sd %g after standardising", c.Name, mean, sd)
		}
	}
	if _, err := st.Apply(test); err != nil {
		t.Fatal(err)
	}
	// A constant column gets Std 1 and becomes zeros, not NaN.
	c := FitStandardizer(&Dataset{Name: "c", N: 3, D: 1, Columns: []Column{{Name: "k"}}, X: []float32{4, 4, 4}})
	if c.Std[0] != 1 || c.Mean[0] != 4 {
		t.Fatalf("constant column: %+v", c)
	}
}

func TestPartitionIID(t *testing.T) {
	ds := mustLoad(t, "digits")
	shards, err := PartitionIID(ds, 7, 11)
	if err != nil {
		t.Fatal(err)
	}
	checkCoverage(t, ds, shards)
	minN, maxN := ds.N, 0
	for _, s := range shards {
		minN, maxN = min(minN, s.N), max(maxN, s.N)
	}
	if maxN-minN > 1 {
		t.Fatalf("shard sizes from %d to %d", minN, maxN)
	}
	again, _ := PartitionIID(ds, 7, 11)
	if !slices.Equal(again[3].IDs, shards[3].IDs) {
		t.Fatal("same seed gave different shards")
	}
	if _, err := PartitionIID(ds, 0, 1); err == nil {
		t.Fatal("0 shards accepted")
	}
	if _, err := PartitionIID(ds, ds.N+1, 1); err == nil {
		t.Fatal("more shards than rows accepted")
	}
}

// checkCoverage asserts that every row of ds is in exactly one shard.
func checkCoverage(t *testing.T, ds *Dataset, shards []*Dataset) {
	t.Helper()
	seen := map[string]bool{}
	for s, sh := range shards {
		if sh.N == 0 {
			t.Fatalf("shard %d is empty", s)
		}
		if len(sh.IDs) != sh.N || len(sh.Y) != sh.N || len(sh.X) != sh.N*ds.D {
			t.Fatalf("shard %d inconsistent", s)
		}
		for _, id := range sh.IDs {
			if seen[id] {
				t.Fatalf("row %s in two shards", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != ds.N {
		t.Fatalf("shards cover %d of %d rows", len(seen), ds.N)
	}
}

// labelSkew is the mean total-variation distance between each shard's label
// distribution and the whole dataset's: 0 for perfectly IID shards, near 1
// when each shard holds a single class.
func labelSkew(ds *Dataset, shards []*Dataset) float64 {
	global := make([]float64, ds.NumClasses)
	for _, y := range ds.Y {
		global[int(y)] += 1 / float64(ds.N)
	}
	total := 0.0
	for _, sh := range shards {
		local := make([]float64, ds.NumClasses)
		for _, y := range sh.Y {
			local[int(y)] += 1 / float64(sh.N)
		}
		tv := 0.0
		for c := range local {
			tv += math.Abs(local[c]-global[c]) / 2
		}
		total += tv
	}
	return total / float64(len(shards))
}

func TestPartitionDirichletSkew(t *testing.T) {
	ds := mustLoad(t, "digits")
	low, err := PartitionDirichlet(ds, 10, 0.1, 1)
	if err != nil {
		t.Fatal(err)
	}
	high, err := PartitionDirichlet(ds, 10, 100, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkCoverage(t, ds, low)
	checkCoverage(t, ds, high)
	sLow, sHigh := labelSkew(ds, low), labelSkew(ds, high)
	t.Logf("label skew (mean TV distance): alpha 0.1 → %.3f, alpha 100 → %.3f", sLow, sHigh)
	if sLow < 0.4 || sHigh > 0.1 || sLow < 5*sHigh {
		t.Fatalf("skew alpha 0.1 = %.3f, alpha 100 = %.3f: want ≥0.4, ≤0.1 and a 5x gap", sLow, sHigh)
	}
	again, _ := PartitionDirichlet(ds, 10, 0.1, 1)
	for s := range low {
		if !slices.Equal(again[s].IDs, low[s].IDs) {
			t.Fatal("same seed gave different shards")
		}
	}
}

func TestPartitionDirichletEdges(t *testing.T) {
	// Many shards, tiny alpha: draws leave shards empty, the fallback must
	// still give every shard a row.
	ds := mustLoad(t, "breast_cancer")
	shards, err := PartitionDirichlet(ds, 200, 0.01, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkCoverage(t, ds, shards)
	if _, err := PartitionDirichlet(mustLoad(t, "diabetes"), 3, 1, 1); err == nil || !strings.Contains(err.Error(), "classification") {
		t.Fatalf("regression dataset: err = %v", err)
	}
	if _, err := PartitionDirichlet(ds, 3, 0, 1); err == nil {
		t.Fatal("alpha 0 accepted")
	}
}

func TestSplitColumns(t *testing.T) {
	ds := mustLoad(t, "diabetes")
	a, b, err := SplitColumns(ds, []string{"age", "sex", "bmi", "bp"}, []string{"s1", "s2", "s3", "s4", "s5", "s6"})
	if err != nil {
		t.Fatal(err)
	}
	if a.D != 4 || b.D != 6 || a.N != ds.N || b.N != ds.N {
		t.Fatalf("a %dx%d b %dx%d", a.N, a.D, b.N, b.D)
	}
	if !slices.Equal(a.Y, ds.Y) || a.Task != Regression || b.Y != nil || b.Task != "" || b.HasLabels() {
		t.Fatal("labels must go to A only")
	}
	if !slices.Equal(a.IDs, ds.IDs) || !slices.Equal(b.IDs, ds.IDs) {
		t.Fatal("IDs not preserved")
	}
	if b.Row(10)[0] != ds.Row(10)[4] || a.Row(10)[3] != ds.Row(10)[3] {
		t.Fatal("values moved")
	}

	cases := []struct {
		a, b []string
		want string
	}{
		{[]string{"age", "nope"}, []string{"sex"}, `unknown column "nope"`},
		{[]string{"age", "sex", "bmi", "bp", "s1"}, []string{"s1", "s2", "s3", "s4", "s5", "s6"}, `column "s1" given to both parties`},
		{[]string{"age", "age"}, []string{"sex"}, `lists column "age" twice`},
		{[]string{"age", "sex"}, []string{"bmi"}, "given to neither party"},
		{columnNames(ds), nil, "party B has no columns"},
	}
	for _, c := range cases {
		_, _, err := SplitColumns(ds, c.a, c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SplitColumns(%v, %v): err = %v, want %q", c.a, c.b, err, c.want)
		}
	}
}
