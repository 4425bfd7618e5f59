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

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/fl/metrics"
	"github.com/teeml/teeml/fl/plan"
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
// round after the last checkpoint (see docs/fl-resume.md).
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
	cols, err := workspace.LoadCollaborators(ws)
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		return fmt.Errorf("%s lists no collaborators", workspace.ColsFile)
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	id, err := loadParty(ws, o.Name, "aggregator", log)
	if err != nil {
		return err
	}
	id.Announce(o.Out, log)
	ks, closeKS, err := partyKeys(ctx, id, p, log)
	if err != nil {
		return err
	}
	defer closeKS()
	rest := newAtRest(ctx, p, ks)

	// Initial weights: must belong to this plan.
	initPath := wsPath(ws, p.Aggregator.InitStatePath)
	initial, md, err := rest.readWeights(initPath)
	if err != nil {
		return fmt.Errorf("initial weights: %v", err)
	}
	if md[workspace.MetaPlanHash] != hash {
		return fmt.Errorf("initial weights %s were written for plan %s, not the frozen plan %s: re-run teeml fl plan init",
			p.Aggregator.InitStatePath, protocol.ShortHash(md[workspace.MetaPlanHash]), protocol.ShortHash(hash))
	}
	test, err := heldOutTest(p)
	if err != nil {
		return err
	}
	var evalModel *ml.Model
	var extEval evalFunc
	if p.TaskRunner.Model == plan.ModelExternal {
		var closeEval func()
		if extEval, closeEval, err = runnerEvaluator(ctx, ws, p, o.Name, test, log); err != nil {
			return err
		}
		defer closeEval()
	} else {
		if evalModel, err = ml.NewFromMetadata(md); err != nil {
			return fmt.Errorf("initial weights: %v", err)
		}
		if err := evalModel.SetWeights(initial); err != nil {
			return fmt.Errorf("initial weights: %v", err)
		}
	}

	strat, err := p.Strategy(0)
	if err != nil {
		return err
	}
	ob, err := openObservability(ctx, ws, hash, o.MetricsAddr, o.Out, log)
	if err != nil {
		return err
	}
	defer ob.close()
	tr := &tracker{rest: rest, obs: ob.obs, Strategy: strat, model: evalModel, ext: extEval, test: test, out: o.Out, log: log, md: md,
		bestPath: wsPath(ws, p.Aggregator.BestStatePath), rounds: p.Aggregator.RoundsToTrain, start: time.Now(), best: math.Inf(-1)}
	minCols, straggler, err := roundPolicy(p, len(names))
	if err != nil {
		return err
	}
	timeout := p.Network.RoundTimeout
	if timeout == 0 {
		timeout = 365 * 24 * time.Hour
	}

	// Resume from the last completed round, if any.
	ckptPath := CheckpointFile(ws, hash)
	stateDir := filepath.Dir(ckptPath)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	unlock, err := lockState(filepath.Join(stateDir, "lock"))
	if err != nil {
		return err
	}
	defer unlock()
	// A crash during a checkpoint write leaves its temporary file (the
	// previous checkpoint is intact): remove it.
	stale, _ := filepath.Glob(filepath.Join(stateDir, "."+filepath.Base(ckptPath)+".tmp-*"))
	for _, f := range stale {
		if err := os.Remove(f); err == nil {
			log.Info("removed an unfinished checkpoint write", "file", f)
		}
	}
	resume, err := rest.readCheckpoint(ckptPath, hash)
	switch {
	case errors.Is(err, os.ErrNotExist):
		resume = nil
	case err != nil:
		return err
	default:
		if err := tr.restore(resume); err != nil {
			return err
		}
		msg := fmt.Sprintf("resuming from checkpoint: round %d of %d completed", resume.Round, resume.Rounds)
		log.Info(msg, "checkpoint", ckptPath, "round", resume.Round, "rounds", resume.Rounds, "strategy", resume.Strategy.Strategy)
		fmt.Fprintf(o.Out, "%s (%s; remove %s to start over)\n", msg, ckptPath, filepath.Dir(ckptPath))
	}
	// The metrics file keeps exactly the checkpointed rounds: records of a
	// round redone after the crash are dropped, and a completed round whose
	// record was lost between the checkpoint and the write is restored.
	var history []protocol.RoundSummary
	if resume != nil {
		history = resume.History
	}
	ob.resume(history, o.Out, log)
	agg, err := protocol.NewAggregator(protocol.AggregatorConfig{
		PlanHash: hash, Strategy: tr, Initial: initial, Collaborators: names,
		Rounds: p.Aggregator.RoundsToTrain, RoundTimeout: timeout, MinCollaborators: minCols, Straggler: straggler,
		RetryAfter: 200 * time.Millisecond, Resume: resume, Logger: log, Observer: ob.obs,
		Commit: func(_ context.Context, c *protocol.Checkpoint) error { return tr.commit(ckptPath, c) },
	})
	if err != nil {
		return err
	}

	creds, closeCreds, err := partyCredentials(ctx, id, pols, "collaborator", true, log)
	if err != nil {
		return err
	}
	defer closeCreds()
	creds = metrics.ObserveHandshakes(creds, "collaborator", ob.obs)
	addr := o.Listen
	if addr == "" {
		addr = net.JoinHostPort(p.Network.AggAddr, strconv.Itoa(p.Network.AggPort))
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %v", addr, err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	agg.Register(srv)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	defer srv.Stop()
	log.Info("aggregator listening", "addr", lis.Addr().String(), "plan_hash", protocol.ShortHash(hash), "collaborators", names, "rounds", p.Aggregator.RoundsToTrain)
	fmt.Fprintf(o.Out, "aggregator %s: plan %s, %d rounds, strategy %s, waiting for %s on %s (RA-TLS)\n",
		o.Name, protocol.ShortHash(hash), p.Aggregator.RoundsToTrain, strat.Name(), strings.Join(names, ", "), lis.Addr())

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
		return fmt.Errorf("serve %s: %v", addr, err)
	}
	if res.err != nil {
		return res.err
	}
	srv.GracefulStop()

	// Last model.
	met, err := tr.evaluate(res.final)
	if err != nil {
		return err
	}
	lastPath := wsPath(ws, p.Aggregator.LastStatePath)
	if err := rest.saveWeights(lastPath, res.final, md, met); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "wrote last model %s and best model %s (round %d, test_accuracy=%.4f)\n",
		lastPath, tr.bestPath, tr.bestRound, tr.best)
	fmt.Fprintf(o.Out, "%s%s\n", FinalModelPrefix, lastPath)
	fmt.Fprintf(o.Out, "%s%.4f test_loss=%.4f\n", FinalAccuracyPrefix, met.Accuracy, met.Loss)
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

