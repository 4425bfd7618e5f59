package job

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/kmeans"
	"github.com/teeml/teeml/ml/trees"
	"github.com/teeml/teeml/sealed"
)

// PredictInput names the rows to predict on: a CSV (with a header naming
// the feature columns; an optional "id" column) or a bundled dataset's
// split (test, train or all).
type PredictInput struct {
	CSV     io.Reader
	Source  string // the CSV's name, for errors
	Dataset string
	Split   string
}

// Predictor is a model teeml predict can run: Predict writes one CSV row
// per input row.
type Predictor interface {
	Predict(w io.Writer, in PredictInput) error
}

// OpenPredictor reads a model file of any kind teeml predicts, sealed or
// not (ks opens sealed files in memory; nil refuses them): teeml's
// safetensors weights, a tree model (teeml's or LightGBM's model.txt, an
// XGBoost binary model) or a k-means JSON model, told apart by content.
func OpenPredictor(ctx context.Context, path string, ks sealed.KeySource) (Predictor, error) {
	b, err := ReadMaybeSealed(ctx, path, "weights", ks)
	if err != nil {
		return nil, err
	}
	if isSafetensors(b) {
		return loadWeights(b, path)
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '{' && bytes.Contains(t[:min(len(t), 64)], []byte(`"format"`)) {
		m, err := kmeans.Parse(bytes.NewReader(b), path)
		if err != nil {
			return nil, err
		}
		return &classical{path: path, km: m, features: m.D, names: genericNames(m.D), split: splitOf{DefaultTestFraction, 1}}, nil
	}
	p, err := trees.LoadModel(b, path)
	if err != nil {
		return nil, err
	}
	return newClassical(path, p)
}

// isSafetensors: an 8-byte little-endian header length, then a JSON object.
func isSafetensors(b []byte) bool {
	if len(b) < 10 {
		return false
	}
	n := binary.LittleEndian.Uint64(b)
	return n >= 2 && n <= uint64(len(b)-8) && b[8] == '{'
}

// ReadMaybeSealed reads a file whole, decrypting it in memory with a data
// key from ks when it is sealed (what names it in errors: "weights PATH:
// …"). Without ks a sealed file is refused with an error naming its key.
func ReadMaybeSealed(ctx context.Context, path, what string, ks sealed.KeySource) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if !bytes.HasPrefix(b, []byte(sealed.Magic)) {
		return b, nil
	}
	if ks == nil {
		key := "?"
		if h, _, err := sealed.ReadHeader(bytes.NewReader(b)); err == nil {
			key = h.KeyID
		}
		return nil, fmt.Errorf("%s %s: sealed (key %q): give --kms CONFIG to decrypt it in memory with a data key from the key broker, or decrypt it with teeml data decrypt", what, path, key)
	}
	r, err := sealed.Open(ctx, bytes.NewReader(b), ks)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if b, err = io.ReadAll(r); err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return b, nil
}

// Predict implements Predictor for teeml's neural and linear models.
func (l *Loaded) Predict(w io.Writer, in PredictInput) error {
	var ds *datasets.Dataset
	var err error
	if in.CSV != nil {
		ds, err = l.ReadCSV(in.CSV, in.Source)
	} else {
		ds, err = l.Rows(in.Dataset, in.Split)
	}
	if err != nil {
		return err
	}
	return l.WritePredictions(w, ds)
}

type splitOf struct {
	frac float64
	seed int64
}

// classical predicts with a tree ensemble or k-means on raw features.
type classical struct {
	path     string
	trees    *trees.Predictor
	km       *kmeans.Model
	features int
	names    []string          // feature names as the file has them
	columns  []datasets.Column // the training dataset's columns (teeml's models), else nil
	dataset  string            // recorded training dataset ("" if unknown)
	split    splitOf
	classes  []string
}

