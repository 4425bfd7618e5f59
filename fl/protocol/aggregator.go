// Package protocol is teeml's federated-learning wire protocol over gRPC
// (api/proto/teeml/fl/v1), OpenFL-style: an Aggregator serves the global
// model and drives rounds; Collaborators pull tasks, download the model,
// train and evaluate locally and upload their updates.
//
// A round: every expected collaborator calls GetTasks and gets the round's
// tasks (aggregated_model_validation, train, locally_tuned_model_validation)
// and config; it downloads the global model (streamed in ≤ 1 MiB chunks),
// evaluates it and reports the metrics, trains, evaluates the trained model
// and reports, then uploads the update (streamed, SHA-256 checked, shapes
// checked against the global model). When all expected collaborators have
// uploaded, when the straggler policy allows (StragglerPolicy), or at the
// round timeout with at least MinCollaborators, the round closes: updates
// and metrics still arriving for it are discarded (Aborted, so the sender
// moves on to the current round). The Aggregator aggregates with its
// strategy.Strategy, makes the round durable (Commit) and only then opens
// the next round; after the last one GetTasks answers DONE.
//
// # Crash safety
//
// Commit receives a Checkpoint (global model, strategy state, round
// summaries) of every completed round before any collaborator can download
// the next round's model; an aggregator restarted with that checkpoint as
// Resume continues at the next round. If the aggregator dies before Commit
// returns, the round is redone from the previous checkpoint: no
// collaborator ever saw its result, so no completed round is lost and none
// is done twice. A restarted round serves the same global model and config
// as before the crash, so an update a collaborator computed for it against
// the old process is still valid and accepted.
//
// Every RPC names its sender and plan hash. The sender must be the RA-TLS
// verified identity of the connection (ratls.PeerFromContext), else
// PermissionDenied; a collaborator not in the expected list is refused with
// PermissionDenied; a plan hash other than the aggregator's is refused with
// FailedPrecondition. Refusals are one line, and the collaborator ends its
// Run with them. An aggregator whose federation failed (e.g. a round timed
// out without enough updates) answers Unavailable: collaborators retry, and
// continue when it is restarted.
package protocol

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/ratls"
)

// Task names, in the order a collaborator runs them.
const (
	TaskAggregatedModelValidation   = "aggregated_model_validation"
	TaskTrain                       = "train"
	TaskLocallyTunedModelValidation = "locally_tuned_model_validation"
)

// CollaboratorRole is the pki role collaborators must have been certified for.
const CollaboratorRole = "collaborator"

// AggregatorConfig configures an Aggregator.
type AggregatorConfig struct {
	// PlanHash identifies the plan every participant must run.
	PlanHash string
	// Strategy aggregates the updates.
	Strategy strategy.Strategy
	// Initial is the round-1 global model.
	Initial tensor.Weights
	// Collaborators are the expected collaborators' names (their verified
	// RA-TLS identities).
	Collaborators []string
	// Rounds is the number of rounds to train.
	Rounds int
	// RoundTimeout closes a round with the updates received so far (if at
	// least MinCollaborators); default 10 minutes.
	RoundTimeout time.Duration
	// MinCollaborators is the fewest updates a round can close with before
	// every collaborator uploaded, at the straggler cutoff or at the
	// timeout (default 1; OpenFL's minimum_reporting); the strategy applies
	// its own minimum on top.
	MinCollaborators int
	// RetryAfter is the WAIT hint given to collaborators that finished the
	// current round (default 500 ms).
	RetryAfter time.Duration
	// StatusEvery is the interval of the "round waits for …" log line
	// (default 10 s).
	StatusEvery time.Duration
	// DoneGrace bounds how long Run waits, after the last round, for every
	// collaborator to be told DONE (default 30 s).
	DoneGrace time.Duration
	// RequireRole, if set, is the role every peer must have been verified
	// for (default CollaboratorRole; "-" disables the check).
	RequireRole string
	// Straggler says when a round may close before every collaborator has
	// uploaded (default: wait for all until RoundTimeout).
	Straggler StragglerPolicy
	// Resume, if set, is the checkpoint of the last completed round: the
	// strategy state is restored from it and the federation continues at
	// Resume.Round+1 (Initial then only fixes the model's tensor layout).
	Resume *Checkpoint
	// Commit, if set, makes a completed round durable. It is called once
	// per round, after aggregation and before the next round opens (so
	// before anyone can see the round's result); an error stops the
	// federation.
	Commit func(ctx context.Context, c *Checkpoint) error
	Logger *slog.Logger
	// Observer, if set, receives the aggregator's events (fl/metrics:
	// metrics file and Prometheus); default NopObserver.
	Observer Observer
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
	Seconds          float64
	// AggregateSeconds is the time the strategy's AggregateFit took
	// (including any global evaluation a wrapping strategy does).
	AggregateSeconds float64
	// BytesIn / BytesOut are the encoded chunk bytes received (updates) and
	// sent (model downloads) during the round.
	BytesIn, BytesOut int64
}

