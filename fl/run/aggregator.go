package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/fl/metrics"
	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/ml/tensor"
)

// AggregatorOptions configures RunAggregator. Nothing here decides trust.
type AggregatorOptions struct {
	Workspace string
	// Name is the aggregator's member name (default "aggregator").
	Name string
	// Listen is the address to listen on (default network.agg_addr:agg_port
	// of the plan), e.g. ":50051" behind NAT. It does not affect trust.
	Listen string
	// Out receives the human-readable progress (one line per round).
	Out    io.Writer
	Logger *slog.Logger
	// MetricsAddr, if set, is where Prometheus /metrics is served (e.g.
	// 127.0.0.1:9464); the metrics file RunDir/metrics.jsonl is always
	// written.
	MetricsAddr string
	// UIAddr, if set, is where the web dashboard is served (HTTPS,
	// read-only; docs/dashboard.md), e.g. 127.0.0.1:8443.
	UIAddr string
	// UILinger keeps the dashboard up this long after the federation
	// ended (or until ctx ends), so that its last rounds can still be
	// looked at (0: it closes with the run).
	UILinger time.Duration
}

// Result line prefixes printed by RunAggregator, parsed by Quickstart.
const (
	FinalAccuracyPrefix = "final global model: test_accuracy="
	FinalModelPrefix    = "final model: "
)

