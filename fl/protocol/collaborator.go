package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/fl/scheduler"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/ratls"
)

// Trainer is a collaborator's local training and evaluation.
type Trainer interface {
	// Train trains from global with the round's config and returns the
	// locally trained weights (a full model), the number of training
	// examples and training metrics.
	Train(ctx context.Context, global tensor.Weights, cfg map[string]float64) (tensor.Weights, int, map[string]float64, error)
	// Evaluate evaluates w on the local validation data.
	Evaluate(ctx context.Context, w tensor.Weights) (numExamples int, loss float64, metrics map[string]float64, err error)
}

// CollaboratorConfig configures a Collaborator.
type CollaboratorConfig struct {
	// Name is this collaborator's federation identity: the name in its
	// identity certificate.
	Name string
	// PlanHash identifies the plan this collaborator runs.
	PlanHash string
	// Conn is a connection to the aggregator with RA-TLS credentials.
	Conn    grpc.ClientConnInterface
	Trainer Trainer
	// CallTimeout bounds each unary call (default 30 s); TransferTimeout
	// bounds each model download or upload (default 10 min).
	CallTimeout, TransferTimeout time.Duration
	// LongPoll is how long GetTasks asks the aggregator to hold the call
	// while there is nothing to do (TaskRequest.wait_ms), so that a new
	// round starts here as soon as it opens instead of at the next poll;
	// the call's deadline is CallTimeout + LongPoll. Default 15 s;
	// negative: no long poll (poll every retry_after_ms). An aggregator
	// that predates long polls answers at once, and is polled as before.
	LongPoll time.Duration
	// MinBackoff and MaxBackoff bound the exponential, jittered backoff
	// while the aggregator is unavailable (defaults 200 ms and 10 s).
	MinBackoff, MaxBackoff time.Duration
	// GiveUpAfter ends Run when the aggregator has been unavailable for
	// this long without a successful call (default 10 minutes).
	GiveUpAfter time.Duration
	// AggregatorRole is the role the server must have been verified for
	// over RA-TLS (default "aggregator"; "-" disables the check, e.g. for
	// connections without RA-TLS); AggregatorName, if set, is its required
	// identity name.
	AggregatorRole, AggregatorName string
	Logger                         *slog.Logger
	// SecAgg is this collaborator's identity for rounds with secure
	// aggregation (their config has scheduler.KeySecAgg = 1); a
	// collaborator without one fails such rounds.
	SecAgg *SecAggIdentity
	// SecAggPhaseWait is how much longer than CallTimeout a SecAgg call
	// the aggregator holds (advertise, share, unmask) may take (default
	// 2 minutes; it should exceed the plan's phase timeout).
	SecAggPhaseWait time.Duration
}

// Collaborator is the client side of the protocol.
type Collaborator struct {
	cfg   CollaboratorConfig
	cl    flv1.AggregatorClient
	log   *slog.Logger
	noise *privacy.Noise // local DP noise, keyed from crypto/rand

	// Test hooks: afterAdvertise runs when the round's members are known,
	// afterMasked after the masked upload was acknowledged; corruptReveal
	// rewrites the reveal before it is sent.
	afterAdvertise func(round int64)
	afterMasked    func(round int64)
	corruptReveal  func([]byte) []byte
}