// tracker wraps the plan's strategy to evaluate every new global model on
// the held-out test split, print the round's line and keep the best model.
type tracker struct {
	strategy.Strategy
	rest     *atRest // model and checkpoint files: sealed when the plan says so
	model    *ml.Model
	ext      evalFunc // evaluates instead of model (external runner)
	test     *datasets.Dataset
	out      io.Writer
	log      *slog.Logger
	md       map[string]string
	bestPath string
	rounds   int
	obs      *metrics.Observer

	mu        sync.Mutex
	start     time.Time
	best      float64
	bestRound int
	// pending is the last aggregated round's output, printed and saved by
	// commit once the round's checkpoint is durable.
	pending struct {
		line    string
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
			return fmt.Errorf("best model: %v", err)
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
	fmt.Fprint(t.out, t.pending.line)
	if t.pending.best != nil {
		if err := t.rest.saveWeights(t.bestPath, t.pending.best, t.md, t.pending.bestMet); err != nil {
			return fmt.Errorf("best model: %v", err)
		}
	}
	t.pending.line, t.pending.best = "", nil
	return nil
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

func (t *tracker) AggregateFit(round int, global tensor.Weights, results []strategy.FitResult) (tensor.Weights, strategy.AggregateReport, error) {
	next, rep, err := t.Strategy.AggregateFit(round, global, results)
	if err != nil {
		return next, rep, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	secs := time.Since(t.start).Seconds()
	t.start = time.Now()
	evalStart := time.Now()
	met, eerr := t.evaluate(next)
	if eerr != nil {
		t.log.Warn("global model evaluation failed", "round", round, "err", eerr)
		met.Accuracy, met.Loss = math.NaN(), math.NaN()
	} else {
		t.obs.Evaluated(round, time.Since(evalStart).Seconds(), testMetrics(met))
	}
	var line strings.Builder
	fmt.Fprintf(&line, "round %d/%d: participants %d, accepted %d, rejected %d, global test_accuracy=%.4f test_loss=%.4f, %.1f s\n",
		round, t.rounds, len(results), len(rep.Accepted), len(rep.Rejected), met.Accuracy, met.Loss, secs)
	for c, why := range rep.Rejected {
		fmt.Fprintf(&line, "  rejected %s: %s\n", c, why)
	}
	t.pending.line, t.pending.best = line.String(), nil
	if eerr == nil && met.Accuracy > t.best {
		t.pending.best, t.pending.bestMet = next, met
		t.best, t.bestRound = met.Accuracy, round
	}
	return next, rep, nil
}