// RunAggregator is `teeml fl aggregator start`: it loads the frozen plan,
// the policies, the federation bundle and pinned root, the aggregator's
// identity and party configuration, serves the federation over RA-TLS on
// network.agg_addr:agg_port, prints one line per round, writes the best and
// last global models, and returns when every round is done.
//
// Every completed round is checkpointed (CheckpointFile) before the next
// round opens; started again after a crash, RunAggregator resumes at the
// round after the last checkpoint (see docs/fl-resilience.md).
func RunAggregator(ctx context.Context, o AggregatorOptions) error {
	if o.Name == "" {
		o.Name = "aggregator"
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	ws := o.Workspace
	p, hash, pols, err := loadFrozenPlan(ws)
	if err != nil {
		return err
	}
	names, err := collaboratorNames(ws)
	if err != nil {
		return err
	}
	id, err := loadParty(ws, o.Name, "aggregator", log)
	if err != nil {
		return err
	}
	id.Announce(o.Out, log)
	defer id.WatchFederation(ctx, log)()
	ks, closeKS, err := partyKeys(ctx, id, p, log)
	if err != nil {
		return err
	}
	defer closeKS()
	rest := newAtRest(ctx, p, ks)
	initial, md, err := loadInitial(rest, ws, p, hash)
	if err != nil {
		return err
	}
	tr, closeEval, err := newTracker(ctx, ws, p, o.Name, rest, initial, md, o.Out, log)
	if err != nil {
		return err
	}
	defer closeEval()
	strat, err := p.StrategyFor(0, names)
	if err != nil {
		return err
	}
	if d, ok := strat.(*privacy.DPFedAvg); ok {
		d.SetLogger(log)
	}
	ob, err := openObservability(ctx, id, ws, hash, o.MetricsAddr, o.UIAddr, o.Out, log)
	if err != nil {
		return err
	}
	defer func() {
		if ob.ui != nil && o.UILinger > 0 {
			fmt.Fprintf(o.Out, "dashboard: kept for %s after the run (interrupt to stop)\n", o.UILinger)
			t := time.NewTimer(o.UILinger)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		ob.close()
	}()
	ckptPath := CheckpointFile(ws, hash)
	cfg, err := aggregatorConfig(p, hash, strat, tr, initial, names, ckptPath, ob.obs, log)
	if err == nil && cfg.SecAgg != nil {
		cfg.SecAggVerifier = id.Federation // refuse a member's bad key certificate before relaying it
	}
	if err != nil {
		return err
	}
	resume, unlock, err := openState(rest, tr, ckptPath, hash, o.Out, log)
	if err != nil {
		return err
	}
	defer unlock()
	agg, err := newAggregator(cfg, resume, ob, o.Out, log)
	if err != nil {
		return err
	}
	creds, closeCreds, err := partyCredentials(ctx, id, pols, "collaborator", true, log)
	if err != nil {
		return err
	}
	defer closeCreds()
	creds = metrics.ObserveHandshakes(creds, "collaborator", ob.obs)
	final, err := serveAggregator(ctx, o, p, hash, strat.Name(), names, creds, id.ServerOptions(log), agg, log)
	if err != nil {
		return err
	}
	return writeFinal(rest, tr, ws, p, md, final, o.Out)
}

// collaboratorNames are the names of the workspace's collaborators.
func collaboratorNames(ws string) ([]string, error) {
	cols, err := workspace.LoadCollaborators(ws)
	if err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("%s lists no collaborators", workspace.ColsFile)
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return names, nil
}

// loadInitial reads the initial weights, which must belong to this plan.
func loadInitial(rest *atRest, ws string, p *plan.Plan, hash string) (tensor.Weights, map[string]string, error) {
	initial, md, err := rest.readWeights(wsPath(ws, p.Aggregator.InitStatePath))
	if err != nil {
		return nil, nil, fmt.Errorf("initial weights: %w", err)
	}
	if md[workspace.MetaPlanHash] != hash {
		return nil, nil, fmt.Errorf("initial weights %s were written for plan %s, not the frozen plan %s: re-run teeml fl plan init",
			p.Aggregator.InitStatePath, protocol.ShortHash(md[workspace.MetaPlanHash]), protocol.ShortHash(hash))
	}
	return initial, md, nil
}

// newTracker builds the tracker and its evaluation of global models on the
// plan's held-out test split: the built-in model, or the external runner
// (stopped by the returned function).
func newTracker(ctx context.Context, ws string, p *plan.Plan, name string, rest *atRest, initial tensor.Weights,
	md map[string]string, out io.Writer, log *slog.Logger) (*tracker, func(), error) {
	test, err := heldOutTest(p)
	if err != nil {
		return nil, nil, err
	}
	tr := &tracker{rest: rest, test: test, out: out, md: md,
		bestPath: wsPath(ws, p.Aggregator.BestStatePath), rounds: p.Aggregator.RoundsToTrain, start: time.Now(), best: math.Inf(-1)}
	if p.TaskRunner.Model == plan.ModelExternal {
		ext, closeEval, err := runnerEvaluator(ctx, ws, p, name, test, log)
		if err != nil {
			return nil, nil, err
		}
		tr.ext = ext
		return tr, closeEval, nil
	}
	if plan.IsTreeModel(p.TaskRunner.Model) {
		if tr.ext, err = treeEvaluator(p); err != nil {
			return nil, nil, err
		}
		return tr, func() {}, nil
	}
	if tr.model, err = ml.NewFromMetadata(md); err != nil {
		return nil, nil, fmt.Errorf("initial weights: %w", err)
	}
	if err := tr.model.SetWeights(initial); err != nil {
		return nil, nil, fmt.Errorf("initial weights: %w", err)
	}
	return tr, func() {}, nil
}

// openState locks the plan's state directory (unlock releases it) and
// reads the checkpoint of the last completed round, if any, restoring the
// tracker's bookkeeping from it.
func openState(rest *atRest, tr *tracker, ckptPath, hash string, out io.Writer, log *slog.Logger) (*protocol.Checkpoint, func(), error) {
	stateDir := filepath.Dir(ckptPath)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, nil, err
	}
	unlock, err := lockState(filepath.Join(stateDir, "lock"))
	if err != nil {
		return nil, nil, err
	}
	// A crash during a checkpoint write leaves its temporary file (the
	// previous checkpoint is intact): remove it.
	stale, _ := filepath.Glob(filepath.Join(stateDir, "."+filepath.Base(ckptPath)+".tmp-*"))
	for _, f := range stale {
		if err := os.Remove(f); err == nil {
			log.Info("removed an unfinished checkpoint write", "file", f)
		}
	}
	// Only the checkpoint file's own absence starts the plan at round 1;
	// an error reading or unsealing an existing one (whatever it wraps)
	// stops the aggregator (the state lock is held: no other aggregator
	// writes it in between).
	if _, err := os.Lstat(ckptPath); errors.Is(err, os.ErrNotExist) {
		return nil, unlock, nil
	}
	resume, err := rest.readCheckpoint(ckptPath, hash)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	if err := tr.restore(resume); err != nil {
		unlock()
		return nil, nil, err
	}
	msg := fmt.Sprintf("resuming from checkpoint: round %d of %d completed", resume.Round, resume.Rounds)
	log.Info(msg, "checkpoint", ckptPath, "round", resume.Round, "rounds", resume.Rounds, "strategy", resume.Strategy.Strategy)
	fmt.Fprintf(out, "%s (%s; remove %s to start over)\n", msg, ckptPath, filepath.Dir(ckptPath))
	return resume, unlock, nil
}

// aggregatorConfig is the protocol configuration of the plan's federation:
// its strategy, the tracker as server-side evaluator (the evaluate phase,
// timed apart from aggregation), every round checkpointed to ckptPath.
func aggregatorConfig(p *plan.Plan, hash string, strat strategy.Strategy, tr *tracker, initial tensor.Weights, names []string,
	ckptPath string, obs *metrics.Observer, log *slog.Logger) (protocol.AggregatorConfig, error) {
	minCols, straggler, err := roundPolicy(p, len(names))
	if err != nil {
		return protocol.AggregatorConfig{}, err
	}
	timeout := p.Network.RoundTimeout
	if timeout == 0 {
		timeout = 365 * 24 * time.Hour
	}
	return protocol.AggregatorConfig{
		PlanHash: hash, Strategy: strat, Evaluator: tr, Initial: initial, Collaborators: names,
		Rounds: p.Aggregator.RoundsToTrain, RoundTimeout: timeout, MinCollaborators: minCols, Straggler: straggler,
		RetryAfter: 200 * time.Millisecond, Logger: log, Observer: obs, SecAgg: p.SecAgg(),
		Commit: func(_ context.Context, c *protocol.Checkpoint) error { return tr.commit(ckptPath, c) },
	}, nil
}

// newAggregator aligns the metrics file with the checkpoint resume (nil:
// none) and builds the Aggregator resuming from it.
func newAggregator(cfg protocol.AggregatorConfig, resume *protocol.Checkpoint, ob *observability, out io.Writer, log *slog.Logger) (*protocol.Aggregator, error) {
	// The metrics file keeps exactly the checkpointed rounds: records of a
	// round redone after the crash are dropped, and a completed round whose
	// record was lost between the checkpoint and the write is restored.
	var history []protocol.RoundSummary
	if resume != nil {
		history = resume.History
	}
	ob.resume(history, out, log)
	cfg.Resume = resume
	return protocol.NewAggregator(cfg)
}

// serveAggregator serves agg over RA-TLS (creds, and the party's server
// options: identities rechecked on every call) until its rounds are done,
// and returns the final global model.
func serveAggregator(ctx context.Context, o AggregatorOptions, p *plan.Plan, hash, strategyName string, names []string,
	creds credentials.TransportCredentials, opts []grpc.ServerOption, agg *protocol.Aggregator, log *slog.Logger) (tensor.Weights, error) {
	addr := o.Listen
	if addr == "" {
		addr = net.JoinHostPort(p.Network.AggAddr, strconv.Itoa(p.Network.AggPort))
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := grpc.NewServer(append(append(opts, protocol.ServerOptions()...), grpc.Creds(creds))...)
	agg.Register(srv)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	defer srv.Stop()
	log.Info("aggregator listening", "addr", lis.Addr().String(), "plan_hash", protocol.ShortHash(hash), "collaborators", names, "rounds", p.Aggregator.RoundsToTrain)
	fmt.Fprintf(o.Out, "aggregator %s: plan %s, %d rounds, strategy %s, waiting for %s on %s (RA-TLS)\n",
		o.Name, protocol.ShortHash(hash), p.Aggregator.RoundsToTrain, strategyName, strings.Join(names, ", "), lis.Addr())

	type result struct {
		final tensor.Weights
		err   error
	}
	done := make(chan result, 1)
	go func() {
		f, _, err := agg.Run(ctx)
		done <- result{f, err}
	}()
	var res result
	select {
	case res = <-done:
	case err := <-serveErr:
		return nil, fmt.Errorf("serve %s: %w", addr, err)
	}
	if res.err != nil {
		return nil, res.err
	}
	if err := agg.Stopped(); err != nil { // e.g. the privacy budget: the last committed model is final
		fmt.Fprintf(o.Out, "aggregator %s: federation stopped early: %v\n", o.Name, err)
	}
	srv.GracefulStop()
	return res.final, nil
}

// writeFinal evaluates and writes the last model and prints the result
// lines.
func writeFinal(rest *atRest, tr *tracker, ws string, p *plan.Plan, md map[string]string, final tensor.Weights, out io.Writer) error {
	met, err := tr.evaluate(final)
	if err != nil {
		return err
	}
	lastPath := wsPath(ws, p.Aggregator.LastStatePath)
	if err := rest.saveWeights(lastPath, final, md, met); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote last model %s and best model %s (round %d, test_accuracy=%.4f)\n",
		lastPath, tr.bestPath, tr.bestRound, tr.best)
	fmt.Fprintf(out, "%s%s\n", FinalModelPrefix, lastPath)
	fmt.Fprintf(out, "%s%.4f test_loss=%.4f\n", FinalAccuracyPrefix, met.Accuracy, met.Loss)
	return nil
}

// CheckpointFile is where the aggregator of the plan with the given hash
// keeps the checkpoint of its last completed round.
func CheckpointFile(ws, planHash string) string {
	return filepath.Join(RunDir(ws, planHash), "state", "checkpoint.safetensors")
}

// roundPolicy turns the plan's aggregator.min_collaborators or
// straggler_handling_policy into the aggregator's minimum of updates per
// round and straggler policy, for n collaborators.
func roundPolicy(p *plan.Plan, n int) (int, protocol.StragglerPolicy, error) {
	s := &p.StragglerHandling
	if !s.Enabled() {
		minCols := p.Aggregator.MinCollaborators
		if minCols == 0 {
			minCols = n
		}
		if minCols > n {
			return 0, protocol.StragglerPolicy{}, fmt.Errorf("plan: aggregator.min_collaborators %d exceeds the %d collaborators in %s", minCols, n, workspace.ColsFile)
		}
		return minCols, protocol.StragglerPolicy{}, nil
	}
	if s.MinimumReporting > n {
		return 0, protocol.StragglerPolicy{}, fmt.Errorf("plan: straggler_handling_policy.minimum_reporting %d exceeds the %d collaborators in %s", s.MinimumReporting, n, workspace.ColsFile)
	}
	sp := protocol.StragglerPolicy{Cutoff: s.CutoffTime}
	if s.Policy == plan.StragglerPercentage {
		sp.Needed = s.Needed(n)
	}
	return s.MinimumReporting, sp, nil
}

// loadFrozenPlan loads the workspace's plan, which must be frozen (its hash
// file present and matching), and the attestation policies it names.
func loadFrozenPlan(ws string) (*plan.Plan, string, map[string]*policy.Policy, error) {
	if _, err := os.Stat(filepath.Join(ws, filepath.FromSlash(workspace.HashFile))); err != nil {
		return nil, "", nil, fmt.Errorf("plan %s is not frozen: run teeml fl plan init first", workspace.PlanFile)
	}
	p, err := workspace.LoadPlan(ws)
	if err != nil {
		return nil, "", nil, err
	}
	if err := supported(p); err != nil {
		return nil, "", nil, err
	}
	pols, err := workspace.LoadPolicies(ws, p)
	if err != nil {
		return nil, "", nil, err
	}
	return p, p.Hash(), pols, nil
}

// supported refuses plan settings that parse but that the runtime does not
// implement yet, rather than silently ignoring them.
func supported(p *plan.Plan) error {
	if err := checkEncryptionSupported(p); err != nil {
		return err
	}
	if p.Collaborator.OptTreatment != "reset" {
		return fmt.Errorf("plan: collaborator.opt_treatment %q is not implemented (only reset: optimiser state restarts every round)", p.Collaborator.OptTreatment)
	}
	if p.Collaborator.DeltaUpdates {
		return fmt.Errorf("plan: collaborator.delta_updates: true is not implemented (updates are full weights)")
	}
	for _, g := range p.Assigner.TaskGroups {
		if g.Percentage != 1 {
			return fmt.Errorf("plan: assigner task group %q: percentage %v is not implemented (every collaborator runs every round)", g.Name, g.Percentage)
		}
	}
	return nil
}

// heldOutTest is the plan dataset's held-out test split, preprocessed as the
// collaborators' (workspace.LoadShard).
func heldOutTest(p *plan.Plan) (*datasets.Dataset, error) {
	rawTrain, rawTest, err := datasets.LoadSplit(p.DataLoader.Dataset, p.DataLoader.TestFraction, p.DataLoader.Seed)
	if err != nil {
		return nil, err
	}
	return datasets.FitPipeline(p.DataLoader.Dataset, rawTrain).Apply(rawTest)
}

func saveWeights(path string, w tensor.Weights, md map[string]string, met ml.Metrics) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return job.WriteWeights(path, w, md, met)
}

