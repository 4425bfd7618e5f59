package trees

import (
	"cmp"
	"math"
	"slices"

	"github.com/teeml/teeml/ml/datasets"
)

// Scores holds a model's test metrics on a dataset.
type Scores struct {
	Accuracy, AUC, RMSE, Loss float64
	HasAUC                    bool
}

// Evaluate scores m on ds: accuracy and log-loss (plus AUC for two
// classes) for classification, RMSE for regression.
func Evaluate(m *Model, ds *datasets.Dataset) Scores {
	var s Scores
	if ds.Task == datasets.Regression {
		se := 0.0
		for i := range ds.N {
			d := m.Predict(ds.Row(i))[0] - float64(ds.Y[i])
			se += d * d
		}
		s.RMSE = math.Sqrt(se / float64(ds.N))
		s.Loss = se / float64(ds.N)
		return s
	}
	correct := 0
	var pos []float64
	for i := range ds.N {
		p := m.Predict(ds.Row(i))
		y := int(ds.Y[i])
		pc := 0
		var py float64
		if len(p) == 1 {
			if p[0] > 0.5 {
				pc = 1
			}
			pos = append(pos, p[0])
			py = p[0]
			if y == 0 {
				py = 1 - p[0]
			}
		} else {
			for j := range p {
				if p[j] > p[pc] {
					pc = j
				}
			}
			py = p[y]
		}
		if pc == y {
			correct++
		}
		s.Loss -= math.Log(max(py, 1e-15))
	}
	s.Loss /= float64(ds.N)
	s.Accuracy = float64(correct) / float64(ds.N)
	if pos != nil {
		s.AUC, s.HasAUC = AUC(pos, ds.Y)
	}
	return s
}

// AUC is the area under the ROC curve of scores for labels 0/1 (ties count
// one half); ok is false when one class is absent.
func AUC(scores []float64, labels []float32) (float64, bool) {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(scores[a], scores[b]) })
	var np, nn float64
	for _, y := range labels {
		if y > 0.5 {
			np++
		} else {
			nn++
		}
	}
	if np == 0 || nn == 0 {
		return 0, false
	}
	rankSum := 0.0
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		r := float64(i+j+1) / 2 // average 1-based rank
		for _, t := range idx[i:j] {
			if labels[t] > 0.5 {
				rankSum += r
			}
		}
		i = j
	}
	return (rankSum - np*(np+1)/2) / (np * nn), true
}
