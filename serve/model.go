// Package serve is teeml's attested inference server: a model repository
// (models decrypted in memory only, sealed ones through the key broker after
// the server's own attestation), the Open Inference Protocol v2 over REST
// and gRPC (package oip), dynamic batching per model (package batch), API
// tokens with per-model access lists, Prometheus metrics and health, over
// RA-TLS so that a client can verify which code holds the model before it
// sends any input (docs/serving.md).
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/teeml/teeml/internal/yamlx"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/ml/trees"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/serve/pyrunner"
)

// Model is one loaded model version.
type Model interface {
	// Platform names the runtime ("teeml_gomlx", …).
	Platform() string
	InDim() int
	OutDim() int
	// Classes labels the outputs (nil for regression).
	Classes() []string
	// Predict maps rows×InDim raw features to rows×OutDim outputs.
	Predict(ctx context.Context, x []float32, rows int) ([]float32, error)
}

// teemlModel is a model written by teeml train (safetensors with teeml
// metadata and its preprocessing pipeline).
type teemlModel struct {
	l  *job.Loaded
	mu sync.Mutex // one GoMLX execution at a time per model
}

func (m *teemlModel) Platform() string { return "teeml_gomlx" }
func (m *teemlModel) InDim() int       { return len(m.l.Pipeline.Columns) }
func (m *teemlModel) OutDim() int      { return m.l.Model.OutputDim() }
func (m *teemlModel) Classes() []string {
	if m.l.Model.Spec().Task == datasets.Regression {
		return nil
	}
	return m.l.Pipeline.ClassNames
}

func (m *teemlModel) Predict(ctx context.Context, x []float32, rows int) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ds := &datasets.Dataset{Name: "request", Columns: m.l.Pipeline.Columns, X: x, N: rows, D: m.InDim()}
	in, err := m.l.Pipeline.Apply(ds)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.l.Model.PredictX(in.X, rows)
}

// Repository is the serving YAML:
//
//	models:
//	  - name: digits
//	    version: "1"                # default "1"
//	    kind: teeml                 # teeml: safetensors written by teeml train; lightgbm: a model.txt
//	                                # (teeml's rf/gbdt or LightGBM's); xgboost: an XGBoost binary model
//	    file: digits.safetensors    # relative to the YAML; sealed files are opened with the key broker
//	    batching: {max_batch_size: 64, max_queue_delay: 2ms, max_queue: 1024}
//	    concurrency: 1
//	    access: [analyst]           # API token names that may call it (empty: every token)
type Repository struct {
	Models []ModelConfig `yaml:"models"`
	dir    string
}

// ModelConfig is one model of the repository.
type ModelConfig struct {
	Name        string   `yaml:"name"`
	Version     string   `yaml:"version"`
	Kind        string   `yaml:"kind"`
	File        string   `yaml:"file"`
	Batching    Batching `yaml:"batching"`
	Concurrency int      `yaml:"concurrency"`
	Access      []string `yaml:"access"`
	// Runner configures kind pytorch (and only it).
	Runner *RunnerConfig `yaml:"runner"`
}

// RunnerConfig is a pytorch model's external runner (package pyrunner):
// persistent processes, `concurrency` of them, each loading the
// TorchScript file (unsealed in memory, handed over a pipe).
type RunnerConfig struct {
	// InputDim is the number of features per row (required: a TorchScript
	// module does not record it).
	InputDim int `yaml:"input_dim"`
	// Classes labels the outputs (optional).
	Classes []string `yaml:"classes"`
	// Command replaces the embedded TorchScript runner (default
	// /usr/bin/python3 -I -c <embedded serve_torchscript.py>); its first
	// element must be an absolute path; the working directory is the
	// repository's.
	Command []string `yaml:"command"`
	// Env is added to the runner's minimal environment (e.g.
	// TEEML_THREADS: "2").
	Env map[string]string `yaml:"env"`
	// StartTimeout bounds loading the model (default 2m).
	StartTimeout string `yaml:"start_timeout"`
	startTimeout time.Duration
}

