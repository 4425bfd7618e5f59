// Package datasets loads the datasets that ship with teeml (and IDX files such
// as MNIST), splits them deterministically, standardises features, and
// partitions them for horizontal (row shards) and vertical (column groups)
// federated experiments.
//
// The bundled tables live in data/ with their licences: scikit-learn's
// digits, breast_cancer and diabetes (BSD-3-Clause) and modeldata's
// credit_data (MIT). MNIST and Fashion-MNIST are read from IDX files at run
// time (see MNISTDir and FashionMNISTDebianDir), not compiled in.
package datasets

import "fmt"

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
	// Y holds N labels. It is nil for a dataset without labels (the non-label
	// party of a vertical split), whose Task is then empty.
	Y    []float32
	N, D int
	// IDs names each row (len N), e.g. "digits-000123". Splits, partitions and
	// column splits carry them along so that vertical-FL parties can align rows
	// by private set intersection on the IDs rather than by position.
	IDs []string
}

// Row returns the features of row i (a view, not a copy).
func (d *Dataset) Row(i int) []float32 { return d.X[i*d.D : (i+1)*d.D] }

// HasLabels reports whether the dataset carries a label per row.
func (d *Dataset) HasLabels() bool { return d.Y != nil }

// ColumnIndex returns the index of the named column, or -1.
func (d *Dataset) ColumnIndex(name string) int {
	for i, c := range d.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// Subset returns a new dataset holding copies of the given rows, in the
// given order (a row may repeat); nothing aliases d. Rows must be in range.
func (d *Dataset) Subset(rows []int) *Dataset { return d.subset(rows) }

// subset returns a new dataset holding copies of the given rows, in the given
// order; metadata is copied so the result never aliases ds.
func (d *Dataset) subset(rows []int) *Dataset {
	out := d.cloneMeta()
	out.N = len(rows)
	out.X = make([]float32, len(rows)*d.D)
	if d.Y != nil {
		out.Y = make([]float32, len(rows))
	}
	if d.IDs != nil {
		out.IDs = make([]string, len(rows))
	}
	for k, i := range rows {
		copy(out.X[k*d.D:(k+1)*d.D], d.Row(i))
		if d.Y != nil {
			out.Y[k] = d.Y[i]
		}
		if d.IDs != nil {
			out.IDs[k] = d.IDs[i]
		}
	}
	return out
}

// clone returns a deep copy of d.
func (d *Dataset) clone() *Dataset {
	out := d.cloneMeta()
	out.N = d.N
	out.X = append([]float32(nil), d.X...)
	if d.Y != nil {
		out.Y = append([]float32(nil), d.Y...)
	}
	if d.IDs != nil {
		out.IDs = append([]string(nil), d.IDs...)
	}
	return out
}

// cloneMeta copies everything but the rows (X, Y, IDs, N).
func (d *Dataset) cloneMeta() *Dataset {
	out := &Dataset{
		Name:       d.Name,
		Task:       d.Task,
		NumClasses: d.NumClasses,
		D:          d.D,
	}
	if d.ClassNames != nil {
		out.ClassNames = append([]string(nil), d.ClassNames...)
	}
	if d.ImageShape != nil {
		out.ImageShape = append([]int(nil), d.ImageShape...)
	}
	out.Columns = make([]Column, len(d.Columns))
	for i, c := range d.Columns {
		out.Columns[i] = Column{Name: c.Name}
		if c.Categories != nil {
			out.Columns[i].Categories = append([]string(nil), c.Categories...)
		}
	}
	return out
}

// rowIDs returns IDs "prefix-000000", "prefix-000001", ...
func rowIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	return ids
}
