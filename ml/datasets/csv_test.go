package datasets

import (
	"slices"
	"strings"
	"testing"
)

func TestLoadCSV(t *testing.T) {
	in := `id,color,size,price,label
1,red,10,1.5,yes
2,blue,2,NA,no
3,,10,2.5,yes
4,red,,3.0,no
`
	ds, err := LoadCSV(strings.NewReader(in), CSVOptions{Name: "toy", Label: "label", Task: Classification, Categorical: []string{"size"}})
	if err != nil {
		t.Fatal(err)
	}
	if ds.N != 4 || ds.D != 4 || !slices.Equal(columnNames(ds), []string{"id", "color", "size", "price"}) {
		t.Fatalf("%dx%d %v", ds.N, ds.D, columnNames(ds))
	}
	if ds.Columns[0].IsCategorical() || !ds.Columns[1].IsCategorical() || !ds.Columns[2].IsCategorical() || ds.Columns[3].IsCategorical() {
		t.Fatal("wrong categorical detection")
	}
	if !slices.Equal(ds.Columns[1].Categories, []string{"blue", "red"}) || !slices.Equal(ds.Columns[2].Categories, []string{"2", "10"}) {
		t.Fatalf("categories %v %v", ds.Columns[1].Categories, ds.Columns[2].Categories)
	}
	// Row 0: id 1, red=1, "10"=1, 1.5
	if !slices.Equal(ds.Row(0), []float32{1, 1, 1, 1.5}) {
		t.Fatalf("row 0 %v", ds.Row(0))
	}
	if !isNaN(ds.Row(1)[3]) || !isNaN(ds.Row(2)[1]) || !isNaN(ds.Row(3)[2]) {
		t.Fatal("missing values must be NaN")
	}
	if !slices.Equal(ds.ClassNames, []string{"no", "yes"}) || !slices.Equal(ds.Y, []float32{1, 0, 1, 0}) || ds.NumClasses != 2 {
		t.Fatalf("labels %v %v", ds.ClassNames, ds.Y)
	}
	if ds.IDs[3] != "toy-000003" {
		t.Fatalf("ID %q", ds.IDs[3])
	}

	// Integer labels are class indices; regression labels are numbers.
	ints, err := LoadCSV(strings.NewReader("x,y\n1,0\n2,2\n"), CSVOptions{Label: "y", Task: Classification})
	if err != nil || ints.NumClasses != 3 || !slices.Equal(ints.Y, []float32{0, 2}) {
		t.Fatalf("int labels: %v %+v", err, ints)
	}
	reg, err := LoadCSV(strings.NewReader("x;y\n1;0.5\n2;-3\n"), CSVOptions{Label: "y", Task: Regression, Comma: ';'})
	if err != nil || !slices.Equal(reg.Y, []float32{0.5, -3}) || reg.Task != Regression {
		t.Fatalf("regression: %v %+v", err, reg)
	}
	// No label: Y nil.
	nolabel, err := LoadCSV(strings.NewReader("a,b\n1,2\n"), CSVOptions{})
	if err != nil || nolabel.HasLabels() || nolabel.D != 2 {
		t.Fatalf("no label: %v %+v", err, nolabel)
	}
}

func TestLoadCSVErrors(t *testing.T) {
	cases := []struct {
		in   string
		opts CSVOptions
		want string
	}{
		{"", CSVOptions{}, "empty input"},
		{"a,b\n", CSVOptions{}, "no data rows"},
		{"a,b\n1,2\n", CSVOptions{Label: "c", Task: Classification}, `label column "c" not found`},
		{"a,b\n1,2\n", CSVOptions{Label: "b"}, `needs Task`},
		{"a,b\n1,2\n3\n", CSVOptions{}, "record on line 3: wrong number of fields"},
		{"a,a\n1,2\n", CSVOptions{}, `duplicate column "a"`},
		{"a,b\n1,2\n1,\n", CSVOptions{Label: "b", Task: Regression}, `line 3, column "b": missing label`},
		{"a,b\n1,2\nInf,3\n", CSVOptions{Label: "b", Task: Regression}, `line 3, column "a": "Inf" is not finite`},
		{"a,b\n1,x\n", CSVOptions{Label: "b", Task: Regression}, `line 2, column "b": "x" is not a number`},
		{"a,b\n1,cat\n", CSVOptions{Label: "b", Task: Classification, ClassNames: []string{"dog"}}, `line 2, column "b": label "cat" is not one of [dog]`},
		{"a,b\n1,2\n", CSVOptions{Categorical: []string{"z"}}, `categorical column "z" not found`},
	}
	for _, c := range cases {
		_, err := LoadCSV(strings.NewReader(c.in), c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("LoadCSV(%q): err = %v, want %q", c.in, err, c.want)
		} else if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "datasets: csv ") {
			t.Errorf("error not one prefixed line: %q", err)
		}
	}
}
