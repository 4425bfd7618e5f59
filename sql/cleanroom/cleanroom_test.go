package cleanroom

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/teeml/teeml/contract"
	"github.com/teeml/teeml/internal/fedtest"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/sql/engine"
)

type fixture struct {
	c      *contract.Contract
	dir    string
	files  map[string]string
	keys   map[string]sealed.KeySource
	bank   []byte
	retail []byte
	priv   *ecdh.PrivateKey
}

func newFixture(t *testing.T) *fixture {
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
	f := &fixture{c: c, dir: t.TempDir(), files: map[string]string{}, keys: map[string]sealed.KeySource{}, priv: priv}
	f.bank, f.retail = DemoData(7, 300, 400, 300)
	ctx := context.Background()
	for owner, data := range map[string][]byte{"bank": f.bank, "retailer": f.retail} {
		key := c.Owners[owner].Key
		k := make([]byte, 32)
		rand.Read(k)
		ks, err := sealed.NewLocalKeys(map[string][]byte{key: k})
		if err != nil {
			t.Fatal(err)
		}
		f.keys[owner] = ks
		table := map[string]string{"bank": "bank_customers", "retailer": "retail_customers"}[owner]
		path := filepath.Join(f.dir, table+".csv.sealed")
		if err := sealed.WriteFile(ctx, path, 0o600, ks, key, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			t.Fatal(err)
		}
		f.files[table] = path
	}
	return f
}

