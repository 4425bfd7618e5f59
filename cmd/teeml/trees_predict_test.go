package main

import (
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/trees/treetest"
)

func readCSVFile(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestPredictTreesCLI: teeml predict on a GBDT that teeml train wrote, on
// the recorded test split: one row per test row, probabilities that sum to
// 1 and the accuracy teeml eval reports; the same from a sealed model and a
// sealed input; k-means gives cluster ids; a truncated model is refused in
// one line and nothing is written.
func TestPredictTreesCLI(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "model.txt")
	if _, e, code := run(t, bin, "train", "--dataset", "breast_cancer", "--model", "gbdt", "--trees", "20", "--num-leaves", "8", "--out", model, "--log-level", "warn"); code != 0 {
		t.Fatalf("train: %s", e)
	}
	ev, e, code := run(t, bin, "eval", "--weights", model, "--dataset", "breast_cancer", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("eval: %s", e)
	}
	pred := filepath.Join(dir, "pred.csv")
	if _, e, code := run(t, bin, "predict", "--weights", model, "--dataset", "breast_cancer", "-o", pred, "--log-level", "warn"); code != 0 {
		t.Fatalf("predict: %s", e)
	}
	rows := readCSVFile(t, pred)
	if strings.Join(rows[0], ",") != "id,prediction,p_malignant,p_benign" {
		t.Fatalf("header %v", rows[0])
	}
	// labels of the same test split, in the same order
	labels, e, code := run(t, bin, "datasets", "export", "--dataset", "breast_cancer", "--split", "test")
	if code != 0 {
		t.Fatal(e)
	}
	lab := strings.Split(strings.TrimSpace(labels), "\n")[1:]
	if len(rows)-1 != len(lab) || len(lab) < 100 {
		t.Fatalf("%d predictions for %d test rows", len(rows)-1, len(lab))
	}
	correct := 0
	for i, r := range rows[1:] {
		p0, err0 := strconv.ParseFloat(r[2], 64)
		p1, err1 := strconv.ParseFloat(r[3], 64)
		if err0 != nil || err1 != nil || math.Abs(p0+p1-1) > 1e-9 {
			t.Fatalf("row %d: %v", i, r)
		}
		if (p1 > 0.5) != (r[1] == "benign") {
			t.Fatalf("row %d: prediction %q with p_benign %v", i, r[1], p1)
		}
		y := lab[i][strings.LastIndex(lab[i], ",")+1:]
		if (y == "1") == (r[1] == "benign") {
			correct++
		}
	}
	acc := strconv.FormatFloat(float64(correct)/float64(len(lab)), 'f', 4, 64)
	if !strings.Contains(ev, "test_accuracy="+acc) {
		t.Errorf("predict's accuracy %s, eval printed %q", acc, ev)
	}
	plain, err := os.ReadFile(pred)
	if err != nil {
		t.Fatal(err)
	}

	// sealed model and sealed input
	keys, sealedModel := filepath.Join(dir, "keys.json"), filepath.Join(dir, "model.sealed")
	if _, e, code := run(t, bin, "data", "keygen", "--key-file", keys, "--key", "models"); code != 0 {
		t.Fatal(e)
	}
	if _, e, code := run(t, bin, "data", "encrypt", "--key-file", keys, "--in", model, "--out", sealedModel); code != 0 {
		t.Fatal(e)
	}
	if _, e, code := run(t, bin, "predict", "--weights", sealedModel, "--dataset", "breast_cancer"); code != 1 || !strings.Contains(e, `model.sealed: sealed (key "models"): give --kms CONFIG`) {
		t.Errorf("predict of a sealed model without keys: exit %d %s", code, e)
	}
	out, e, code := run(t, bin, "predict", "--key-file", keys, "--weights", sealedModel, "--dataset", "breast_cancer", "--log-level", "warn")
	if code != 0 || out != string(plain) {
		t.Errorf("predict of the sealed model: exit %d, %s; output differs from the plaintext model's: %v", code, e, out != string(plain))
	}
	if ev2, e, code := run(t, bin, "eval", "--key-file", keys, "--weights", sealedModel, "--dataset", "breast_cancer", "--log-level", "warn"); code != 0 || !strings.HasSuffix(ev2, "\n"+ev) {
		t.Errorf("eval of the sealed model: exit %d %s: %q, want %q", code, e, ev2, ev)
	}
	input := filepath.Join(dir, "input.csv")
	if err := os.WriteFile(input, []byte(labels), 0o644); err != nil {
		t.Fatal(err)
	}
	sealedInput := filepath.Join(dir, "input.sealed")
	if _, e, code := run(t, bin, "data", "encrypt", "--key-file", keys, "--in", input, "--out", sealedInput); code != 0 {
		t.Fatal(e)
	}
	// (export writes preprocessed rows: the predictions differ from the raw
	// split's, but sealed and plaintext input must agree)
	want, e, code := run(t, bin, "predict", "--weights", model, "--input", input, "--log-level", "warn")
	if code != 0 || strings.Count(want, "\n") != len(lab)+1 {
		t.Fatalf("predict --input: exit %d %s", code, e)
	}
	if got, e, code := run(t, bin, "predict", "--key-file", keys, "--weights", sealedModel, "--input", sealedInput, "--log-level", "warn"); code != 0 || got != want {
		t.Errorf("sealed model and sealed input: exit %d %s; same as plaintext: %v", code, e, got == want)
	}

	// k-means
	km := filepath.Join(dir, "km.json")
	if _, e, code := run(t, bin, "train", "--dataset", "digits", "--model", "kmeans", "--k", "10", "--n-init", "2", "--out", km, "--log-level", "warn"); code != 0 {
		t.Fatalf("kmeans train: %s", e)
	}
	kout, e, code := run(t, bin, "predict", "--weights", km, "--dataset", "digits", "--log-level", "warn")
	klines := strings.Split(strings.TrimSpace(kout), "\n")
	if code != 0 || klines[0] != "id,cluster" || len(klines) != 1+359 { // digits: 359 test rows
		t.Fatalf("kmeans predict: exit %d %s: %d lines, header %q", code, e, len(klines), klines[0])
	}
	seen := map[string]bool{}
	for _, l := range klines[1:] {
		c := l[strings.LastIndex(l, ",")+1:]
		if k, err := strconv.Atoi(c); err != nil || k < 0 || k > 9 {
			t.Fatalf("cluster %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 5 {
		t.Errorf("359 digits in %d clusters", len(seen))
	}

	// a truncated model: one line naming the file, no output file
	b, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	badOut := filepath.Join(dir, "bad-pred.csv")
	_, e, code = run(t, bin, "predict", "--weights", bad, "--dataset", "breast_cancer", "-o", badOut, "--log-level", "warn")
	if code == 0 || !strings.Contains(e, "model "+bad+": line ") || strings.Count(strings.TrimSpace(e), "\n") != 0 {
		t.Errorf("truncated model: exit %d, stderr %q: want one line naming the file and line", code, e)
	}
	if _, err := os.Stat(badOut); !os.IsNotExist(err) {
		t.Errorf("output written for a refused model: %v", err)
	}
}

// TestPredictForeignModels: teeml predict on XGBoost and LightGBM models
// trained by those libraries writes their own recorded predictions
// (≤ 1e-6, relative above 1).
func TestPredictForeignModels(t *testing.T) {
	bin := buildTeeml(t)
	for _, c := range treetest.Cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			dir := t.TempDir()
			in, want := c.Rows(t)
			input := treetest.WriteCSV(t, dir, in)
			out := filepath.Join(dir, "pred.csv")
			if _, e, code := run(t, bin, "predict", "--weights", c.Model, "--input", input, "-o", out, "--log-level", "warn"); code != 0 {
				t.Fatalf("predict: exit %d %s", code, e)
			}
			rows := readCSVFile(t, out)
			if len(rows) != len(want)+1 {
				t.Fatalf("%d predictions, %d reference rows", len(rows)-1, len(want))
			}
			worst := 0.0
			for i, r := range rows[1:] {
				vals := r[1:] // regression: the value
				if c.Classes > 0 {
					vals = r[2:]
					if len(want[i]) == 1 {
						vals = r[3:] // reference: p(class 1)
					}
				}
				if len(vals) != len(want[i]) {
					t.Fatalf("row %d: %v, reference %v", i, r, want[i])
				}
				for j, s := range vals {
					v, err := strconv.ParseFloat(s, 64)
					if err != nil {
						t.Fatal(err)
					}
					worst = max(worst, math.Abs(v-want[i][j])/max(1, math.Abs(want[i][j])))
				}
			}
			t.Logf("%d rows: max difference %.3g", len(want), worst)
			if worst > 1e-6 {
				t.Errorf("max difference %.3g > 1e-6", worst)
			}
		})
	}
}
