// Package cleanroomml trains the tree models of the clean room's training
// templates ("train on an approved joined table, release only the
// model"; docs/classical-ml.md): it implements sql/cleanroom.Trainer with
// ml/trees, so that the analytics service itself links no learning code.
// It is a composition package: it joins sql/cleanroom's rows to ml/trees
// and nothing else (no key broker, no FL).
package cleanroomml

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/teeml/teeml/contract"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/trees"
	sqlcleanroom "github.com/teeml/teeml/sql/cleanroom"
	"github.com/teeml/teeml/sql/engine"
)

// Trainer is the sql/cleanroom.Trainer of ml/trees.
type Trainer struct {
	Threads int // 0: GOMAXPROCS
}

var _ sqlcleanroom.Trainer = Trainer{}

// Train implements sql/cleanroom.Trainer: Table builds the dataset, the
// spec's model is trained on every row with min leaf = spec.MinLeaf (≥ the
// contract's k), and the model is returned as LightGBM text.
func (tr Trainer) Train(ctx context.Context, spec *contract.Train, columns []string, rows [][]engine.Value) ([]byte, string, error) {
	ds, err := Table(spec, columns, rows)
	if err != nil {
		return nil, "", err
	}
	var m *trees.Model
	switch spec.Model {
	case "rf":
		m, err = trees.TrainForest(ctx, ds, trees.ForestConfig{Trees: spec.Trees, MaxDepth: spec.MaxDepth, MinLeaf: spec.MinLeaf,
			Threads: tr.Threads, Seed: 1})
	case "gbdt":
		m, err = trees.TrainGBDT(ctx, ds, trees.GBDTConfig{Iterations: spec.Trees, LR: spec.LR, NumLeaves: spec.NumLeaves,
			MaxDepth: spec.MaxDepth, MinDataInLeaf: spec.MinLeaf, Lambda: spec.Lambda, Threads: tr.Threads, Seed: 1})
	default:
		return nil, "", fmt.Errorf("cleanroomml: model %q: want rf or gbdt", spec.Model)
	}
	if err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	if err := trees.WriteText(&buf, m); err != nil {
		return nil, "", err
	}
	s := trees.Evaluate(m, ds)
	summary := fmt.Sprintf("%s, %d trees, %d rows × %d features, min leaf %d", spec.Model, len(m.Trees), ds.N, ds.D, spec.MinLeaf)
	if ds.Task == datasets.Classification {
		summary += fmt.Sprintf(", %d classes (outputs in sorted label order), training accuracy %.4f", ds.NumClasses, s.Accuracy)
	} else {
		summary += fmt.Sprintf(", training RMSE %.4g", s.RMSE)
	}
	return buf.Bytes(), summary, nil
}

// Table is the training table of a template's result: every column but
// the label is a feature — numeric when every non-NULL cell parses as a
// number (true/false as 1/0), categorical (its distinct values, sorted)
// otherwise; NULL is a missing value. The label's distinct values are the
// classes (sorted) for classification; for regression it must be numeric.
func Table(spec *contract.Train, columns []string, rows [][]engine.Value) (*datasets.Dataset, error) {
	li := slices.Index(columns, spec.Label)
	if li < 0 {
		return nil, fmt.Errorf("cleanroomml: the result has no label column %s (columns: %v)", spec.Label, columns)
	}
	if len(columns) < 2 {
		return nil, fmt.Errorf("cleanroomml: the result has no feature column besides the label %s", spec.Label)
	}
	if len(rows) < 2*spec.MinLeaf {
		return nil, fmt.Errorf("cleanroomml: %d rows: fewer than two leaves of min_leaf %d", len(rows), spec.MinLeaf)
	}
	ds := &datasets.Dataset{Name: "cleanroom", N: len(rows), D: len(columns) - 1}
	ds.X = make([]float32, ds.N*ds.D)
	f := 0
	for c, name := range columns {
		if c == li {
			continue
		}
		col := datasets.Column{Name: name}
		vals, cats := columnValues(rows, c)
		if cats != nil {
			col.Categories = cats
		}
		for r, v := range vals {
			ds.X[r*ds.D+f] = v
		}
		ds.Columns = append(ds.Columns, col)
		f++
	}
	labels, classes := columnValues(rows, li)
	for r, v := range labels {
		if math.IsNaN(float64(v)) {
			return nil, fmt.Errorf("cleanroomml: label %s is NULL in row %d", spec.Label, r+1)
		}
	}
	switch spec.Task {
	case "classification":
		if classes == nil { // numeric labels: their distinct values are the classes
			seen := map[float32]bool{}
			for _, v := range labels {
				seen[v] = true
			}
			keys := make([]float64, 0, len(seen))
			for v := range seen {
				keys = append(keys, float64(v))
			}
			slices.Sort(keys)
			idx := map[float32]float32{}
			for i, v := range keys {
				classes = append(classes, strconv.FormatFloat(v, 'g', -1, 64))
				idx[float32(v)] = float32(i)
			}
			for r, v := range labels {
				labels[r] = idx[v]
			}
		}
		if len(classes) < 2 {
			return nil, fmt.Errorf("cleanroomml: label %s has %d distinct values, need 2 classes", spec.Label, len(classes))
		}
		ds.Task, ds.NumClasses, ds.ClassNames = datasets.Classification, len(classes), classes
	case "regression":
		if classes != nil {
			return nil, fmt.Errorf("cleanroomml: label %s is not numeric: cannot regress on it", spec.Label)
		}
		ds.Task = datasets.Regression
	default:
		return nil, fmt.Errorf("cleanroomml: task %q: want classification or regression", spec.Task)
	}
	ds.Y = labels
	return ds, nil
}

// columnValues is column c as float32 (NaN for NULL), and its categories
// (sorted distinct values) when some cell is not a number.
func columnValues(rows [][]engine.Value, c int) ([]float32, []string) {
	out := make([]float32, len(rows))
	numeric := true
	for r, row := range rows {
		v := row[c]
		if v.Null {
			out[r] = float32(math.NaN())
			continue
		}
		switch v.Text {
		case "true":
			out[r] = 1
		case "false":
			out[r] = 0
		default:
			x, err := strconv.ParseFloat(v.Text, 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				numeric = false
			}
			out[r] = float32(x)
		}
	}
	if numeric {
		return out, nil
	}
	set := map[string]bool{}
	for _, row := range rows {
		if !row[c].Null {
			set[row[c].Text] = true
		}
	}
	cats := make([]string, 0, len(set))
	for s := range set {
		cats = append(cats, s)
	}
	slices.Sort(cats)
	for r, row := range rows {
		if !row[c].Null {
			out[r] = float32(slices.Index(cats, row[c].Text))
		}
	}
	return out, cats
}
