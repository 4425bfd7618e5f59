package datasets

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// CSVOptions says how to read a CSV table with a header row.
type CSVOptions struct {
	// Name is the dataset name; row IDs are "<Name>-000000", ...
	Name string
	// Label is the label column's name. Empty means the table has no label
	// (Y nil, Task empty).
	Label string
	// Task is required when Label is set.
	Task Task
	// ClassNames fixes the class order for classification (label value
	// ClassNames[i] becomes class i). When empty, labels that are all
	// non-negative integers are used as class indices directly, and other
	// labels become classes in sorted order.
	ClassNames []string
	// Categorical lists feature columns to treat as categorical even when
	// their values parse as numbers. Columns with any non-numeric value are
	// categorical anyway.
	Categorical []string
	// Comma is the field separator; 0 means ','.
	Comma rune
}

// isMissing reports whether a CSV cell means "no value".
func isMissing(s string) bool {
	s = strings.TrimSpace(s)
	return s == "" || s == "NA" || s == "NaN" || s == "nan"
}

// LoadCSV reads a CSV table whose first row names the columns. Missing cells
// ("" or "NA") become NaN. Categories of a categorical column are its distinct
// values in sorted order (numerically if they are all numbers), matching R's
// default factor levels for plain ASCII data.
func LoadCSV(r io.Reader, opts CSVOptions) (*Dataset, error) {
	name := opts.Name
	if name == "" {
		name = "csv"
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("datasets: csv %s: "+format, append([]any{name}, args...)...)
	}
	cr := csv.NewReader(r)
	if opts.Comma != 0 {
		cr.Comma = opts.Comma
	}
	cr.ReuseRecord = false
	header, labelCol, forced, err := readCSVHeader(cr, opts)
	if err != nil {
		return nil, fail("%w", err)
	}
	var records [][]string
	var lines []int
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// csv.ParseError already names the line (and column).
			return nil, fail("%w", err)
		}
		line, _ := cr.FieldPos(0)
		records = append(records, rec)
		lines = append(lines, line)
	}
	if len(records) == 0 {
		return nil, fail("no data rows")
	}

	ds := &Dataset{Name: name, N: len(records), IDs: rowIDs(name, len(records))}
	var featCols []int
	for j := range header {
		if j != labelCol {
			featCols = append(featCols, j)
		}
	}
	ds.D = len(featCols)
	ds.X = make([]float32, ds.N*ds.D)
	ds.Columns = make([]Column, ds.D)
	for k, j := range featCols {
		col, err := fillFeature(ds, k, records, lines, j, header[j], forced[header[j]])
		if err != nil {
			return nil, fail("%w", err)
		}
		ds.Columns[k] = col
	}

	if labelCol >= 0 {
		ds.Task = opts.Task
		ds.Y = make([]float32, ds.N)
		if err := fillLabels(ds, records, lines, labelCol, opts); err != nil {
			return nil, fail("%w", err)
		}
	}
	return ds, nil
}

// readCSVHeader reads and checks the header row and the options that name
// its columns. It returns the column names, the label column's index (-1
// without a label) and the columns forced categorical.
func readCSVHeader(cr *csv.Reader, opts CSVOptions) (header []string, labelCol int, forced map[string]bool, err error) {
	header, err = cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, 0, nil, errors.New("empty input, want a header row")
	}
	if err != nil {
		return nil, 0, nil, err
	}
	seen := map[string]bool{}
	for i, h := range header {
		header[i] = strings.TrimSpace(h)
		if header[i] == "" {
			return nil, 0, nil, fmt.Errorf("header column %d has no name", i+1)
		}
		if seen[header[i]] {
			return nil, 0, nil, fmt.Errorf("duplicate column %q", header[i])
		}
		seen[header[i]] = true
	}
	labelCol = -1
	if opts.Label != "" {
		labelCol = slices.Index(header, opts.Label)
		if labelCol < 0 {
			return nil, 0, nil, fmt.Errorf("label column %q not found", opts.Label)
		}
		if opts.Task != Classification && opts.Task != Regression {
			return nil, 0, nil, fmt.Errorf("label %q needs Task classification or regression, got %q", opts.Label, opts.Task)
		}
	}
	forced = map[string]bool{}
	for _, c := range opts.Categorical {
		if !seen[c] {
			return nil, 0, nil, fmt.Errorf("categorical column %q not found", c)
		}
		if c == opts.Label {
			return nil, 0, nil, fmt.Errorf("label column %q cannot be a categorical feature", c)
		}
		forced[c] = true
	}
	return header, labelCol, forced, nil
}

