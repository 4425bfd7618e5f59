// Package runner runs a federation's local training and evaluation in an
// external program — a user's PyTorch, TensorFlow or scikit-learn script —
// instead of teeml's built-in Go models. Runner implements
// protocol.Trainer: for every task (init, train, evaluate) it launches the
// plan's command (task_runner.runner.command) in its own process group, with
// the workspace as working directory, a minimal environment and a per-task
// timeout, and exchanges everything through files in a private temporary
// directory:
//
//	task.json              what to do (schema: Task), named by $TEEML_TASK_FILE
//	data-train.safetensors the preprocessed local training data: x F32 [n, d], y F32 [n]
//	data-eval.safetensors  the evaluation data, same layout
//	input.safetensors      the global model (train, evaluate)
//	output.safetensors     written by the runner: the new model (train, init)
//	metrics.json           written by the runner: {"num_examples", "loss", "metrics"}
//
// Everything the runner returns is validated before teeml uses it: the output
// model must have exactly the global model's tensor names, F32 dtype and
// shapes, only finite values and a bounded size; the metrics must be finite
// and num_examples positive and at most the rows handed in. A runner that
// exits non-zero (the error quotes the last lines of its stderr), outlives
// its timeout (its whole process group is killed) or returns bad tensors
// fails that task with a one-line reason; the collaborator skips the round
// and carries on. Its stdout and stderr lines go to slog with the task and
// round. docs/runners.md is the user-facing contract.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/ml/tensor"
)

// Version is the task file's schema version ("teeml_runner").
const Version = 1

// Task kinds.
const (
	TaskInit     = "init"
	TaskTrain    = "train"
	TaskEvaluate = "evaluate"
)

// Environment variables teeml sets for the runner.
const (
	EnvTaskFile = "TEEML_TASK_FILE"
	EnvTask     = "TEEML_TASK"
	// EnvServe is "1" for a persistent runner: read task file paths from
	// stdin, answer each on fd 3.
	EnvServe = "TEEML_SERVE"
)

// Round config keys applied to the hyperparameters (as protocol.MLTrainer
// does); the round config is also passed through unchanged.
const (
	keyEpochs    = "epochs"
	keyLR        = "learning_rate"
	keyBatchSize = "batch_size"
)

// Hyperparameters are the plan's training settings handed to the runner,
// with the round's overrides applied.
type Hyperparameters struct {
	Epochs      int     `json:"epochs"`
	BatchSize   int     `json:"batch_size"`
	LR          float64 `json:"learning_rate"`
	Optimizer   string  `json:"optimizer"`
	WeightDecay float64 `json:"weight_decay"`
	// Seed is task_runner.seed for init and seed + 1000·round for training,
	// so every round shuffles differently but reproducibly.
	Seed int64 `json:"seed"`
	// ProximalMu is FedProx's μ for this round (0 otherwise): the runner
	// adds μ/2·‖w − w_global‖² to its loss.
	ProximalMu float64 `json:"proximal_mu"`
}

// DatasetInfo describes the data handed to the runner.
type DatasetInfo struct {
	Name        string   `json:"name"`
	Task        string   `json:"task"`
	NumFeatures int      `json:"num_features"`
	NumClasses  int      `json:"num_classes,omitempty"`
	ImageShape  []int    `json:"image_shape,omitempty"`
	Features    []string `json:"features"`
}

// Task is task.json.
type Task struct {
	Version         int                `json:"teeml_runner"`
	Task            string             `json:"task"`
	Round           int                `json:"round"`
	Party           string             `json:"party"`
	Config          map[string]float64 `json:"config"`
	Hyperparameters Hyperparameters    `json:"hyperparameters"`
	Dataset         DatasetInfo        `json:"dataset"`
	// Data is the data file for this task ("" for init): the training
	// shard for train, the evaluation split for evaluate.
	Data string `json:"data"`
	// InputWeights is the model to start from or evaluate ("" for init).
	InputWeights string `json:"input_weights"`
	// OutputWeights is where train and init write the model ("" for
	// evaluate).
	OutputWeights string `json:"output_weights"`
	Metrics       string `json:"metrics"`
	// MaxOutputBytes bounds output_weights.
	MaxOutputBytes int64 `json:"max_output_bytes"`
}