// collabState is what the aggregator knows of one collaborator.
type collabState struct {
	connected bool
	seen      time.Time
	round     int    // round of the last activity below
	activity  string // "asked for tasks", "downloading", "training", "uploading"
	lastErr   string
	toldDone  bool
}

// Aggregator is the server side of the protocol. Register it on a gRPC
// server with RA-TLS credentials and call Run.
type Aggregator struct {
	flv1.UnimplementedAggregatorServer

	cfg      AggregatorConfig
	log      *slog.Logger
	expected map[string]bool
	progress chan struct{} // signalled on every upload and DONE handed out

	first   int            // first round this process runs (1, or Resume.Round+1)
	history []RoundSummary // summaries restored from Resume

	mu       sync.Mutex
	round    int // current round, 1-based; > Rounds when done
	global   tensor.Weights
	dir      []*flv1.TensorInfo
	config   strategy.Config
	updates  map[string]strategy.FitResult
	evals    map[string]strategy.EvalResult
	local    map[string]strategy.EvalResult
	collabs  map[string]*collabState
	inflight map[string]bool // collaborators with an upload being received
	done     bool
	failed   error
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	in0      int64 // bytesIn when the current round opened
	out0     int64
}

// NewAggregator checks cfg and returns an Aggregator for round 1.
func NewAggregator(cfg AggregatorConfig) (*Aggregator, error) {
	switch {
	case cfg.PlanHash == "":
		return nil, errors.New("protocol: aggregator: no plan hash")
	case cfg.Strategy == nil:
		return nil, errors.New("protocol: aggregator: no strategy")
	case len(cfg.Collaborators) == 0:
		return nil, errors.New("protocol: aggregator: no collaborators")
	case cfg.Rounds <= 0:
		return nil, fmt.Errorf("protocol: aggregator: %d rounds", cfg.Rounds)
	}
	if err := cfg.Initial.Validate(); err != nil {
		return nil, fmt.Errorf("protocol: aggregator: initial model: %v", err)
	}
	if len(cfg.Initial) == 0 {
		return nil, errors.New("protocol: aggregator: empty initial model")
	}
	if cfg.RoundTimeout <= 0 {
		cfg.RoundTimeout = 10 * time.Minute
	}
	if cfg.MinCollaborators <= 0 {
		cfg.MinCollaborators = 1
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 500 * time.Millisecond
	}
	if cfg.StatusEvery <= 0 {
		cfg.StatusEvery = 10 * time.Second
	}
	if cfg.DoneGrace <= 0 {
		cfg.DoneGrace = 30 * time.Second
	}
	if cfg.RequireRole == "" {
		cfg.RequireRole = CollaboratorRole
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	if cfg.Straggler.Cutoff < 0 || cfg.Straggler.Needed < 0 {
		return nil, fmt.Errorf("protocol: aggregator: negative straggler policy %+v", cfg.Straggler)
	}
	a := &Aggregator{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "aggregator"),
		expected: map[string]bool{},
		progress: make(chan struct{}, 1),
		global:   cfg.Initial.Clone(),
		dir:      Directory(cfg.Initial),
		collabs:  map[string]*collabState{},
		inflight: map[string]bool{},
	}
	for _, n := range cfg.Collaborators {
		if n == "" || a.expected[n] {
			return nil, fmt.Errorf("protocol: aggregator: empty or duplicate collaborator name %q", n)
		}
		a.expected[n] = true
		a.collabs[n] = &collabState{}
	}
	if cfg.MinCollaborators > len(cfg.Collaborators) {
		return nil, fmt.Errorf("protocol: aggregator: minimum of %d updates per round, but only %d collaborators", cfg.MinCollaborators, len(cfg.Collaborators))
	}
	a.first = 1
	if c := cfg.Resume; c != nil {
		if err := a.resume(c); err != nil {
			return nil, err
		}
	}
	if a.first > cfg.Rounds {
		a.done = true
		a.round = cfg.Rounds + 1
	} else {
		a.openRound(a.first)
	}
	return a, nil
}