// NewCollaborator checks cfg and returns a Collaborator.
func NewCollaborator(cfg CollaboratorConfig) (*Collaborator, error) {
	switch {
	case cfg.Name == "":
		return nil, errors.New("protocol: collaborator: no name")
	case cfg.PlanHash == "":
		return nil, errors.New("protocol: collaborator: no plan hash")
	case cfg.Conn == nil:
		return nil, errors.New("protocol: collaborator: no connection")
	case cfg.Trainer == nil:
		return nil, errors.New("protocol: collaborator: no trainer")
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.TransferTimeout <= 0 {
		cfg.TransferTimeout = 10 * time.Minute
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(10*time.Second, cfg.MinBackoff)
	}
	if cfg.LongPoll == 0 {
		cfg.LongPoll = 15 * time.Second
	}
	cfg.LongPoll = max(cfg.LongPoll, 0)
	if cfg.GiveUpAfter <= 0 {
		cfg.GiveUpAfter = 10 * time.Minute
	}
	if cfg.AggregatorRole == "" {
		cfg.AggregatorRole = "aggregator"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SecAggPhaseWait <= 0 {
		cfg.SecAggPhaseWait = 2 * time.Minute
	}
	noise, err := privacy.NewNoise(nil)
	if err != nil {
		return nil, fmt.Errorf("protocol: collaborator: %w", err)
	}
	return &Collaborator{cfg: cfg, cl: flv1.NewAggregatorClient(cfg.Conn), log: cfg.Logger.With("collaborator", cfg.Name), noise: noise}, nil
}

// RefusedError is a refusal that ended Run: one line, with the gRPC code,
// saying who refused whom. Either the aggregator (or its RA-TLS layer)
// refused this collaborator, or this collaborator refused the server: its
// own RA-TLS verification of the server's certificate failed, or the
// verified server is not the aggregator (checkServer).
type RefusedError struct {
	Code codes.Code
	Msg  string
	// Collaborator is this collaborator's name.
	Collaborator string
	// ByCollaborator is set when this collaborator refused the server,
	// unset when the aggregator refused this collaborator.
	ByCollaborator bool
	// Err is the error the refusal was read from (a gRPC status error,
	// which may carry a *ratls.Error); nil for refusals found locally.
	Err error
}

func (e *RefusedError) Error() string {
	if e.ByCollaborator {
		return fmt.Sprintf("collaborator %q refused the server %s: %s", e.Collaborator, e.Code, e.Msg)
	}
	return fmt.Sprintf("aggregator refused collaborator %q %s: %s", e.Collaborator, e.Code, e.Msg)
}

// Unwrap returns Err, so errors.As and ratls.RefusalOf see through a
// RefusedError to the status and RA-TLS error it came from.
func (e *RefusedError) Unwrap() error { return e.Err }

// refusal classifies err: nil for errors worth retrying (Unavailable,
// except an RA-TLS refusal) and for Aborted (the round moved on), a
// *RefusedError otherwise. An RA-TLS refusal is the aggregator's when the
// server refused our certificate (ratls.CheckRefusedByPeer, or a TLS alert
// it sent), this collaborator's when its own verification of the server's
// certificate failed (any other check).
func (c *Collaborator) refusal(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := strings.Join(strings.Fields(st.Message()), " ")
	switch st.Code() {
	case codes.Unavailable:
		if r, ok := ratls.RefusalOf(err); ok {
			ours := r.Check != ratls.CheckRefusedByPeer && r.Check != ratls.CheckHandshake
			return &RefusedError{Code: codes.PermissionDenied, Msg: "RA-TLS handshake refused: " + msg,
				Collaborator: c.cfg.Name, ByCollaborator: ours, Err: err}
		}
		return nil
	case codes.Aborted, codes.DeadlineExceeded:
		return nil
	}
	return &RefusedError{Code: st.Code(), Msg: msg, Collaborator: c.cfg.Name, Err: err}
}

// TaskError is a local task (Trainer.Train or Trainer.Evaluate) that
// failed: the trainer crashed, timed out or returned unusable results. It
// is this collaborator's problem, not the federation's: Run logs it, skips
// the rest of that round (the aggregator closes the round without this
// collaborator, at its timeout) and carries on with the next round.
type TaskError struct {
	Task  string
	Round int64
	Err   error
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("round %d: %s failed: %v", e.Round, e.Task, e.Err)
}

func (e *TaskError) Unwrap() error { return e.Err }

// Run works until the aggregator answers DONE (nil), refuses this
// collaborator (a *RefusedError), stays unavailable for GiveUpAfter, or ctx
// ends.
func (c *Collaborator) Run(ctx context.Context) error {
	c.log.Info("collaborator starts", "plan_hash", ShortHash(c.cfg.PlanHash))
	lastRound := 0
	var failedRound int64 // a round whose local task failed: not retried
	backoff := c.cfg.MinBackoff
	var unavailableSince time.Time
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout+c.cfg.LongPoll)
		asked := time.Now()
		var server peer.Peer
		resp, err := c.cl.GetTasks(cctx, &flv1.TaskRequest{Round: int64(lastRound), Sender: c.cfg.Name, PlanHash: c.cfg.PlanHash,
			WaitMs: c.cfg.LongPoll.Milliseconds()}, grpc.Peer(&server))
		cancel()
		if err == nil {
			if ref := c.checkServer(&server); ref != nil {
				c.log.Error(ref.Error(), "err", ref)
				return ref
			}
		}
		if err != nil {
			if ref := c.refusal(err); ref != nil {
				c.log.Error(ref.Error(), "err", ref)
				return ref
			}
			if unavailableSince.IsZero() {
				unavailableSince = time.Now()
			}
			if time.Since(unavailableSince) > c.cfg.GiveUpAfter {
				return fmt.Errorf("aggregator unavailable for %s: %v", c.cfg.GiveUpAfter, status.Convert(err).Message())
			}
			d := jitter(backoff)
			c.log.Warn("aggregator unavailable; retrying", "in", d.Round(time.Millisecond), "err", status.Convert(err).Message())
			backoff = min(2*backoff, c.cfg.MaxBackoff)
			if err := sleep(ctx, d); err != nil {
				return err
			}
			continue
		}
		unavailableSince, backoff = time.Time{}, c.cfg.MinBackoff
		switch resp.Action {
		case flv1.TaskAction_TASK_ACTION_DONE:
			c.log.Info("federation finished", "rounds", resp.RoundsTotal)
			return nil
		case flv1.TaskAction_TASK_ACTION_WAIT:
			if resp.Held && time.Since(asked) >= c.cfg.LongPoll/2 {
				continue // a long poll that ran out: ask again at once
			}
			d := time.Duration(resp.RetryAfterMs) * time.Millisecond
			if d <= 0 {
				d = c.cfg.MinBackoff
			}
			if err := sleep(ctx, min(d, c.cfg.MaxBackoff)); err != nil {
				return err
			}
		case flv1.TaskAction_TASK_ACTION_RUN:
			if resp.Round == failedRound {
				// The aggregator still waits for this round; ours failed.
				if err := sleep(ctx, c.cfg.MaxBackoff); err != nil {
					return err
				}
				continue
			}
			err := c.runRound(ctx, resp)
			if err == nil {
				lastRound = int(resp.Round)
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var te *TaskError
			if errors.As(err, &te) {
				c.log.Error("local task failed; skipping the rest of this round", "round", resp.Round, "task", te.Task, "err", te.Err)
				failedRound = resp.Round
				continue
			}
			if ref := c.refusal(err); ref != nil {
				c.log.Error("round failed: "+ref.Error(), "round", resp.Round)
				return ref
			}
			if st, ok := status.FromError(err); ok && st.Code() == codes.Aborted && strings.Contains(st.Message(), " is closed ") {
				// The aggregator closed the round without us (straggler
				// policy or timeout): go on with the current one.
				c.log.Info("round closed without this collaborator's update; asking for the current round's tasks", "round", resp.Round, "reason", st.Message())
			} else {
				c.log.Warn("round interrupted; asking for tasks again", "round", resp.Round, "err", status.Convert(err).Message())
			}
			if err := sleep(ctx, jitter(c.cfg.MinBackoff)); err != nil {
				return err
			}
		default:
			return fmt.Errorf("aggregator answered unknown action %v", resp.Action)
		}
	}
}

// checkServer checks the server's verified RA-TLS identity. (Every call
// of a round uses the same connection's credentials, so checking the
// GetTasks answer suffices while the channel keeps its connection; a
// reconnect is checked at the next GetTasks.)
func (c *Collaborator) checkServer(p *peer.Peer) error {
	if c.cfg.AggregatorRole == "-" {
		return nil
	}
	ai, ok := p.AuthInfo.(*ratls.AuthInfo)
	if !ok || ai.Peer == nil {
		return &RefusedError{Code: codes.Unauthenticated, Msg: "the aggregator's connection has no verified RA-TLS identity",
			Collaborator: c.cfg.Name, ByCollaborator: true}
	}
	if r := ai.Peer.Role(); r != c.cfg.AggregatorRole {
		return &RefusedError{Code: codes.PermissionDenied, Msg: fmt.Sprintf("server %q is verified as %q, not %s", ai.Peer.Name(), r, c.cfg.AggregatorRole),
			Collaborator: c.cfg.Name, ByCollaborator: true}
	}
	if c.cfg.AggregatorName != "" && ai.Peer.Name() != c.cfg.AggregatorName {
		return &RefusedError{Code: codes.PermissionDenied, Msg: fmt.Sprintf("server is %q, not the configured aggregator %q", ai.Peer.Name(), c.cfg.AggregatorName),
			Collaborator: c.cfg.Name, ByCollaborator: true}
	}
	return nil
}

// roundKey is the context key of the round a Trainer call belongs to.
type roundKey struct{}

// RoundFromContext returns the federated round of a Trainer call's
// context (Evaluate has no round argument), for logs.
func RoundFromContext(ctx context.Context) (int64, bool) {
	r, ok := ctx.Value(roundKey{}).(int64)
	return r, ok
}

func (c *Collaborator) runRound(ctx context.Context, t *flv1.TaskResponse) error {
	round := t.Round
	ctx = context.WithValue(ctx, roundKey{}, round)
	start := time.Now()
	c.log.Info("round starts", "round", round, "of", t.RoundsTotal, "tasks", t.Tasks)
	global, err := c.download(ctx, round)
	if err != nil {
		return err
	}
	var sr *secaggRound
	if t.Config[scheduler.KeySecAgg] == 1 {
		// Keys and shares first: every member must be there before masking.
		if sr, err = c.secaggSetup(ctx, round, global.NumParams(), int(t.Config[scheduler.KeySecAggFracBits])); err != nil {
			return err
		}
	}
	timings := &flv1.CollaboratorTimings{DownloadSeconds: time.Since(start).Seconds()}
	has := func(name string) bool {
		for _, x := range t.Tasks {
			if x == name {
				return true
			}
		}
		return false
	}
	if has(TaskAggregatedModelValidation) {
		if err := c.evaluate(ctx, round, TaskAggregatedModelValidation, global); err != nil {
			return err
		}
	}
	if !has(TaskTrain) {
		return nil
	}
	trainStart := time.Now()
	local, n, metrics, err := c.cfg.Trainer.Train(ctx, global, t.Config)
	timings.TrainSeconds = time.Since(trainStart).Seconds()
	if err == nil {
		cerr := global.Compatible(local)
		if sf, ok := c.cfg.Trainer.(strategy.ShapeFree); ok { // fl/treefed: a model file's bytes
			cerr = strategy.SameNames(global, local, sf.MaxElements())
		}
		if cerr != nil {
			err = fmt.Errorf("trainer returned weights that do not fit the global model: %w", cerr)
		}
	}
	if err != nil && ctx.Err() == nil {
		return &TaskError{Task: TaskTrain, Round: round, Err: err}
	} else if err != nil {
		return ctx.Err()
	}
	c.log.Info("trained", "round", round, "examples", n, "metrics", metrics, "seconds", time.Since(start).Seconds())
	if has(TaskLocallyTunedModelValidation) {
		if err := c.evaluate(ctx, round, TaskLocallyTunedModelValidation, local); err != nil {
			return err
		}
	}
	// DP-FedAvg (fl/privacy): the round's config carries the clip norm and,
	// with local noise, the noise std: clip (and noise) before upload.
	up, dp, err := privacy.ClientSide(t.Config, global, local, c.noise)
	if err != nil {
		return &TaskError{Task: TaskTrain, Round: round, Err: err}
	}
	if dp {
		c.log.Info("update clipped for differential privacy", "round", round, "clip_norm", t.Config[privacy.KeyClipNorm],
			"local_noise_std", t.Config[privacy.KeyLocalNoiseStd])
	}
	if sr != nil {
		// DP under secure aggregation: the discrete Gaussian share of the
		// noise goes on the quantised update, before masking.
		sigma, ok := t.Config[privacy.KeyLatticeSigma]
		if ok && !(sigma > 0 && !math.IsInf(sigma, 0)) {
			return &TaskError{Task: TaskTrain, Round: round, Err: fmt.Errorf("fit config %s = %v: must be finite and > 0", privacy.KeyLatticeSigma, sigma)}
		}
		return sr.maskedUpload(ctx, global, up, n, t.Config[scheduler.KeySecAggClip], sigma, metrics, timings)
	}
	return c.upload(ctx, round, up, n, metrics, timings)
}

func (c *Collaborator) download(ctx context.Context, round int64) (tensor.Weights, error) {
	tctx, cancel := context.WithTimeout(ctx, c.cfg.TransferTimeout)
	defer cancel()
	stream, err := c.cl.DownloadModel(tctx, &flv1.ModelRequest{Round: round, Sender: c.cfg.Name, PlanHash: c.cfg.PlanHash}, callOptions()...)
	if err != nil {
		return nil, err
	}
	dec, err := DecodeStream(stream.RecvMsg, func(h *flv1.Header) error {
		if h.Kind != flv1.PayloadKind_PAYLOAD_KIND_MODEL || h.Round != round || h.PlanHash != c.cfg.PlanHash {
			return fmt.Errorf("model header for round %d kind %s plan %s, want round %d kind MODEL plan %s",
				h.Round, h.Kind, ShortHash(h.PlanHash), round, ShortHash(c.cfg.PlanHash))
		}
		return nil
	})
	if err != nil {
		var de *DecodeError
		if errors.As(err, &de) {
			// A corrupt model: retry the round (Aborted is retried).
			return nil, status.Errorf(codes.Aborted, "model download: %v", err)
		}
		return nil, err
	}
	c.log.Info("model downloaded", "round", round, "bytes", dec.WireBytes, "params", dec.Weights.NumParams())
	return dec.Weights, nil
}

func (c *Collaborator) evaluate(ctx context.Context, round int64, task string, w tensor.Weights) error {
	start := time.Now()
	n, loss, metrics, err := c.cfg.Trainer.Evaluate(ctx, w)
	secs := time.Since(start).Seconds()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &TaskError{Task: task, Round: round, Err: err}
	}
	c.log.Info(task, "round", round, "examples", n, "loss", loss, "metrics", metrics)
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	_, err = c.cl.ReportMetrics(cctx, &flv1.Metrics{Round: round, Sender: c.cfg.Name, PlanHash: c.cfg.PlanHash,
		Task: task, NumExamples: int64(n), Loss: loss, Metrics: metrics, Seconds: secs})
	return err
}

func (c *Collaborator) upload(ctx context.Context, round int64, w tensor.Weights, n int, metrics map[string]float64, timings *flv1.CollaboratorTimings) error {
	return c.uploadKind(ctx, round, w, n, flv1.PayloadKind_PAYLOAD_KIND_UPDATE, metrics, timings)
}

func (c *Collaborator) uploadKind(ctx context.Context, round int64, w tensor.Weights, n int, kind flv1.PayloadKind, metrics map[string]float64, timings *flv1.CollaboratorTimings) error {
	tctx, cancel := context.WithTimeout(ctx, c.cfg.TransferTimeout)
	defer cancel()
	stream, err := c.cl.UploadUpdate(tctx, callOptions()...)
	if err != nil {
		return err
	}
	sent, err := EncodeWeights(w, &flv1.Header{Round: round, Sender: c.cfg.Name, PlanHash: c.cfg.PlanHash,
		Kind: kind, NumExamples: int64(n), Metrics: metrics, Timings: timings}, stream.Send)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	// On a refusal Send returns io.EOF and CloseAndRecv the status.
	ack, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	c.log.Info("update uploaded", "round", round, "bytes", sent, "acknowledged", ack.BytesReceived)
	return nil
}

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
