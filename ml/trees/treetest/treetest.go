// Package treetest locates, for tests, tree models trained by other
// libraries and the predictions those libraries recorded:
//
//   - XGBoost binary models trained by Debian's python3-xgboost 1.7.4 on
//     teeml's bundled datasets (ml/trees/testdata/xgboost, made by gen.py);
//   - LightGBM text models trained by LightGBM, as published in the testdata
//     of github.com/dmitryikh/leaves (MIT licence), read from that module's
//     directory in the Go module cache: leaves is a dependency of teeml, so
//     the files are there wherever ml/trees builds; nothing of them is
//     committed here.
package treetest

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/teeml/teeml/internal/testenv"
)

// Case is one model with rows to predict and the reference predictions:
// one row per input row, all class probabilities, only that of class 1
// (binary), or the regression value.
type Case struct {
	Name   string
	Model  string // path
	Input  string // path: CSV with a header, TSV or libsvm
	Want   string // path
	LibSVM bool   // Input is libsvm: "label index:value ..."
	// Features is a libsvm input's width; Sparse: its absent entries are
	// missing values (NaN), as XGBoost reads libsvm, rather than 0.
	Features int
	Sparse   bool
	Label    bool   // Input's first column is a label, not a feature
	Format   string // as trees.Format
	Classes  int    // 0: regression
}

// XGBoostDir is ml/trees/testdata/xgboost.
func XGBoostDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "xgboost")
}

// LeavesDir is the testdata directory of the leaves module teeml builds with.
func LeavesDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/dmitryikh/leaves").Output()
	dir := filepath.Join(strings.TrimSpace(string(out)), "testdata")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "lg_rf_iris.model"))
	}
	if err != nil {
		testenv.MustRun(t, "leaves module testdata not found (go list -m github.com/dmitryikh/leaves): %v", err)
	}
	return dir
}

// Cases are every model of both kinds.
func Cases(t testing.TB) []Case {
	x, l := XGBoostDir(), LeavesDir(t)
	return []Case{
		{"xgboost binary (breast_cancer)", filepath.Join(x, "xgb_breast_cancer.model"), filepath.Join(x, "xgb_breast_cancer_test.csv"),
			filepath.Join(x, "xgb_breast_cancer_predictions.csv"), false, 0, false, false, "xgboost", 2},
		{"xgboost multiclass (digits)", filepath.Join(x, "xgb_digits.model"), filepath.Join(x, "xgb_digits_test.csv"),
			filepath.Join(x, "xgb_digits_predictions.csv"), false, 0, false, false, "xgboost", 10},
		{"xgboost regression (diabetes)", filepath.Join(x, "xgb_diabetes.model"), filepath.Join(x, "xgb_diabetes_test.csv"),
			filepath.Join(x, "xgb_diabetes_predictions.csv"), false, 0, false, false, "xgboost", 0},
		// XGBoost's binary format before 1.0 (no "binf"; base_score stored as a margin)
		{"xgboost 0.x binary (agaricus)", filepath.Join(l, "xgagaricus.model"), filepath.Join(l, "agaricus_test.libsvm"),
			filepath.Join(l, "xgagaricus_true_predictions.txt"), true, 127, true, false, "xgboost", 2},
		{"lightgbm dart binary (breast cancer)", filepath.Join(l, "lg_dart_breast_cancer.model"), filepath.Join(l, "breast_cancer_test.tsv"),
			filepath.Join(l, "lg_dart_breast_cancer_true_predictions.txt"), false, 0, false, false, "lightgbm", 2},
		{"lightgbm random forest binary (iris)", filepath.Join(l, "lg_rf_iris.model"), filepath.Join(l, "iris_test.libsvm"),
			filepath.Join(l, "lg_rf_iris_true_predictions.txt"), true, 4, false, false, "lightgbm", 2},
		{"lightgbm multiclass", filepath.Join(l, "lgmulticlass.model"), filepath.Join(l, "multiclass_test.tsv"),
			filepath.Join(l, "lgmulticlass_true_predictions.txt"), false, 0, false, true, "lightgbm", 5},
	}
}

// Rows reads a case's input rows and reference rows.
func (c Case) Rows(t testing.TB) (in, want [][]float64) {
	t.Helper()
	in = Table(t, c.Input, c.LibSVM, c.Features)
	if c.Sparse {
		for _, r := range in {
			for j, v := range r {
				if v == 0 {
					r[j] = math.NaN()
				}
			}
		}
	}
	if c.Label {
		for i := range in {
			in[i] = in[i][1:]
		}
	}
	return in, Table(t, c.Want, false, 0)
}

// Table reads comma-, tab- or space-separated numbers, skipping a header
// line that does not parse; libsvm rows become dense rows of d features.
func Table(t testing.TB, path string, libsvm bool, d int) [][]float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]float64
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fields := strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == '\t' || r == ' ' || r == '\r' })
		if libsvm {
			row := make([]float64, d)
			for _, f := range fields[1:] {
				k, v, _ := strings.Cut(f, ":")
				j, err1 := strconv.Atoi(k)
				x, err2 := strconv.ParseFloat(v, 64)
				if err1 != nil || err2 != nil || j < 0 || j >= d {
					t.Fatalf("%s line %d: %q", path, i+1, f)
				}
				row[j] = x
			}
			rows = append(rows, row)
			continue
		}
		row := make([]float64, len(fields))
		var perr error
		for j, f := range fields {
			if row[j], perr = strconv.ParseFloat(f, 64); perr != nil {
				break
			}
		}
		if perr != nil {
			if i == 0 {
				continue // header
			}
			t.Fatalf("%s line %d: %v", path, i+1, perr)
		}
		rows = append(rows, row)
	}
	return rows
}

// WriteCSV writes rows as a CSV file with header f0..f(d-1) (for teeml
// predict --input) and returns its path.
func WriteCSV(t testing.TB, dir string, rows [][]float64) string {
	t.Helper()
	var b strings.Builder
	for j := range rows[0] {
		if j > 0 {
			b.WriteByte(',')
		}
		b.WriteString("f" + strconv.Itoa(j))
	}
	b.WriteByte('\n')
	for _, r := range rows {
		for j, v := range r {
			if j > 0 {
				b.WriteByte(',')
			}
			if !math.IsNaN(v) { // NaN: an empty cell, a missing value
				b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
			}
		}
		b.WriteByte('\n')
	}
	p := filepath.Join(dir, "input.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