// tracker is the aggregator's server-side evaluation (strategy.Evaluator):
// it evaluates every new global model on the held-out test split, and,
// once the round is committed, prints the round's line and keeps the best
// model.
type tracker struct {
	rest     *atRest // model and checkpoint files: sealed when the plan says so
	model    *ml.Model
	ext      evalFunc // evaluates instead of model (external runner)
	test     *datasets.Dataset
	out      io.Writer
	md       map[string]string
	bestPath string
	rounds   int

	mu        sync.Mutex
	start     time.Time
	best      float64
	bestRound int
	// pending is the last evaluated round's output, printed and saved by
	// commit once the round's checkpoint is durable.
	pending struct {
		round   int
		met     ml.Metrics
		secs    float64        // since the previous round's evaluation
		best    tensor.Weights // non-nil if the round is the new best
		bestMet ml.Metrics
	}
}

// Checkpoint Extra keys of the tracker's bookkeeping.
const (
	extraBestRound    = "best_round"
	extraBestAccuracy = "best_test_accuracy"
)

// restore takes the best-model bookkeeping from a checkpoint. If the
// checkpoint's round was the best, the best model file may not have been
// written before the crash: it is written again from the checkpoint.
func (t *tracker) restore(c *protocol.Checkpoint) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := c.Extra[extraBestRound]; ok {
		r, err := strconv.Atoi(v)
		if err != nil || r < 0 || r > c.Round {
			return fmt.Errorf("checkpoint: bad %s %q", extraBestRound, v)
		}
		acc, err := strconv.ParseFloat(c.Extra[extraBestAccuracy], 64)
		if err != nil {
			return fmt.Errorf("checkpoint: bad %s %q", extraBestAccuracy, c.Extra[extraBestAccuracy])
		}
		t.best, t.bestRound = acc, r
	}
	if t.bestRound == c.Round && c.Round > 0 {
		met, err := t.evaluate(c.Global)
		if err != nil {
			return err
		}
		if err := t.rest.saveWeights(t.bestPath, c.Global, t.md, met); err != nil {
			return fmt.Errorf("best model: %w", err)
		}
	}
	return nil
}