func (f *fixture) run(t *testing.T, tmpl string, params map[string]string) (*Result, error) {
	t.Helper()
	tm, err := f.c.Template(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tm.Bind(params)
	if err != nil {
		t.Fatal(err)
	}
	return Run(context.Background(), Request{Contract: f.c, Query: b, Tables: f.files, Keys: f.keys, Engine: engine.Options{Threads: 1}})
}

// truth computes the spend_by_segment answer in Go from the CSVs.
func truth(t *testing.T, bank, retail []byte, minBalance float64) map[string]int {
	read := func(b []byte) [][]string {
		rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return rows[1:]
	}
	bal := map[string]float64{}
	for _, r := range read(bank) {
		v, _ := strconv.ParseFloat(r[1], 64)
		bal[r[0]] = v
	}
	out := map[string]int{}
	for _, r := range read(retail) {
		if v, ok := bal[r[0]]; ok && v >= minBalance {
			out[r[1]]++
		}
	}
	return out
}

func TestApprovedJoinSuppressesSmallGroups(t *testing.T) {
	f := newFixture(t)
	res, err := f.run(t, "spend_by_segment", map[string]string{"min_balance": "0"})
	if err != nil {
		t.Fatal(err)
	}
	want := truth(t, f.bank, f.retail, 0)
	if want["student"] != 3 {
		t.Fatalf("fixture: %d shared students, want 3", want["student"])
	}
	got := map[string]int{}
	for _, row := range res.Rows {
		n, _ := strconv.Atoi(row[1].Text)
		got[row[0].Text] = n
	}
	for seg, n := range want {
		if n >= 5 && got[seg] != n {
			t.Errorf("segment %s: %d, want %d", seg, got[seg], n)
		}
		if n < 5 {
			if _, shown := got[seg]; shown {
				t.Errorf("segment %s of %d customers shown (k=5)", seg, n)
			}
		}
	}
	if res.Suppressed != 1 || len(res.Rows) != 3 {
		t.Fatalf("suppressed %d, rows %d", res.Suppressed, len(res.Rows))
	}
	// Nothing plaintext in the work directory: no customer ID, no header.
	scanNoPlaintext(t, f.dir, "C0000", "customer_id", "premium")

	// The result sealed to the bank opens only with its key, for this
	// contract.
	rel := NewRelease(f.c, mustBind(t, f.c, "spend_by_segment", "min_balance", "0"), "q-12345678", "bank", res)
	sealedRes, err := Seal(rel, f.c.Recipients["bank"].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Open(sealedRes, f.priv, f.c.SHA256, "bank")
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != 3 || back.Suppressed != 1 || back.Values()[0][0].Text != res.Rows[0][0].Text {
		t.Fatalf("opened %+v", back)
	}
	other, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := Open(sealedRes, other, f.c.SHA256, "bank"); !errors.Is(err, ErrNotForYou) {
		t.Errorf("other key: %v", err)
	}
	if _, err := Open(sealedRes, f.priv, strings.Repeat("0", 64), "bank"); !errors.Is(err, ErrNotForYou) {
		t.Errorf("other contract: %v", err)
	}
	if _, err := Open(sealedRes, f.priv, f.c.SHA256, "retailer"); !errors.Is(err, ErrNotForYou) {
		t.Errorf("other recipient: %v", err)
	}
}

func mustBind(t *testing.T, c *contract.Contract, tmpl string, kv ...string) *contract.Bound {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	b, err := c.Templates[tmpl].Bind(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func scanNoPlaintext(t *testing.T, dir string, needles ...string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				t.Errorf("%s holds plaintext %q", p, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNoiseIsAddedAndCalibrated(t *testing.T) {
	f := newFixture(t)
	exact := truth(t, f.bank, f.retail, 0)
	res, err := f.run(t, "noisy_spend_by_segment", map[string]string{"since": "2000-01-01"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Epsilon != 1 || len(res.Noised) != 2 {
		t.Fatalf("noise %v %v", res.Epsilon, res.Noised)
	}
	diff := 0
	for _, row := range res.Rows {
		n, _ := strconv.Atoi(row[1].Text)
		if n != exact[row[0].Text] {
			diff++
		}
		if math.Abs(float64(n-exact[row[0].Text])) > 60 { // scale 2: P(|x|>60) ≈ e^-30
			t.Errorf("segment %s: noisy %d vs %d", row[0].Text, n, exact[row[0].Text])
		}
	}
	if diff == 0 {
		t.Error("no count changed: noise not applied")
	}
	// The sampler's spread matches Laplace(0, b): mean |x| = b.
	var sum float64
	const n, b = 20000, 3.0
	for range n {
		x, err := Laplace(rand.Reader, b)
		if err != nil {
			t.Fatal(err)
		}
		sum += math.Abs(x)
	}
	if m := sum / n; math.Abs(m-b) > 0.15 {
		t.Errorf("mean |Laplace(0,%v)| = %v", b, m)
	}
}

func TestTamperAndWrongKeyNameTheTable(t *testing.T) {
	f := newFixture(t)
	b, _ := os.ReadFile(f.files["retail_customers"])
	b[len(b)/2] ^= 1
	os.WriteFile(f.files["retail_customers"], b, 0o600)
	_, err := f.run(t, "spend_by_segment", map[string]string{"min_balance": "0"})
	if err == nil || !strings.Contains(err.Error(), "table retail_customers") {
		t.Fatalf("tampered table: %v", err)
	}
	f = newFixture(t)
	f.keys["bank"], f.keys["retailer"] = f.keys["retailer"], f.keys["bank"]
	_, err = f.run(t, "spend_by_segment", map[string]string{"min_balance": "0"})
	if err == nil || !strings.Contains(err.Error(), "table bank_customers") {
		t.Fatalf("wrong key: %v", err)
	}
	// A table with other columns than the contract's.
	f = newFixture(t)
	ks := f.keys["bank"]
	os.Remove(f.files["bank_customers"])
	sealed.WriteFile(context.Background(), f.files["bank_customers"], 0o600, ks, "bank-data", func(w io.Writer) error {
		_, err := w.Write([]byte("customer_id,balance,ssn\nC0000001,1,123\n"))
		return err
	})
	_, err = f.run(t, "spend_by_segment", map[string]string{"min_balance": "0"})
	if err == nil || !strings.Contains(err.Error(), "the contract says") {
		t.Fatalf("other columns: %v", err)
	}
}

// trainTemplate is a training template appended to the example contract.
const trainTemplate = `  flagged_model:
    tables: [bank_customers, retail_customers]
    train: {model: gbdt, label: flagged, task: classification, trees: 20, min_leaf: 10}
    sql: |
      SELECT b.balance, r.segment, r.spend, b.flagged
      FROM bank_customers b JOIN retail_customers r ON b.customer_id = r.customer_id
`

// recordingTrainer records what it is given and returns a fixed model.
type recordingTrainer struct {
	spec    *contract.Train
	columns []string
	rows    int
}

func (r *recordingTrainer) Train(_ context.Context, spec *contract.Train, columns []string, rows [][]engine.Value) ([]byte, string, error) {
	r.spec, r.columns, r.rows = spec, columns, len(rows)
	return []byte("tree\nmodel bytes\n"), "test model", nil
}

// TestTrainingTemplateReleasesOnlyTheModel: a training template's joined
// rows go to the Trainer, and the result (and every recipient's release)
// holds the model and no row; without a Trainer the query is refused.
func TestTrainingTemplateReleasesOnlyTheModel(t *testing.T) {
	f := newFixture(t)
	raw := append(slices.Clone(f.c.Raw), trainTemplate...)
	c, err := contract.Parse(raw, "contract.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	tm, err := c.Template("flagged_model")
	if err != nil {
		t.Fatal(err)
	}
	if tm.Train == nil || tm.Train.MinLeaf != 10 || tm.Train.Label != "flagged" {
		t.Fatalf("train spec %+v", tm.Train)
	}
	b, err := tm.Bind(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), Request{Contract: c, Query: b, Tables: f.files, Keys: f.keys, Engine: engine.Options{Threads: 1}}); err == nil || !strings.Contains(err.Error(), "no trainer") {
		t.Fatalf("no trainer: err = %v", err)
	}
	rec := &recordingTrainer{}
	res, err := Run(context.Background(), Request{Contract: c, Query: b, Tables: f.files, Keys: f.keys, Engine: engine.Options{Threads: 1}, Trainer: rec})
	if err != nil {
		t.Fatal(err)
	}
	joined := 0
	for _, n := range truth(t, f.bank, f.retail, math.Inf(-1)) {
		joined += n
	}
	if rec.rows != joined || !slices.Equal(rec.columns, []string{"balance", "segment", "spend", "flagged"}) || rec.spec != tm.Train {
		t.Fatalf("trainer got %d rows %v (spec %p), want the %d joined rows", rec.rows, rec.columns, rec.spec, joined)
	}
	if string(res.Model) != "tree\nmodel bytes\n" || len(res.Rows) != 0 || len(res.Columns) != 0 {
		t.Fatalf("result: model %q, %d rows, columns %v", res.Model, len(res.Rows), res.Columns)
	}
	rel := NewRelease(c, b, "q1", "bank", res)
	sb, err := Seal(rel, f.priv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	back, err := Open(sb, f.priv, c.SHA256, "bank")
	if err != nil {
		t.Fatal(err)
	}
	if string(back.Model) != string(res.Model) || len(back.Rows) != 0 {
		t.Fatalf("opened release: model %q, %d rows", back.Model, len(back.Rows))
	}
}

// TestTrainingTemplateRules: a training template's min_leaf may not go
// below k, and it takes neither group_size nor noise.
func TestTrainingTemplateRules(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct{ old, new, msg string }{
		{"min_leaf: 10", "min_leaf: 3", "train.min_leaf: 3 is below min_group_size 5"},
		{"trees: 20,", "trees: 0,", "train.trees: must be in 1..10000"},
		{"model: gbdt", "model: svm", "train.model: want rf or gbdt"},
		{"    tables: [bank_customers, retail_customers]\n    train", "    tables: [bank_customers, retail_customers]\n    group_size: n\n    train", "group_size: a training template releases a model"},
	} {
		tt := strings.Replace(trainTemplate, c.old, c.new, 1)
		if tt == trainTemplate {
			t.Fatalf("%q not in the template", c.old)
		}
		_, err := contract.Parse(append(slices.Clone(f.c.Raw), tt...), "contract.yaml")
		if err == nil || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s → %s: err = %v, want …%s…", c.old, c.new, err, c.msg)
		}
	}
}
