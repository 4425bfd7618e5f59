package main

import (
	"github.com/spf13/cobra"

	"github.com/teeml/teeml/ml/job"
)

// classicalFlags registers the hyper-parameters of teeml train --model
// rf|gbdt|kmeans (--lr, --seed, --out, --threads are shared).
func classicalFlags(cmd *cobra.Command, c *job.ClassicalOptions) {
	f := cmd.Flags()
	f.IntVar(&c.Trees, "trees", 0, "rf: trees (default 100); gbdt: boosting rounds (default 100)")
	f.IntVar(&c.MaxDepth, "max-depth", 0, "rf, gbdt: maximum tree depth (0: unbounded)")
	f.IntVar(&c.NumLeaves, "num-leaves", 0, "gbdt: leaves per tree (default 31)")
	f.IntVar(&c.MinLeaf, "min-leaf", 0, "rf: min rows per leaf (default 1); gbdt: min_data_in_leaf (default 20)")
	f.IntVar(&c.MaxFeatures, "max-features", 0, "rf: features tried per split (0: sqrt(d) for classes, d for regression)")
	f.Float64Var(&c.Lambda, "lambda", 0, "gbdt: L2 regularisation of leaf values")
	f.IntVar(&c.EarlyStopping, "early-stopping", 20, "gbdt: stop after this many rounds without validation improvement (0: never)")
	f.Float64Var(&c.ValidFraction, "valid-fraction", 0.1, "gbdt: share of the training split held out for validation (0: none)")
	f.IntVar(&c.K, "k", 0, "kmeans: clusters (0: the dataset's classes)")
	f.IntVar(&c.NInit, "n-init", 0, "kmeans: restarts (default 10)")
}