// fillFeature fills feature k of ds from column j (called name) of
// records and returns its Column. The column is categorical when forced or
// when any present value is not a number; missing cells become NaN.
func fillFeature(ds *Dataset, k int, records [][]string, lines []int, j int, name string, forced bool) (Column, error) {
	col := Column{Name: name}
	categorical := forced
	if !categorical {
		for _, rec := range records {
			if v := rec[j]; !isMissing(v) {
				// ParseFloat accepts "Inf": such a column stays numeric and
				// the value is reported below rather than becoming a category.
				if _, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
					categorical = true
					break
				}
			}
		}
	}
	if categorical {
		col.Categories = distinctSorted(records, j)
		index := make(map[string]int, len(col.Categories))
		for c, v := range col.Categories {
			index[v] = c
		}
		for i, rec := range records {
			v := strings.TrimSpace(rec[j])
			if isMissing(v) {
				ds.X[i*ds.D+k] = float32(math.NaN())
			} else {
				ds.X[i*ds.D+k] = float32(index[v])
			}
		}
		return col, nil
	}
	for i, rec := range records {
		if isMissing(rec[j]) {
			ds.X[i*ds.D+k] = float32(math.NaN())
			continue
		}
		f, err := parseNumber(rec[j])
		if err != nil { // ±Inf: non-numbers made the column categorical above
			return col, fmt.Errorf("line %d, column %q: %w", lines[i], name, err)
		}
		ds.X[i*ds.D+k] = float32(f)
	}
	return col, nil
}

// parseNumber parses a finite float.
func parseNumber(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not finite", s)
	}
	return f, nil
}

// distinctSorted returns the distinct non-missing values of column j, sorted
// numerically when all parse as numbers and lexically otherwise.
func distinctSorted(records [][]string, j int) []string {
	set := map[string]bool{}
	numeric := true
	for _, rec := range records {
		v := strings.TrimSpace(rec[j])
		if isMissing(v) || set[v] {
			continue
		}
		set[v] = true
		if _, err := parseNumber(v); err != nil {
			numeric = false
		}
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	if numeric {
		slices.SortFunc(out, func(a, b string) int {
			fa, _ := parseNumber(a)
			fb, _ := parseNumber(b)
			return cmp.Or(cmp.Compare(fa, fb), strings.Compare(a, b))
		})
	} else {
		slices.Sort(out)
	}
	return out
}

func fillLabels(ds *Dataset, records [][]string, lines []int, j int, opts CSVOptions) error {
	colName := opts.Label
	for i, rec := range records {
		if isMissing(rec[j]) {
			return fmt.Errorf("line %d, column %q: missing label", lines[i], colName)
		}
	}
	if opts.Task == Regression {
		for i, rec := range records {
			f, err := parseNumber(rec[j])
			if err != nil {
				return fmt.Errorf("line %d, column %q: %w", lines[i], colName, err)
			}
			ds.Y[i] = float32(f)
		}
		return nil
	}

	classes := opts.ClassNames
	if len(classes) == 0 {
		// Integer labels are class indices already (e.g. 0/1 coded data).
		allInts, maxLabel := true, 0
		for _, rec := range records {
			n, err := strconv.Atoi(strings.TrimSpace(rec[j]))
			if err != nil || n < 0 || n > 1<<16 {
				allInts = false
				break
			}
			maxLabel = max(maxLabel, n)
		}
		if allInts {
			for i, rec := range records {
				n, _ := strconv.Atoi(strings.TrimSpace(rec[j]))
				ds.Y[i] = float32(n)
			}
			ds.NumClasses = maxLabel + 1
			return nil
		}
		classes = distinctSorted(records, j)
	}
	index := make(map[string]int, len(classes))
	for c, v := range classes {
		index[v] = c
	}
	for i, rec := range records {
		c, ok := index[strings.TrimSpace(rec[j])]
		if !ok {
			return fmt.Errorf("line %d, column %q: label %q is not one of %v", lines[i], colName, rec[j], classes)
		}
		ds.Y[i] = float32(c)
	}
	ds.NumClasses = len(classes)
	ds.ClassNames = append([]string(nil), classes...)
	return nil
}