// resume installs checkpoint c: its global model, strategy state and
// history.
func (a *Aggregator) resume(c *Checkpoint) error {
	if err := c.check(); err != nil {
		return fmt.Errorf("protocol: aggregator: resume: checkpoint: %v", err)
	}
	switch {
	case c.PlanHash != a.cfg.PlanHash:
		return fmt.Errorf("protocol: aggregator: resume: checkpoint of plan %s, not %s", ShortHash(c.PlanHash), ShortHash(a.cfg.PlanHash))
	case c.Rounds != a.cfg.Rounds:
		return fmt.Errorf("protocol: aggregator: resume: checkpoint of a %d-round federation, this one has %d", c.Rounds, a.cfg.Rounds)
	}
	if err := a.cfg.Initial.Compatible(c.Global); err != nil {
		return fmt.Errorf("protocol: aggregator: resume: checkpoint model does not fit the initial model: %v", err)
	}
	if err := a.cfg.Strategy.Restore(c.Strategy); err != nil {
		return fmt.Errorf("protocol: aggregator: resume: %v", err)
	}
	a.global = c.Global.Clone()
	a.history = slices.Clone(c.History)
	a.first = c.Round + 1
	return nil
}

// NextRound is the round this aggregator starts with: 1, or the round
// after the checkpoint it resumed from (Rounds+1 if that was the last).
func (a *Aggregator) NextRound() int { return a.first }

// Register registers the Aggregator service on s.
func (a *Aggregator) Register(s grpc.ServiceRegistrar) { flv1.RegisterAggregatorServer(s, a) }

// openRound resets the per-round state; a.mu held or not yet shared.
func (a *Aggregator) openRound(r int) {
	a.round = r
	a.in0, a.out0 = a.bytesIn.Load(), a.bytesOut.Load()
	a.updates = map[string]strategy.FitResult{}
	a.evals = map[string]strategy.EvalResult{}
	a.local = map[string]strategy.EvalResult{}
	a.config = strategy.Config{}
	for k, v := range a.cfg.Strategy.ConfigureEvaluate(r) {
		a.config[k] = v
	}
	for k, v := range a.cfg.Strategy.ConfigureFit(r, a.global) {
		a.config[k] = v
	}
	a.cfg.Observer.RoundOpened(r)
}

