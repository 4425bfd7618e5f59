package job

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/buildinfo"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/kmeans"
	"github.com/teeml/teeml/ml/trees"
	"github.com/teeml/teeml/sealed"
)

// TreeKinds are the classical models TrainClassical runs.
var TreeKinds = []string{"rf", "gbdt", "kmeans"}

// IsClassical reports whether kind is one of TreeKinds.
func IsClassical(kind string) bool { return slices.Contains(TreeKinds, kind) }

// ClassicalOptions configures TrainClassical. Zero values take the
// algorithms' defaults.
type ClassicalOptions struct {
	Dataset       string
	Model         string // rf, gbdt or kmeans
	Trees         int    // rf: trees; gbdt: boosting rounds
	MaxDepth      int
	NumLeaves     int
	MinLeaf       int
	MaxFeatures   int
	LR            float64
	Lambda        float64
	EarlyStopping int     // gbdt rounds without validation improvement
	ValidFraction float64 // gbdt: share of the training split held out for early stopping
	K             int     // kmeans
	NInit         int
	Threads       int
	Seed          int64
	TestFraction  float64
	Out           string // rf/gbdt: LightGBM model.txt; kmeans: JSON
	Output        io.Writer
}

// TrainClassical trains a forest, boosted trees or k-means on the raw
// (unimputed, unscaled) training split of a bundled dataset — the same rows
// as Prepare — and prints validation losses, importances and the final line.
func TrainClassical(ctx context.Context, o ClassicalOptions) error {
	if o.Output == nil {
		o.Output = io.Discard
	}
	if o.TestFraction == 0 {
		o.TestFraction = DefaultTestFraction
	}
	train, test, err := datasets.LoadSplit(o.Dataset, o.TestFraction, o.Seed)
	if err != nil {
		return err
	}
	start := time.Now()
	if o.Model == "kmeans" {
		return trainKMeans(ctx, o, train, test)
	}
	var m *trees.Model
	switch o.Model {
	case "rf":
		m, err = trees.TrainForest(ctx, train, trees.ForestConfig{Trees: o.Trees, MaxDepth: o.MaxDepth, MinLeaf: o.MinLeaf,
			MaxFeatures: o.MaxFeatures, Threads: o.Threads, Seed: o.Seed})
	case "gbdt":
		fit, valid := train, (*datasets.Dataset)(nil)
		if o.ValidFraction > 0 {
			fit, valid = datasets.Split(train, o.ValidFraction, o.Seed)
		}
		m, err = trees.TrainGBDT(ctx, fit, trees.GBDTConfig{Iterations: o.Trees, LR: o.LR, NumLeaves: o.NumLeaves, MaxDepth: o.MaxDepth,
			MinDataInLeaf: o.MinLeaf, Lambda: o.Lambda, FeatureFraction: 0, Valid: valid, EarlyStopping: o.EarlyStopping,
			Threads: o.Threads, Seed: o.Seed, OnIteration: func(it int, loss float64) {
				fmt.Fprintf(o.Output, "iteration %d valid_loss=%.4f\n", it, loss)
			}})
	default:
		return fmt.Errorf("train: model %q: want one of %v", o.Model, TreeKinds)
	}
	if err != nil {
		return err
	}
	slog.Info("trained", "model", o.Model, "trees", len(m.Trees), "seconds", time.Since(start).Seconds())
	gain, splits := m.Importance(train.D)
	order := make([]int, train.D)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case gain[a] > gain[b]:
			return -1
		case gain[a] < gain[b]:
			return 1
		}
		return 0
	})
	fmt.Fprintln(o.Output, "feature importance (gain, splits):")
	for _, f := range order[:min(len(order), 15)] {
		fmt.Fprintf(o.Output, "  %-20s gain=%.4g splits=%d\n", train.Columns[f].Name, gain[f], splits[f])
	}
	if o.Out != "" {
		m.Params = map[string]string{MetaDataset: o.Dataset, MetaSplitSeed: strconv.FormatInt(o.Seed, 10),
			MetaTestFraction: strconv.FormatFloat(o.TestFraction, 'g', -1, 64), MetaVersion: buildinfo.Version}
		if err := atomicfile.WriteFile(o.Out, 0o644, func(w io.Writer) error { return trees.WriteText(w, m) }); err != nil {
			return fmt.Errorf("train: %w", err)
		}
		slog.Info("saved model", "path", o.Out)
	}
	s := trees.Evaluate(m, test)
	fmt.Fprintln(o.Output, classicalFinalLine(test.Task, s))
	return nil
}

