// Package job runs teeml's local ML jobs end to end — load and preprocess a
// dataset, build a model, train with progress, evaluate, save weights with
// everything needed to use them again — so the CLI only parses flags.
package job

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"time"

	"github.com/teeml/teeml/internal/buildinfo"
	"github.com/teeml/teeml/internal/progress"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/sealed"
)

// Metadata keys that teeml adds to a weights file next to ml.Model's own.
const (
	MetaDataset      = "teeml.dataset"
	MetaPipeline     = "teeml.pipeline"
	MetaSplitSeed    = "teeml.split.seed"
	MetaTestFraction = "teeml.split.test_fraction"
	MetaTestMetrics  = "teeml.test_metrics"
	MetaVersion      = "teeml.version"
)

// DefaultTestFraction is the held-out share of a bundled dataset.
const DefaultTestFraction = 0.2

// TrainOptions configures Train. Zero values take the model kind's defaults
// (ml.DefaultTrainConfig).
type TrainOptions struct {
	Dataset      string
	Model        string
	Epochs       int
	BatchSize    int
	LR           float64
	Optimizer    string
	Seed         int64 // model init, shuffling and the train/test split
	TestFraction float64
	Out          string // safetensors path; empty: do not save
	// Output receives the per-epoch lines and the final metric line;
	// Progress receives the progress bar (drawn only when ShowProgress).
	Output       io.Writer
	Progress     io.Writer
	ShowProgress bool
}

// TrainResult is what a training job produced.
type TrainResult struct {
	Model    *ml.Model
	Pipeline datasets.Pipeline
	Test     ml.Metrics
	Train    *datasets.Dataset
	TestSet  *datasets.Dataset
	Epochs   []ml.EpochStats
}

// Prepared is a dataset split and preprocessed, with the fitted pipeline.
type Prepared struct {
	Train, Test *datasets.Dataset
	Pipeline    datasets.Pipeline
}

// Prepare loads, splits and preprocesses a dataset.
func Prepare(name string, testFraction float64, seed int64) (*Prepared, error) {
	if testFraction == 0 {
		testFraction = DefaultTestFraction
	}
	train, test, p, err := datasets.PrepareWithPipeline(name, testFraction, seed)
	if err != nil {
		return nil, err
	}
	return &Prepared{Train: train, Test: test, Pipeline: p}, nil
}

