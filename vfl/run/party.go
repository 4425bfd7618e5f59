// Package run runs the two parties of teeml vertical federated learning —
// the leader (labels and some features) and the follower (other features of
// the same users) — over the vfl/bridge protocol on mutual RA-TLS: loading
// the plan, attesting each other against the plan's policies, aligning the
// rows, training a split model (vfl/split) with atomic checkpoints every K
// iterations, resuming from the last common checkpoint after a broken
// stream or a restarted peer, exporting each side's half with a model card,
// and joint prediction. Quickstart runs both on loopback.
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
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	vflv1 "github.com/teeml/teeml/api/proto/teeml/vfl/v1"
	"github.com/teeml/teeml/internal/progress"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ratls"
	"github.com/teeml/teeml/vfl/bridge"
	"github.com/teeml/teeml/vfl/plan"
	"github.com/teeml/teeml/vfl/psi"
	"github.com/teeml/teeml/vfl/split"
)

// Connector yields bridge streams to the peer: the leader dials, the
// follower accepts. Each call returns one new stream.
type Connector interface {
	Connect(ctx context.Context) (*bridge.Conn, error)
}

// Options configures a party run. Nothing here decides trust: that comes
// from the plan and its policy files, and the party file.
type Options struct {
	Plan string // plan file
	Role string // leader or follower
	// PartyDir holds party/<role>.yaml (default: the plan's directory).
	PartyDir string
	// StateDir holds checkpoints and the exported model (default
	// <plan dir>/runs/<plan hash 16>/<role>).
	StateDir string
	// Peer is the follower's address (leader only).
	Peer string
	// Listen is the follower's listen address (follower only).
	Listen string
	// Connector replaces the RA-TLS transport (tests and the centralised
	// baseline use bridge.Pipe); with it, PartyDir is not read.
	Connector Connector
	// Out receives the human-readable summary lines; Progress the progress
	// bar (drawn only when it is a terminal).
	Out      io.Writer
	Progress *os.File
	Logger   *slog.Logger
	// Ready, when set, is called with the follower's listen address once
	// it listens.
	Ready func(addr string)

	// MetricsAddr, when set, serves Prometheus metrics on /metrics there.
	MetricsAddr string

	// wrap, when set, wraps the RA-TLS connector (tests: a duplicating
	// proxy).
	wrap func(Connector) Connector
	// psiRand, when set, is the PSI's source of nonces and secret (tests
	// that compare two runs exactly make both sessions identical).
	psiRand func(role string) io.Reader
}

// Result is what a party run produced.
type Result struct {
	Role       string
	Model      string // exported half (safetensors)
	Card       string // model card (JSON)
	Iterations int64  // training iterations of the run
	Applied    int64  // optimiser updates applied (== Iterations)
	Resumes    int    // sessions that resumed from a checkpoint
	Metrics    *split.Metrics
	// Traffic of the last session, per iteration, and its duration.
	BytesPerIter float64
	MsPerIter    float64
	Predictions  []float64 // leader: test probabilities, in test order
	TestIDs      []string
}

// party is one side's running state.
type party struct {
	o        Options
	plan     *plan.Plan
	role     string
	log      *slog.Logger
	out      io.Writer
	own      *datasets.Dataset
	att      *attestation
	ckptDir  string
	modelDir string

	psiT     psiTransport
	al       *aligned // the PSI alignment the rows follow
	prep     *Prepared
	alignSum string
	sched    *schedule
	leader   *split.Leader
	follower *split.Follower
	applied  int64
	resumes  int
	preds    []float64
	peer     *Measurement

	lastLossSum float64
	lastLossN   int
	metrics     *partyMetrics
}

