// Package trees holds Go-native decision-tree ensembles: random forests and
// histogram gradient boosting in LightGBM's manner, saved in LightGBM's text
// model format. It knows nothing of the CLI or of files beyond io.Reader and
// io.Writer.
package trees

import "math"

// Decision type bits, as in LightGBM's model.txt.
const (
	decCategorical = 1 << 0
	decDefaultLeft = 1 << 1
	decMissingNaN  = 2 << 2
)

// Tree is one tree in LightGBM's array layout: internal node i splits on
// SplitFeature[i]; a child c < 0 is the leaf ^c.
type Tree struct {
	SplitFeature  []int
	SplitGain     []float64
	Threshold     []float64 // numerical: go left if x <= threshold; categorical: index into CatBoundaries
	DecisionType  []int
	Left, Right   []int
	LeafValue     []float64
	LeafCount     []int
	CatBoundaries []int    // len numCat+1 when the tree has categorical splits
	CatThreshold  []uint32 // bitsets of the categories that go left
}

// NumLeaves is the number of leaves.
func (t *Tree) NumLeaves() int { return len(t.LeafValue) }

// numCat counts categorical splits.
func (t *Tree) numCat() int {
	if len(t.CatBoundaries) == 0 {
		return 0
	}
	return len(t.CatBoundaries) - 1
}

// Predict returns the leaf value for features x.
func (t *Tree) Predict(x []float32) float64 { return t.LeafValue[t.leaf(x)] }

func (t *Tree) leaf(x []float32) int {
	if len(t.SplitFeature) == 0 {
		return 0
	}
	n := 0
	for {
		var left bool
		v := float64(x[t.SplitFeature[n]])
		dt := t.DecisionType[n]
		if dt&decCategorical != 0 {
			left = false
			if !math.IsNaN(v) && v >= 0 && v < 1<<31 {
				c := int(v)
				ci := int(t.Threshold[n])
				lo, hi := t.CatBoundaries[ci], t.CatBoundaries[ci+1]
				if w := c / 32; w < hi-lo {
					left = (t.CatThreshold[lo+w]>>(c%32))&1 != 0
				}
			}
		} else {
			if math.IsNaN(v) && dt&(3<<2) != decMissingNaN {
				v = 0
			}
			if math.IsNaN(v) {
				left = dt&decDefaultLeft != 0
			} else {
				left = v <= t.Threshold[n]
			}
		}
		c := t.Right[n]
		if left {
			c = t.Left[n]
		}
		if c < 0 {
			return ^c
		}
		n = c
	}
}
