package cleanroomml

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/teeml/teeml/contract"
	"github.com/teeml/teeml/internal/fedtest"
	"github.com/teeml/teeml/ml/trees"
	"github.com/teeml/teeml/sealed"
	sqlcleanroom "github.com/teeml/teeml/sql/cleanroom"
	"github.com/teeml/teeml/sql/engine"
)

func v(s string) engine.Value { return engine.Value{Text: s} }

var null = engine.Value{Null: true}

// TestTable: numbers, booleans, text and NULL cells become numeric,
// categorical and missing features; text labels become sorted classes.
func TestTable(t *testing.T) {
	spec := &contract.Train{Label: "y", Task: "classification", MinLeaf: 1}
	rows := [][]engine.Value{
		{v("1.5"), v("true"), v("b"), v("yes")},
		{null, v("false"), v("a"), v("no")},
		{v("-2"), null, null, v("yes")},
	}
	ds, err := Table(spec, []string{"x", "flag", "seg", "y"}, rows)
	if err != nil {
		t.Fatal(err)
	}
	if ds.N != 3 || ds.D != 3 || ds.NumClasses != 2 || !slices.Equal(ds.ClassNames, []string{"no", "yes"}) ||
		!slices.Equal(ds.Y, []float32{1, 0, 1}) || !slices.Equal(ds.Columns[2].Categories, []string{"a", "b"}) || ds.Columns[0].IsCategorical() {
		t.Fatalf("dataset %+v", ds)
	}
	want := []float32{1.5, 1, 1, float32(math.NaN()), 0, 0, -2, float32(math.NaN()), float32(math.NaN())}
	for i, x := range ds.X {
		if !(x == want[i] || (x != x && want[i] != want[i])) {
			t.Fatalf("X[%d] = %v, want %v (X %v)", i, x, want[i], ds.X)
		}
	}
	for _, c := range []struct {
		spec *contract.Train
		cols []string
		msg  string
	}{
		{&contract.Train{Label: "z", Task: "classification"}, []string{"x", "flag", "seg", "y"}, "no label column z"},
		{&contract.Train{Label: "y", Task: "regression"}, []string{"x", "flag", "seg", "y"}, "not numeric"},
		{&contract.Train{Label: "y", Task: "classification", MinLeaf: 2}, []string{"x", "flag", "seg", "y"}, "fewer than two leaves"},
	} {
		if _, err := Table(c.spec, c.cols, rows); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: err = %v, want …%s…", c.spec, err, c.msg)
		}
	}
}

// TestTrainOnTheJoin runs the example contract's training template
// (segment_model: gbdt, 30 rounds, 8 leaves, min_leaf 12) on
// the sealed demo tables through sql/cleanroom.Run with this Trainer: the
// released model is a LightGBM file that ml/trees reads, trained on the
// joined rows, every leaf summarising at least min_leaf (≥ k) of them.
func TestTrainOnTheJoin(t *testing.T) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := contract.Example(contract.ExampleOptions{Attestation: fedtest.SimRole("", fedtest.MRGood),
		Recipients: map[string]*ecdh.PublicKey{"bank": priv.PublicKey()}, BankEpsilon: 3, RetailEpsilon: 3, MinGroupSize: 5})
	c, err := contract.Parse(raw, "contract.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bank, retail := sqlcleanroom.DemoData(7, 300, 400, 300)
	ctx := context.Background()
	files, keys := map[string]string{}, map[string]sealed.KeySource{}
	dir := t.TempDir()
	for owner, data := range map[string][]byte{"bank": bank, "retailer": retail} {
		key := c.Owners[owner].Key
		k := make([]byte, 32)
		rand.Read(k)
		ks, err := sealed.NewLocalKeys(map[string][]byte{key: k})
		if err != nil {
			t.Fatal(err)
		}
		keys[owner] = ks
		table := map[string]string{"bank": "bank_customers", "retailer": "retail_customers"}[owner]
		path := filepath.Join(dir, table+".csv.sealed")
		if err := sealed.WriteFile(ctx, path, 0o600, ks, key, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			t.Fatal(err)
		}
		files[table] = path
	}
	tm, _ := c.Template("segment_model")
	b, err := tm.Bind(nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sqlcleanroom.Run(ctx, sqlcleanroom.Request{Contract: c, Query: b, Tables: files, Keys: keys,
		Engine: engine.Options{Threads: 1}, Trainer: Trainer{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("released: %s (%d bytes)", res.ModelSummary, len(res.Model))
	m, err := trees.ParseText(bytes.NewReader(res.Model), "model.txt")
	if err != nil {
		t.Fatal(err)
	}
	if m.K() != 4 || !slices.Equal(m.FeatureNames, []string{"balance", "spend"}) || len(m.Trees) == 0 {
		t.Fatalf("model: %d outputs, features %v, %d trees", m.K(), m.FeatureNames, len(m.Trees))
	}
	for i, tr := range m.Trees {
		for _, n := range tr.LeafCount {
			if n < 12 {
				t.Fatalf("tree %d has a leaf of %d rows, below min_leaf 12", i, n)
			}
		}
	}
	if !strings.Contains(res.ModelSummary, "400 rows") || len(res.Rows) != 0 {
		t.Errorf("summary %q (the 400 shared customers), %d rows released", res.ModelSummary, len(res.Rows))
	}
}
