package datasets

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io"
	"slices"
	"strings"
)

// The bundled tables are committed gzip-compressed next to their licences
// and compiled into the binary, so loading them needs no network or files.
//
//go:embed data/sklearn/*.csv.gz data/modeldata/*.csv.gz
var dataFS embed.FS

// Info describes a dataset for listings (`teeml datasets list`).
type Info struct {
	Name       string
	Rows       int // all rows; for IDX datasets training plus test
	Features   int
	Task       Task
	NumClasses int // 0 for regression
	Licence    string
	Source     string
	// Bundled is true for datasets compiled into the binary and false for
	// those read from IDX files at run time (see Source for where).
	Bundled bool
}

type entry struct {
	info Info
	load func() (*Dataset, error)
	// pixelMax > 0 marks an image dataset whose Load returns raw pixel
	// values in 0..pixelMax; Prepare divides by it.
	pixelMax float32
}

// registry is filled in init because its loaders consult it (checkShape).
var registry map[string]entry

func init() {
	registry = map[string]entry{
		"digits": {
			info: Info{Name: "digits", Rows: 1797, Features: 64, Task: Classification, NumClasses: 10,
				Licence: "BSD-3-Clause", Bundled: true,
				Source: "scikit-learn digits.csv.gz (UCI optical hand-written digits, 8x8, values 0..16)"},
			load:     loadDigits,
			pixelMax: 16,
		},
		"breast_cancer": {
			info: Info{Name: "breast_cancer", Rows: 569, Features: 30, Task: Classification, NumClasses: 2,
				Licence: "BSD-3-Clause", Bundled: true,
				Source: "scikit-learn breast_cancer.csv (UCI Breast Cancer Wisconsin Diagnostic)"},
			load: loadBreastCancer,
		},
		"diabetes": {
			info: Info{Name: "diabetes", Rows: 442, Features: 10, Task: Regression,
				Licence: "BSD-3-Clause", Bundled: true,
				Source: "scikit-learn diabetes_data_raw.csv.gz + diabetes_target.csv.gz (Efron et al. 2004, unscaled)"},
			load: loadDiabetes,
		},
		"credit": {
			info: Info{Name: "credit", Rows: 4454, Features: 13, Task: Classification, NumClasses: 2,
				Licence: "MIT", Bundled: true,
				Source: "R package modeldata credit_data (converted by data/convert_credit.R)"},
			load: loadCredit,
		},
		"mnist": {
			info: Info{Name: "mnist", Rows: 70000, Features: 784, Task: Classification, NumClasses: 10,
				Licence: "CC BY-SA 3.0 (LeCun, Cortes, Burges)",
				Source:  "IDX files in Go module " + MNISTModule + " data/ (see MNISTDir)"},
			load: func() (*Dataset, error) { return concatIDX(LoadMNIST("")) },
		},
		"fashion_mnist": {
			info: Info{Name: "fashion_mnist", Rows: 70000, Features: 784, Task: Classification, NumClasses: 10,
				Licence: "MIT (Zalando SE)",
				Source:  "IDX files in " + FashionMNISTDebianDir + " (Debian package dataset-fashion-mnist)"},
			load: func() (*Dataset, error) { return concatIDX(LoadFashionMNIST("")) },
		},
	}
}

// Names returns the known dataset names, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// List describes every known dataset, sorted by name, without loading any.
func List() []Info {
	var out []Info
	for _, n := range Names() {
		out = append(out, registry[n].info)
	}
	return out
}