// Config configures a Runner.
type Config struct {
	// Command is the argv (task_runner.runner.command); Workspace its
	// working directory (absolute).
	Command   []string
	Workspace string
	// Timeout bounds each task (default 10 minutes).
	Timeout time.Duration
	// Env is added to the runner's environment.
	Env map[string]string
	// Verify is called before every launch, e.g. to check the runner's
	// files against the digests pinned in the frozen plan; an error fails
	// the task without launching anything.
	Verify func() error
	// Party names this party in task.json and logs.
	Party string
	// Hyper are the base hyperparameters.
	Hyper Hyperparameters
	// Dataset describes the data; Train and Eval are handed to the runner
	// (either may be nil when this party never runs that task; Eval
	// defaults to Train).
	Dataset     DatasetInfo
	Train, Eval *datasets.Dataset
	// TempDir is where the private directory is made (default
	// os.TempDir()).
	TempDir string
	// Persistent keeps one process serving every task (see serve.go)
	// instead of one process per task.
	Persistent bool
	// MaxInitBytes bounds the init task's output (default 1 GiB); train
	// output is bounded by the global model's size plus header slack.
	MaxInitBytes int64
	Logger       *slog.Logger
}

// Runner is an external training runner. It implements protocol.Trainer;
// a collaborator calls it from one goroutine, but its methods are safe for
// concurrent use (each task has its own directory).
type Runner struct {
	cfg                 Config
	dir                 string // private (0700) directory
	trainData, evalData string
	seq                 atomic.Int64
	log                 *slog.Logger

	mu  sync.Mutex // serialises tasks of a persistent runner
	srv *server    // the persistent process, nil when not running
}

// InfoFor describes ds for task.json.
func InfoFor(ds *datasets.Dataset) DatasetInfo {
	in := DatasetInfo{Name: ds.Name, Task: string(ds.Task), NumFeatures: ds.D, ImageShape: slices.Clone(ds.ImageShape), Features: []string{}}
	if ds.Task == datasets.Classification {
		in.NumClasses = ds.NumClasses
	}
	for _, c := range ds.Columns {
		in.Features = append(in.Features, c.Name)
	}
	return in
}

// New checks cfg, makes the private directory and writes the data files.
// Close removes the directory.
func New(cfg Config) (*Runner, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("runner: no command")
	}
	if !filepath.IsAbs(cfg.Workspace) {
		return nil, fmt.Errorf("runner: workspace %q is not an absolute path", cfg.Workspace)
	}
	if err := supported(); err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.MaxInitBytes <= 0 {
		cfg.MaxInitBytes = 1 << 30
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Eval == nil {
		cfg.Eval = cfg.Train
	}
	dir, err := os.MkdirTemp(cfg.TempDir, "teeml-runner-")
	if err != nil {
		return nil, fmt.Errorf("runner: %w", err)
	}
	r := &Runner{cfg: cfg, dir: dir, log: cfg.Logger.With("runner", filepath.Base(cfg.Command[len(cfg.Command)-1]))}
	for _, d := range []struct {
		ds   *datasets.Dataset
		name string
		dst  *string
	}{{cfg.Train, "data-train.safetensors", &r.trainData}, {cfg.Eval, "data-eval.safetensors", &r.evalData}} {
		if d.ds == nil {
			continue
		}
		path := filepath.Join(dir, d.name)
		if err := writeData(path, d.ds); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("runner: %s: %w", d.name, err)
		}
		*d.dst = path
	}
	return r, nil
}

// writeData writes ds as x F32 [n, d] and y F32 [n].
func writeData(path string, ds *datasets.Dataset) error {
	if ds.N < 1 || len(ds.X) != ds.N*ds.D || len(ds.Y) != ds.N {
		return fmt.Errorf("dataset %s: %d rows of %d features with %d labels: want at least one labelled row", ds.Name, ds.N, ds.D, len(ds.Y))
	}
	w := tensor.Weights{{Name: "x", Shape: []int{ds.N, ds.D}, Data: ds.X}, {Name: "y", Shape: []int{ds.N}, Data: ds.Y}}
	return safetensors.WriteFile(path, w, map[string]string{"teeml.dataset": ds.Name, "teeml.task": string(ds.Task)})
}

// Close stops a persistent runner process and removes the private
// directory.
func (r *Runner) Close() error {
	r.mu.Lock()
	if r.srv != nil {
		r.srv.stop(5 * time.Second)
		r.srv = nil
	}
	r.mu.Unlock()
	return os.RemoveAll(r.dir)
}

