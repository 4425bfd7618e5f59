// Package scheduler runs the rounds of a horizontal federation on the
// aggregator: which round is open, who has uploaded, when a round closes
// (everyone, the straggler policy or the round timeout), aggregation with
// the strategy, server-side evaluation of the new global model, the
// round's durable Checkpoint (Commit) and only then the next round.
//
// It knows nothing of gRPC, RA-TLS or the wire format: fl/protocol's
// Aggregator authenticates each RPC, decodes its payload and turns it into
// a call here (Tasks, Model, BeginUpload, Accept, Report, …); refusals come
// back as *Error, which the Aggregator maps to gRPC status codes. The
// algorithms live in fl/strategy and know nothing of either: the scheduler
// hands them plain values, as Flower's server loop does.
//
// A round's phases are timed separately: RoundSummary.AggregateSeconds is
// the strategy's AggregateFit alone, RoundSummary.EvaluateSeconds the
// server-side evaluation (Config.Evaluator, Flower's Strategy.evaluate),
// reported to an Observer that implements EvaluationObserver.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
)

// Task names, in the order a collaborator runs them.
const (
	TaskAggregatedModelValidation   = "aggregated_model_validation"
	TaskTrain                       = "train"
	TaskLocallyTunedModelValidation = "locally_tuned_model_validation"
)

// Config configures a Scheduler.
type Config struct {
	// PlanHash identifies the plan (it goes into every Checkpoint).
	PlanHash string
	// Strategy aggregates the updates.
	Strategy strategy.Strategy
	// Evaluator, if set, evaluates every new global model on the server
	// after AggregateFit and before Commit; default: Strategy, if it
	// implements strategy.Evaluator.
	Evaluator strategy.Evaluator
	// Initial is the round-1 global model.
	Initial tensor.Weights
	// Collaborators are the expected collaborators' names.
	Collaborators []string
	// Rounds is the number of rounds to train.
	Rounds int
	// RoundTimeout closes a round with the updates received so far (if at
	// least MinCollaborators); default 10 minutes.
	RoundTimeout time.Duration
	// MinCollaborators is the fewest updates a round can close with before
	// every collaborator uploaded (default 1).
	MinCollaborators int
	// StatusEvery is the interval of the "round waits for …" log line
	// (default 10 s).
	StatusEvery time.Duration
	// DoneGrace bounds how long Run waits, after the last round, for every
	// collaborator to be told DONE (default 30 s).
	DoneGrace time.Duration
	// Straggler says when a round may close before every collaborator has
	// uploaded.
	Straggler StragglerPolicy
	// Resume, if set, is the checkpoint of the last completed round.
	Resume *Checkpoint
	// Commit, if set, makes a completed round durable, after aggregation
	// and evaluation and before the next round opens; an error stops the
	// federation.
	Commit func(ctx context.Context, c *Checkpoint) error
	// Logger receives the scheduler's log lines as is (fl/protocol passes
	// its "component=aggregator" logger); default slog.Default().
	Logger *slog.Logger
	// Observer receives the events; default NopObserver.
	Observer Observer
	// SecAgg, if set, runs every round with secure aggregation.
	SecAgg *SecAgg
}

// StragglerPolicy lets a round close before every expected collaborator has
// uploaded (OpenFL's straggler handling). A round always closes when all
// have uploaded, and at RoundTimeout with at least MinCollaborators
// updates (else the federation fails).
type StragglerPolicy struct {
	// Cutoff: once this long has passed since the round opened, the round
	// closes as soon as it has MinCollaborators updates (OpenFL's
	// CutoffTimeBasedStragglerHandling). 0 disables it.
	Cutoff time.Duration
	// Needed: the round closes as soon as this many updates (at least
	// MinCollaborators) have arrived (OpenFL's
	// PercentageBasedStragglerHandling with ⌈percent·N⌉). 0 means all.
	Needed int
}

// Ways a round closes (RoundSummary.ClosedBy).
const (
	ClosedAll        = "all"        // every expected collaborator uploaded
	ClosedPercentage = "percentage" // StragglerPolicy.Needed updates arrived
	ClosedCutoff     = "cutoff"     // StragglerPolicy.Cutoff passed
	ClosedTimeout    = "timeout"    // RoundTimeout passed
)