// Train runs a local training job.
func Train(ctx context.Context, o TrainOptions) (*TrainResult, error) {
	if o.Output == nil {
		o.Output = io.Discard
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.TestFraction == 0 {
		o.TestFraction = DefaultTestFraction
	}
	if o.Epochs < 0 || o.BatchSize < 0 || o.LR < 0 {
		return nil, fmt.Errorf("train: epochs %d, batch %d, lr %v: none may be negative (0 takes the model's default)", o.Epochs, o.BatchSize, o.LR)
	}
	data, err := Prepare(o.Dataset, o.TestFraction, o.Seed)
	if err != nil {
		return nil, err
	}
	model, err := ml.New(o.Model, ml.SpecFor(data.Train), o.Seed)
	if err != nil {
		return nil, err
	}
	cfg := ml.DefaultTrainConfig(o.Model)
	if o.Epochs > 0 {
		cfg.Epochs = o.Epochs
	}
	if o.BatchSize > 0 {
		cfg.BatchSize = o.BatchSize
	}
	if o.LR > 0 {
		cfg.LR = o.LR
	}
	if o.Optimizer != "" {
		cfg.Optimizer = o.Optimizer
	}
	cfg.Seed = o.Seed
	slog.Info("training", "dataset", o.Dataset, "model", model.String(), "train_rows", data.Train.N,
		"test_rows", data.Test.N, "epochs", cfg.Epochs, "batch", cfg.BatchSize, "optimizer", cfg.Optimizer,
		"lr", cfg.LR, "threads", ml.Threads(), "backend", ml.BackendDescription(),
		"kernels", ml.SIMDDescription())

	res := &TrainResult{Model: model, Pipeline: data.Pipeline, Train: data.Train, TestSet: data.Test}
	batchesPerEpoch := (data.Train.N + cfg.BatchSize - 1) / cfg.BatchSize
	var bar *progress.Bar
	epoch := 1
	newBar := func() {
		bar = progress.New(o.Progress, fmt.Sprintf("epoch %d/%d", epoch, cfg.Epochs), batchesPerEpoch, o.ShowProgress)
	}
	newBar()
	cfg.OnBatch = func(done, total int) {
		bar.Set(done - (epoch-1)*batchesPerEpoch)
	}
	var evalErr error
	var lastTest *ml.Metrics // test metrics after the latest epoch
	onEpoch := func(st ml.EpochStats) {
		bar.Finish()
		res.Epochs = append(res.Epochs, st)
		m, err := model.Evaluate(data.Test)
		if err != nil {
			evalErr = err
			return
		}
		lastTest = &m
		fmt.Fprintf(o.Output, "epoch %d/%d train_loss=%.4f %s %.2fs %.0f examples/s\n",
			st.Epoch, cfg.Epochs, st.Loss, prefixed("test_", m), st.Seconds, st.ExamplesPerSecond())
		epoch = st.Epoch + 1
		newBar()
	}
	start := time.Now()
	if err := model.Train(ctx, data.Train, cfg, onEpoch); err != nil {
		return nil, err
	}
	if evalErr != nil {
		return nil, evalErr
	}
	if lastTest != nil {
		res.Test = *lastTest
	} else if res.Test, err = model.Evaluate(data.Test); err != nil {
		return nil, err
	}
	slog.Info("trained", "seconds", time.Since(start).Seconds())
	if o.Out != "" {
		if err := Save(o.Out, res, o.Seed, o.TestFraction); err != nil {
			return nil, err
		}
		slog.Info("saved weights", "path", o.Out, "params", model.NumParams())
	}
	fmt.Fprintln(o.Output, FinalLine(res.Test))
	return res, nil
}

// prefixed formats metrics as "test_loss=… test_accuracy=…".
func prefixed(prefix string, m ml.Metrics) string {
	var s string
	for i, kv := range orderedMetrics(m) {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s%s=%.4f", prefix, kv.k, kv.v)
	}
	return s
}

type kv struct {
	k string
	v float64
}

func orderedMetrics(m ml.Metrics) []kv {
	mp := m.Map()
	var out []kv
	for _, k := range []string{"loss", "accuracy", "auc", "rmse", "mae", "r2"} {
		if v, ok := mp[k]; ok {
			out = append(out, kv{k, v})
		}
	}
	return out
}

// FinalLine is the last line of a training or evaluation run:
// "test_accuracy=0.9722" for classification (preceded by test_auc for
// binary tasks), "test_rmse=53.1234" for regression.
func FinalLine(m ml.Metrics) string {
	if m.Task == datasets.Regression {
		return fmt.Sprintf("test_rmse=%.4f", m.RMSE)
	}
	if m.HasAUC() {
		return fmt.Sprintf("test_auc=%.4f\ntest_accuracy=%.4f", m.AUC, m.Accuracy)
	}
	return fmt.Sprintf("test_accuracy=%.4f", m.Accuracy)
}

// Save writes the trained weights atomically as safetensors, with the model
// description, the fitted preprocessing and the split in the metadata.
func Save(path string, r *TrainResult, splitSeed int64, testFraction float64) error {
	return WriteWeights(path, r.Model.Weights(), r.metadata(splitSeed, testFraction), r.Test)
}

// Encode is Save to a writer (e.g. a sealed.Writer: the model never
// reaches the disk in plaintext).
func Encode(out io.Writer, r *TrainResult, splitSeed int64, testFraction float64) error {
	return EncodeWeights(out, r.Model.Weights(), r.metadata(splitSeed, testFraction), r.Test)
}

func (r *TrainResult) metadata(splitSeed int64, testFraction float64) map[string]string {
	md := r.Model.Metadata()
	md[MetaDataset] = r.Pipeline.Dataset
	md[MetaPipeline] = r.Pipeline.JSON()
	md[MetaSplitSeed] = strconv.FormatInt(splitSeed, 10)
	md[MetaTestFraction] = strconv.FormatFloat(testFraction, 'g', -1, 64)
	return md
}

// WriteWeights writes weights atomically as safetensors with md plus
// teeml's version and the test metrics (md is not modified).
func WriteWeights(path string, w tensor.Weights, md map[string]string, test ml.Metrics) error {
	return safetensors.WriteFile(path, w, weightsMeta(md, test))
}

// EncodeWeights is WriteWeights to a writer (e.g. a sealed.Writer, so the
// model never reaches the disk in plaintext).
func EncodeWeights(out io.Writer, w tensor.Weights, md map[string]string, test ml.Metrics) error {
	return safetensors.Write(out, w, weightsMeta(md, test))
}

func weightsMeta(md map[string]string, test ml.Metrics) map[string]string {
	md = maps.Clone(md)
	md[MetaVersion] = buildinfo.Version
	if b, err := json.Marshal(test.Map()); err == nil {
		md[MetaTestMetrics] = string(b)
	}
	return md
}

// Loaded is a model rebuilt from a weights file.
type Loaded struct {
	Model        *ml.Model
	Pipeline     datasets.Pipeline
	SplitSeed    int64
	TestFraction float64
	Metadata     map[string]string
}

// Load reads a weights file written by Save and rebuilds its model. A file
// without teeml metadata (e.g. written from PyTorch) needs kind and spec
// given by the caller through LoadInto.
func Load(path string) (*Loaded, error) {
	return LoadSealed(context.Background(), path, nil)
}

// LoadSealed is Load for a weights file that may be sealed (teeml's sealed
// format, e.g. a federation's model under a plan's encryption section): it
// is decrypted in memory with a data key from ks. Without ks a sealed file
// is refused with an error naming its key and how to open it.
func LoadSealed(ctx context.Context, path string, ks sealed.KeySource) (*Loaded, error) {
	b, err := ReadMaybeSealed(ctx, path, "weights", ks)
	if err != nil {
		return nil, err
	}
	return loadWeights(b, path)
}

// loadWeights rebuilds a model from the bytes of a safetensors file.
func loadWeights(b []byte, path string) (*Loaded, error) {
	ws, md, err := safetensors.Read(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", path, err)
	}
	if md[ml.MetaKind] == "" {
		return nil, fmt.Errorf("weights %s: no %q metadata: not written by teeml train (load it with an explicit model spec)", path, ml.MetaKind)
	}
	model, err := ml.NewFromMetadata(md)
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", path, err)
	}
	if err := model.SetWeights(ws); err != nil {
		return nil, fmt.Errorf("weights %s: %w", path, err)
	}
	l := &Loaded{Model: model, Metadata: md}
	if s := md[MetaPipeline]; s != "" {
		if l.Pipeline, err = datasets.ParsePipeline(s); err != nil {
			return nil, fmt.Errorf("weights %s: %w", path, err)
		}
	}
	if s := md[MetaSplitSeed]; s != "" {
		if l.SplitSeed, err = strconv.ParseInt(s, 10, 64); err != nil {
			return nil, fmt.Errorf("weights %s: metadata %s: %w", path, MetaSplitSeed, err)
		}
	}
	l.TestFraction = DefaultTestFraction
	if s := md[MetaTestFraction]; s != "" {
		if l.TestFraction, err = strconv.ParseFloat(s, 64); err != nil {
			return nil, fmt.Errorf("weights %s: metadata %s: %w", path, MetaTestFraction, err)
		}
	}
	return l, nil
}

