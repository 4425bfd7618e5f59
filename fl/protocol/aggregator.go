// Package protocol is teeml's federated-learning wire protocol over gRPC
// (api/proto/teeml/fl/v1), OpenFL-style: an Aggregator serves the global
// model and drives rounds; Collaborators pull tasks, download the model,
// train and evaluate locally and upload their updates.
//
// A round: every expected collaborator calls GetTasks and gets the round's
// tasks (aggregated_model_validation, train, locally_tuned_model_validation)
// and config; it downloads the global model (streamed in ≤ 1 MiB chunks),
// evaluates it and reports the metrics, trains, evaluates the trained model
// and reports, then uploads the update (streamed, CRC-32C checked, shapes
// checked against the global model). When all expected collaborators have
// uploaded, when the straggler policy allows (StragglerPolicy), or at the
// round timeout with at least MinCollaborators, the round closes: updates
// and metrics still arriving for it are discarded (Aborted, so the sender
// moves on to the current round). The Aggregator aggregates with its
// strategy.Strategy, evaluates the new global model on the server if
// configured (AggregatorConfig.Evaluator), makes the round durable (Commit)
// and only then opens the next round; after the last one GetTasks answers
// DONE. A collaborator with nothing to do (it uploaded, the round is being
// aggregated) is not told to come back later but held in its GetTasks
// call (a long poll, TaskRequest.wait_ms) until the next round opens.
//
// The rounds themselves are run by fl/scheduler, which knows nothing of
// gRPC: the Aggregator is a thin service that authenticates every RPC,
// decodes its payload, turns it into a call on its scheduler.Scheduler and
// maps the scheduler's refusals to gRPC status codes.
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
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
	"github.com/teeml/teeml/fl/scheduler"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/ratls"
)

// Task names, in the order a collaborator runs them.
const (
	TaskAggregatedModelValidation   = scheduler.TaskAggregatedModelValidation
	TaskTrain                       = scheduler.TaskTrain
	TaskLocallyTunedModelValidation = scheduler.TaskLocallyTunedModelValidation
)

// CollaboratorRole is the pki role collaborators must have been certified for.
const CollaboratorRole = "collaborator"

// AggregatorConfig configures an Aggregator.
type AggregatorConfig struct {
	// PlanHash identifies the plan every participant must run.
	PlanHash string
	// Strategy aggregates the updates.
	Strategy strategy.Strategy
	// Evaluator, if set, evaluates every new global model on the server,
	// after aggregation and before Commit, timed as its own phase
	// (RoundSummary.EvaluateSeconds; the Observer's Evaluated if it has
	// one). Default: Strategy, if it implements strategy.Evaluator.
	Evaluator strategy.Evaluator
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
	// current round and did not ask for a long poll (default 500 ms).
	RetryAfter time.Duration
	// MaxLongPoll caps how long a GetTasks long poll (TaskRequest.wait_ms)
	// is held before it is answered WAIT (default 20 s; negative: never
	// hold, answer at once).
	MaxLongPoll time.Duration
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
	// per round, after aggregation and evaluation and before the next
	// round opens (so before anyone can see the round's result); an error
	// stops the federation.
	Commit func(ctx context.Context, c *Checkpoint) error
	Logger *slog.Logger
	// Observer, if set, receives the aggregator's events (fl/metrics:
	// metrics file and Prometheus); default NopObserver.
	Observer Observer
	// SecAgg, if set, runs every round with secure aggregation (see
	// secagg.go): collaborators upload masked updates (kind
	// MASKED_UPDATE) and the strategy gets only their unmasked sum.
	SecAgg *scheduler.SecAgg
	// SecAggVerifier, if set, checks every advertised key certificate
	// chain against the federation before it is relayed, so one member's
	// bad certificate is refused (naming it) rather than failing every
	// member's round (they check it anyway).
	SecAggVerifier IdentityVerifier
}

// StragglerPolicy lets a round close before every expected collaborator has
// uploaded (see scheduler.StragglerPolicy).
type StragglerPolicy = scheduler.StragglerPolicy