func newClassical(path string, p *trees.Predictor) (*classical, error) {
	c := &classical{path: path, trees: p, features: p.Features, names: p.FeatureNames, split: splitOf{DefaultTestFraction, 1}}
	if len(c.names) != c.features {
		c.names = genericNames(c.features)
	}
	var err error
	if v, ok := p.Params[MetaSplitSeed]; ok && p.Format == trees.FormatTeeml {
		if c.split.seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, fmt.Errorf("model %s: parameter %s: %w", path, MetaSplitSeed, err)
		}
	}
	if v, ok := p.Params[MetaTestFraction]; ok && p.Format == trees.FormatTeeml {
		if c.split.frac, err = strconv.ParseFloat(v, 64); err != nil {
			return nil, fmt.Errorf("model %s: parameter %s: %w", path, MetaTestFraction, err)
		}
	}
	if d := p.Params[MetaDataset]; d != "" && p.Format == trees.FormatTeeml {
		ds, err := datasets.Load(d)
		if err != nil {
			return nil, fmt.Errorf("model %s: trained on %s: %w", path, d, err)
		}
		if ds.D != c.features {
			return nil, fmt.Errorf("model %s: %d features, its dataset %s has %d", path, c.features, d, ds.D)
		}
		c.dataset, c.columns = d, ds.Columns
		if len(ds.ClassNames) == p.Classes {
			c.classes = ds.ClassNames
		}
	}
	for len(c.classes) < p.Classes {
		c.classes = append(c.classes, strconv.Itoa(len(c.classes)))
	}
	return c, nil
}

// genericNames are XGBoost's default feature names f0, f1, ….
func genericNames(d int) []string {
	n := make([]string, d)
	for i := range n {
		n[i] = "f" + strconv.Itoa(i)
	}
	return n
}