// Batching is a model's dynamic batching.
type Batching struct {
	MaxBatchSize  int    `yaml:"max_batch_size"`
	MaxQueueDelay string `yaml:"max_queue_delay"`
	MaxQueue      int    `yaml:"max_queue"`
	delay         time.Duration
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// LoadRepository reads and checks a serving YAML.
func LoadRepository(path string) (*Repository, error) {
	b, err := yamlx.ReadFile(path, "serving repository", 0)
	if err != nil {
		return nil, err
	}
	var r Repository
	lines, err := yamlx.Decode(b, path, "serving repository", 0, &r)
	if err != nil {
		return nil, err
	}
	w := yamlx.Walker{File: path, Lines: lines}
	errf := func(key, format string, args ...any) error {
		return yamlx.Errorf(path, w.Line(key), key, format, args...)
	}
	if len(r.Models) == 0 {
		return nil, errf("models", "no models")
	}
	seen := map[string]bool{}
	for i := range r.Models {
		m := &r.Models[i]
		key := fmt.Sprintf("models[%d]", i)
		if !nameRE.MatchString(m.Name) {
			return nil, errf(key+".name", "%q: want 1-64 letters, digits, '_', '.', '-'", m.Name)
		}
		if m.Version == "" {
			m.Version = "1"
		}
		if !nameRE.MatchString(m.Version) {
			return nil, errf(key+".version", "%q: want letters, digits, '_', '.', '-'", m.Version)
		}
		if seen[m.Name+"/"+m.Version] {
			return nil, errf(key, "model %s version %s listed twice", m.Name, m.Version)
		}
		seen[m.Name+"/"+m.Version] = true
		if !slices.Contains(Kinds, m.Kind) {
			return nil, errf(key+".kind", "%q: want teeml (safetensors written by teeml train), lightgbm (a model.txt: teeml's or LightGBM's), xgboost (an XGBoost binary model) or pytorch (a TorchScript file, served by an external runner)", m.Kind)
		}
		switch {
		case m.Kind == "pytorch" && m.Runner == nil:
			return nil, errf(key+".runner", "kind pytorch needs a runner section (at least input_dim)")
		case m.Kind != "pytorch" && m.Runner != nil:
			return nil, errf(key+".runner", "only kind pytorch has a runner")
		case m.Runner != nil:
			rc := m.Runner
			if rc.InputDim < 1 || rc.InputDim > 1<<20 {
				return nil, errf(key+".runner.input_dim", "%d: want 1..1048576 features", rc.InputDim)
			}
			if len(rc.Command) > 0 && !filepath.IsAbs(rc.Command[0]) {
				return nil, errf(key+".runner.command", "%q: the program must be an absolute path (it is never looked up in PATH)", rc.Command[0])
			}
			if rc.StartTimeout != "" {
				d, err := time.ParseDuration(rc.StartTimeout)
				if err != nil || d < time.Second || d > time.Hour {
					return nil, errf(key+".runner.start_timeout", "%q: want a duration from 1s to 1h", rc.StartTimeout)
				}
				rc.startTimeout = d
			}
		}
		if m.File == "" {
			return nil, errf(key+".file", "missing")
		}
		bt := &m.Batching
		if bt.MaxBatchSize == 0 {
			bt.MaxBatchSize = 1
		}
		if bt.MaxQueue == 0 {
			bt.MaxQueue = 1024
		}
		if m.Concurrency == 0 {
			m.Concurrency = 1
		}
		if bt.MaxBatchSize < 1 || bt.MaxBatchSize > 1<<16 || bt.MaxQueue < 1 || m.Concurrency < 1 || m.Concurrency > 256 {
			return nil, errf(key+".batching", "max_batch_size 1..65536, max_queue ≥ 1, concurrency 1..256")
		}
		if bt.MaxQueueDelay != "" {
			d, err := time.ParseDuration(bt.MaxQueueDelay)
			if err != nil || d < 0 || d > 10*time.Second {
				return nil, errf(key+".batching.max_queue_delay", "%q: want a duration from 0 to 10s", bt.MaxQueueDelay)
			}
			bt.delay = d
		}
	}
	r.dir = filepath.Dir(path)
	return &r, nil
}

// path resolves a model file.
func (r *Repository) path(f string) string {
	if filepath.IsAbs(f) {
		return f
	}
	return filepath.Join(r.dir, f)
}

// ErrSealedNoKeys: a sealed model and no key source.
var ErrSealedNoKeys = errors.New("sealed model and no key broker")

// Kinds are the model kinds of a repository.
var Kinds = []string{"teeml", "lightgbm", "xgboost", "pytorch"}

// load opens one model; ks unwraps sealed files (in memory only).
func (r *Repository) load(ctx context.Context, mc *ModelConfig, ks sealed.KeySource, log *slog.Logger) (Model, error) {
	if mc.Kind == "lightgbm" || mc.Kind == "xgboost" {
		return r.loadTrees(ctx, mc, ks)
	}
	if mc.Kind == "pytorch" {
		return r.loadTorch(ctx, mc, ks, log)
	}
	l, err := job.LoadSealed(ctx, r.path(mc.File), ks)
	if err != nil {
		return nil, fmt.Errorf("model %s version %s: %w", mc.Name, mc.Version, err)
	}
	if len(l.Pipeline.Columns) == 0 {
		return nil, fmt.Errorf("model %s version %s: %s records no feature columns (train it with teeml train)", mc.Name, mc.Version, mc.File)
	}
	return &teemlModel{l: l}, nil
}

// treeModel is a tree ensemble (kinds lightgbm and xgboost): raw features
// in, class probabilities (or the regression value) out. Predictions are
// read-only, so batches run concurrently up to the model's concurrency.
type treeModel struct {
	p       *trees.Predictor
	classes []string
}

func (m *treeModel) Platform() string {
	if m.p.Format == trees.FormatXGBoost {
		return "xgboost"
	}
	return "lightgbm"
}
func (m *treeModel) InDim() int        { return m.p.Features }
func (m *treeModel) OutDim() int       { return m.p.Outputs() }
func (m *treeModel) Classes() []string { return m.classes }

func (m *treeModel) Predict(ctx context.Context, x []float32, rows int) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	y, err := m.p.Predict(x, rows)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(y))
	for i, v := range y {
		out[i] = float32(v)
	}
	return out, nil
}