// Ways a round closes (RoundSummary.ClosedBy).
const (
	ClosedAll        = scheduler.ClosedAll        // every expected collaborator uploaded
	ClosedPercentage = scheduler.ClosedPercentage // StragglerPolicy.Needed updates arrived
	ClosedCutoff     = scheduler.ClosedCutoff     // StragglerPolicy.Cutoff passed
	ClosedTimeout    = scheduler.ClosedTimeout    // RoundTimeout passed
)

// RoundSummary describes a closed round (see scheduler.RoundSummary).
type RoundSummary = scheduler.RoundSummary

// Aggregator is the server side of the protocol. Register it on a gRPC
// server with RA-TLS credentials and call Run.
type Aggregator struct {
	flv1.UnimplementedAggregatorServer

	cfg AggregatorConfig
	log *slog.Logger
	s   *scheduler.Scheduler
	dir []*flv1.TensorInfo // the global model's tensor layout
}

// NewAggregator checks cfg and returns an Aggregator for round 1.
func NewAggregator(cfg AggregatorConfig) (*Aggregator, error) {
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 500 * time.Millisecond
	}
	if cfg.RequireRole == "" {
		cfg.RequireRole = CollaboratorRole
	}
	if cfg.MaxLongPoll == 0 {
		cfg.MaxLongPoll = 20 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Aggregator{cfg: cfg, log: cfg.Logger.With("component", "aggregator")}
	s, err := scheduler.New(scheduler.Config{
		PlanHash: cfg.PlanHash, Strategy: cfg.Strategy, Evaluator: cfg.Evaluator, Initial: cfg.Initial,
		Collaborators: cfg.Collaborators, Rounds: cfg.Rounds, RoundTimeout: cfg.RoundTimeout,
		MinCollaborators: cfg.MinCollaborators, StatusEvery: cfg.StatusEvery, DoneGrace: cfg.DoneGrace,
		Straggler: cfg.Straggler, Resume: cfg.Resume, Commit: cfg.Commit, Logger: a.log, Observer: cfg.Observer,
		SecAgg: cfg.SecAgg,
	})
	if err != nil {
		return nil, fmt.Errorf("protocol: aggregator: %w", err)
	}
	a.s, a.dir = s, Directory(cfg.Initial)
	return a, nil
}

// NextRound is the round this aggregator starts with: 1, or the round
// after the checkpoint it resumed from (Rounds+1 if that was the last).
func (a *Aggregator) NextRound() int { return a.s.NextRound() }

// Stopped is the reason the federation ended before its last round (the
// strategy's RoundGate refused a round, e.g. the privacy budget), or nil.
func (a *Aggregator) Stopped() error { return a.s.Stopped() }

// Register registers the Aggregator service on s.
func (a *Aggregator) Register(s grpc.ServiceRegistrar) { flv1.RegisterAggregatorServer(s, a) }

// Run drives the rounds until the last one is aggregated, then waits (at
// most DoneGrace) until every collaborator was told DONE. It returns the
// final global model and one summary per round. Call it once.
func (a *Aggregator) Run(ctx context.Context) (tensor.Weights, []RoundSummary, error) {
	return a.s.Run(ctx)
}

// ShortHash renders a plan hash for messages: its first 8 characters and an
// ellipsis.
func ShortHash(h string) string { return scheduler.ShortHash(h) }

// toStatus maps a refusal of the scheduler to its gRPC status; other
// errors (nil, status errors) are returned as they are.
func toStatus(err error) error {
	var e *scheduler.Error
	if !errors.As(err, &e) {
		return err
	}
	code, reason := codes.Unknown, "other"
	switch e.Kind {
	case scheduler.Closed:
		code, reason = codes.Aborted, "wrong_round"
		if e.Late {
			reason = "late" // the round closed before or while it was uploaded
		}
	case scheduler.Duplicate:
		code, reason = codes.AlreadyExists, "duplicate"
	case scheduler.Stopped:
		// Unavailable, so that collaborators keep retrying (within their
		// GiveUpAfter) and continue with the aggregator once it is
		// restarted and resumes from its checkpoint.
		code, reason = codes.Unavailable, "stopped"
	case scheduler.Invalid:
		code, reason = codes.InvalidArgument, "decode"
	}
	return refused(reason, code, "%s", e.Msg)
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
	case !a.s.Expected(name):
		err = status.Errorf(codes.PermissionDenied, "collaborator %q is not expected by this aggregator (expected: %s)", name, strings.Join(a.cfg.Collaborators, ", "))
	case planHash != a.cfg.PlanHash:
		err = status.Errorf(codes.FailedPrecondition, "plan hash %s differs from the aggregator's %s", ShortHash(planHash), ShortHash(a.cfg.PlanHash))
	}
	if err != nil {
		msg := status.Convert(err).Message()
		a.log.Warn("refused "+name+": "+msg, "rpc", rpc, "collaborator", name, "code", status.Code(err).String())
		a.s.Refused(name, msg)
		return "", err
	}
	return name, nil
}