func (a *Aggregator) signal() {
	select {
	case a.progress <- struct{}{}:
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

// authorize checks the caller: attested identity = sender, expected member,
// plan hash. It returns the verified name.
func (a *Aggregator) authorize(ctx context.Context, rpc, sender, planHash string) (string, error) {
	p, ok := ratls.PeerFromContext(ctx)
	if !ok || p.Name() == "" {
		err := status.Errorf(codes.Unauthenticated, "%s from %q: connection has no verified RA-TLS peer identity", rpc, sender)
		a.log.Warn("refused: "+status.Convert(err).Message(), "rpc", rpc)
		return "", err
	}
	name := p.Name()
	var err error
	switch {
	case sender != name:
		err = status.Errorf(codes.PermissionDenied, "sender %q is not the attested peer %q of this connection", sender, name)
	case a.cfg.RequireRole != "-" && p.Role() != a.cfg.RequireRole:
		err = status.Errorf(codes.PermissionDenied, "peer %q is verified as %q, not %s", name, p.Role(), a.cfg.RequireRole)
	case !a.expected[name]:
		err = status.Errorf(codes.PermissionDenied, "collaborator %q is not expected by this aggregator (expected: %s)", name, strings.Join(a.cfg.Collaborators, ", "))
	case planHash != a.cfg.PlanHash:
		err = status.Errorf(codes.FailedPrecondition, "plan hash %s differs from the aggregator's %s", ShortHash(planHash), ShortHash(a.cfg.PlanHash))
	}
	if err != nil {
		msg := status.Convert(err).Message()
		a.log.Warn("refused "+name+": "+msg, "rpc", rpc, "collaborator", name, "code", status.Code(err).String())
		if st := a.collabs[name]; st != nil {
			a.mu.Lock()
			st.lastErr = msg
			a.mu.Unlock()
		}
		return "", err
	}
	return name, nil
}

// touch records activity of name; a.mu held.
func (a *Aggregator) touch(name, activity string) {
	st := a.collabs[name]
	if !st.connected {
		st.connected = true
		a.log.Info("collaborator connected", "collaborator", name, "round", a.round)
	}
	st.seen = time.Now()
	st.round = a.round
	st.activity = activity
}

// GetTasks implements flv1.AggregatorServer.
func (a *Aggregator) GetTasks(ctx context.Context, req *flv1.TaskRequest) (*flv1.TaskResponse, error) {
	name, err := a.authorize(ctx, "GetTasks", req.GetSender(), req.GetPlanHash())
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failed != nil {
		return nil, a.stopped()
	}
	if a.done {
		st := a.collabs[name]
		if !st.toldDone {
			st.toldDone = true
			a.log.Info("collaborator finished", "collaborator", name)
			a.signal()
		}
		return &flv1.TaskResponse{Action: flv1.TaskAction_TASK_ACTION_DONE, Round: int64(a.cfg.Rounds), RoundsTotal: int64(a.cfg.Rounds)}, nil
	}
	if _, ok := a.updates[name]; ok || a.round <= 0 {
		return &flv1.TaskResponse{Action: flv1.TaskAction_TASK_ACTION_WAIT, Round: int64(max(a.round, -a.round)),
			RetryAfterMs: a.cfg.RetryAfter.Milliseconds(), RoundsTotal: int64(a.cfg.Rounds)}, nil
	}
	a.touch(name, "asked for tasks")
	a.log.Info("collaborator starts round", "collaborator", name, "round", a.round)
	return &flv1.TaskResponse{
		Action:      flv1.TaskAction_TASK_ACTION_RUN,
		Round:       int64(a.round),
		Tasks:       []string{TaskAggregatedModelValidation, TaskTrain, TaskLocallyTunedModelValidation},
		Config:      map[string]float64(a.config),
		RoundsTotal: int64(a.cfg.Rounds),
	}, nil
}

// stopped is the answer once Run failed: Unavailable, so that
// collaborators keep retrying (within their GiveUpAfter) and continue with
// the aggregator once it is restarted and resumes from its checkpoint;
// a.mu held.
func (a *Aggregator) stopped() error {
	return status.Errorf(codes.Unavailable, "aggregator stopped: %v; it resumes from its last completed round when restarted", a.failed)
}

// roundCheck refuses a request for another round than the current one; a.mu held.
func (a *Aggregator) roundCheck(round int64) error {
	if a.failed != nil {
		return a.stopped()
	}
	if a.done || round != int64(a.round) {
		cur := max(a.round, -a.round)
		if round < int64(cur) || (round == int64(cur) && a.round < 0) || a.done {
			return status.Errorf(codes.Aborted, "round %d is closed (current round %d of %d)", round, cur, a.cfg.Rounds)
		}
		return status.Errorf(codes.Aborted, "round %d is not open (current round %d of %d)", round, cur, a.cfg.Rounds)
	}
	return nil
}

// discardLate logs an update for a round that is no longer open; err is
// roundCheck's answer, sent back to the collaborator (Aborted: it asks for
// the current round's tasks).
func (a *Aggregator) discardLate(name string, round int64, err error) {
	if status.Code(err) != codes.Aborted {
		return
	}
	a.log.Warn(fmt.Sprintf("late update from %s discarded: %s", name, status.Convert(err).Message()),
		"collaborator", name, "round", round)
}

// DownloadModel implements flv1.AggregatorServer.
func (a *Aggregator) DownloadModel(req *flv1.ModelRequest, stream grpc.ServerStreamingServer[flv1.Chunk]) error {
	name, err := a.authorize(stream.Context(), "DownloadModel", req.GetSender(), req.GetPlanHash())
	if err != nil {
		return err
	}
	a.mu.Lock()
	if err := a.roundCheck(req.GetRound()); err != nil {
		a.mu.Unlock()
		return err
	}
	a.touch(name, "downloading the model")
	global, round := a.global, a.round // never modified in place
	a.mu.Unlock()
	start := time.Now()
	n, err := EncodeWeights(global, &flv1.Header{Round: int64(round), Sender: "aggregator", PlanHash: a.cfg.PlanHash, Kind: flv1.PayloadKind_PAYLOAD_KIND_MODEL}, stream.Send)
	a.bytesOut.Add(n)
	if err != nil {
		a.log.Warn("model download failed", "collaborator", name, "round", round, "err", err)
		return err
	}
	a.mu.Lock()
	if a.round == round {
		a.touch(name, "training")
	}
	a.mu.Unlock()
	a.log.Info("model sent", "collaborator", name, "round", round, "bytes", n, "seconds", time.Since(start).Seconds())
	a.cfg.Observer.ModelSent(round, name, n, time.Since(start).Seconds())
	return nil
}

// UploadUpdate implements flv1.AggregatorServer.
func (a *Aggregator) UploadUpdate(stream grpc.ClientStreamingServer[flv1.Chunk, flv1.UploadAck]) error {
	ctx := stream.Context()
	var name, registered string
	start := time.Now()
	dec, err := DecodeWeights(stream.Recv, func(h *flv1.Header) error {
		var err error
		if name, err = a.authorize(ctx, "UploadUpdate", h.GetSender(), h.GetPlanHash()); err != nil {
			return err
		}
		if h.Kind != flv1.PayloadKind_PAYLOAD_KIND_UPDATE {
			return status.Errorf(codes.InvalidArgument, "upload from %q is of kind %s, want %s", name, h.Kind, flv1.PayloadKind_PAYLOAD_KIND_UPDATE)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if err := a.roundCheck(h.Round); err != nil {
			a.discardLate(name, h.Round, err)
			return err
		}
		if _, dup := a.updates[name]; dup {
			return status.Errorf(codes.AlreadyExists, "collaborator %q already uploaded its update for round %d", name, h.Round)
		}
		if a.inflight[name] {
			return status.Errorf(codes.AlreadyExists, "collaborator %q is already uploading an update", name)
		}
		if err := sameDirectory(a.dir, h.Tensors); err != nil {
			return status.Errorf(codes.InvalidArgument, "update from %q does not fit the global model: %v", name, err)
		}
		if h.NumExamples <= 0 {
			return status.Errorf(codes.InvalidArgument, "update from %q has num_examples %d", name, h.NumExamples)
		}
		a.touch(name, "uploading its update")
		a.inflight[name] = true
		registered = name
		return nil
	})
	if registered != "" {
		defer func() {
			a.mu.Lock()
			delete(a.inflight, registered)
			a.mu.Unlock()
		}()
	}
	if dec != nil {
		a.bytesIn.Add(dec.WireBytes)
	}
	if err != nil {
		var de *DecodeError
		switch {
		case errors.As(err, &de) && de.Checksum:
			err = status.Errorf(codes.DataLoss, "update from %q: %s", name, de.Msg)
		case errors.As(err, &de):
			err = status.Errorf(codes.InvalidArgument, "update from %q: %s", name, de.Msg)
		}
		if _, ok := status.FromError(err); !ok || name == "" {
			// Transport errors and authorization refusals are already
			// logged.
			return err
		}
		a.mu.Lock()
		if st := a.collabs[name]; st != nil {
			st.lastErr = status.Convert(err).Message()
		}
		a.cfg.Observer.UpdateRefused(max(a.round, -a.round), name, refusalReason(err), status.Convert(err).Message())
		a.mu.Unlock()
		if status.Code(err) != codes.Aborted { // late updates are logged by discardLate
			a.log.Warn("update failed", "collaborator", name, "err", status.Convert(err).Message())
		}
		return err
	}
	h := dec.Header
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.roundCheck(h.Round); err != nil { // the round closed while the update was uploading
		a.discardLate(name, h.Round, err)
		a.cfg.Observer.UpdateRefused(int(h.Round), name, "late", status.Convert(err).Message())
		return err
	}
	if _, dup := a.updates[name]; dup {
		a.cfg.Observer.UpdateRefused(int(h.Round), name, "duplicate", "update already received")
		return status.Errorf(codes.AlreadyExists, "collaborator %q already uploaded its update for round %d", name, h.Round)
	}
	a.updates[name] = strategy.FitResult{Client: name, Weights: dec.Weights, NumExamples: int(h.NumExamples), Metrics: h.Metrics}
	a.touch(name, "done")
	a.collabs[name].lastErr = ""
	a.log.Info("update received", "collaborator", name, "round", h.Round, "examples", h.NumExamples,
		"bytes", dec.WireBytes, "seconds", time.Since(start).Seconds(), "received", len(a.updates), "expected", len(a.expected))
	a.cfg.Observer.UpdateReceived(UpdateEvent{Round: int(h.Round), Collaborator: name, NumExamples: int(h.NumExamples), Metrics: h.Metrics,
		Bytes: dec.WireBytes, Seconds: time.Since(start).Seconds(),
		DownloadSeconds: h.GetTimings().GetDownloadSeconds(), TrainSeconds: h.GetTimings().GetTrainSeconds()})
	a.signal()
	return stream.SendAndClose(&flv1.UploadAck{Round: h.Round, BytesReceived: dec.WireBytes})
}

// sameDirectory reports the first difference between two tensor directories.
func sameDirectory(want, got []*flv1.TensorInfo) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d tensors, the global model has %d", len(got), len(want))
	}
	for i := range want {
		if want[i].Name != got[i].Name {
			return fmt.Errorf("tensor %d is %q, the global model has %q", i, got[i].Name, want[i].Name)
		}
		if !slices.Equal(want[i].Shape, got[i].Shape) {
			return fmt.Errorf("tensor %q has shape %v, the global model has %v", got[i].Name, got[i].Shape, want[i].Shape)
		}
	}
	return nil
}

// ReportMetrics implements flv1.AggregatorServer.
func (a *Aggregator) ReportMetrics(ctx context.Context, m *flv1.Metrics) (*flv1.MetricsAck, error) {
	name, err := a.authorize(ctx, "ReportMetrics", m.GetSender(), m.GetPlanHash())
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.roundCheck(m.Round); err != nil {
		if status.Code(err) == codes.Aborted {
			a.log.Info("late metrics from "+name+" discarded: "+status.Convert(err).Message(), "collaborator", name, "round", m.Round, "task", m.Task)
		}
		return nil, err
	}
	r := strategy.EvalResult{Client: name, NumExamples: int(m.NumExamples), Loss: m.Loss, Metrics: m.Metrics}
	switch m.Task {
	case TaskAggregatedModelValidation:
		a.evals[name] = r
	case TaskLocallyTunedModelValidation:
		a.local[name] = r
	default:
		return nil, status.Errorf(codes.InvalidArgument, "metrics from %q for unknown task %q", name, m.Task)
	}
	a.log.Info("metrics received", "collaborator", name, "round", m.Round, "task", m.Task, "examples", m.NumExamples, "loss", m.Loss, "metrics", m.Metrics)
	a.cfg.Observer.MetricsReported(MetricsEvent{Round: int(m.Round), Collaborator: name, Task: m.Task, NumExamples: int(m.NumExamples),
		Loss: m.Loss, Metrics: m.Metrics, Seconds: m.Seconds})
	return &flv1.MetricsAck{}, nil
}

// lateReport describes, one per late collaborator, why the round waits; a.mu held.
func (a *Aggregator) lateReport() (late []string, why string) {
	var parts []string
	for _, n := range a.cfg.Collaborators {
		if _, ok := a.updates[n]; ok {
			continue
		}
		late = append(late, n)
		st := a.collabs[n]
		var s string
		switch {
		case !st.connected:
			s = "never connected"
		case st.round != a.round:
			s = fmt.Sprintf("not seen this round (last seen %s ago)", time.Since(st.seen).Round(time.Second))
		default:
			s = fmt.Sprintf("%s (%s ago)", st.activity, time.Since(st.seen).Round(time.Second))
		}
		if st.lastErr != "" {
			s += "; last refusal: " + st.lastErr
		}
		parts = append(parts, n+": "+s)
	}
	return late, strings.Join(parts, "; ")
}

// Run drives the rounds until the last one is aggregated, then waits (at
// most DoneGrace) until every collaborator was told DONE. It returns the
// final global model and one summary per round. Call it once.
func (a *Aggregator) Run(ctx context.Context) (tensor.Weights, []RoundSummary, error) {
	history := slices.Clone(a.history)
	a.log.Info("federation starts", "rounds", a.cfg.Rounds, "first_round", a.first, "collaborators", a.cfg.Collaborators,
		"strategy", a.cfg.Strategy.Name(), "plan_hash", ShortHash(a.cfg.PlanHash), "params", a.global.NumParams(),
		"straggler_cutoff", a.cfg.Straggler.Cutoff, "straggler_needed", a.cfg.Straggler.Needed, "min_updates", a.cfg.MinCollaborators)
	for r := a.first; r <= a.cfg.Rounds; r++ {
		sum, err := a.runRound(ctx, r, history)
		if err != nil {
			a.mu.Lock()
			a.failed = err
			a.mu.Unlock()
			a.log.Error("federation failed", "round", r, "err", err)
			return nil, history, err
		}
		history = append(history, sum)
	}
	a.mu.Lock()
	a.done = true
	final := a.global
	a.mu.Unlock()
	a.log.Info("federation finished; telling collaborators", "rounds", a.cfg.Rounds)
	// The last round's stragglers are not waited for: they may be dead,
	// and a dead collaborator must not hold the aggregator for DoneGrace.
	// One still alive is told DONE if it asks while others are waited for.
	var skip []string
	if len(history) > 0 {
		skip = history[len(history)-1].Stragglers
	}
	if len(skip) > 0 {
		a.log.Info("not waiting for the last round's stragglers to be told DONE", "collaborators", skip)
	}
	grace := time.NewTimer(a.cfg.DoneGrace)
	defer grace.Stop()
	for {
		a.mu.Lock()
		var waiting []string
		for _, n := range a.cfg.Collaborators {
			if !a.collabs[n].toldDone && !slices.Contains(skip, n) {
				waiting = append(waiting, n)
			}
		}
		a.mu.Unlock()
		if len(waiting) == 0 {
			return final, history, nil
		}
		select {
		case <-a.progress:
		case <-grace.C:
			a.log.Warn("collaborators not told DONE before the grace period ended", "collaborators", waiting)
			return final, history, nil
		case <-ctx.Done():
			return final, history, nil
		}
	}
}

// needed is how many updates close a round before the cutoff or timeout.
func (a *Aggregator) needed() int {
	n := len(a.expected)
	if k := a.cfg.Straggler.Needed; k > 0 {
		n = min(n, max(k, a.cfg.MinCollaborators))
	}
	return n
}

// runRound waits until round r may close, aggregates it and commits it;
// history holds the summaries of rounds 1..r-1.
func (a *Aggregator) runRound(ctx context.Context, r int, history []RoundSummary) (RoundSummary, error) {
	start := time.Now()
	a.log.Info("round open", "round", r, "of", a.cfg.Rounds, "timeout", a.cfg.RoundTimeout)
	timeout := time.NewTimer(a.cfg.RoundTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(a.cfg.StatusEvery)
	defer tick.Stop()
	var cutoff <-chan time.Time
	if d := a.cfg.Straggler.Cutoff; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		cutoff = t.C
	}
	cutoffPassed := false
	need := a.needed()
	closedBy := ClosedAll
wait:
	for {
		a.mu.Lock()
		n := len(a.updates)
		a.mu.Unlock()
		switch {
		case n == len(a.expected):
			break wait
		case n >= need:
			closedBy = ClosedPercentage
			break wait
		case cutoffPassed && n >= a.cfg.MinCollaborators:
			closedBy = ClosedCutoff
			break wait
		}
		select {
		case <-ctx.Done():
			return RoundSummary{}, fmt.Errorf("round %d: %w", r, ctx.Err())
		case <-a.progress:
		case <-cutoff:
			cutoffPassed, cutoff = true, nil
			a.log.Info("straggler cutoff passed", "round", r, "cutoff", a.cfg.Straggler.Cutoff, "updates", n, "min_updates", a.cfg.MinCollaborators)
		case <-tick.C:
			a.mu.Lock()
			late, why := a.lateReport()
			a.mu.Unlock()
			a.log.Info(fmt.Sprintf("round %d waits for %d of %d collaborators: %s", r, len(late), len(a.expected), why),
				"round", r, "late", late, "elapsed", time.Since(start).Round(time.Second))
		case <-timeout.C:
			a.mu.Lock()
			late, why := a.lateReport()
			n := len(a.updates)
			a.mu.Unlock()
			if n < a.cfg.MinCollaborators {
				return RoundSummary{}, fmt.Errorf("round %d timed out after %s with %d of %d updates (need %d): %s",
					r, a.cfg.RoundTimeout, n, len(a.expected), a.cfg.MinCollaborators, why)
			}
			a.log.Warn(fmt.Sprintf("round %d timed out; closing with %d of %d updates; late: %s", r, n, len(a.expected), why),
				"round", r, "late", late)
			closedBy = ClosedTimeout
			break wait
		}
	}

	// Close the round: uploads and metrics for it are refused from now on.
	a.mu.Lock()
	a.round = -r
	var stragglers []string
	if closedBy != ClosedAll {
		var why string
		stragglers, why = a.lateReport()
		if closedBy != ClosedTimeout {
			a.log.Warn(fmt.Sprintf("round %d closes by straggler policy (%s) with %d of %d updates; stragglers: %s", r, closedBy,
				len(a.updates), len(a.expected), why), "round", r, "stragglers", stragglers, "closed_by", closedBy)
		}
	}
	bytesIn, bytesOut := a.bytesIn.Load()-a.in0, a.bytesOut.Load()-a.out0
	global := a.global
	var results []strategy.FitResult
	var evals, locals []strategy.EvalResult
	var participants []string
	for _, n := range a.cfg.Collaborators {
		if u, ok := a.updates[n]; ok {
			results = append(results, u)
			participants = append(participants, n)
		}
		if e, ok := a.evals[n]; ok {
			evals = append(evals, e)
		}
		if e, ok := a.local[n]; ok {
			locals = append(locals, e)
		}
	}
	a.mu.Unlock()

	aggStart := time.Now()
	next, rep, err := a.cfg.Strategy.AggregateFit(r, global, results)
	aggSeconds := time.Since(aggStart).Seconds()
	for c, why := range rep.Rejected {
		a.log.Warn("update rejected", "round", r, "collaborator", c, "reason", why)
	}
	if err != nil {
		return RoundSummary{}, fmt.Errorf("round %d: aggregation: %v", r, err)
	}
	sum := RoundSummary{Round: r, Participants: participants, Stragglers: stragglers, ClosedBy: closedBy,
		Accepted: rep.Accepted, Rejected: rep.Rejected, EvalLoss: nanLoss()}
	if len(evals) > 0 {
		if loss, m, err := a.cfg.Strategy.AggregateEvaluate(r, evals); err == nil {
			sum.EvalLoss, sum.EvalMetrics = loss, m
		} else {
			a.log.Warn("evaluation aggregation", "round", r, "err", err)
		}
	}
	if len(locals) > 0 {
		if loss, m, err := a.cfg.Strategy.AggregateEvaluate(r, locals); err == nil {
			sum.LocalEvalMetrics = map[string]float64{"loss": loss}
			for k, v := range m {
				sum.LocalEvalMetrics[k] = v
			}
		}
	}
	sum.Seconds = time.Since(start).Seconds()
	sum.BytesIn, sum.BytesOut = bytesIn, bytesOut
	sum.AggregateSeconds = aggSeconds
	if err := a.commit(ctx, next, append(slices.Clip(history), sum)); err != nil {
		return RoundSummary{}, fmt.Errorf("round %d: %v", r, err)
	}
	a.mu.Lock()
	a.global = next
	if r < a.cfg.Rounds {
		a.openRound(r + 1)
	}
	a.mu.Unlock()
	a.log.Info("round closed", "round", r, "participants", participants, "accepted", rep.Accepted,
		"rejected", len(rep.Rejected), "examples", rep.NumExamples, "eval_loss", sum.EvalLoss, "eval_metrics", sum.EvalMetrics,
		"local_eval", sum.LocalEvalMetrics, "seconds", sum.Seconds, "bytes_in", sum.BytesIn, "bytes_out", sum.BytesOut)
	a.cfg.Observer.RoundClosed(sum)
	return sum, nil
}

// commit hands the completed round to cfg.Commit. It runs while the round
// is closed and the next one not yet open: collaborators are told to WAIT,
// so nobody sees the new model before it is durable.
func (a *Aggregator) commit(ctx context.Context, next tensor.Weights, history []RoundSummary) error {
	if a.cfg.Commit == nil {
		return nil
	}
	st, err := a.cfg.Strategy.State()
	if err != nil {
		return fmt.Errorf("strategy state: %v", err)
	}
	r := history[len(history)-1].Round
	c := &Checkpoint{PlanHash: a.cfg.PlanHash, Round: r, Rounds: a.cfg.Rounds, Global: next, Strategy: st, History: history}
	start := time.Now()
	if err := a.cfg.Commit(ctx, c); err != nil {
		return fmt.Errorf("checkpoint: %v", err)
	}
	a.log.Info("round committed", "round", r, "seconds", time.Since(start).Seconds())
	return nil
}

func nanLoss() float64 { return math.NaN() }