// Load returns a fresh copy of the named dataset with row IDs
// "<name>-000000", ... For mnist and fashion_mnist it reads the IDX files from
// their default location and returns training then test rows in one dataset
// (IDs "mnist-train-…", "mnist-test-…"); use LoadMNIST or LoadFashionMNIST
// for the canonical train/test split.
func Load(name string) (*Dataset, error) {
	e, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("datasets: unknown dataset %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return e.load()
}

// concatIDX joins a train and test set into one dataset.
func concatIDX(train, test *Dataset, err error) (*Dataset, error) {
	if err != nil {
		return nil, err
	}
	out := train.cloneMeta()
	out.N = train.N + test.N
	out.X = slices.Concat(train.X, test.X)
	out.Y = slices.Concat(train.Y, test.Y)
	out.IDs = slices.Concat(train.IDs, test.IDs)
	return out, nil
}

func openData(path string) (io.ReadCloser, error) {
	raw, err := dataFS.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("datasets: embedded %s: %w", path, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("datasets: embedded %s: %w", path, err)
	}
	return zr, nil
}

// readNumeric reads a header-less table of numbers separated by sep (or by
// runs of spaces when sep is ' '), skipping the first skip lines.
func readNumeric(path string, sep byte, skip int) ([][]float64, error) {
	rc, err := openData(path)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var rows [][]float64
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if line <= skip || strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var fields []string
		if sep == ' ' {
			fields = strings.Fields(sc.Text())
		} else {
			fields = strings.Split(sc.Text(), string(sep))
		}
		row := make([]float64, len(fields))
		for j, f := range fields {
			if row[j], err = parseNumber(f); err != nil {
				return nil, fmt.Errorf("datasets: embedded %s line %d field %d: %w", path, line, j+1, err)
			}
		}
		if len(rows) > 0 && len(row) != len(rows[0]) {
			return nil, fmt.Errorf("datasets: embedded %s line %d: %d fields, earlier lines have %d", path, line, len(row), len(rows[0]))
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("datasets: embedded %s: %w", path, err)
	}
	return rows, nil
}

// fromRows builds a dataset from numeric rows whose last value is the label.
func fromRows(name string, rows [][]float64, cols []Column) (*Dataset, error) {
	d := len(cols)
	ds := &Dataset{Name: name, Columns: cols, N: len(rows), D: d,
		X: make([]float32, 0, len(rows)*d), Y: make([]float32, len(rows)), IDs: rowIDs(name, len(rows))}
	for i, r := range rows {
		if len(r) != d+1 {
			return nil, fmt.Errorf("datasets: %s row %d: %d values, want %d features and a label", name, i, len(r), d)
		}
		for _, v := range r[:d] {
			ds.X = append(ds.X, float32(v))
		}
		ds.Y[i] = float32(r[d])
	}
	return ds, nil
}

func checkShape(ds *Dataset) error {
	info := registry[ds.Name].info
	if ds.N != info.Rows || ds.D != info.Features {
		return fmt.Errorf("datasets: %s: embedded data is %dx%d, want %dx%d", ds.Name, ds.N, ds.D, info.Rows, info.Features)
	}
	return nil
}

// loadDigits: sklearn's copy of the UCI optdigits test set, 8x8 images with
// pixel counts 0..16 (left raw here, as sklearn's load_digits does).
func loadDigits() (*Dataset, error) {
	rows, err := readNumeric("data/sklearn/digits.csv.gz", ',', 0)
	if err != nil {
		return nil, err
	}
	ds, err := fromRows("digits", rows, pixelColumns(8, 8))
	if err != nil {
		return nil, err
	}
	ds.Task, ds.NumClasses, ds.ImageShape = Classification, 10, []int{8, 8, 1}
	ds.ClassNames = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	return ds, checkShape(ds)
}

var breastCancerColumns = []string{
	"mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness",
	"mean compactness", "mean concavity", "mean concave points", "mean symmetry", "mean fractal dimension",
	"radius error", "texture error", "perimeter error", "area error", "smoothness error",
	"compactness error", "concavity error", "concave points error", "symmetry error", "fractal dimension error",
	"worst radius", "worst texture", "worst perimeter", "worst area", "worst smoothness",
	"worst compactness", "worst concavity", "worst concave points", "worst symmetry", "worst fractal dimension",
}

// loadBreastCancer keeps sklearn's label coding: 0 = malignant, 1 = benign.
// The file's first line is sklearn's own header "569,30,malignant,benign".
func loadBreastCancer() (*Dataset, error) {
	rows, err := readNumeric("data/sklearn/breast_cancer.csv.gz", ',', 1)
	if err != nil {
		return nil, err
	}
	ds, err := fromRows("breast_cancer", rows, namedColumns(breastCancerColumns))
	if err != nil {
		return nil, err
	}
	ds.Task, ds.NumClasses, ds.ClassNames = Classification, 2, []string{"malignant", "benign"}
	return ds, checkShape(ds)
}

// loadDiabetes uses the raw, unscaled values (age in years, sex coded 1/2,
// ...) rather than sklearn's default pre-scaled copy, so that scaling is
// fitted on the training split like for every other dataset.
func loadDiabetes() (*Dataset, error) {
	x, err := readNumeric("data/sklearn/diabetes_data_raw.csv.gz", ' ', 0)
	if err != nil {
		return nil, err
	}
	y, err := readNumeric("data/sklearn/diabetes_target.csv.gz", ' ', 0)
	if err != nil {
		return nil, err
	}
	if len(x) != len(y) {
		return nil, fmt.Errorf("datasets: diabetes: %d feature rows but %d targets", len(x), len(y))
	}
	rows := make([][]float64, len(x))
	for i := range x {
		if len(y[i]) != 1 {
			return nil, fmt.Errorf("datasets: diabetes: target line %d has %d values, want 1", i+1, len(y[i]))
		}
		rows[i] = append(slices.Clone(x[i]), y[i][0])
	}
	ds, err := fromRows("diabetes", rows, namedColumns([]string{"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}))
	if err != nil {
		return nil, err
	}
	ds.Task = Regression
	return ds, checkShape(ds)
}

// loadCredit reads modeldata's credit_data; Status "bad"/"good" become
// classes 0/1 (R's factor level order). Home, Marital, Records and Job are
// categorical; several columns have missing values.
func loadCredit() (*Dataset, error) {
	rc, err := openData("data/modeldata/credit_data.csv.gz")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	ds, err := LoadCSV(rc, CSVOptions{
		Name: "credit", Label: "Status", Task: Classification,
		ClassNames:  []string{"bad", "good"},
		Categorical: []string{"Home", "Marital", "Records", "Job"},
	})
	if err != nil {
		return nil, err
	}
	return ds, checkShape(ds)
}

func namedColumns(names []string) []Column {
	cols := make([]Column, len(names))
	for i, n := range names {
		cols[i] = Column{Name: n}
	}
	return cols
}
