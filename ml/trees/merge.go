package trees

import (
	"errors"
	"fmt"
	"slices"
)

// Merge combines ensembles grown on disjoint row shards of one table into
// one model: the horizontal federated scheme of docs/classical-ml.md,
// where each collaborator trains on its shard in one round and the
// aggregator builds the ensemble.
//
// Forests (Average) are concatenated: the merged forest averages every
// tree, so a shard weighs by its number of trees (equal counts: the
// equal-weight average of the shards' forests).
//
// Boosted models are averaged in raw-score space: each shard's trees are
// copied with their leaf values scaled by 1/S and concatenated, so the
// merged raw score — a plain boosted sum, readable by LightGBM — is the
// mean of the S shards' raw scores (log-odds for binary, per-class scores
// for softmax, values for regression).
//
// All models must share objective, classes and feature names. The shards'
// models are not modified.
func Merge(models ...*Model) (*Model, error) {
	if len(models) == 0 {
		return nil, errors.New("trees: merge: no models")
	}
	first := models[0]
	for i, m := range models {
		if m == nil || len(m.Trees) == 0 {
			return nil, fmt.Errorf("trees: merge: model %d: no trees", i)
		}
		if m.Objective != first.Objective || m.K() != first.K() || m.Average != first.Average {
			return nil, fmt.Errorf("trees: merge: model %d is %s (%d outputs, average %v), model 0 %s (%d, %v): not the same kind",
				i, m.Objective, m.K(), m.Average, first.Objective, first.K(), first.Average)
		}
		if !slices.Equal(m.FeatureNames, first.FeatureNames) {
			return nil, fmt.Errorf("trees: merge: model %d: feature names differ from model 0's", i)
		}
		if len(m.Trees)%m.K() != 0 {
			return nil, fmt.Errorf("trees: merge: model %d: %d trees, not a multiple of %d outputs", i, len(m.Trees), m.K())
		}
	}
	out := &Model{Objective: first.Objective, NumClass: first.NumClass, Average: first.Average,
		FeatureNames: slices.Clone(first.FeatureNames)}
	scale := 1.0
	if !first.Average {
		scale = 1 / float64(len(models))
	}
	for _, m := range models {
		for _, t := range m.Trees {
			out.Trees = append(out.Trees, t.scaled(scale))
		}
	}
	return out, nil
}

// scaled is a deep copy of t with leaf values multiplied by s.
func (t *Tree) scaled(s float64) *Tree {
	c := &Tree{
		SplitFeature:  slices.Clone(t.SplitFeature),
		SplitGain:     slices.Clone(t.SplitGain),
		Threshold:     slices.Clone(t.Threshold),
		DecisionType:  slices.Clone(t.DecisionType),
		Left:          slices.Clone(t.Left),
		Right:         slices.Clone(t.Right),
		LeafValue:     slices.Clone(t.LeafValue),
		LeafCount:     slices.Clone(t.LeafCount),
		CatBoundaries: slices.Clone(t.CatBoundaries),
		CatThreshold:  slices.Clone(t.CatThreshold),
	}
	if s != 1 {
		for i := range c.LeafValue {
			c.LeafValue[i] *= s
		}
	}
	return c
}
