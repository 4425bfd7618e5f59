package workspace

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/ml/datasets"
)

// Shard is a collaborator's data, preprocessed.
type Shard struct {
	Collaborator Collaborator
	// Train is the collaborator's training data; Test the held-out test
	// split of the plan's dataset, the same for every collaborator.
	Train, Test *datasets.Dataset
	// Pipeline is the preprocessing applied to both.
	Pipeline datasets.Pipeline
	// RawTrain and RawTest are Train and Test before preprocessing (with
	// their missing values): what tree models train and evaluate on.
	RawTrain, RawTest *datasets.Dataset
}

// LoadShard returns collaborator name's data per the workspace's (frozen or
// not) plan:
//
//   - the plan's dataset is split into training and test parts
//     (data_loader.test_fraction, data_loader.seed; MNIST keeps its official
//     split);
//   - the preprocessing (datasets.FitPipeline) is fitted on the whole
//     training split, before partitioning, and applied to everything;
//   - "shard:N" collaborators train on partition N of the training split
//     (data_loader.partitioning: PartitionIID or PartitionDirichlet with its
//     seed and shard count); CSV collaborators on their file, read with the
//     dataset's columns and a "label" column;
//   - everyone evaluates on the same test split.
//
// Fitting the pipeline on the pooled training split is a property of this
// experiment harness, which simulates a federation from one dataset: in a
// real federation no party sees the others' data, and each would fit its
// preprocessing locally (or the federation would agree statistics).
func LoadShard(ws, name string) (*Shard, error) {
	return LoadShardWith(ws, name, ShardOptions{})
}

// LoadShardWith is LoadShard reading sealed data files (sealed CSV,
// encrypted Parquet) with the data keys o.Keys releases. When the plan has
// an encryption section, every collaborator's data must be a sealed file:
// plaintext files and shard:N partitions are refused.
func LoadShardWith(ws, name string, o ShardOptions) (*Shard, error) {
	p, err := LoadPlan(ws)
	if err != nil {
		return nil, err
	}
	cols, err := LoadCollaborators(ws)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(cols, func(c Collaborator) bool { return c.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("workspace: collaborator %q not in %s", name, ColsFile)
	}
	c := cols[i]
	rawTrain, rawTest, err := datasets.LoadSplit(p.DataLoader.Dataset, p.DataLoader.TestFraction, p.DataLoader.Seed)
	if err != nil {
		return nil, err
	}
	pipe := datasets.FitPipeline(p.DataLoader.Dataset, rawTrain)
	var part *datasets.Dataset
	if c.Shard() >= 0 && p.Encryption.Enabled() {
		return nil, fmt.Errorf("workspace: collaborator %s: data %s is a partition of the plan's dataset, but the plan requires sealed data (encryption.key %s): give a sealed CSV or encrypted Parquet file", name, c.Data, p.Encryption.Key)
	}
	if s := c.Shard(); s >= 0 {
		parts, err := Partition(p, rawTrain)
		if err != nil {
			return nil, err
		}
		if s >= len(parts) {
			return nil, fmt.Errorf("workspace: collaborator %s: %s outside the plan's %d shards", name, c.Data, len(parts))
		}
		part = parts[s]
	} else {
		part, err = loadCSV(ws, c, rawTrain, o, p.Encryption.Key)
		if err != nil {
			return nil, err
		}
	}
	train, err := pipe.Apply(part)
	if err != nil {
		return nil, err
	}
	test, err := pipe.Apply(rawTest)
	if err != nil {
		return nil, err
	}
	return &Shard{Collaborator: c, Train: train, Test: test, Pipeline: pipe, RawTrain: part, RawTest: rawTest}, nil
}

// Partition deals a (raw) training split into the plan's shards.
func Partition(p *plan.Plan, train *datasets.Dataset) ([]*datasets.Dataset, error) {
	pt := p.DataLoader.Partitioning
	if pt.Kind == "dirichlet" {
		return datasets.PartitionDirichlet(train, pt.Shards, pt.Alpha, pt.Seed)
	}
	return datasets.PartitionIID(train, pt.Shards, pt.Seed)
}

// loadCSV reads a collaborator's CSV with the dataset's columns: the same
// feature names in the same order, categorical columns with the same
// categories (so category indices agree), and a "label" column.
func loadCSV(ws string, c Collaborator, ref *datasets.Dataset, o ShardOptions, keyID string) (*datasets.Dataset, error) {
	path := c.Data
	if !filepath.IsAbs(path) {
		path = filepath.Join(ws, filepath.FromSlash(path))
	}
	f, closeData, err := openData(o, path, c, keyID)
	if err != nil {
		return nil, err
	}
	defer closeData()
	opts := datasets.CSVOptions{Name: c.Name, Label: "label", Task: ref.Task, ClassNames: ref.ClassNames}
	for _, col := range ref.Columns {
		if col.IsCategorical() {
			opts.Categorical = append(opts.Categorical, col.Name)
		}
	}
	ds, err := datasets.LoadCSV(f, opts)
	if err != nil {
		return nil, fmt.Errorf("workspace: collaborator %s: %s: %w", c.Name, c.Data, err)
	}
	if ds.D != ref.D {
		return nil, fmt.Errorf("workspace: collaborator %s: %s has %d feature columns, dataset %s has %d", c.Name, c.Data, ds.D, ref.Name, ref.D)
	}
	for j, col := range ref.Columns {
		got := ds.Columns[j]
		if got.Name != col.Name {
			return nil, fmt.Errorf("workspace: collaborator %s: %s column %d is %q, want %q", c.Name, c.Data, j+1, got.Name, col.Name)
		}
		if !slices.Equal(got.Categories, col.Categories) {
			return nil, fmt.Errorf("workspace: collaborator %s: %s column %q has categories %v, dataset %s has %v", c.Name, c.Data, col.Name, got.Categories, ref.Name, col.Categories)
		}
	}
	if ref.Task == datasets.Classification && ds.NumClasses != ref.NumClasses {
		return nil, fmt.Errorf("workspace: collaborator %s: %s has %d classes, dataset %s has %d", c.Name, c.Data, ds.NumClasses, ref.Name, ref.NumClasses)
	}
	ds.ImageShape = slices.Clone(ref.ImageShape)
	return ds, nil
}
