package join

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/datasets"
)

func TestAlignSplitDataset(t *testing.T) {
	ds, err := datasets.Load("breast_cancer")
	if err != nil {
		t.Fatal(err)
	}
	var a, b []string
	for i, c := range ds.Columns {
		if i%2 == 0 {
			a = append(a, c.Name)
		} else {
			b = append(b, c.Name)
		}
	}
	lead, foll, err := datasets.SplitColumns(ds, a, b)
	if err != nil {
		t.Fatal(err)
	}
	// The aligned order (as the PSI would output it): a subset, shuffled.
	ids := []string{ds.IDs[10], ds.IDs[3], ds.IDs[200], ds.IDs[0]}
	la, err := Align(lead, ids)
	if err != nil {
		t.Fatal(err)
	}
	fa, err := Align(foll, ids)
	if err != nil {
		t.Fatal(err)
	}
	if la.N != 4 || fa.N != 4 || !slices.Equal(la.IDs, ids) || !slices.Equal(fa.IDs, ids) {
		t.Fatalf("aligned IDs %v / %v", la.IDs, fa.IDs)
	}
	for k, orig := range []int{10, 3, 200, 0} {
		if la.Y[k] != ds.Y[orig] {
			t.Fatalf("row %d: label %v, want %v", k, la.Y[k], ds.Y[orig])
		}
		if la.Row(k)[0] != ds.Row(orig)[ds.ColumnIndex(a[0])] || fa.Row(k)[0] != ds.Row(orig)[ds.ColumnIndex(b[0])] {
			t.Fatalf("row %d: features not from original row %d", k, orig)
		}
	}
	if fa.HasLabels() {
		t.Fatal("follower table gained labels")
	}
	if _, err := Align(lead, []string{"nobody"}); err == nil || !strings.Contains(err.Error(), `"nobody"`) {
		t.Fatalf("unknown ID: %v", err)
	}
	dup := lead.Subset([]int{0, 0})
	if _, err := Align(dup, ids[:1]); err == nil || !strings.Contains(err.Error(), "rows 0 and 1") {
		t.Fatalf("duplicate table ID: %v", err)
	}
}

func TestAlignNormalisesIDs(t *testing.T) {
	tab, err := LoadCSV(strings.NewReader("uid,x\nJose\u0301,1\nbob,2\n"), "uid", datasets.CSVOptions{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Align(tab, []string{"bob", "Jos\u00e9"})
	if err != nil {
		t.Fatal(err)
	}
	if got.X[0] != 2 || got.X[1] != 1 || got.IDs[1] != "Jos\u00e9" {
		t.Fatalf("got X %v IDs %q", got.X, got.IDs)
	}
}

func TestLoadCSV(t *testing.T) {
	ds, err := LoadCSV(strings.NewReader("a,id,y\n1,u1,0\n2,u2,1\n"), "id", datasets.CSVOptions{Name: "t", Label: "y", Task: datasets.Classification})
	if err != nil {
		t.Fatal(err)
	}
	if ds.N != 2 || ds.D != 1 || !slices.Equal(ds.IDs, []string{"u1", "u2"}) || ds.Y[1] != 1 {
		t.Fatalf("got %+v", ds)
	}
	for _, c := range []struct{ csv, want string }{
		{"a,y\n1,0\n", `no ID column "id"`},
		{"a,id\n1,\n", "row 1: empty ID"},
		{"", "empty"},
	} {
		if _, err := LoadCSV(strings.NewReader(c.csv), "id", datasets.CSVOptions{Name: "t"}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%q: want %q, got %v", c.csv, c.want, err)
		}
	}
}

func TestReadAligned(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.txt")
	os.WriteFile(p, []byte("u1\nu2\n"), 0o600)
	ids, err := ReadAligned(p)
	if err != nil || !slices.Equal(ids, []string{"u1", "u2"}) {
		t.Fatalf("%v %v", ids, err)
	}
	os.WriteFile(p, []byte("u1\nu2\nu1\n"), 0o600)
	if _, err := ReadAligned(p); err == nil || !strings.Contains(err.Error(), "lines 1 and 3") {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestBatchOrder(t *testing.T) {
	var seed, other [32]byte
	seed[0], other[0] = 1, 2
	const n, bs = 103, 10
	b := BatchOrder(seed, 0, n, bs)
	if len(b) != 11 || len(b[10]) != 3 {
		t.Fatalf("batches %d, last %d", len(b), len(b[len(b)-1]))
	}
	all := slices.Concat(b...)
	if s := slices.Sorted(slices.Values(all)); !slices.Equal(s, seqN(n)) {
		t.Fatal("not a permutation")
	}
	if slices.Equal(all, seqN(n)) {
		t.Fatal("not shuffled")
	}
	if fmt.Sprint(BatchOrder(seed, 0, n, bs)) != fmt.Sprint(b) {
		t.Fatal("not deterministic")
	}
	if fmt.Sprint(BatchOrder(seed, 1, n, bs)) == fmt.Sprint(b) || fmt.Sprint(BatchOrder(other, 0, n, bs)) == fmt.Sprint(b) {
		t.Fatal("epoch or seed does not change the order")
	}
	// Pinned: the order must never change across Go versions or refactors,
	// or two parties on different builds would train on mismatched batches.
	if got := fmt.Sprint(BatchOrder(seed, 0, 12, 5)); got != pinned {
		t.Fatalf("batch order changed: %s, pinned %s", got, pinned)
	}
	if BatchOrder(seed, 0, 0, 5) != nil || BatchOrder(seed, 0, 5, 0) != nil {
		t.Fatal("empty input")
	}
}

const pinned = "[[8 9 10 6 5] [1 11 4 2 3] [7 0]]"

func seqN(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
