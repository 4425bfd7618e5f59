package scheduler

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
)

// Run drives the rounds until the last one is aggregated, then waits (at
// most DoneGrace) until every collaborator was told DONE. It returns the
// final global model and one summary per round. Call it once.
func (s *Scheduler) Run(ctx context.Context) (tensor.Weights, []RoundSummary, error) {
	history := slices.Clone(s.history)
	s.log.Info("federation starts", "rounds", s.cfg.Rounds, "first_round", s.first, "collaborators", s.cfg.Collaborators,
		"strategy", s.cfg.Strategy.Name(), "plan_hash", ShortHash(s.cfg.PlanHash), "params", s.global.NumParams(),
		"straggler_cutoff", s.cfg.Straggler.Cutoff, "straggler_needed", s.cfg.Straggler.Needed, "min_updates", s.cfg.MinCollaborators)
	for r := s.first; r <= s.cfg.Rounds && s.Stopped() == nil; r++ {
		sum, err := s.runRound(ctx, r, history)
		if err != nil {
			s.mu.Lock()
			s.failed = err
			s.notify()
			s.mu.Unlock()
			s.log.Error("federation failed", "round", r, "err", err)
			return nil, history, err
		}
		history = append(history, sum)
	}
	s.mu.Lock()
	s.done = true
	s.notify()
	final := s.global
	s.mu.Unlock()
	s.log.Info("federation finished; telling collaborators", "rounds", s.cfg.Rounds)
	// The last round's stragglers are not waited for: they may be dead,
	// and a dead collaborator must not hold the aggregator for DoneGrace.
	// One still alive is told DONE if it asks while others are waited for.
	var skip []string
	if len(history) > 0 {
		skip = history[len(history)-1].Stragglers
	}
	if len(skip) > 0 {
		s.log.Info("not waiting for the last round's stragglers to be told DONE", "collaborators", skip)
	}
	s.waitToldDone(ctx, skip)
	return final, history, nil
}

// waitToldDone waits, at most DoneGrace, until every collaborator but skip
// was told DONE.
func (s *Scheduler) waitToldDone(ctx context.Context, skip []string) {
	grace := time.NewTimer(s.cfg.DoneGrace)
	defer grace.Stop()
	for {
		s.mu.Lock()
		var waiting []string
		for _, n := range s.cfg.Collaborators {
			if !s.collabs[n].toldDone && !slices.Contains(skip, n) {
				waiting = append(waiting, n)
			}
		}
		s.mu.Unlock()
		if len(waiting) == 0 {
			return
		}
		select {
		case <-s.progress:
		case <-grace.C:
			s.log.Warn("collaborators not told DONE before the grace period ended", "collaborators", waiting)
			return
		case <-ctx.Done():
			return
		}
	}
}

// needed is how many updates close a round before the cutoff or timeout.
func (s *Scheduler) needed() int {
	n := len(s.expected)
	if k := s.cfg.Straggler.Needed; k > 0 {
		n = min(n, max(k, s.cfg.MinCollaborators))
	}
	return n
}

// runRound waits until round r may close, closes it, aggregates and
// evaluates it and commits it; history holds the summaries of rounds
// 1..r-1.
func (s *Scheduler) runRound(ctx context.Context, r int, history []RoundSummary) (RoundSummary, error) {
	start := s.now()
	s.log.Info("round open", "round", r, "of", s.cfg.Rounds, "timeout", s.cfg.RoundTimeout)
	if s.cfg.SecAgg != nil {
		if err := s.saSetup(ctx, r); err != nil {
			return RoundSummary{}, err
		}
	}
	closedBy, err := s.waitClose(ctx, r)
	if err != nil {
		return RoundSummary{}, err
	}
	in := s.closeRound(r, closedBy)
	if s.cfg.SecAgg != nil {
		res, err := s.saUnmask(ctx, r, in.global)
		if err != nil {
			return RoundSummary{}, err
		}
		in.results = []strategy.FitResult{res}
	}
	next, sum, err := s.aggregate(ctx, r, in)
	if err != nil {
		return RoundSummary{}, err
	}
	sum.Seconds = s.now().Sub(start).Seconds()
	if err := s.observerErr(); err != nil {
		return RoundSummary{}, fmt.Errorf("round %d: %w", r, err)
	}
	if err := s.commit(ctx, next, append(slices.Clip(history), sum)); err != nil {
		return RoundSummary{}, fmt.Errorf("round %d: %w", r, err)
	}
	s.mu.Lock()
	s.global = next
	if r < s.cfg.Rounds {
		if err := s.gate(r + 1); err != nil {
			s.stop(r+1, err)
		} else {
			s.openRound(r + 1)
		}
	}
	s.mu.Unlock()
	s.log.Info("round closed", "round", r, "participants", sum.Participants, "accepted", sum.Accepted,
		"rejected", len(sum.Rejected), "examples", in.examples, "eval_loss", sum.EvalLoss, "eval_metrics", sum.EvalMetrics,
		"local_eval", sum.LocalEvalMetrics, "seconds", sum.Seconds, "bytes_in", sum.BytesIn, "bytes_out", sum.BytesOut)
	if sum.Privacy != nil {
		s.log.Info("round privacy", "round", r, "epsilon", sum.Privacy["dp_epsilon"], "delta", sum.Privacy["dp_delta"],
			"privacy", sum.Privacy)
	}
	s.cfg.Observer.RoundClosed(sum)
	if err := s.observerErr(); err != nil {
		return RoundSummary{}, fmt.Errorf("round %d: %w", r, err)
	}
	return sum, nil
}

