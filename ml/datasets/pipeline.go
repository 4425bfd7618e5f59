package datasets

import (
	"encoding/json"
	"fmt"
)

// LoadSplit loads a known dataset and splits it into training and test
// parts, unprocessed. IDX datasets (mnist, fashion_mnist) keep their official
// 60000/10000 split and ignore testFraction and seed; the others use the
// stratified, seeded Split.
func LoadSplit(name string, testFraction float64, seed int64) (train, test *Dataset, err error) {
	switch name {
	case "mnist":
		return LoadMNIST("")
	case "fashion_mnist":
		return LoadFashionMNIST("")
	}
	if !(testFraction > 0 && testFraction < 1) {
		return nil, nil, fmt.Errorf("datasets: %s: test fraction %v outside (0, 1)", name, testFraction)
	}
	ds, err := Load(name)
	if err != nil {
		return nil, nil, err
	}
	train, test = Split(ds, testFraction, seed)
	return train, test, nil
}

// Pipeline is the fitted preprocessing of one dataset: pixel scaling for
// images, or imputation then standardisation for tables. It is plain data
// (JSON) so a model file can carry it and inference applies exactly what
// training applied.
type Pipeline struct {
	Dataset string `json:"dataset"`
	// Columns are the raw feature columns the pipeline expects, with their
	// categories, so rows from a CSV file can be encoded the same way.
	Columns []Column `json:"columns"`
	// ClassNames label the model's outputs (classification only).
	ClassNames []string `json:"class_names,omitempty"`
	// PixelScale multiplies every feature (images: raw 0..16 digits → [0,1]).
	PixelScale   float32       `json:"pixel_scale,omitempty"`
	Imputer      *Imputer      `json:"imputer,omitempty"`
	Standardizer *Standardizer `json:"standardizer,omitempty"`
}

// FitPipeline fits the preprocessing for dataset name on its raw training
// part. Image datasets are scaled, never standardised (pixel statistics
// would differ between federated parties and nothing needs it); tables are
// imputed (see Imputer for the policy) and standardised.
func FitPipeline(name string, train *Dataset) Pipeline {
	p := Pipeline{Dataset: name, Columns: append([]Column(nil), train.Columns...),
		ClassNames: append([]string(nil), train.ClassNames...)}
	if train.ImageShape != nil {
		if e := registry[name]; e.pixelMax > 0 {
			p.PixelScale = 1 / e.pixelMax
		}
		return p
	}
	im := FitImputer(train)
	p.Imputer = &im
	// The standardizer sees imputed values so medians don't skew the means.
	imputed, err := im.Apply(train)
	if err != nil {
		// FitImputer was fitted on train itself, so its columns match.
		panic(fmt.Sprintf("datasets: pipeline: imputer rejected its own training set: %v", err))
	}
	st := FitStandardizer(imputed)
	p.Standardizer = &st
	return p
}

// Apply returns the preprocessed copy of ds.
func (p Pipeline) Apply(ds *Dataset) (*Dataset, error) {
	if len(p.Columns) != ds.D {
		return nil, fmt.Errorf("datasets: pipeline for %s: expects %d feature columns, %s has %d", p.Dataset, len(p.Columns), ds.Name, ds.D)
	}
	out := ds
	if p.PixelScale != 0 {
		out = ds.clone()
		for i := range out.X {
			out.X[i] *= p.PixelScale
		}
	}
	var err error
	if p.Imputer != nil {
		if out, err = p.Imputer.Apply(out); err != nil {
			return nil, err
		}
	}
	if p.Standardizer != nil {
		if out, err = p.Standardizer.Apply(out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// JSON encodes the pipeline as JSON (for file metadata).
func (p Pipeline) JSON() string {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // only plain data
	}
	return string(b)
}

// ParsePipeline decodes Pipeline.JSON's output.
func ParsePipeline(s string) (Pipeline, error) {
	var p Pipeline
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return Pipeline{}, fmt.Errorf("datasets: pipeline: %w", err)
	}
	if p.Imputer != nil && len(p.Imputer.Values) != len(p.Imputer.Columns) {
		return Pipeline{}, fmt.Errorf("datasets: pipeline: imputer has %d values for %d columns", len(p.Imputer.Values), len(p.Imputer.Columns))
	}
	return p, nil
}