// Train implements protocol.Trainer: the train task.
func (r *Runner) Train(ctx context.Context, global tensor.Weights, cfg map[string]float64) (tensor.Weights, int, map[string]float64, error) {
	if r.trainData == "" {
		return nil, 0, nil, errors.New("runner: no training data")
	}
	round, _ := intKey(cfg, strategy.KeyRound)
	h := r.cfg.Hyper
	if v, ok := intKey(cfg, keyEpochs); ok {
		h.Epochs = v
	}
	if v, ok := intKey(cfg, keyBatchSize); ok {
		h.BatchSize = v
	}
	if v, ok := cfg[keyLR]; ok && v > 0 && !math.IsInf(v, 0) {
		h.LR = v
	}
	if mu, ok := cfg[strategy.KeyProximalMu]; ok && mu > 0 && !math.IsInf(mu, 0) {
		h.ProximalMu = mu
	}
	h.Seed += 1000 * int64(round)
	res, err := r.run(ctx, TaskTrain, round, cfg, h, r.trainData, r.cfg.Train.N, global)
	if err != nil {
		return nil, 0, nil, err
	}
	return res.weights, res.n, res.metrics, nil
}

// Evaluate implements protocol.Trainer: the evaluate task on the
// evaluation data.
func (r *Runner) Evaluate(ctx context.Context, w tensor.Weights) (int, float64, map[string]float64, error) {
	round, _ := protocol.RoundFromContext(ctx)
	return r.EvaluateRound(ctx, int(round), w)
}

// EvaluateRound is Evaluate with the round number for task.json and logs.
func (r *Runner) EvaluateRound(ctx context.Context, round int, w tensor.Weights) (int, float64, map[string]float64, error) {
	if r.evalData == "" {
		return 0, 0, nil, errors.New("runner: no evaluation data")
	}
	res, err := r.run(ctx, TaskEvaluate, round, nil, r.cfg.Hyper, r.evalData, r.cfg.Eval.N, w)
	if err != nil {
		return 0, 0, nil, err
	}
	return res.n, res.loss, res.metrics, nil
}

// Init runs the init task: the runner builds its model with the seed in
// the hyperparameters and writes the initial weights.
func (r *Runner) Init(ctx context.Context) (tensor.Weights, error) {
	res, err := r.run(ctx, TaskInit, 0, nil, r.cfg.Hyper, "", 0, nil)
	if err != nil {
		return nil, err
	}
	return res.weights, nil
}

type result struct {
	weights tensor.Weights
	n       int
	loss    float64
	metrics map[string]float64
}

// taskError is a failed task: a one-line message (a runner's output tail
// may span lines) that wraps its cause.
type taskError struct {
	msg string
	err error
}

func (e *taskError) Error() string { return e.msg }
func (e *taskError) Unwrap() error { return e.err }

// run executes one task and validates what it returns.
func (r *Runner) run(ctx context.Context, kind string, round int, cfg map[string]float64, h Hyperparameters, data string, rows int, in tensor.Weights) (*result, error) {
	fail := func(format string, args ...any) (*result, error) {
		cause := fmt.Errorf(format, args...)
		return nil, &taskError{msg: fmt.Sprintf("runner: %s round %d: %s", kind, round, oneLine(cause.Error())), err: cause}
	}
	if r.cfg.Verify != nil {
		if err := r.cfg.Verify(); err != nil {
			return fail("not launched: %w", err)
		}
	}
	dir := filepath.Join(r.dir, fmt.Sprintf("task-%d", r.seq.Add(1)))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fail("%w", err)
	}
	defer os.RemoveAll(dir)
	t := Task{Version: Version, Task: kind, Round: round, Party: r.cfg.Party, Config: maps.Clone(cfg), Hyperparameters: h,
		Dataset: r.cfg.Dataset, Data: data, Metrics: filepath.Join(dir, "metrics.json")}
	if t.Config == nil {
		t.Config = map[string]float64{}
	}
	if in != nil {
		t.InputWeights = filepath.Join(dir, "input.safetensors")
		if err := safetensors.WriteFile(t.InputWeights, in, nil); err != nil {
			return fail("input weights: %w", err)
		}
	}
	switch kind {
	case TaskTrain:
		t.OutputWeights = filepath.Join(dir, "output.safetensors")
		t.MaxOutputBytes = maxWeightsFile(in)
	case TaskInit:
		t.OutputWeights = filepath.Join(dir, "output.safetensors")
		t.MaxOutputBytes = r.cfg.MaxInitBytes
	}
	tb, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return fail("task file: %w", err)
	}
	taskFile := filepath.Join(dir, "task.json")
	if err := atomicfile.WriteBytes(taskFile, tb, 0o600); err != nil {
		return fail("task file: %w", err)
	}

	start := time.Now()
	log := r.log.With("task", kind, "round", round)
	run := r.exec
	if r.cfg.Persistent {
		run = r.serveTask
	}
	if err := run(ctx, log, kind, dir, taskFile); err != nil {
		return fail("%w", err)
	}

	res := &result{}
	if t.OutputWeights != "" {
		w, err := readWeights(t.OutputWeights, t.MaxOutputBytes, in)
		if err != nil {
			return fail("output weights: %w", err)
		}
		res.weights = w
	}
	if kind != TaskInit {
		m, err := readMetrics(t.Metrics, kind == TaskEvaluate, rows)
		if err != nil {
			return fail("metrics: %w", err)
		}
		res.n, res.loss, res.metrics = m.n, m.loss, m.metrics
	}
	log.Info("runner task done", "seconds", time.Since(start).Seconds(), "examples", res.n, "loss", res.loss, "metrics", res.metrics)
	return res, nil
}

