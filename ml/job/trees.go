package job

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
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

// MetaInput records, in a model trained on a CSV file (--input) rather than
// a bundled dataset, the file's base name; eval refuses such a model (there
// is no bundled split to re-create) and predict reads rows by column name.
const MetaInput = "teeml.input"

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
	// Input, when set, is a CSV file (features..., label column Label, as
	// teeml datasets export writes) trained on instead of Dataset; it may be
	// sealed (opened in memory with Keys). Task is its label's task
	// (default classification).
	Input string
	Label string
	Task  datasets.Task
	// Keys, when set, opens a sealed Input and seals Out under KeyID: the
	// model's plaintext never touches the disk.
	Keys  sealed.KeySource
	KeyID string
	// Importance, when set (rf, gbdt), is a CSV file feature,gain,splits
	// in decreasing gain, sealed like Out when the run has Keys.
	Importance string
}

// loadClassical returns the raw training and test splits of o.Input or
// o.Dataset, and the bundled dataset's name ("" for o.Input).
func loadClassical(ctx context.Context, o ClassicalOptions) (train, test *datasets.Dataset, name string, err error) {
	if o.Input == "" {
		train, test, err = datasets.LoadSplit(o.Dataset, o.TestFraction, o.Seed)
		return train, test, o.Dataset, err
	}
	if !(o.TestFraction > 0 && o.TestFraction < 1) {
		return nil, nil, "", fmt.Errorf("train: input %s: test fraction %v outside (0, 1)", o.Input, o.TestFraction)
	}
	b, err := ReadMaybeSealed(ctx, o.Input, "input", o.Keys)
	if err != nil {
		return nil, nil, "", fmt.Errorf("train: %w", err)
	}
	label, task := o.Label, o.Task
	if label == "" {
		label = "label"
	}
	if task == "" {
		task = datasets.Classification
	}
	ds, err := datasets.LoadCSV(bytes.NewReader(b), datasets.CSVOptions{Name: filepath.Base(o.Input), Label: label, Task: task})
	if err != nil {
		return nil, nil, "", fmt.Errorf("train: input %s: %w", o.Input, err)
	}
	if ds.Task == datasets.Classification && ds.NumClasses < 2 {
		return nil, nil, "", fmt.Errorf("train: input %s: label %q has %d class(es), want at least 2", o.Input, label, ds.NumClasses)
	}
	train, test = datasets.Split(ds, o.TestFraction, o.Seed)
	return train, test, "", nil
}

// writeOutput writes path (what names it: "model", "importance")
// atomically, sealed under o.KeyID when the run has a key source.
func writeOutput(ctx context.Context, o ClassicalOptions, what, path string, enc func(io.Writer) error) error {
	var err error
	if o.Keys != nil {
		err = sealed.WriteFile(ctx, path, 0o600, o.Keys, o.KeyID, enc)
	} else {
		err = atomicfile.WriteFile(path, 0o644, enc)
	}
	if err != nil {
		return fmt.Errorf("train: %s %s: %w", what, path, err)
	}
	slog.Info("saved "+what, "path", path, "sealed", o.Keys != nil, "key", o.KeyID)
	return nil
}

// writeImportance writes feature,gain,splits rows in the given order.
func writeImportance(w io.Writer, cols []datasets.Column, order []int, gain []float64, splits []int) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"feature", "gain", "splits"})
	for _, f := range order {
		_ = cw.Write([]string{cols[f].Name, strconv.FormatFloat(gain[f], 'g', -1, 64), strconv.Itoa(splits[f])})
	}
	cw.Flush()
	return cw.Error()
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
	if o.Keys != nil && o.KeyID == "" && (o.Out != "" || o.Importance != "") {
		return fmt.Errorf("train: no key ID to seal the outputs under")
	}
	if o.Importance != "" && o.Model == "kmeans" {
		return fmt.Errorf("train: --importance %s: k-means has no feature importances", o.Importance)
	}
	train, test, name, err := loadClassical(ctx, o)
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
	if o.Importance != "" {
		if err := writeOutput(ctx, o, "importance", o.Importance, func(w io.Writer) error {
			return writeImportance(w, train.Columns, order, gain, splits)
		}); err != nil {
			return err
		}
	}
	if o.Out != "" {
		m.Params = map[string]string{MetaSplitSeed: strconv.FormatInt(o.Seed, 10),
			MetaTestFraction: strconv.FormatFloat(o.TestFraction, 'g', -1, 64), MetaVersion: buildinfo.Version}
		if name != "" {
			m.Params[MetaDataset] = name
		} else {
			m.Params[MetaInput] = filepath.Base(o.Input)
		}
		if err := writeOutput(ctx, o, "model", o.Out, func(w io.Writer) error { return trees.WriteText(w, m) }); err != nil {
			return err
		}
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
		if err := writeOutput(ctx, o, "model", o.Out, func(w io.Writer) error { return kmeans.Write(w, m) }); err != nil {
			return err
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
	if in := m.Params[MetaInput]; in != "" {
		return "", fmt.Errorf("model %s: trained on input file %s, not a bundled dataset: score it with teeml predict", path, in)
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