// newParty loads the plan, this side's rows and attestation, and sets up
// the transport. what names the command in the first output line.
func newParty(ctx context.Context, op *Options, what string) (*party, Connector, func(), error) {
	o := *op
	if o.Role != RoleLeader && o.Role != RoleFollower {
		return nil, nil, nil, fmt.Errorf("vfl: role %q: want leader or follower", o.Role)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("role", o.Role)
	p, err := plan.Load(o.Plan)
	if err != nil {
		return nil, nil, nil, err
	}
	if o.StateDir == "" {
		o.StateDir = filepath.Join(p.Dir(), "runs", p.ShortHash(), o.Role)
	}
	if o.PartyDir == "" {
		o.PartyDir = p.Dir()
	}
	*op = o
	pt := &party{o: o, plan: p, role: o.Role, log: log, out: o.Out,
		ckptDir: filepath.Join(o.StateDir, "checkpoints"), modelDir: filepath.Join(o.StateDir, "model")}
	if pt.own, err = LoadSide(p, o.Role); err != nil {
		return nil, nil, nil, err
	}
	fmt.Fprintf(o.Out, "vfl %s%s: plan %s (%s), dataset %s, %d rows × %d columns held here, model %s, state %s\n",
		o.Role, what, p.Name, p.ShortHash(), p.Dataset, pt.own.N, pt.own.D, p.Model.Kind, o.StateDir)
	conn := o.Connector
	closeFn := func() {}
	if conn != nil {
		pt.psiT = psiOf(conn)
	}
	pt.metrics = newPartyMetrics(o.Role)
	if o.MetricsAddr != "" {
		a, stop, err := pt.metrics.serve(ctx, o.MetricsAddr, log)
		if err != nil {
			return nil, nil, nil, err
		}
		closeFn = stop
		log.Info("metrics", "addr", "http://"+a+"/metrics")
	}
	if conn == nil {
		pt.att, err = loadAttestation(ctx, o.PartyDir, o.Role, log)
		if err != nil {
			return nil, nil, nil, err
		}
		pt.att.party.Announce(o.Out, log)
		c, cf, err := pt.transport(ctx)
		if err != nil {
			closeFn()
			return nil, nil, nil, err
		}
		stopMetrics := closeFn
		conn, closeFn = c, func() { cf(); stopMetrics() }
		if o.wrap != nil {
			conn = o.wrap(conn)
		}
	}
	return pt, conn, closeFn, nil
}

// Run runs one party to the end of training and evaluation, exports its
// half and returns the result.
func Run(ctx context.Context, o Options) (*Result, error) {
	pt, conn, closeFn, err := newParty(ctx, &o, "")
	if err != nil {
		return nil, err
	}
	defer closeFn()
	log := pt.log
	// A stored alignment is reused if the peer names the same PSI session
	// (see agreeAlignment): resuming needs the rows in the same order.
	pt.al = pt.loadAlignment()
	res, err := pt.run(ctx, conn, pt.session)
	if err != nil {
		return nil, err
	}
	if res.Metrics != nil {
		m := res.Metrics
		fmt.Fprintf(o.Out, "%s%s accuracy=%s log_loss=%s (n=%d)\n", ResultPrefix, fmtMetric(m.AUC), fmtMetric(m.Accuracy), fmtMetric(m.LogLoss), m.N)
	}
	fmt.Fprintf(o.Out, "vfl %s: %d training iterations, %d updates applied, %d resumes; last session %.2f ms/iteration, %.0f bytes/iteration\n",
		o.Role, res.Iterations, res.Applied, res.Resumes, res.MsPerIter, res.BytesPerIter)
	fmt.Fprintf(o.Out, "vfl %s: model %s\nvfl %s: model card %s\n", o.Role, res.Model, o.Role, res.Card)
	log.Info("exported", "model", res.Model, "card", res.Card)
	return res, nil
}

// ResultPrefix starts the leader's test-metrics line (parsed by Quickstart).
const ResultPrefix = "vfl leader: test auc="

// transport sets up the RA-TLS gRPC transport: the follower serves, the
// leader dials.
func (pt *party) transport(ctx context.Context) (Connector, func(), error) {
	server := pt.role == RoleFollower
	creds, closeCreds, err := pt.att.credentials(ctx, pt.plan, pt.role, server, pt.log)
	if err != nil {
		return nil, nil, err
	}
	if server {
		addr := pt.o.Listen
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		var lc net.ListenConfig
		lis, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			closeCreds()
			return nil, nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		srv := grpc.NewServer(grpc.Creds(creds))
		bs := bridge.NewServer()
		bs.Register(srv)
		// PSI runs on the same RA-TLS listener: the same attestation and
		// plan policy checks as the bridge.
		svc := psi.NewService(pt.log)
		svc.Register(srv)
		pt.psiT = psiListener{svc}
		go func() { _ = srv.Serve(lis) }()
		pt.log.Info("follower listening (RA-TLS)", "addr", lis.Addr().String(), "plan_hash", pt.plan.ShortHash())
		fmt.Fprintf(pt.out, "vfl follower: listening on %s (RA-TLS), waiting for leader\n", lis.Addr())
		if pt.o.Ready != nil {
			pt.o.Ready(lis.Addr().String())
		}
		stop := func() {
			// Let the last frames (a final commit, an abort with its
			// reason) reach the leader before the connection closes.
			done := make(chan struct{})
			go func() { srv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				srv.Stop()
			}
			closeCreds()
		}
		return acceptor{bs}, stop, nil
	}
	if pt.o.Peer == "" {
		closeCreds()
		return nil, nil, errors.New("vfl leader: no --peer address of the follower")
	}
	cc, err := grpc.NewClient(pt.o.Peer, grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}, MinConnectTimeout: 10 * time.Second}))
	if err != nil {
		closeCreds()
		return nil, nil, fmt.Errorf("peer %s: %w", pt.o.Peer, err)
	}
	pt.psiT = psiDialer{cc: cc, addr: pt.o.Peer}
	return dialer{cc}, func() { cc.Close(); closeCreds() }, nil
}

