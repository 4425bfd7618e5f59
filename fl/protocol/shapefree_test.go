package protocol

import (
	"strings"
	"testing"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
)

// TestSameNamesDirectory: a strategy.ShapeFree model's uploads may change
// length but not names, order or rank, and stay under the element cap.
func TestSameNamesDirectory(t *testing.T) {
	want := []*flv1.TensorInfo{{Name: "lightgbm/model.txt", Shape: []int64{28}}}
	if err := sameNamesDirectory(want, []*flv1.TensorInfo{{Name: "lightgbm/model.txt", Shape: []int64{5000}}}, 1<<20); err != nil {
		t.Fatalf("longer model refused: %v", err)
	}
	for _, c := range []struct {
		got []*flv1.TensorInfo
		msg string
	}{
		{[]*flv1.TensorInfo{{Name: "other", Shape: []int64{5}}}, `is "other"`},
		{[]*flv1.TensorInfo{{Name: "lightgbm/model.txt", Shape: []int64{5, 5}}}, "rank 1"},
		{[]*flv1.TensorInfo{{Name: "lightgbm/model.txt", Shape: []int64{1<<20 + 1}}}, "more than 1048576 elements"},
		{[]*flv1.TensorInfo{{Name: "lightgbm/model.txt", Shape: []int64{-1}}}, "more than"},
		{nil, "0 tensors"},
	} {
		if err := sameNamesDirectory(want, c.got, 1<<20); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: err = %v, want …%s…", c.got, err, c.msg)
		}
	}
}