// observerErr is the Observer's failure to record, if it is a
// FailingObserver that failed.
func (s *Scheduler) observerErr() error {
	if o, ok := s.cfg.Observer.(FailingObserver); ok {
		return o.Err()
	}
	return nil
}

// waitClose waits until round r may close and says why it does (Closed*),
// or fails at the round timeout without MinCollaborators updates.
func (s *Scheduler) waitClose(ctx context.Context, r int) (string, error) {
	start := time.Now()
	timeout := time.NewTimer(s.cfg.RoundTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(s.cfg.StatusEvery)
	defer tick.Stop()
	var cutoff <-chan time.Time
	if d := s.cfg.Straggler.Cutoff; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		cutoff = t.C
	}
	cutoffPassed := false
	need, all, least := s.needed(), len(s.expected), s.cfg.MinCollaborators
	if s.cfg.SecAgg != nil {
		// Only the members can upload, and the sum needs the threshold.
		s.mu.Lock()
		all, least = len(s.sa.members), max(least, s.sa.threshold)
		need = max(min(need, all), least)
		s.mu.Unlock()
	}
	for {
		s.mu.Lock()
		n := len(s.updates)
		s.mu.Unlock()
		switch {
		case n == all:
			return ClosedAll, nil
		case n >= need:
			return ClosedPercentage, nil
		case cutoffPassed && n >= least:
			return ClosedCutoff, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("round %d: %w", r, ctx.Err())
		case <-s.progress:
		case <-cutoff:
			cutoffPassed, cutoff = true, nil
			s.log.Info("straggler cutoff passed", "round", r, "cutoff", s.cfg.Straggler.Cutoff, "updates", n, "min_updates", s.cfg.MinCollaborators)
		case <-tick.C:
			s.mu.Lock()
			late, why := s.lateReport(r)
			s.mu.Unlock()
			s.log.Info(fmt.Sprintf("round %d waits for %d of %d collaborators: %s", r, len(late), len(s.expected), why),
				"round", r, "late", late, "elapsed", time.Since(start).Round(time.Second))
		case <-timeout.C:
			return s.timedOut(r, least)
		}
	}
}

// timedOut is round r reaching its timeout: it closes if it has
// MinCollaborators updates, else the federation fails.
func (s *Scheduler) timedOut(r, least int) (string, error) {
	s.mu.Lock()
	late, why := s.lateReport(r)
	n := len(s.updates)
	s.mu.Unlock()
	if n < least {
		return "", fmt.Errorf("round %d timed out after %s with %d of %d updates (need %d): %s",
			r, s.cfg.RoundTimeout, n, len(s.expected), least, why)
	}
	s.log.Warn(fmt.Sprintf("round %d timed out; closing with %d of %d updates; late: %s", r, n, len(s.expected), why),
		"round", r, "late", late)
	return ClosedTimeout, nil
}

// roundInput is what a closed round hands to aggregation, in the expected
// collaborators' order.
type roundInput struct {
	global            tensor.Weights
	results           []strategy.FitResult
	evals, locals     []strategy.EvalResult
	participants      []string
	stragglers        []string
	closedBy          string
	bytesIn, bytesOut int64
	examples          int // filled in by aggregate (the strategy's count)
}

