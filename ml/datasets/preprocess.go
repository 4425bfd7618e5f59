package datasets

import (
	"fmt"
	"math"
	"slices"
)

// Imputer fills missing (NaN) feature values. Its fields are its fitted
// parameters, plain data so that a model can store them and apply the very
// same filling at inference time.
//
// Imputation policy (fitted on the training set only, so that nothing about
// the test rows leaks into the model):
//   - a numeric column's missing values become the training median of that
//     column (robust to the heavy tails of amounts such as Income or Debt);
//   - a categorical column's missing values become its most frequent training
//     category (ties go to the lower category index);
//   - a column with no observed training value at all is filled with 0 (for a
//     categorical column: category 0).
type Imputer struct {
	Columns []string  // column names, in dataset order
	Values  []float32 // fill value per column (a category index for categorical columns)
}

// FitImputer computes the fill values from train.
func FitImputer(train *Dataset) Imputer {
	im := Imputer{Columns: columnNames(train), Values: make([]float32, train.D)}
	vals := make([]float32, 0, train.N)
	for j, col := range train.Columns {
		vals = vals[:0]
		for i := range train.N {
			if v := train.X[i*train.D+j]; !isNaN(v) {
				vals = append(vals, v)
			}
		}
		if len(vals) == 0 {
			continue
		}
		if col.IsCategorical() {
			im.Values[j] = mode(vals)
		} else {
			im.Values[j] = median(vals)
		}
	}
	return im
}

// Apply returns a copy of ds with every NaN feature replaced by its column's
// fill value. The columns of ds must match the fitted ones by name and order.
func (im Imputer) Apply(ds *Dataset) (*Dataset, error) {
	if err := checkColumns("imputer", im.Columns, ds); err != nil {
		return nil, err
	}
	if len(im.Values) != len(im.Columns) {
		return nil, fmt.Errorf("datasets: imputer: %d values for %d columns", len(im.Values), len(im.Columns))
	}
	out := ds.clone()
	for i, v := range out.X {
		if isNaN(v) {
			out.X[i] = im.Values[i%out.D]
		}
	}
	return out, nil
}

// Standardizer rescales numeric columns to zero mean and unit standard
// deviation, with the means and deviations of the training set. Its fields
// are plain data so that a model can store them. Categorical columns are left
// alone: they carry Mean 0 and Std 1, so applying the parameters blindly is
// still correct.
type Standardizer struct {
	Columns []string
	Mean    []float32
	Std     []float32 // population standard deviation; 1 where it was 0
}

// FitStandardizer computes per-column mean and standard deviation on train,
// ignoring missing values. A constant column gets Std 1 so that applying the
// parameters never divides by zero (the column becomes all zeros).
func FitStandardizer(train *Dataset) Standardizer {
	st := Standardizer{Columns: columnNames(train), Mean: make([]float32, train.D), Std: make([]float32, train.D)}
	for j, col := range train.Columns {
		st.Std[j] = 1
		if col.IsCategorical() {
			continue
		}
		// Two passes in float64: one float32 running sum over 60000 rows
		// would lose digits.
		var sum float64
		var n int
		for i := range train.N {
			if v := train.X[i*train.D+j]; !isNaN(v) {
				sum += float64(v)
				n++
			}
		}
		if n == 0 {
			continue
		}
		mean := sum / float64(n)
		var ss float64
		for i := range train.N {
			if v := train.X[i*train.D+j]; !isNaN(v) {
				d := float64(v) - mean
				ss += d * d
			}
		}
		st.Mean[j] = float32(mean)
		if sd := math.Sqrt(ss / float64(n)); sd > 0 && float32(sd) > 0 {
			st.Std[j] = float32(sd)
		}
	}
	return st
}

// Apply returns a copy of ds with (x-Mean)/Std applied per column. Missing
// values stay NaN.
func (st Standardizer) Apply(ds *Dataset) (*Dataset, error) {
	if err := checkColumns("standardizer", st.Columns, ds); err != nil {
		return nil, err
	}
	if len(st.Mean) != len(st.Columns) || len(st.Std) != len(st.Columns) {
		return nil, fmt.Errorf("datasets: standardizer: %d means and %d deviations for %d columns", len(st.Mean), len(st.Std), len(st.Columns))
	}
	out := ds.clone()
	for i, v := range out.X {
		j := i % out.D
		out.X[i] = (v - st.Mean[j]) / st.Std[j]
	}
	return out, nil
}

// Prepare is the usual pipeline for a dataset: LoadSplit, then a Pipeline
// fitted on the training part and applied to both parts.
func Prepare(name string, testFraction float64, seed int64) (train, test *Dataset, err error) {
	train, test, _, err = PrepareWithPipeline(name, testFraction, seed)
	return train, test, err
}

// PrepareWithPipeline is Prepare that also returns the fitted Pipeline, for
// callers that store it with a model.
func PrepareWithPipeline(name string, testFraction float64, seed int64) (train, test *Dataset, p Pipeline, err error) {
	train, test, err = LoadSplit(name, testFraction, seed)
	if err != nil {
		return nil, nil, Pipeline{}, err
	}
	p = FitPipeline(name, train)
	if train, err = p.Apply(train); err != nil {
		return nil, nil, Pipeline{}, err
	}
	if test, err = p.Apply(test); err != nil {
		return nil, nil, Pipeline{}, err
	}
	return train, test, p, nil
}

func columnNames(ds *Dataset) []string {
	names := make([]string, len(ds.Columns))
	for i, c := range ds.Columns {
		names[i] = c.Name
	}
	return names
}

func checkColumns(what string, fitted []string, ds *Dataset) error {
	if len(fitted) != ds.D || len(ds.Columns) != ds.D {
		return fmt.Errorf("datasets: %s fitted on %d columns, %s has %d", what, len(fitted), ds.Name, ds.D)
	}
	for j, c := range ds.Columns {
		if c.Name != fitted[j] {
			return fmt.Errorf("datasets: %s: column %d of %s is %q, fitted on %q", what, j, ds.Name, c.Name, fitted[j])
		}
	}
	return nil
}

func isNaN(v float32) bool { return v != v }

// median of non-empty vals (reordered in place); the mean of the two middle
// values for an even count.
func median(vals []float32) float32 {
	slices.Sort(vals)
	n := len(vals)
	if n%2 == 1 {
		return vals[n/2]
	}
	return float32((float64(vals[n/2-1]) + float64(vals[n/2])) / 2)
}

// mode returns the most frequent value of non-empty vals, the smallest on ties.
func mode(vals []float32) float32 {
	slices.Sort(vals)
	best, bestN := vals[0], 0
	for i := 0; i < len(vals); {
		j := i
		for j < len(vals) && vals[j] == vals[i] {
			j++
		}
		if j-i > bestN {
			best, bestN = vals[i], j-i
		}
		i = j
	}
	return best
}
