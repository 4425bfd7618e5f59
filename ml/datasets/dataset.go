// Package datasets loads the datasets that ship with teeml (and IDX files such
// as MNIST), splits them deterministically, standardises features, and
// partitions them for horizontal (row shards) and vertical (column groups)
// federated experiments.
package datasets

// Task says what a dataset's label means.
type Task string

const (
	// Classification labels are class indices 0..NumClasses-1 stored as float32.
	Classification Task = "classification"
	// Regression labels are real targets.
	Regression Task = "regression"
)

// Column describes one feature column.
type Column struct {
	Name string
	// Categories is non-empty for a categorical column; the feature value is then
	// the category index (0..len-1) as float32, or NaN when missing before imputation.
	Categories []string
}

// IsCategorical reports whether the column holds category indices.
func (c Column) IsCategorical() bool { return len(c.Categories) > 0 }

// Dataset is an in-memory table: N rows of D float32 features (row-major,
// NaN marks a missing value) and one label per row.
type Dataset struct {
	Name       string
	Task       Task
	NumClasses int      // classification only
	ClassNames []string // optional, len == NumClasses when set
	Columns    []Column // len == D
	// ImageShape is set when the features are pixels: [height, width, channels],
	// row-major in that order.
	ImageShape []int
	X          []float32 // N*D values
	Y          []float32 // N labels
	N, D       int
}

// Row returns the features of row i (a view, not a copy).
func (d *Dataset) Row(i int) []float32 { return d.X[i*d.D : (i+1)*d.D] }