// commit makes the round durable (the checkpoint, written atomically),
// then prints its line and writes the best model if it improved: output
// and best model never run ahead of the checkpoint.
func (t *tracker) commit(path string, c *protocol.Checkpoint) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c.Extra = map[string]string{}
	if t.bestRound > 0 {
		c.Extra[extraBestRound] = strconv.Itoa(t.bestRound)
		c.Extra[extraBestAccuracy] = strconv.FormatFloat(t.best, 'g', -1, 64)
	}
	if err := t.rest.writeCheckpoint(path, c); err != nil {
		return err
	}
	fmt.Fprint(t.out, t.roundLine(c.History[len(c.History)-1]))
	if t.pending.best != nil {
		if err := t.rest.saveWeights(t.bestPath, t.pending.best, t.md, t.pending.bestMet); err != nil {
			return fmt.Errorf("best model: %w", err)
		}
	}
	t.pending.round, t.pending.best = 0, nil
	return nil
}

// roundLine is the printed line of the closed round s; t.mu held.
func (t *tracker) roundLine(s protocol.RoundSummary) string {
	met, secs := t.pending.met, t.pending.secs
	if t.pending.round != s.Round { // not evaluated
		met.Accuracy, met.Loss = math.NaN(), math.NaN()
	}
	var line strings.Builder
	fmt.Fprintf(&line, "round %d/%d: participants %d, accepted %d, rejected %d, global test_accuracy=%.4f test_loss=%.4f, %.1f s\n",
		s.Round, t.rounds, len(s.Participants), len(s.Accepted), len(s.Rejected), met.Accuracy, met.Loss, secs)
	for c, why := range s.Rejected {
		fmt.Fprintf(&line, "  rejected %s: %s\n", c, why)
	}
	return line.String()
}

func (t *tracker) evaluate(w tensor.Weights) (ml.Metrics, error) {
	if t.ext != nil {
		return t.ext(w)
	}
	if err := t.model.SetWeights(w); err != nil {
		return ml.Metrics{}, err
	}
	return t.model.Evaluate(t.test)
}

// Evaluate implements strategy.Evaluator: the held-out test of round's new
// global model (metrics test_<m>), kept for the round's line and the best
// model until commit. A failed evaluation counts as NaN.
func (t *tracker) Evaluate(_ context.Context, round int, global tensor.Weights) (map[string]float64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	secs := time.Since(t.start).Seconds()
	t.start = time.Now()
	met, err := t.evaluate(global)
	if err != nil {
		met.Accuracy, met.Loss = math.NaN(), math.NaN()
	}
	t.pending.round, t.pending.met, t.pending.secs, t.pending.best = round, met, secs, nil
	if err != nil {
		return nil, err
	}
	if met.Accuracy > t.best {
		t.pending.best, t.pending.bestMet = global, met
		t.best, t.bestRound = met.Accuracy, round
	}
	return testMetrics(met), nil
}