// GetTasks implements flv1.AggregatorServer.
func (a *Aggregator) GetTasks(ctx context.Context, req *flv1.TaskRequest) (*flv1.TaskResponse, error) {
	name, err := a.authorize(ctx, "GetTasks", req.GetSender(), req.GetPlanHash())
	if err != nil {
		return nil, err
	}
	// A long poll: held while the answer is WAIT, so that the collaborator
	// hears of the next round when it opens rather than at its next poll.
	wait := min(time.Duration(req.GetWaitMs())*time.Millisecond, a.cfg.MaxLongPoll)
	as, held, err := a.s.TasksWait(ctx, name, wait)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, toStatus(err)
	}
	resp := &flv1.TaskResponse{Round: int64(as.Round), RoundsTotal: int64(a.cfg.Rounds)}
	switch as.Action {
	case scheduler.Done:
		resp.Action = flv1.TaskAction_TASK_ACTION_DONE
	case scheduler.Wait:
		resp.Action = flv1.TaskAction_TASK_ACTION_WAIT
		resp.RetryAfterMs = a.cfg.RetryAfter.Milliseconds()
		resp.Held = held
	default:
		resp.Action = flv1.TaskAction_TASK_ACTION_RUN
		resp.Tasks = as.Tasks
		resp.Config = map[string]float64(as.Config)
	}
	return resp, nil
}

// DownloadModel implements flv1.AggregatorServer.
func (a *Aggregator) DownloadModel(req *flv1.ModelRequest, stream grpc.ServerStreamingServer[flv1.Chunk]) error {
	name, err := a.authorize(stream.Context(), "DownloadModel", req.GetSender(), req.GetPlanHash())
	if err != nil {
		return err
	}
	global, round, err := a.s.Model(name, req.GetRound()) // global is never modified in place
	if err != nil {
		return toStatus(err)
	}
	start := time.Now()
	n, err := EncodeWeights(global, &flv1.Header{Round: int64(round), Sender: "aggregator", PlanHash: a.cfg.PlanHash, Kind: flv1.PayloadKind_PAYLOAD_KIND_MODEL}, stream.Send)
	a.s.AddBytesOut(n)
	if err != nil {
		a.log.Warn("model download failed", "collaborator", name, "round", round, "err", err)
		return err
	}
	a.s.ModelSent(name, round, n, time.Since(start).Seconds())
	return nil
}

// UploadUpdate implements flv1.AggregatorServer.
func (a *Aggregator) UploadUpdate(stream grpc.ClientStreamingServer[flv1.Chunk, flv1.UploadAck]) error {
	ctx := stream.Context()
	var name string
	var release func()
	start := time.Now()
	dec, err := DecodeStream(stream.RecvMsg, func(h *flv1.Header) error {
		var err error
		name, release, err = a.beginUpload(ctx, h)
		return err
	})
	if release != nil {
		defer release()
	}
	if dec != nil {
		a.s.AddBytesIn(dec.WireBytes)
	}
	if err != nil {
		return a.uploadFailed(name, err)
	}
	h := dec.Header
	e := UpdateEvent{Round: int(h.Round), Collaborator: name, NumExamples: int(h.NumExamples), Metrics: h.Metrics,
		Bytes: dec.WireBytes, Seconds: time.Since(start).Seconds(),
		DownloadSeconds: h.GetTimings().GetDownloadSeconds(), TrainSeconds: h.GetTimings().GetTrainSeconds()}
	if err := a.s.Accept(e, dec.Weights); err != nil {
		return toStatus(err)
	}
	return stream.SendAndClose(&flv1.UploadAck{Round: h.Round, BytesReceived: dec.WireBytes})
}