// classicalFinalLine is FinalLine's format for trees.Scores.
func classicalFinalLine(task datasets.Task, s trees.Scores) string {
	if task == datasets.Regression {
		return fmt.Sprintf("test_rmse=%.4f", s.RMSE)
	}
	if s.HasAUC {
		return fmt.Sprintf("test_auc=%.4f\ntest_accuracy=%.4f", s.AUC, s.Accuracy)
	}
	return fmt.Sprintf("test_accuracy=%.4f", s.Accuracy)
}

func trainKMeans(ctx context.Context, o ClassicalOptions, train, test *datasets.Dataset) error {
	// k-means needs complete rows: impute with the training medians/modes.
	im := datasets.FitImputer(train)
	tr, err := im.Apply(train)
	if err != nil {
		return err
	}
	te, err := im.Apply(test)
	if err != nil {
		return err
	}
	k := o.K
	if k == 0 {
		k = max(train.NumClasses, 2)
	}
	start := time.Now()
	m, err := kmeans.Fit(ctx, tr.X, tr.N, tr.D, kmeans.Config{K: k, NInit: o.NInit, Seed: o.Seed, Threads: o.Threads})
	if err != nil {
		return err
	}
	slog.Info("trained", "model", "kmeans", "k", m.K, "seconds", time.Since(start).Seconds())
	fmt.Fprintf(o.Output, "kmeans k=%d inertia=%.4g iterations=%d\n", m.K, m.Inertia, m.Iter)
	if o.Out != "" {
		if err := atomicfile.WriteFile(o.Out, 0o644, func(w io.Writer) error { return kmeans.Write(w, m) }); err != nil {
			return fmt.Errorf("train: %w", err)
		}
	}
	if te.Task == datasets.Classification {
		labels := make([]int, te.N)
		for i, y := range te.Y {
			labels[i] = int(y)
		}
		fmt.Fprintf(o.Output, "test_ari=%.4f\n", kmeans.ARI(m.Predict(te.X, te.N), labels))
	}
	return nil
}

// EvalClassical evaluates a model.txt written by TrainClassical on the
// held-out split recorded in its parameters and returns the final line(s).
// A sealed file is opened in memory with a data key from ks.
func EvalClassical(ctx context.Context, path, dataset string, ks sealed.KeySource) (string, error) {
	b, err := ReadMaybeSealed(ctx, path, "model", ks)
	if err != nil {
		return "", err
	}
	return evalClassical(b, path, dataset)
}

func evalClassical(b []byte, path, dataset string) (string, error) {
	m, err := trees.ParseText(bytes.NewReader(b), path)
	if err != nil {
		return "", err
	}
	if d := m.Params[MetaDataset]; d != "" && d != dataset {
		return "", fmt.Errorf("model %s: trained on dataset %q, not %q", path, d, dataset)
	}
	seed, frac := int64(1), DefaultTestFraction
	if v, ok := m.Params[MetaSplitSeed]; ok {
		if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			return "", fmt.Errorf("model %s: parameter %s: %w", path, MetaSplitSeed, err)
		}
	}
	if v, ok := m.Params[MetaTestFraction]; ok {
		if frac, err = strconv.ParseFloat(v, 64); err != nil {
			return "", fmt.Errorf("model %s: parameter %s: %w", path, MetaTestFraction, err)
		}
	}
	_, test, err := datasets.LoadSplit(dataset, frac, seed)
	if err != nil {
		return "", err
	}
	if test.D != len(m.FeatureNames) {
		return "", fmt.Errorf("model %s: %d features, dataset %s has %d", path, len(m.FeatureNames), dataset, test.D)
	}
	return classicalFinalLine(test.Task, trees.Evaluate(m, test)), nil
}