// closeRound closes round r: uploads and metrics for it are refused from
// now on. It returns the round's input.
func (s *Scheduler) closeRound(r int, closedBy string) *roundInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.round = -r
	if s.sa != nil {
		s.saClose()
	}
	in := &roundInput{global: s.global, closedBy: closedBy,
		bytesIn: s.bytesIn.Load() - s.in0, bytesOut: s.bytesOut.Load() - s.out0}
	if closedBy == ClosedAll && s.sa != nil {
		// All members uploaded; expected collaborators that missed the
		// advertise phase are the round's stragglers.
		in.stragglers, _ = s.lateReport(r)
	}
	if closedBy != ClosedAll {
		var why string
		in.stragglers, why = s.lateReport(r)
		if closedBy != ClosedTimeout {
			s.log.Warn(fmt.Sprintf("round %d closes by straggler policy (%s) with %d of %d updates; stragglers: %s", r, closedBy,
				len(s.updates), len(s.expected), why), "round", r, "stragglers", in.stragglers, "closed_by", closedBy)
		}
	}
	for _, n := range s.cfg.Collaborators {
		if u, ok := s.updates[n]; ok {
			in.results = append(in.results, u)
			in.participants = append(in.participants, n)
		}
		if e, ok := s.evals[n]; ok {
			in.evals = append(in.evals, e)
		}
		if e, ok := s.local[n]; ok {
			in.locals = append(in.locals, e)
		}
	}
	return in
}

// aggregate runs the strategy's AggregateFit on round r's updates, then
// the server-side evaluation of the new model, each timed on its own, and
// aggregates the collaborators' validation results. It returns the next
// global model and the round's summary (Seconds not yet set).
func (s *Scheduler) aggregate(ctx context.Context, r int, in *roundInput) (tensor.Weights, RoundSummary, error) {
	aggStart := s.now()
	next, rep, err := s.cfg.Strategy.AggregateFit(r, in.global, in.results)
	aggSeconds := s.now().Sub(aggStart).Seconds()
	for c, why := range rep.Rejected {
		s.log.Warn("update rejected", "round", r, "collaborator", c, "reason", why)
	}
	if err != nil {
		return nil, RoundSummary{}, fmt.Errorf("round %d: aggregation: %w", r, err)
	}
	in.examples = rep.NumExamples
	sum := RoundSummary{Round: r, Participants: in.participants, Stragglers: in.stragglers, ClosedBy: in.closedBy,
		Accepted: rep.Accepted, Rejected: rep.Rejected, EvalLoss: nanLoss(),
		AggregateSeconds: aggSeconds, BytesIn: in.bytesIn, BytesOut: in.bytesOut, Privacy: rep.Privacy}
	sum.EvaluateSeconds = s.evaluate(ctx, r, next)
	if len(in.evals) > 0 {
		if loss, m, err := s.cfg.Strategy.AggregateEvaluate(r, in.evals); err == nil {
			sum.EvalLoss, sum.EvalMetrics = loss, m
		} else {
			s.log.Warn("evaluation aggregation", "round", r, "err", err)
		}
	}
	if len(in.locals) > 0 {
		if loss, m, err := s.cfg.Strategy.AggregateEvaluate(r, in.locals); err == nil {
			sum.LocalEvalMetrics = map[string]float64{"loss": loss}
			for k, v := range m {
				sum.LocalEvalMetrics[k] = v
			}
		}
	}
	return next, sum, nil
}

// evaluate runs the server-side evaluation of round r's new global model,
// if there is an Evaluator, and returns its seconds. A failed evaluation
// is logged and does not stop the federation.
func (s *Scheduler) evaluate(ctx context.Context, r int, next tensor.Weights) float64 {
	if s.eval == nil {
		return 0
	}
	start := s.now()
	m, err := s.eval.Evaluate(ctx, r, next)
	secs := s.now().Sub(start).Seconds()
	if err != nil {
		s.log.Warn("global model evaluation failed", "round", r, "err", err)
		return secs
	}
	if o, ok := s.cfg.Observer.(EvaluationObserver); ok {
		o.Evaluated(r, secs, m)
	}
	return secs
}

// commit hands the completed round to cfg.Commit. It runs while the round
// is closed and the next one not yet open: collaborators are told to WAIT,
// so nobody sees the new model before it is durable.
func (s *Scheduler) commit(ctx context.Context, next tensor.Weights, history []RoundSummary) error {
	if s.cfg.Commit == nil {
		return nil
	}
	st, err := s.cfg.Strategy.State()
	if err != nil {
		return fmt.Errorf("strategy state: %w", err)
	}
	r := history[len(history)-1].Round
	c := &Checkpoint{PlanHash: s.cfg.PlanHash, Round: r, Rounds: s.cfg.Rounds, Global: next, Strategy: st, History: history}
	start := time.Now()
	if err := s.cfg.Commit(ctx, c); err != nil {
		return fmt.Errorf("commit: %w", err) // Commit's errors name what failed ("checkpoint: …", "best model: …")
	}
	s.log.Info("round committed", "round", r, "seconds", time.Since(start).Seconds())
	return nil
}