type acceptor struct{ s *bridge.Server }

func (a acceptor) Connect(ctx context.Context) (*bridge.Conn, error) { return a.s.Accept(ctx) }

type dialer struct{ cc *grpc.ClientConn }

func (d dialer) Connect(ctx context.Context) (*bridge.Conn, error) { return bridge.Dial(ctx, d.cc) }

// evalWindow is how many evaluation iterations the follower may run ahead
// of the leader (the bridge refuses a peer more than 4 ahead).
const evalWindow = 2

// handshakeTimeout bounds the Hello exchange.
const handshakeTimeout = 30 * time.Second

func (pt *party) run(ctx context.Context, conn Connector, session func(context.Context, *bridge.Conn) (*Result, error)) (*Result, error) {
	nw := pt.plan.Network
	reconnect := time.Duration(nw.ReconnectTimeout)
	giveUp := time.Now().Add(reconnect)
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if pt.role == RoleFollower {
			pt.log.Info("waiting for leader")
		} else {
			pt.log.Info("bridge channel", "state", "connecting", "peer", pt.o.Peer)
		}
		// The follower's first wait for the leader is open-ended (it is a
		// service); after a lost session the leader has reconnect_timeout
		// to come back. (The leader's dial fails fast; its ctx is also the
		// stream's lifetime, so it must not get a deadline here.)
		cctx, ccancel := ctx, context.CancelFunc(func() {})
		if attempt > 0 && pt.role == RoleFollower {
			cctx, ccancel = context.WithDeadline(ctx, giveUp)
		}
		c, err := conn.Connect(cctx)
		ccancel()
		if err == nil {
			var res *Result
			res, err = session(ctx, c)
			if errors.Is(err, errRealigned) {
				giveUp = time.Now().Add(reconnect)
				continue
			}
			if err == nil {
				pt.metrics.sessions.WithLabelValues("done").Inc()
				return res, nil
			}
			pt.metrics.sessions.WithLabelValues(outcome(err)).Inc()
			var refused *bridge.RefusedError
			var perr *bridge.ProtocolError
			var abort *bridge.AbortError
			switch {
			case errors.As(err, &refused), errors.As(err, &perr), errors.As(err, &abort):
				return nil, err
			case !errors.Is(err, bridge.ErrPeerLost):
				return nil, err
			}
			pt.log.Warn("bridge channel lost; reconnecting to resume from the last common checkpoint", "err", err)
			giveUp = time.Now().Add(reconnect)
			wait = 100 * time.Millisecond
		} else if ctx.Err() != nil {
			return nil, ctx.Err()
		} else if r, ok := ratls.RefusalOf(err); ok {
			return nil, fmt.Errorf("vfl %s: RA-TLS refused: %s", pt.role, r.Reason)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(giveUp) {
			return nil, fmt.Errorf("vfl %s: %w for %s: %w", pt.role, errNoChannel, reconnect, err)
		}
		pt.log.Debug("bridge channel: retrying", "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// session runs one stream: handshake, alignment (first time), restore of
// the agreed checkpoint, then the iterations until the end.
func (pt *party) session(ctx context.Context, c *bridge.Conn) (*Result, error) {
	defer c.Close()
	if c.Peer != nil {
		pt.peer = measurementOf(c.Peer.Claims)
	}
	pt.log.Info("bridge channel", "state", "connected", "peer_simulated", pt.peer != nil && pt.peer.Simulated)
	mine := &vflv1.Hello{PlanHash: pt.plan.Hash(), Role: pt.role, Session: bridge.SessionTrain,
		Checkpoints: pt.checkpoints()}
	if pt.al != nil {
		mine.PsiSession = pt.al.id
	}
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	peerHello, err := bridge.Handshake(hctx, c, mine)
	cancel()
	if err != nil {
		var refused *bridge.RefusedError
		if errors.As(err, &refused) {
			pt.log.Error("vfl: peer refused: " + refused.Reason)
		}
		return nil, err
	}
	if err := pt.agreeAlignment(ctx, mine.Checkpoints, peerHello.GetCheckpoints(), peerHello.GetPsiSession()); err != nil {
		return nil, err
	}
	resume := bridge.ResumePoint(mine.Checkpoints, peerHello.GetCheckpoints())
	if err := pt.restore(resume); err != nil {
		return nil, err
	}
	if resume > 0 {
		pt.resumes++
		pt.log.Info("resuming from checkpoint", "iter_id", resume, "applied", pt.applied,
			"own_checkpoints", mine.Checkpoints, "peer_checkpoints", peerHello.GetCheckpoints())
		fmt.Fprintf(pt.out, "vfl %s: resuming from checkpoint at iteration %d (applied updates %d)\n", pt.role, resume, pt.applied)
	}
	pt.log.Info("bridge channel", "state", "ready", "resume_from", resume, "iterations", pt.sched.Total())
	pt.metrics.resumedAt.Set(float64(resume))
	nw := pt.plan.Network
	peerName := RoleFollower
	if pt.role == RoleFollower {
		peerName = RoleLeader
	}
	sess := bridge.NewSession(c, resume, bridge.Config{RecvTimeout: time.Duration(nw.RecvTimeout),
		Heartbeat: time.Duration(nw.Heartbeat), PeerTimeout: time.Duration(nw.PeerTimeout), Logger: pt.log, Peer: peerName})
	defer func() {
		sess.Close()
		c.Close()
		sess.Wait()
	}()
	start := time.Now()
	if err := pt.iterate(ctx, sess, resume+1); err != nil {
		// Anything but a lost peer ends the run: tell the peer why, so it
		// stops now instead of waiting reconnect_timeout for us.
		var abort *bridge.AbortError
		if errors.Is(err, bridge.ErrPeerLost) {
			// The peer may have said why before hanging up.
			if a := sess.AwaitPeerAbort(max(time.Second, time.Duration(nw.Heartbeat))); a != nil {
				return nil, a
			}
		}
		if !errors.Is(err, bridge.ErrPeerLost) && !errors.As(err, &abort) && ctx.Err() == nil {
			sess.Abort(strings.Join(strings.Fields(err.Error()), " "))
		}
		return nil, err
	}
	done := pt.sched.Total() - resume
	st := sess.Stats()
	res := &Result{Role: pt.role, Iterations: pt.sched.TrainIters, Applied: pt.applied, Resumes: pt.resumes}
	if done > 0 {
		res.BytesPerIter = float64(st.BytesSent+st.BytesRecv) / float64(done)
		res.MsPerIter = float64(time.Since(start).Microseconds()) / 1000 / float64(done)
	}
	if err := pt.finish(res); err != nil {
		return nil, err
	}
	return res, nil
}

// newModel builds this side's half from the plan (fresh initialisation).
func (pt *party) newModel() error {
	spec := pt.plan.Spec(pt.role)
	spec.Columns = pt.prep.Columns
	var err error
	if pt.role == RoleLeader {
		pt.leader, err = split.NewLeader(spec)
	} else {
		pt.follower, err = split.NewFollower(spec)
	}
	return err
}

func (pt *party) iterate(ctx context.Context, sess *bridge.Session, from int64) error {
	total := pt.sched.Total()
	bar := progress.New(progressOut(pt.o.Progress), "vfl "+pt.role, int(total), pt.o.Progress != nil && progress.IsTerminal(pt.o.Progress))
	defer bar.Finish()
	if pt.role == RoleLeader && pt.preds == nil {
		pt.preds = make([]float64, pt.prep.Test.N)
	}
	width := pt.plan.Model.ActWidth
	var x, y []float32
	var prevStats bridge.Stats
	for it := from; it <= total; it++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows, training := pt.sched.rows(it)
		ds := pt.prep.Train
		if !training {
			ds = pt.prep.Test
		}
		iterStart := time.Now()
		x, y = gather(ds, rows, x, y)
		n := len(rows)
		if !training && pt.role == RoleFollower && it > evalWindow {
			// Evaluation iterations need nothing back from the leader; this
			// keeps the follower at most evalWindow iterations ahead.
			if err := sess.WaitPeerCommit(ctx, it-evalWindow); err != nil {
				return err
			}
		}
		if err := sess.Start(it); err != nil {
			return err
		}
		if pt.role == RoleFollower {
			act, err := pt.follower.Forward(x, n)
			if err != nil {
				return err
			}
			if err := sess.Send(split.ActName, []int{n, width}, act); err != nil {
				return err
			}
			if training {
				shape, g, err := sess.Recv(ctx, split.ActGradName)
				if err != nil {
					return err
				}
				if len(shape) != 2 || shape[0] != n || shape[1] != width {
					return &bridge.ProtocolError{Msg: fmt.Sprintf("leader sent %s of shape %v in iteration %d, want [%d %d]", split.ActGradName, shape, it, n, width)}
				}
				if err := pt.follower.Backward(g); err != nil {
					return err
				}
				pt.applied++
			}
		} else {
			shape, act, err := sess.Recv(ctx, split.ActName)
			if err != nil {
				return err
			}
			if len(shape) != 2 || shape[0] != n || shape[1] != width {
				return &bridge.ProtocolError{Msg: fmt.Sprintf("follower sent %s of shape %v in iteration %d, want [%d %d]", split.ActName, shape, it, n, width)}
			}
			if training {
				loss, dact, err := pt.leader.TrainStep(x, act, y, n)
				if err != nil {
					return err
				}
				if err := sess.Send(split.ActGradName, []int{n, width}, dact); err != nil {
					return err
				}
				pt.applied++
				pt.lastLossSum += loss * float64(n)
				pt.lastLossN += n
			} else {
				probs, err := pt.leader.Predict(x, act, n)
				if err != nil {
					return err
				}
				for i, r := range rows {
					pt.preds[r] = probs[i]
				}
			}
		}
		if err := sess.Commit(); err != nil {
			return err
		}
		st := sess.Stats()
		pt.metrics.observe(time.Since(iterStart), st, prevStats)
		prevStats = st
		if training && (it%int64(pt.plan.Training.CheckpointEvery) == 0 || it == pt.sched.TrainIters) {
			if err := pt.checkpoint(it); err != nil {
				return err
			}
		}
		if training && pt.role == RoleLeader && (it == pt.sched.TrainIters || pt.sched.epochOf(it+1) != pt.sched.epochOf(it)) {
			loss := pt.lastLossSum / float64(max(pt.lastLossN, 1))
			pt.log.Info("epoch done", "epoch", pt.sched.epochOf(it), "of", pt.plan.Training.Epochs, "iter_id", it, "train_loss", fmt.Sprintf("%.4f", loss))
			pt.lastLossSum, pt.lastLossN = 0, 0
		}
		bar.Set(int(it))
	}
	// Neither side closes the stream before the other has committed the
	// last iteration.
	if err := sess.WaitPeerCommit(ctx, total); err != nil {
		return err
	}
	pt.endSession(ctx, sess)
	return nil
}

// endSession orders the close of a session both sides have completed: the
// follower closes as soon as it has seen the leader's last Commit, and the
// leader waits for that close before closing its end. Closing is not
// ordered after the frames sent before it (a cancelled gRPC client stream
// drops what the transport still queues; an in-process pipe may report the
// close before buffered frames), and the leader usually finishes first (the
// follower's evaluation runs ahead), so a leader that closed at once could
// take its last Commit with it: the follower would then see a lost peer,
// wait reconnect_timeout for a leader that has exited, and fail a run that
// succeeded. Waiting is bounded by peer_timeout: a follower silent that
// long is gone, and the leader has everything it needs.
func (pt *party) endSession(ctx context.Context, sess *bridge.Session) {
	if pt.role != RoleLeader {
		return
	}
	wait := time.Duration(pt.plan.Network.PeerTimeout)
	if wait <= 0 {
		wait = bridge.DefaultPeerTimeout
	}
	if !sess.WaitPeerEnd(ctx, wait) && ctx.Err() == nil {
		pt.log.Warn("the follower did not close the finished session; closing it", "waited", wait)
	}
}

func progressOut(f *os.File) io.Writer {
	if f == nil {
		return io.Discard
	}
	return f
}

// finish checks the run's invariants, evaluates (leader) and exports.
func (pt *party) finish(res *Result) error {
	var steps int64
	if pt.leader != nil {
		steps = pt.leader.Steps()
	} else {
		steps = pt.follower.Steps()
	}
	// Every training iteration applied exactly once: the counter restored
	// from the checkpoint plus this run's updates, and the optimiser's own
	// step count, must both equal the schedule.
	if pt.applied != pt.sched.TrainIters || steps != pt.sched.TrainIters {
		return fmt.Errorf("vfl %s: %d updates applied (optimiser steps %d) for %d training iterations", pt.role, pt.applied, steps, pt.sched.TrainIters)
	}
	if pt.role == RoleLeader {
		m := split.Evaluate(pt.preds, pt.prep.Test.Y)
		res.Metrics = &m
		res.Predictions = append([]float64(nil), pt.preds...)
		res.TestIDs = append([]string(nil), pt.prep.Test.IDs...)
	}
	return pt.export(res)
}

func fmtMetric(v float64) string {
	if math.IsNaN(v) {
		return "NaN"
	}
	return fmt.Sprintf("%.4f", v)
}

// outcome classifies a session's error for the sessions metric.
// errNoChannel is the end of reconnecting: no working channel to the peer
// for the plan's reconnect_timeout.
var errNoChannel = errors.New("no working channel to the peer")

func outcome(err error) string {
	var refused *bridge.RefusedError
	switch {
	case errors.Is(err, errNoChannel):
		// Giving up after reconnect_timeout: the last dial error it
		// wraps may be a lost peer, but the session failed.
		return "failed"
	case errors.As(err, &refused):
		return "refused"
	case errors.Is(err, bridge.ErrPeerLost):
		return "lost"
	}
	return "failed"
}