func (c *classical) Predict(w io.Writer, in PredictInput) error {
	var x []float64
	var ids []string
	var err error
	if in.CSV != nil {
		x, ids, err = c.readCSV(in.CSV, in.Source)
	} else {
		x, ids, err = c.rows(in.Dataset, in.Split)
	}
	if err != nil {
		return err
	}
	n := len(ids)
	cw := csv.NewWriter(w)
	if c.km != nil {
		xf := make([]float32, len(x))
		for i, v := range x {
			xf[i] = float32(v)
		}
		_ = cw.Write([]string{"id", "cluster"})
		for i, k := range c.km.Predict(xf, n) {
			_ = cw.Write([]string{ids[i], strconv.Itoa(k)})
		}
		cw.Flush()
		return cw.Error()
	}
	out, err := c.trees.Predict64(x, n)
	if err != nil {
		return fmt.Errorf("predict: model %s: %w", c.path, err)
	}
	k := c.trees.Outputs()
	header := []string{"id", "prediction"}
	if c.trees.Classes > 0 {
		for _, name := range c.classes {
			header = append(header, "p_"+name)
		}
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	var cls []int
	if c.trees.Classes > 0 {
		cls = c.trees.PredictClass(out)
	}
	row := make([]string, 0, len(header))
	for i := range n {
		row = append(row[:0], ids[i])
		p := out[i*k : (i+1)*k]
		if c.trees.Classes == 0 {
			row = append(row, strconv.FormatFloat(p[0], 'g', -1, 64))
		} else {
			row = append(row, c.classes[cls[i]])
			for _, v := range p {
				row = append(row, strconv.FormatFloat(v, 'g', -1, 64))
			}
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// rows are a bundled dataset's raw rows: the split recorded in a teeml
// model (else seed 1, the default test fraction); k-means rows imputed with
// the training split's medians and modes, as teeml train imputes them.
func (c *classical) rows(name, split string) ([]float64, []string, error) {
	if name == "" {
		return nil, nil, fmt.Errorf("predict: give --input FILE.csv or --dataset NAME")
	}
	if c.dataset != "" && c.dataset != name {
		return nil, nil, fmt.Errorf("model %s: trained on dataset %q, not %q", c.path, c.dataset, name)
	}
	train, test, err := datasets.LoadSplit(name, c.split.frac, c.split.seed)
	if err != nil {
		return nil, nil, err
	}
	var ds *datasets.Dataset
	switch split {
	case "", "test":
		ds = test
	case "train":
		ds = train
	case "all":
		if ds, err = datasets.Load(name); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, fmt.Errorf("predict: split %q: want test, train or all", split)
	}
	if ds.D != c.features {
		return nil, nil, fmt.Errorf("model %s: %d features, dataset %s has %d", c.path, c.features, name, ds.D)
	}
	if c.km != nil {
		if ds, err = datasets.FitImputer(train).Apply(ds); err != nil {
			return nil, nil, err
		}
	}
	x := make([]float64, len(ds.X))
	for i, v := range ds.X {
		x[i] = float64(v)
	}
	ids := ds.IDs
	if len(ids) != ds.N {
		ids = make([]string, ds.N)
		for i := range ids {
			ids[i] = strconv.Itoa(i)
		}
	}
	return x, ids, nil
}

// readCSV reads rows from a CSV with a header: the model's features by
// name (teeml's models: the dataset's column names or the file's), in any
// order; if the header names none of them, every column but "id" and
// "label", in order, must be the features. Empty and NA cells are missing
// (k-means refuses them); categorical columns of teeml's models take the
// category's name.
func (c *classical) readCSV(r io.Reader, source string) ([]float64, []string, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("predict: %s: header: %w", source, err)
	}
	pos := make(map[string]int, len(header))
	for i, h := range header {
		pos[strings.TrimSpace(h)] = i
	}
	idCol, hasID := pos["id"]
	index := make([]int, c.features)
	found := 0
	for j := range c.features {
		index[j] = -1
		for _, name := range c.featureNames(j) {
			if i, ok := pos[name]; ok {
				index[j] = i
				found++
				break
			}
		}
	}
	switch {
	case found == c.features:
	case found == 0:
		var rest []int
		for i, h := range header {
			if h = strings.TrimSpace(h); h != "id" && h != "label" {
				rest = append(rest, i)
			}
		}
		if len(rest) != c.features {
			return nil, nil, fmt.Errorf("predict: %s: %d feature columns, model %s has %d (%s…)", source, len(rest), c.path, c.features, strings.Join(c.names[:min(3, c.features)], ","))
		}
		copy(index, rest)
	default:
		for j := range c.features {
			if index[j] < 0 {
				return nil, nil, fmt.Errorf("predict: %s: missing column %q (model %s has %d features)", source, c.names[j], c.path, c.features)
			}
		}
	}
	var x []float64
	var ids []string
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("predict: %s: %w", source, err)
		}
		for j := range c.features {
			v, err := c.cell(strings.TrimSpace(rec[index[j]]), j)
			if err != nil {
				return nil, nil, fmt.Errorf("predict: %s line %d column %q: %w", source, line, header[index[j]], err)
			}
			x = append(x, v)
		}
		id := strconv.Itoa(len(ids))
		if hasID {
			id = rec[idCol]
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("predict: %s: no rows", source)
	}
	return x, ids, nil
}

// featureNames are the names feature j may have in a CSV header.
func (c *classical) featureNames(j int) []string {
	if c.columns != nil && c.columns[j].Name != c.names[j] {
		return []string{c.columns[j].Name, c.names[j]}
	}
	return []string{c.names[j]}
}

func (c *classical) cell(s string, j int) (float64, error) {
	if s == "" || s == "NA" {
		if c.km != nil {
			return 0, fmt.Errorf("missing value: k-means needs complete rows")
		}
		return math.NaN(), nil
	}
	if c.columns != nil && c.columns[j].IsCategorical() {
		for k, name := range c.columns[j].Categories {
			if name == s {
				return float64(k), nil
			}
		}
		return 0, fmt.Errorf("unknown category %q (known: %s)", s, strings.Join(c.columns[j].Categories, ", "))
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a finite number", s)
	}
	return v, nil
}