// RoundSummary describes a closed round.
type RoundSummary struct {
	Round int
	// Participants uploaded an update in time, in the expected order.
	Participants []string
	// Stragglers are the expected collaborators without an update when the
	// round closed; ClosedBy is why it closed (Closed* constants).
	Stragglers []string
	ClosedBy   string
	// Accepted went into the aggregate; Rejected maps the others to the
	// strategy's one-line reason.
	Accepted []string
	Rejected map[string]string
	// EvalLoss and EvalMetrics are the sample-weighted mean of the
	// aggregated_model_validation results: the round's input global model
	// evaluated on the collaborators' data (NaN/nil if none arrived).
	EvalLoss    float64
	EvalMetrics map[string]float64
	// LocalEvalMetrics are the sample-weighted locally_tuned_model_validation
	// metrics (loss included as "loss"), nil if none arrived.
	LocalEvalMetrics map[string]float64
	// Seconds is the time from the round's opening to the end of its
	// evaluation (the commit not included).
	Seconds float64
	// AggregateSeconds is the time the strategy's AggregateFit took, and
	// nothing else; EvaluateSeconds the server-side evaluation of the new
	// global model (0 without an Evaluator). Neither is checkpointed.
	AggregateSeconds float64
	EvaluateSeconds  float64
	// BytesIn / BytesOut are the encoded chunk bytes received (updates) and
	// sent (model downloads) during the round.
	BytesIn, BytesOut int64
	// Privacy is the strategy's differential-privacy accounting of the
	// round (strategy.AggregateReport.Privacy: dp_epsilon, dp_delta, …),
	// nil without DP. It is checkpointed with the history.
	Privacy map[string]float64
}

// RoundGate is implemented by strategies that may refuse to open a round,
// such as fl/privacy's DP-FedAvg when the round would exceed the privacy
// budget. The scheduler asks before opening every round; a refusal stops
// the federation cleanly after the last committed round (collaborators are
// told DONE) and its one-line reason is logged and returned by Stopped.
type RoundGate interface {
	BeforeRound(round int) error
}

// collabState is what the scheduler knows of one collaborator.
type collabState struct {
	connected bool
	seen      time.Time
	round     int    // round of the last activity below
	activity  string // "asked for tasks", "downloading", "training", "uploading"
	lastErr   string
	toldDone  bool
}

// Scheduler runs the rounds. Its methods are safe for concurrent use; Run
// is called once.
type Scheduler struct {
	cfg      Config
	log      *slog.Logger
	eval     strategy.Evaluator // nil: no server-side evaluation
	now      func() time.Time   // phase clock (tests replace it)
	expected map[string]bool
	progress chan struct{} // signalled on every upload and DONE handed out

	first   int            // first round this process runs (1, or Resume.Round+1)
	history []RoundSummary // summaries restored from Resume

	mu       sync.Mutex
	round    int // current round, 1-based; -r while round r is closed; > Rounds when done
	global   tensor.Weights
	config   strategy.Config
	updates  map[string]strategy.FitResult
	evals    map[string]strategy.EvalResult
	local    map[string]strategy.EvalResult
	collabs  map[string]*collabState
	inflight map[string]bool // collaborators with an upload being received
	changed  chan struct{}   // closed (and replaced) when what Tasks answers may change
	polls    atomic.Int64    // TasksWait calls being held
	done     bool
	failed   error
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	in0      int64 // bytesIn when the current round opened
	out0     int64

	gateStop error // a RoundGate refusal: the federation ended early

	sa *saRound // the current round's secure aggregation (Config.SecAgg)
}

// New checks cfg and returns a Scheduler whose first round is open.
func New(cfg Config) (*Scheduler, error) {
	switch {
	case cfg.PlanHash == "":
		return nil, errors.New("no plan hash")
	case cfg.Strategy == nil:
		return nil, errors.New("no strategy")
	case len(cfg.Collaborators) == 0:
		return nil, errors.New("no collaborators")
	case cfg.Rounds <= 0:
		return nil, fmt.Errorf("%d rounds", cfg.Rounds)
	}
	if err := cfg.Initial.Validate(); err != nil {
		return nil, fmt.Errorf("initial model: %w", err)
	}
	if len(cfg.Initial) == 0 {
		return nil, errors.New("empty initial model")
	}
	cfg = withDefaults(cfg)
	if cfg.Straggler.Cutoff < 0 || cfg.Straggler.Needed < 0 {
		return nil, fmt.Errorf("negative straggler policy %+v", cfg.Straggler)
	}
	if sa := cfg.SecAgg; sa != nil && (!(sa.Dropout >= 0 && sa.Dropout < 0.5) || sa.FracBits < 0 || sa.FracBits > 24 || !(sa.Clip > 0)) {
		return nil, fmt.Errorf("secure aggregation: dropout %v (need 0 ≤ d < 0.5), %d fraction bits (need 0..24), clip %v (need > 0)", sa.Dropout, sa.FracBits, sa.Clip)
	}
	s := &Scheduler{
		cfg:      cfg,
		log:      cfg.Logger,
		eval:     cfg.Evaluator,
		now:      time.Now,
		expected: map[string]bool{},
		progress: make(chan struct{}, 1),
		global:   cfg.Initial.Clone(),
		collabs:  map[string]*collabState{},
		inflight: map[string]bool{},
		changed:  make(chan struct{}),
	}
	if e, ok := cfg.Strategy.(strategy.Evaluator); ok && s.eval == nil {
		s.eval = e
	}
	for _, n := range cfg.Collaborators {
		if n == "" || s.expected[n] {
			return nil, fmt.Errorf("empty or duplicate collaborator name %q", n)
		}
		s.expected[n] = true
		s.collabs[n] = &collabState{}
	}
	if cfg.MinCollaborators > len(cfg.Collaborators) {
		return nil, fmt.Errorf("minimum of %d updates per round, but only %d collaborators", cfg.MinCollaborators, len(cfg.Collaborators))
	}
	s.first = 1
	if c := cfg.Resume; c != nil {
		if err := s.resume(c); err != nil {
			return nil, err
		}
	}
	if s.first > cfg.Rounds {
		s.done = true
		s.round = cfg.Rounds + 1
	} else if err := s.gate(s.first); err != nil {
		s.stop(s.first, err)
	} else {
		s.openRound(s.first)
	}
	return s, nil
}

