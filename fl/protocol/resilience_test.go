package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/ratls"
)

// detTrainer is a deterministic stand-in trainer: the update depends only
// on the global model, the collaborator's seed and the round, so two runs of
// a federation give bit-identical models. delay(round) is slept (ctx-aware)
// before answering; block makes Train wait for ctx (a hung or dying
// collaborator).
type detTrainer struct {
	seed  float32
	delay func(round int) time.Duration
	block bool

	mu      sync.Mutex
	started chan int // receives the round when Train starts (if non-nil)
}

func (d *detTrainer) Train(ctx context.Context, g tensor.Weights, cfg map[string]float64) (tensor.Weights, int, map[string]float64, error) {
	round := int(cfg[strategy.KeyRound])
	d.mu.Lock()
	if d.started != nil {
		select {
		case d.started <- round:
		default:
		}
	}
	d.mu.Unlock()
	if d.block {
		<-ctx.Done()
		return nil, 0, nil, ctx.Err()
	}
	if d.delay != nil {
		if err := sleep(ctx, d.delay(round)); err != nil {
			return nil, 0, nil, err
		}
	}
	w := g.Clone()
	for _, t := range w {
		for j := range t.Data {
			t.Data[j] += d.seed * (0.01*float32(j%7-3) + 0.003*float32(round))
		}
	}
	return w, 10 + int(d.seed), map[string]float64{"loss": float64(d.seed)}, nil
}

func (d *detTrainer) Evaluate(context.Context, tensor.Weights) (int, float64, map[string]float64, error) {
	return 10, 1, map[string]float64{"accuracy": 0.5}, nil
}

// server is a stoppable RA-TLS gRPC server for an Aggregator.
type server struct {
	srv  *grpc.Server
	done chan struct{}
	addr string
}

