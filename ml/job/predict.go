package job

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/teeml/teeml/ml/datasets"
)

// Rows returns raw rows of a dataset for prediction: split "test" (the
// held-out rows recorded in the weights file), "train", or "all".
func (l *Loaded) Rows(name, split string) (*datasets.Dataset, error) {
	switch split {
	case "", "test":
		return l.heldOut(name)
	case "train", "all":
	default:
		return nil, fmt.Errorf("predict: split %q: want test, train or all", split)
	}
	if l.Pipeline.Dataset != "" && l.Pipeline.Dataset != name {
		return nil, fmt.Errorf("weights: trained on dataset %q, not %q", l.Pipeline.Dataset, name)
	}
	var raw *datasets.Dataset
	var err error
	if split == "all" {
		raw, err = datasets.Load(name)
	} else {
		raw, _, err = datasets.LoadSplit(name, l.TestFraction, l.SplitSeed)
	}
	if err != nil {
		return nil, err
	}
	if l.Pipeline.Dataset == "" {
		return raw, nil
	}
	return l.Pipeline.Apply(raw)
}

// ReadCSV reads rows to predict on from a CSV file with a header naming the
// model's feature columns (any order; an optional "id" column; other columns,
// such as a label, are ignored). Categorical values are given by category
// name; empty or NA cells are missing and imputed as in training.
func (l *Loaded) ReadCSV(r io.Reader, source string) (*datasets.Dataset, error) {
	cols := l.Pipeline.Columns
	if len(cols) == 0 {
		return nil, fmt.Errorf("predict: %s: the weights file records no feature columns", source)
	}
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("predict: %s: header: %w", source, err)
	}
	pos := make(map[string]int, len(header))
	for i, h := range header {
		pos[strings.TrimSpace(h)] = i
	}
	idCol, hasID := pos["id"]
	index := make([]int, len(cols))
	for j, c := range cols {
		i, ok := pos[c.Name]
		if !ok {
			return nil, fmt.Errorf("predict: %s: missing column %q (need %s)", source, c.Name, columnList(cols))
		}
		index[j] = i
	}
	ds := &datasets.Dataset{Name: source, Columns: cols, D: len(cols)}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("predict: %s: %w", source, err)
		}
		for j, c := range cols {
			cell := strings.TrimSpace(rec[index[j]])
			v, err := parseCell(cell, c)
			if err != nil {
				return nil, fmt.Errorf("predict: %s line %d column %q: %w", source, line, c.Name, err)
			}
			ds.X = append(ds.X, v)
		}
		id := strconv.Itoa(ds.N)
		if hasID {
			id = rec[idCol]
		}
		ds.IDs = append(ds.IDs, id)
		ds.N++
	}
	if ds.N == 0 {
		return nil, fmt.Errorf("predict: %s: no rows", source)
	}
	if l.Pipeline.Dataset == "" {
		return ds, nil
	}
	return l.Pipeline.Apply(ds)
}

func parseCell(cell string, c datasets.Column) (float32, error) {
	if cell == "" || cell == "NA" {
		return float32(math.NaN()), nil
	}
	if c.IsCategorical() {
		for k, name := range c.Categories {
			if name == cell {
				return float32(k), nil
			}
		}
		return 0, fmt.Errorf("unknown category %q (known: %s)", cell, strings.Join(c.Categories, ", "))
	}
	v, err := strconv.ParseFloat(cell, 32)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a finite number", cell)
	}
	return float32(v), nil
}

func columnList(cols []datasets.Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return strings.Join(names, ",")
}

// WritePredictions writes one CSV row per example: id, prediction (class
// name or regression value) and, for classification, one probability column
// per class.
func (l *Loaded) WritePredictions(w io.Writer, ds *datasets.Dataset) error {
	classNames := l.Pipeline.ClassNames
	out, err := l.Model.Predict(ds)
	if err != nil {
		return err
	}
	k := l.Model.OutputDim()
	if len(out) != ds.N*k {
		return fmt.Errorf("predict: model returned %d values for %d rows × %d outputs", len(out), ds.N, k)
	}
	cw := csv.NewWriter(w)
	spec := l.Model.Spec()
	regression := spec.Task == datasets.Regression
	header := []string{"id", "prediction"}
	if !regression {
		for c := 0; c < k; c++ {
			header = append(header, "p_"+className(classNames, c))
		}
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	row := make([]string, 0, len(header))
	for i := 0; i < ds.N; i++ {
		row = row[:0]
		id := strconv.Itoa(i)
		if i < len(ds.IDs) {
			id = ds.IDs[i]
		}
		p := out[i*k : (i+1)*k]
		if regression {
			row = append(row, id, strconv.FormatFloat(float64(p[0]), 'g', 7, 32))
		} else {
			best := 0
			for c := range p {
				if p[c] > p[best] {
					best = c
				}
			}
			row = append(row, id, className(classNames, best))
			for _, v := range p {
				row = append(row, strconv.FormatFloat(float64(v), 'g', -1, 32))
			}
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func className(names []string, c int) string {
	if c < len(names) {
		return names[c]
	}
	return strconv.Itoa(c)
}