// gate asks a RoundGate strategy whether round r may open.
func (s *Scheduler) gate(r int) error {
	if g, ok := s.cfg.Strategy.(RoundGate); ok {
		return g.BeforeRound(r)
	}
	return nil
}

// stop ends the federation before round r, which the gate refused; s.mu
// held or not yet shared.
func (s *Scheduler) stop(r int, err error) {
	s.gateStop = err
	s.done = true
	s.notify()
	s.round = s.cfg.Rounds + 1
	s.log.Warn("federation stops early: "+err.Error(), "reason", err.Error())
	if o, ok := s.cfg.Observer.(StopObserver); ok {
		o.FederationStopped(r, err.Error())
	}
}

// Stopped is the reason the federation ended before its last round (a
// RoundGate refusal), or nil.
func (s *Scheduler) Stopped() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gateStop
}

func withDefaults(cfg Config) Config {
	if cfg.RoundTimeout <= 0 {
		cfg.RoundTimeout = 10 * time.Minute
	}
	if cfg.MinCollaborators <= 0 {
		cfg.MinCollaborators = 1
	}
	if cfg.StatusEvery <= 0 {
		cfg.StatusEvery = 10 * time.Second
	}
	if cfg.DoneGrace <= 0 {
		cfg.DoneGrace = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	if cfg.SecAgg != nil {
		sa := *cfg.SecAgg
		if sa.PhaseTimeout <= 0 {
			sa.PhaseTimeout = time.Minute
		}
		cfg.SecAgg = &sa
	}
	return cfg
}

// resume installs checkpoint c: its global model, strategy state and
// history.
func (s *Scheduler) resume(c *Checkpoint) error {
	if err := c.check(); err != nil {
		return fmt.Errorf("resume: checkpoint: %w", err)
	}
	switch {
	case c.PlanHash != s.cfg.PlanHash:
		return fmt.Errorf("resume: checkpoint of plan %s, not %s", ShortHash(c.PlanHash), ShortHash(s.cfg.PlanHash))
	case c.Rounds != s.cfg.Rounds:
		return fmt.Errorf("resume: checkpoint of a %d-round federation, this one has %d", c.Rounds, s.cfg.Rounds)
	}
	compatible := s.cfg.Initial.Compatible(c.Global)
	if sf, ok := s.cfg.Strategy.(strategy.ShapeFree); ok { // fl/treefed: a model file's bytes
		compatible = strategy.SameNames(s.cfg.Initial, c.Global, sf.MaxElements())
	}
	if err := compatible; err != nil {
		return fmt.Errorf("resume: checkpoint model does not fit the initial model: %w", err)
	}
	if err := s.cfg.Strategy.Restore(c.Strategy); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	s.global = c.Global.Clone()
	s.history = slices.Clone(c.History)
	s.first = c.Round + 1
	return nil
}

// NextRound is the round this scheduler starts with: 1, or the round after
// the checkpoint it resumed from (Rounds+1 if that was the last).
func (s *Scheduler) NextRound() int { return s.first }

// openRound resets the per-round state; s.mu held or not yet shared.
func (s *Scheduler) openRound(r int) {
	s.round = r
	s.notify()
	s.in0, s.out0 = s.bytesIn.Load(), s.bytesOut.Load()
	s.updates = map[string]strategy.FitResult{}
	s.evals = map[string]strategy.EvalResult{}
	s.local = map[string]strategy.EvalResult{}
	s.config = strategy.Config{}
	for k, v := range s.cfg.Strategy.ConfigureEvaluate(r) {
		s.config[k] = v
	}
	for k, v := range s.cfg.Strategy.ConfigureFit(r, s.global) {
		s.config[k] = v
	}
	if sa := s.cfg.SecAgg; sa != nil {
		s.sa = newSARound(r)
		s.config[KeySecAgg] = 1
		s.config[KeySecAggFracBits] = float64(sa.FracBits)
		s.config[KeySecAggClip] = sa.Clip
	}
	s.cfg.Observer.RoundOpened(r)
}

// notify wakes the long polls of TasksWait: a round opened, or the
// federation finished or failed; s.mu held or not yet shared.
func (s *Scheduler) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Scheduler) signal() {
	select {
	case s.progress <- struct{}{}:
	default:
	}
}

// ShortHash renders a plan hash for messages: its first 8 characters and an
// ellipsis.
func ShortHash(h string) string {
	if len(h) > 8 {
		return h[:8] + "…"
	}
	if h == "" {
		return `""`
	}
	return h
}

func nanLoss() float64 { return math.NaN() }