// EvalOptions configures Eval.
type EvalOptions struct {
	Weights string
	Dataset string
	Model   string // expected kind; must match the file
	// Keys opens sealed weights (see LoadSealed); Context bounds its calls.
	Keys    sealed.KeySource
	Context context.Context
}

// Eval evaluates a saved model on the held-out part of a dataset, split
// with the seed and fraction recorded at training time and preprocessed with
// the recorded pipeline (never refitted).
func Eval(o EvalOptions) (*Loaded, ml.Metrics, error) {
	if o.Context == nil {
		o.Context = context.Background()
	}
	l, err := LoadSealed(o.Context, o.Weights, o.Keys)
	if err != nil {
		return nil, ml.Metrics{}, err
	}
	m, err := l.eval(o)
	return l, m, err
}

// EvalText evaluates any weights file teeml train writes — safetensors,
// or a tree model.txt (told apart by content, sealed or not) — and returns
// the text teeml eval prints.
func EvalText(o EvalOptions) (string, error) {
	if o.Context == nil {
		o.Context = context.Background()
	}
	b, err := ReadMaybeSealed(o.Context, o.Weights, "weights", o.Keys)
	if err != nil {
		return "", err
	}
	if !isSafetensors(b) {
		return evalClassical(b, o.Weights, o.Dataset)
	}
	l, err := loadWeights(b, o.Weights)
	if err != nil {
		return "", err
	}
	m, err := l.eval(o)
	if err != nil {
		return "", err
	}
	return m.String() + "\n" + FinalLine(m), nil
}

func (l *Loaded) eval(o EvalOptions) (ml.Metrics, error) {
	if o.Model != "" && l.Model.Kind() != o.Model {
		return ml.Metrics{}, fmt.Errorf("weights %s: model kind is %q, not %q", o.Weights, l.Model.Kind(), o.Model)
	}
	test, err := l.heldOut(o.Dataset)
	if err != nil {
		return ml.Metrics{}, err
	}
	return l.Model.Evaluate(test)
}

// heldOut returns the preprocessed test split of dataset name.
func (l *Loaded) heldOut(name string) (*datasets.Dataset, error) {
	if l.Pipeline.Dataset != "" && l.Pipeline.Dataset != name {
		return nil, fmt.Errorf("weights: trained on dataset %q, not %q", l.Pipeline.Dataset, name)
	}
	_, rawTest, err := datasets.LoadSplit(name, l.TestFraction, l.SplitSeed)
	if err != nil {
		return nil, err
	}
	if l.Pipeline.Dataset == "" {
		return rawTest, nil
	}
	return l.Pipeline.Apply(rawTest)
}