// beginUpload checks an upload's header and registers the upload with the
// scheduler (release ends the registration). name is the verified sender
// once the caller is authorized, even if a later check fails.
func (a *Aggregator) beginUpload(ctx context.Context, h *flv1.Header) (name string, release func(), err error) {
	if name, err = a.authorize(ctx, "UploadUpdate", h.GetSender(), h.GetPlanHash()); err != nil {
		return "", nil, err
	}
	want, dir := flv1.PayloadKind_PAYLOAD_KIND_UPDATE, a.dir
	if a.cfg.SecAgg != nil {
		want = flv1.PayloadKind_PAYLOAD_KIND_MASKED_UPDATE
		dir = []*flv1.TensorInfo{{Name: scheduler.MaskedTensor, Shape: []int64{int64(a.cfg.Initial.NumParams() + 1)}}}
	}
	if h.Kind != want {
		return name, nil, refused("kind", codes.InvalidArgument, "upload from %q is of kind %s, want %s", name, h.Kind, want)
	}
	release, err = a.s.BeginUpload(name, h.Round, func() error {
		check := sameDirectory
		if sf, ok := a.cfg.Strategy.(strategy.ShapeFree); ok && a.cfg.SecAgg == nil { // fl/treefed: a model file's bytes
			check = func(want, got []*flv1.TensorInfo) error {
				return sameNamesDirectory(want, got, int64(sf.MaxElements()))
			}
		}
		if err := check(dir, h.Tensors); err != nil {
			return refused("shape", codes.InvalidArgument, "update from %q does not fit the global model: %v", name, err)
		}
		if h.NumExamples <= 0 {
			return refused("examples", codes.InvalidArgument, "update from %q has num_examples %d", name, h.NumExamples)
		}
		return nil
	})
	return name, release, toStatus(err)
}

// uploadFailed turns a failed upload from name into its gRPC status,
// records and logs it.
func (a *Aggregator) uploadFailed(name string, err error) error {
	var de *DecodeError
	switch {
	case errors.As(err, &de) && de.Checksum:
		err = refused("checksum", codes.DataLoss, "update from %q: %s", name, de.Msg)
	case errors.As(err, &de):
		err = refused("decode", codes.InvalidArgument, "update from %q: %s", name, de.Msg)
	}
	if _, ok := status.FromError(err); !ok || name == "" {
		// Transport errors and authorization refusals are already
		// logged.
		return err
	}
	msg := status.Convert(err).Message()
	a.s.UploadFailed(name, refusalReason(err), msg)
	if status.Code(err) != codes.Aborted { // late updates are logged by the scheduler
		a.log.Warn("update failed", "collaborator", name, "err", msg)
	}
	return err
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

// sameNamesDirectory is sameDirectory for a strategy.ShapeFree model:
// same names and ranks, each tensor at most maxElements elements.
func sameNamesDirectory(want, got []*flv1.TensorInfo, maxElements int64) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d tensors, the global model has %d", len(got), len(want))
	}
	for i := range want {
		if want[i].Name != got[i].Name {
			return fmt.Errorf("tensor %d is %q, the global model has %q", i, got[i].Name, want[i].Name)
		}
		if len(want[i].Shape) != len(got[i].Shape) {
			return fmt.Errorf("tensor %q has shape %v, the global model's has rank %d", got[i].Name, got[i].Shape, len(want[i].Shape))
		}
		n := int64(1)
		for _, d := range got[i].Shape {
			if d < 0 || (d > 0 && n > maxElements/d) {
				return fmt.Errorf("tensor %q has shape %v, more than %d elements", got[i].Name, got[i].Shape, maxElements)
			}
			n *= d
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
	if err := a.s.Report(MetricsEvent{Round: int(m.Round), Collaborator: name, Task: m.Task, NumExamples: int(m.NumExamples),
		Loss: m.Loss, Metrics: m.Metrics, Seconds: m.Seconds}); err != nil {
		return nil, toStatus(err)
	}
	return &flv1.MetricsAck{}, nil
}