// loadTrees opens a lightgbm or xgboost model, sealed or not.
func (r *Repository) loadTrees(ctx context.Context, mc *ModelConfig, ks sealed.KeySource) (Model, error) {
	fail := func(err error) error { return fmt.Errorf("model %s version %s: %w", mc.Name, mc.Version, err) }
	b, err := job.ReadMaybeSealed(ctx, r.path(mc.File), "file", ks)
	if err != nil {
		return nil, fail(err)
	}
	p, err := trees.LoadModel(b, mc.File)
	if err != nil {
		return nil, fail(err)
	}
	if got := (p.Format == trees.FormatXGBoost); got != (mc.Kind == "xgboost") {
		return nil, fail(fmt.Errorf("%s is a %s model, not kind %s", mc.File, p.Format, mc.Kind))
	}
	m := &treeModel{p: p}
	for c := range p.Classes {
		m.classes = append(m.classes, strconv.Itoa(c))
	}
	return m, nil
}

// torchModel is a TorchScript module served by external runner processes
// (kind pytorch): raw features in, the module's outputs out.
type torchModel struct {
	p       *pyrunner.Pool
	in      int
	classes []string
}

func (m *torchModel) Platform() string  { return "pytorch_torchscript" }
func (m *torchModel) InDim() int        { return m.in }
func (m *torchModel) OutDim() int       { return m.p.OutputWidth() }
func (m *torchModel) Classes() []string { return m.classes }
func (m *torchModel) Predict(ctx context.Context, x []float32, rows int) ([]float32, error) {
	return m.p.Predict(ctx, x, rows)
}
func (m *torchModel) Close() { m.p.Close() }

// loadTorch unseals a TorchScript file in memory and starts its runners.
func (r *Repository) loadTorch(ctx context.Context, mc *ModelConfig, ks sealed.KeySource, log *slog.Logger) (Model, error) {
	fail := func(err error) error { return fmt.Errorf("model %s version %s: %w", mc.Name, mc.Version, err) }
	b, err := job.ReadMaybeSealed(ctx, r.path(mc.File), "file", ks)
	if err != nil {
		return nil, fail(err)
	}
	rc := mc.Runner
	p, err := pyrunner.Start(ctx, pyrunner.Config{Command: rc.Command, Dir: r.dir, Env: rc.Env, Model: b, InputWidth: rc.InputDim,
		StartTimeout: rc.startTimeout, Log: log.With("model", mc.Name, "version", mc.Version)}, mc.Concurrency)
	if err != nil {
		return nil, fail(err)
	}
	if len(rc.Classes) > 0 && len(rc.Classes) != p.OutputWidth() {
		p.Close()
		return nil, fail(fmt.Errorf("runner.classes names %d classes, the module answers %d outputs", len(rc.Classes), p.OutputWidth()))
	}
	return &torchModel{p: p, in: rc.InputDim, classes: rc.Classes}, nil
}