// env is the runner's environment: a minimal base (nothing inherited from
// teeml's own environment, which may hold credentials), the plan's env, and
// the task variables.
func (r *Runner) env(kind, dir, taskFile string) []string {
	m := map[string]string{
		"PATH":   "/usr/local/bin:/usr/bin:/bin",
		"LANG":   "C.UTF-8",
		"HOME":   dir,
		"TMPDIR": dir,
	}
	maps.Copy(m, r.cfg.Env)
	if taskFile == "" {
		m[EnvServe] = "1"
	} else {
		m[EnvTaskFile] = taskFile
		m[EnvTask] = kind
	}
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// exec launches the command for one task and waits for it, killing its
// process group on timeout or cancellation, and always once it has
// exited (so nothing it left in the background survives the task).
func (r *Runner) exec(ctx context.Context, log *slog.Logger, kind, dir, taskFile string) error {
	tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	argv0 := r.cfg.Command[0]
	if !filepath.IsAbs(argv0) {
		argv0 = filepath.Join(r.cfg.Workspace, filepath.FromSlash(argv0))
	}
	cmd := exec.CommandContext(tctx, argv0, r.cfg.Command[1:]...)
	cmd.Dir = r.cfg.Workspace
	cmd.Env = r.env(kind, dir, taskFile)
	stdout := newLineLog(log, "stdout", 0)
	stderr := newLineLog(log, "stderr", 8)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	setProcessGroup(cmd)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	// Pipes held open by a background child are closed this long after
	// the runner itself exits (or is killed).
	cmd.WaitDelay = 2 * time.Second
	log.Info("runner task starts", "command", r.cfg.Command, "timeout", r.cfg.Timeout)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", r.cfg.Command[0], err)
	}
	err := cmd.Wait()
	killGroup(cmd.Process.Pid)
	stdout.flush()
	stderr.flush()
	tail := stderr.tail()
	if tail != "" {
		tail = ": " + tail
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("cancelled (%w); process group killed", context.Cause(ctx))
	case tctx.Err() != nil:
		return fmt.Errorf("timed out after %v; process group killed%s", r.cfg.Timeout, tail)
	case err == nil:
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.Exited() {
			return fmt.Errorf("exited with status %d%s", ee.ExitCode(), tail)
		}
		return fmt.Errorf("%v%s", ee.ProcessState, tail)
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		// The runner exited 0 but a child kept its output open; it was
		// killed with the group. The outputs are still validated.
		log.Warn("runner left a background process holding its output; killed it")
		return nil
	}
	return err
}

// maxWeightsFile bounds a returned model: the global model's F32 bytes
// plus room for the header.
func maxWeightsFile(global tensor.Weights) int64 {
	return 4*int64(global.NumParams()) + 1<<20 + 256*int64(len(global))
}

func intKey(cfg map[string]float64, k string) (int, bool) {
	v, ok := cfg[k]
	if !ok || v < 1 || v > 1e9 || v != math.Trunc(v) {
		return 0, false
	}
	return int(v), true
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
}

// quote shortens and quotes a runner-controlled string for an error.
func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strconv.Quote(s)
}
