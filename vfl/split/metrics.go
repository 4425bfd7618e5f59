package split

import (
	"math"
	"slices"
)

// Metrics are the leader's evaluation metrics for binary classification.
type Metrics struct {
	AUC      float64 `json:"auc"`
	Accuracy float64 `json:"accuracy"`
	LogLoss  float64 `json:"log_loss"`
	N        int     `json:"n"`
}

// Evaluate computes AUC (ties get half credit, the Mann–Whitney statistic),
// accuracy at threshold 0.5 and mean log-loss of probabilities p against
// labels y (0/1). AUC is NaN when only one class is present.
func Evaluate(p []float64, y []float32) Metrics {
	m := Metrics{N: len(p)}
	if len(p) == 0 {
		return Metrics{AUC: math.NaN(), Accuracy: math.NaN(), LogLoss: math.NaN()}
	}
	correct := 0
	for i, pi := range p {
		pos := y[i] >= 0.5
		if (pi >= 0.5) == pos {
			correct++
		}
		q := min(max(pi, 1e-15), 1-1e-15)
		if pos {
			m.LogLoss -= math.Log(q)
		} else {
			m.LogLoss -= math.Log(1 - q)
		}
	}
	m.Accuracy = float64(correct) / float64(len(p))
	m.LogLoss /= float64(len(p))
	m.AUC = auc(p, y)
	return m
}

func auc(p []float64, y []float32) float64 {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case p[a] < p[b]:
			return -1
		case p[a] > p[b]:
			return 1
		}
		return 0
	})
	// Sum of the (average) ranks of the positives.
	var rankSum float64
	var npos, nneg int
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && p[idx[j]] == p[idx[i]] {
			j++
		}
		avg := float64(i+j+1) / 2 // ranks i+1..j
		for k := i; k < j; k++ {
			if y[idx[k]] >= 0.5 {
				rankSum += avg
				npos++
			} else {
				nneg++
			}
		}
		i = j
	}
	if npos == 0 || nneg == 0 {
		return math.NaN()
	}
	return (rankSum - float64(npos)*float64(npos+1)/2) / (float64(npos) * float64(nneg))
}