// serveAt serves a on addr ("127.0.0.1:0" for a new port) with a fresh
// RA-TLS certificate of the aggregator member, as a restarted aggregator
// process would have.
func (e *fedEnv) serveAt(addr string, a *Aggregator) *server {
	e.t.Helper()
	var lis net.Listener
	var err error
	// The old listener's port may take a moment to free.
	if !testenv.WaitFor(5*time.Second, func() bool { lis, err = net.Listen("tcp", addr); return err == nil }) {
		e.t.Fatal(err)
	}
	creds, err := ratls.NewServerCredentials(ratls.TransportConfig{
		Certificates: ratls.StaticCertificate{Cert: e.leaf(e.members["aggregator"], mrGood)},
		Verifier:     e.verifier(quiet()), Logger: quiet(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	s := &server{srv: grpc.NewServer(grpc.Creds(creds)), done: make(chan struct{}), addr: lis.Addr().String()}
	a.Register(s.srv)
	go func() { defer close(s.done); _ = s.srv.Serve(lis) }()
	e.t.Cleanup(s.stop)
	return s
}

func (s *server) stop() { s.srv.Stop(); <-s.done }

// startCollaborator runs a collaborator until ctx ends; its Run error is
// sent on the returned channel.
func (e *fedEnv) startCollaborator(ctx context.Context, addr, name string, tr Trainer, log *logBuf) <-chan error {
	e.t.Helper()
	lg := quiet()
	if log != nil {
		lg = log.Logger()
	}
	c, err := NewCollaborator(CollaboratorConfig{Name: name, PlanHash: planHash,
		Conn: e.dial(addr, e.leaf(e.members[name], mrGood), quiet()), Trainer: tr,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, GiveUpAfter: time.Minute, Logger: lg})
	if err != nil {
		e.t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- c.Run(ctx) }()
	return ch
}

func resWeights() tensor.Weights { return testWeights([]int{4, 3}, []int{3}) }

// TestStragglerCutoffClosesRound: col-3 is slow in round 1. The round
// closes at the cutoff with col-1 and col-2; col-3's late update is
// discarded with a log line and an Aborted answer, after which col-3 joins
// round 2, which closes with all three.
func TestStragglerCutoffClosesRound(t *testing.T) {
	names := []string{"col-1", "col-2", "col-3"}
	env := newFedEnv(t, names...)
	var aggLog, slowLog logBuf
	const cutoff = 1500 * time.Millisecond
	agg, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: resWeights(),
		Collaborators: names, Rounds: 2, RoundTimeout: time.Minute, MinCollaborators: 2, RetryAfter: 20 * time.Millisecond,
		Straggler: StragglerPolicy{Cutoff: cutoff}, Logger: aggLog.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	s := env.serveAt("127.0.0.1:0", agg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var cols []<-chan error
	for i, n := range names {
		tr := &detTrainer{seed: float32(i + 1)}
		var lg *logBuf
		if n == "col-3" {
			tr.delay = func(r int) time.Duration {
				if r == 1 {
					return cutoff + 300*time.Millisecond
				}
				return 0
			}
			lg = &slowLog
		}
		cols = append(cols, env.startCollaborator(ctx, s.addr, n, tr, lg))
	}
	start := time.Now()
	_, hist, err := agg.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, aggLog.String())
	}
	for i, ch := range cols {
		if err := <-ch; err != nil {
			t.Errorf("%s: %v", names[i], err)
		}
	}
	t.Logf("2 rounds in %.2f s; round 1 closed after %.2f s (cutoff %s)", time.Since(start).Seconds(), hist[0].Seconds, cutoff)
	if len(hist) != 2 {
		t.Fatalf("%d rounds", len(hist))
	}
	if h := hist[0]; h.ClosedBy != ClosedCutoff || !slices.Equal(h.Participants, []string{"col-1", "col-2"}) || !slices.Equal(h.Stragglers, []string{"col-3"}) {
		t.Errorf("round 1: closed by %q, participants %v, stragglers %v", h.ClosedBy, h.Participants, h.Stragglers)
	}
	if h := hist[0]; h.Seconds < cutoff.Seconds() || h.Seconds > cutoff.Seconds()+5 {
		t.Errorf("round 1 closed after %.2f s, cutoff %s", h.Seconds, cutoff)
	}
	if h := hist[1]; h.ClosedBy != ClosedAll || len(h.Participants) != 3 {
		t.Errorf("round 2: closed by %q, participants %v (col-3 did not rejoin)", h.ClosedBy, h.Participants)
	}
	for _, want := range []string{"round 1 closes by straggler policy (cutoff) with 2 of 3 updates; stragglers: col-3",
		"late metrics from col-3 discarded: round 1 is closed (current round 2 of 2)"} {
		if !strings.Contains(aggLog.String(), want) {
			t.Errorf("aggregator log lacks %q:\n%s", want, aggLog.String())
		}
	}
	if !strings.Contains(slowLog.String(), "round closed without this collaborator's update; asking for the current round's tasks") {
		t.Errorf("col-3 did not move on after its late update:\n%s", slowLog.String())
	}
}

// TestLateUpdateDiscarded: an update for a closed round is refused with
// Aborted (the collaborator then asks for the current round) and logged.
func TestLateUpdateDiscarded(t *testing.T) {
	names := []string{"col-1", "col-2"}
	env := newFedEnv(t, names...)
	var aggLog logBuf
	w := resWeights()
	agg, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: w,
		Collaborators: names, Rounds: 2, RoundTimeout: time.Minute, Straggler: StragglerPolicy{Needed: 1},
		DoneGrace: 100 * time.Millisecond, Logger: aggLog.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	s := env.serveAt("127.0.0.1:0", agg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { _, _, err := agg.Run(ctx); runErr <- err }()
	cl1 := flv1.NewAggregatorClient(env.dial(s.addr, env.leaf(env.members["col-1"], mrGood), quiet()))
	cl2 := flv1.NewAggregatorClient(env.dial(s.addr, env.leaf(env.members["col-2"], mrGood), quiet()))
	hdr := func(name string, round int64) *flv1.Header {
		return &flv1.Header{Round: round, Sender: name, PlanHash: planHash, Kind: flv1.PayloadKind_PAYLOAD_KIND_UPDATE, NumExamples: 5}
	}
	if err := upload(ctx, cl1, w, hdr("col-1", 1), false); err != nil {
		t.Fatal(err)
	}
	// Round 1 closes with col-1's update (1 needed); wait for round 2.
	testenv.Eventually(t, time.Minute, "round 2 offered to col-1", func() bool {
		resp, err := cl1.GetTasks(ctx, &flv1.TaskRequest{Sender: "col-1", PlanHash: planHash})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Action == flv1.TaskAction_TASK_ACTION_RUN && resp.Round == 2
	})
	err = upload(ctx, cl2, w, hdr("col-2", 1), false)
	wantCode(t, "late update", err, codes.Aborted, "round 1 is closed (current round 2 of 2)")
	if want := "late update from col-2 discarded: round 1 is closed (current round 2 of 2)"; !strings.Contains(aggLog.String(), want) {
		t.Errorf("aggregator log lacks %q", want)
	}
	if err := upload(ctx, cl2, w, hdr("col-2", 2), false); err != nil {
		t.Fatalf("col-2's update for the current round: %v", err)
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}

// TestDeadCollaboratorPercentage: col-3 hangs in training and is then
// killed; with the percentage policy (2 of 3) no round waits for it and
// the federation completes; without a policy the round would wait for
// the timeout.
func TestDeadCollaboratorPercentage(t *testing.T) {
	names := []string{"col-1", "col-2", "col-3"}
	env := newFedEnv(t, names...)
	var aggLog logBuf
	agg, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: resWeights(),
		Collaborators: names, Rounds: 3, RoundTimeout: time.Minute, MinCollaborators: 1, RetryAfter: 20 * time.Millisecond,
		Straggler: StragglerPolicy{Needed: 2}, Logger: aggLog.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	s := env.serveAt("127.0.0.1:0", agg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	deadCtx, kill := context.WithCancel(ctx)
	started := make(chan int, 1)
	dead := env.startCollaborator(deadCtx, s.addr, "col-3", &detTrainer{seed: 3, block: true, started: started}, nil)
	<-started // col-3 is mid-round 1 …
	c1 := env.startCollaborator(ctx, s.addr, "col-1", &detTrainer{seed: 1}, nil)
	c2 := env.startCollaborator(ctx, s.addr, "col-2", &detTrainer{seed: 2, delay: func(int) time.Duration { return 100 * time.Millisecond }}, nil)
	kill() // … and dies.
	<-dead
	start := time.Now()
	_, hist, err := agg.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, aggLog.String())
	}
	for _, ch := range []<-chan error{c1, c2} {
		if err := <-ch; err != nil {
			t.Error(err)
		}
	}
	t.Logf("3 rounds without col-3 in %.2f s", time.Since(start).Seconds())
	for _, h := range hist {
		if h.ClosedBy != ClosedPercentage || !slices.Equal(h.Stragglers, []string{"col-3"}) || h.Seconds > 10 {
			t.Errorf("round %d: closed by %q after %.2f s, stragglers %v", h.Round, h.ClosedBy, h.Seconds, h.Stragglers)
		}
	}
}

// TestCollaboratorRestartsMidRound: a collaborator process that dies while
// training and is started again gets its round's task again and the
// federation completes with it.
func TestCollaboratorRestartsMidRound(t *testing.T) {
	names := []string{"col-1", "col-2"}
	env := newFedEnv(t, names...)
	var aggLog logBuf
	agg, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: resWeights(),
		Collaborators: names, Rounds: 2, RoundTimeout: time.Minute, RetryAfter: 20 * time.Millisecond, Logger: aggLog.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	s := env.serveAt("127.0.0.1:0", agg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c1 := env.startCollaborator(ctx, s.addr, "col-1", &detTrainer{seed: 1}, nil)
	firstCtx, kill := context.WithCancel(ctx)
	started := make(chan int, 1)
	first := env.startCollaborator(firstCtx, s.addr, "col-2", &detTrainer{seed: 2, block: true, started: started}, nil)
	runErr := make(chan error, 1)
	var hist []RoundSummary
	go func() {
		var err error
		_, hist, err = agg.Run(ctx)
		runErr <- err
	}()
	if r := <-started; r != 1 {
		t.Fatalf("col-2 started round %d", r)
	}
	kill()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("killed collaborator: %v", err)
	}
	restarted := make(chan int, 1)
	again := env.startCollaborator(ctx, s.addr, "col-2", &detTrainer{seed: 2, started: restarted}, nil)
	if r := <-restarted; r != 1 {
		t.Fatalf("restarted col-2 got round %d, want its round 1 task again", r)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v\n%s", err, aggLog.String())
	}
	for _, ch := range []<-chan error{c1, again} {
		if err := <-ch; err != nil {
			t.Error(err)
		}
	}
	for _, h := range hist {
		if h.ClosedBy != ClosedAll || len(h.Participants) != 2 {
			t.Errorf("round %d: closed by %s, participants %v", h.Round, h.ClosedBy, h.Participants)
		}
	}
}

// fedAdamRun runs a 3-round FedAdam federation of three deterministic
// collaborators. Each round's checkpoint is encoded into ckpts. If failAt >
// 0, Commit fails at that round (the aggregator dies between aggregation
// and persistence), and the aggregator is then restarted — on the same
// address, with a fresh RA-TLS certificate — from the last checkpoint
// (its strategy state cleared if dropState), while the collaborators keep
// running. It returns the final model and FedAdam's final state.
func fedAdamRun(t *testing.T, failAt int, dropState bool) (tensor.Weights, strategy.State, [][]byte, []RoundSummary) {
	t.Helper()
	names := []string{"col-1", "col-2", "col-3"}
	env := newFedEnv(t, names...)
	var ckpts [][]byte
	var aggLog logBuf
	cfg := func(s strategy.Strategy, resume *Checkpoint) AggregatorConfig {
		return AggregatorConfig{PlanHash: planHash, Strategy: s, Initial: resWeights(), Collaborators: names, Rounds: 3,
			RoundTimeout: time.Minute, RetryAfter: 20 * time.Millisecond, Resume: resume, Logger: aggLog.Logger(),
			Commit: func(_ context.Context, c *Checkpoint) error {
				if c.Round == failAt {
					return fmt.Errorf("simulated crash before round %d was durable", c.Round)
				}
				var b bytes.Buffer
				if err := EncodeCheckpoint(&b, c); err != nil {
					return err
				}
				ckpts = append(ckpts, b.Bytes())
				return nil
			}}
	}
	strat := strategy.NewFedAdam(strategy.Options{})
	agg, err := NewAggregator(cfg(strat, nil))
	if err != nil {
		t.Fatal(err)
	}
	s := env.serveAt("127.0.0.1:0", agg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var cols []<-chan error
	for i, n := range names {
		cols = append(cols, env.startCollaborator(ctx, s.addr, n, &detTrainer{seed: float32(i + 1)}, nil))
	}
	final, hist, err := agg.Run(ctx)
	if failAt > 0 {
		if err == nil || !strings.Contains(err.Error(), "simulated crash") {
			t.Fatalf("Run: %v, want the simulated crash", err)
		}
		s.stop()
		if len(ckpts) != failAt-1 {
			t.Fatalf("%d checkpoints before the crash at round %d", len(ckpts), failAt)
		}
		c, err := DecodeCheckpoint(bytes.NewReader(ckpts[len(ckpts)-1]))
		if err != nil {
			t.Fatal(err)
		}
		if dropState {
			c.Strategy = strategy.State{Strategy: "fedadam", Scalars: map[string]float64{"step": 0}}
		}
		failAt = 0
		strat = strategy.NewFedAdam(strategy.Options{})
		agg2, err := NewAggregator(cfg(strat, c))
		if err != nil {
			t.Fatal(err)
		}
		if agg2.NextRound() != c.Round+1 {
			t.Fatalf("resumed at round %d, want %d", agg2.NextRound(), c.Round+1)
		}
		env.serveAt(s.addr, agg2)
		if final, hist, err = agg2.Run(ctx); err != nil {
			t.Fatalf("resumed Run: %v\n%s", err, aggLog.String())
		}
	} else if err != nil {
		t.Fatal(err)
	}
	for i, ch := range cols {
		if err := <-ch; err != nil {
			t.Errorf("%s: %v", names[i], err)
		}
	}
	st, err := strat.State()
	if err != nil {
		t.Fatal(err)
	}
	return final, st, ckpts, hist
}

// TestResumeFedAdamMatchesUninterrupted: an aggregator that dies after
// aggregating round 2 but before it was durable is restarted from the
// round-1 checkpoint; the collaborators (still running) rejoin without
// help, round 2 is redone, and the final model and server-optimiser
// moments equal those of an uninterrupted run bit for bit. Resuming
// without the moments gives a different model: the check can fail.
func TestResumeFedAdamMatchesUninterrupted(t *testing.T) {
	want, wantState, ckpts, wantHist := fedAdamRun(t, 0, false)
	if len(ckpts) != 3 || len(wantHist) != 3 {
		t.Fatalf("%d checkpoints, %d summaries", len(ckpts), len(wantHist))
	}
	got, gotState, _, gotHist := fedAdamRun(t, 2, false)
	if !weightsEqual(want, got) {
		t.Errorf("resumed final model differs from the uninterrupted one")
	}
	if !weightsEqual(wantState.Tensors, gotState.Tensors) || wantState.Scalars["step"] != 3 || gotState.Scalars["step"] != 3 {
		t.Errorf("resumed FedAdam state differs: step %v vs %v", gotState.Scalars["step"], wantState.Scalars["step"])
	}
	if len(gotHist) != 3 {
		t.Fatalf("resumed history has %d rounds", len(gotHist))
	}
	for i, h := range gotHist {
		if h.Round != i+1 || !slices.Equal(h.Participants, wantHist[i].Participants) {
			t.Errorf("summary %d: round %d participants %v", i, h.Round, h.Participants)
		}
	}
	// The last checkpoint holds the final model and moments.
	last, err := DecodeCheckpoint(bytes.NewReader(ckpts[2]))
	if err != nil {
		t.Fatal(err)
	}
	if last.Round != 3 || !weightsEqual(last.Global, want) || !weightsEqual(last.Strategy.Tensors, wantState.Tensors) {
		t.Error("the last checkpoint does not hold the final model and moments")
	}
	lost, _, _, _ := fedAdamRun(t, 2, true)
	if weightsEqual(want, lost) {
		t.Error("resuming without the FedAdam moments gave the same model: the test cannot tell")
	}
}

// TestResumeAfterLastRound: an aggregator restarted after its last round
// was committed answers DONE at once and returns the checkpoint's model.
func TestResumeAfterLastRound(t *testing.T) {
	w := resWeights()
	c := &Checkpoint{PlanHash: planHash, Round: 2, Rounds: 2, Global: w, Strategy: strategy.State{Strategy: "fedavg"},
		History: []RoundSummary{{Round: 1, EvalLoss: math.NaN()}, {Round: 2, EvalLoss: 0.5}}}
	env := newFedEnv(t, "col-1")
	agg, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: resWeights(),
		Collaborators: []string{"col-1"}, Rounds: 2, Resume: c, DoneGrace: 5 * time.Second, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	s := env.serveAt("127.0.0.1:0", agg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	col := env.startCollaborator(ctx, s.addr, "col-1", &detTrainer{seed: 1, block: true}, nil)
	final, hist, err := agg.Run(ctx)
	if err != nil || len(hist) != 2 || !weightsEqual(final, w) {
		t.Fatalf("Run: %v, %d summaries", err, len(hist))
	}
	if err := <-col; err != nil {
		t.Fatalf("collaborator: %v", err)
	}
}

func TestResumeRefusals(t *testing.T) {
	good := func() *Checkpoint {
		return &Checkpoint{PlanHash: planHash, Round: 1, Rounds: 3, Global: resWeights(), Strategy: strategy.State{Strategy: "fedavg"},
			History: []RoundSummary{{Round: 1}}}
	}
	cases := map[string]func(c *Checkpoint){
		"checkpoint of plan 3fa2c4d1…":             func(c *Checkpoint) { c.PlanHash = otherPlan },
		"checkpoint of a 4-round federation":       func(c *Checkpoint) { c.Rounds = 4 },
		"does not fit the initial model":           func(c *Checkpoint) { c.Global = testWeights([]int{4, 3}) },
		`restoring fedavg from a "fedadam"`:        func(c *Checkpoint) { c.Strategy.Strategy = "fedadam" },
		"1 round summaries for 2 completed":        func(c *Checkpoint) { c.Round = 2 },
		"global model: tensor \"a/w\": non-finite": func(c *Checkpoint) { c.Global[0].Data[1] = float32(math.Inf(1)) },
	}
	for want, mutate := range cases {
		c := good()
		mutate(c)
		_, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: resWeights(),
			Collaborators: []string{"col-1"}, Rounds: 3, Resume: c, Logger: quiet()})
		if err == nil {
			t.Errorf("%s: accepted", want)
			continue
		}
		oneLine(t, "resume refusal", err.Error(), want)
	}
	if _, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: resWeights(),
		Collaborators: []string{"col-1"}, Rounds: 3, Resume: good(), Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
}

func weightsEqual(a, b tensor.Weights) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !slices.Equal(a[i].Shape, b[i].Shape) || len(a[i].Data) != len(b[i].Data) {
			return false
		}
		for j := range a[i].Data {
			if math.Float32bits(a[i].Data[j]) != math.Float32bits(b[i].Data[j]) {
				return false
			}
		}
	}
	return true
}
