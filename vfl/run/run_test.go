package run

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vflv1 "github.com/teeml/teeml/api/proto/teeml/vfl/v1"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/ml/safetensors"
	partypkg "github.com/teeml/teeml/party"
	"github.com/teeml/teeml/party/partysim"
	"github.com/teeml/teeml/vfl/bridge"
	"github.com/teeml/teeml/vfl/split"
)

func setup(t *testing.T, ds string, kind split.Kind, epochs int) string {
	t.Helper()
	plan, err := SetupSimulated(SetupOptions{Dir: t.TempDir(), Dataset: ds, Kind: kind, Epochs: epochs, CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestInProcessBreastCancer(t *testing.T) {
	for _, kind := range []split.Kind{split.KindLR, split.KindWideDeep} {
		t.Run(string(kind), func(t *testing.T) {
			plan := setup(t, "breast_cancer", kind, 10)
			l, f, err := RunInProcess(ctxT(t), plan, t.TempDir(), testlog.Discard())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %+v", kind, *l.Metrics)
			if l.Applied != l.Iterations || f.Applied != f.Iterations || l.Iterations != f.Iterations || l.Iterations == 0 {
				t.Fatalf("applied leader %d follower %d of %d/%d", l.Applied, f.Applied, l.Iterations, f.Iterations)
			}
			if l.Metrics.AUC < 0.97 {
				t.Fatalf("AUC %.4f < 0.97", l.Metrics.AUC)
			}
		})
	}
}

// twoParties runs follower and leader in this process over real RA-TLS
// gRPC on loopback; wrap, when set, wraps the leader's streams (the
// duplicating proxy).
func twoParties(t *testing.T, plan, followerPlan string, wrap func(Connector) Connector) (*Result, *Result, error, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	state := t.TempDir()
	addr := make(chan string, 1)
	var fres *Result
	var ferr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fres, ferr = Run(ctx, Options{Plan: followerPlan, Role: RoleFollower, Listen: "127.0.0.1:0", StateDir: filepath.Join(state, "f"),
			Logger: dbgLog("F"), Ready: func(a string) { addr <- a }, psiRand: detPSIRand})
		if ferr != nil {
			addr <- ""
		}
	}()
	a := <-addr
	if a == "" {
		wg.Wait()
		return nil, nil, nil, ferr
	}
	o := Options{Plan: plan, Role: RoleLeader, Peer: a, StateDir: filepath.Join(state, "l"), Logger: dbgLog("L"), psiRand: detPSIRand}
	if wrap != nil {
		o.wrap = wrap
	}
	lres, lerr := Run(ctx, o)
	if lerr != nil {
		cancel()
	}
	wg.Wait()
	return lres, fres, lerr, ferr
}

func TestRATLSMatchesInProcessExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("trains twice")
	}
	plan := setup(t, "breast_cancer", split.KindWideDeep, 3)
	base, _, err := runInProcess(ctxT(t), plan, t.TempDir(), testlog.Discard(), detPSIRand)
	if err != nil {
		t.Fatal(err)
	}
	l, f, lerr, ferr := twoParties(t, plan, plan, nil)
	if lerr != nil || ferr != nil {
		t.Fatalf("leader: %v; follower: %v", lerr, ferr)
	}
	sameModel(t, base.Model, l.Model)
	if *l.Metrics != *base.Metrics {
		t.Fatalf("over RA-TLS %+v, in process %+v", *l.Metrics, *base.Metrics)
	}
	for _, c := range []struct {
		res        *Result
		own, other string
	}{{f, RoleFollower, RoleLeader}, {l, RoleLeader, RoleFollower}} {
		card, err := os.ReadFile(c.res.Card)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`"plan_hash"`, `"peer_measurement": {`, `"mr_enclave": "` + simMR(c.other),
			`"mr_enclave": "` + simMR(c.own), `"simulated": true`, `"applied_updates": ` + itoa(c.res.Applied),
			`"method": "ecdh-psi ristretto255"`, `"psi_session_id": "`, `"intersection": `} {
			if !strings.Contains(string(card), want) {
				t.Errorf("%s card lacks %s:\n%s", c.own, want, card)
			}
		}
	}
}

// dupConnector wraps every stream so each frame is sent twice, the copy
// after a random delay (0-2 ms), as a resending proxy would.
type dupConnector struct {
	Connector
	sent *int64
	mu   sync.Mutex
}

type dupStream struct {
	bridge.Stream
	mu  sync.Mutex
	rng *rand.Rand
	c   *dupConnector
}

func (d *dupStream) Send(f *vflv1.Frame) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.Stream.Send(f); err != nil {
		return err
	}
	if f.GetHello() != nil {
		return nil // a second hello is a protocol error by design
	}
	time.Sleep(time.Duration(d.rng.IntN(2000)) * time.Microsecond)
	d.c.mu.Lock()
	*d.c.sent++
	d.c.mu.Unlock()
	return d.Stream.Send(f)
}

func (d *dupConnector) Connect(ctx context.Context) (*bridge.Conn, error) {
	c, err := d.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return bridge.WrapConn(c, &dupStream{Stream: c.Stream, rng: rand.New(rand.NewPCG(1, 2)), c: d}), nil
}

func TestDuplicatedAndDelayedFramesDoNotChangeTheResult(t *testing.T) {
	if testing.Short() {
		t.Skip("trains twice")
	}
	plan := setup(t, "breast_cancer", split.KindWideDeep, 2)
	base, _, err := runInProcess(ctxT(t), plan, t.TempDir(), testlog.Discard(), detPSIRand)
	if err != nil {
		t.Fatal(err)
	}
	var dups int64
	l, _, lerr, ferr := twoParties(t, plan, plan, func(c Connector) Connector { return &dupConnector{Connector: c, sent: &dups} })
	if lerr != nil || ferr != nil {
		t.Fatalf("leader: %v; follower: %v", lerr, ferr)
	}
	if dups < l.Iterations {
		t.Fatalf("proxy duplicated only %d frames", dups)
	}
	sameModel(t, base.Model, l.Model)
	if *l.Metrics != *base.Metrics {
		t.Fatalf("with duplicates %+v, without %+v", *l.Metrics, *base.Metrics)
	}
}

// breakingConnector breaks stream number at (1-based) after n frames
// received.
type breakingConnector struct {
	Connector
	n, at int
	calls int
}

func (b *breakingConnector) unwrap() Connector { return b.Connector }

type breakingStream struct {
	bridge.Stream
	left  int
	close func()
}

func (b *breakingStream) Recv() (*vflv1.Frame, error) {
	if b.left <= 0 {
		b.close()
		return nil, errors.New("test: stream broken")
	}
	b.left--
	return b.Stream.Recv()
}

func (b *breakingConnector) Connect(ctx context.Context) (*bridge.Conn, error) {
	c, err := b.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if b.calls++; b.calls != b.at {
		return c, nil
	}
	return bridge.WrapConn(c, &breakingStream{Stream: c.Stream, left: b.n, close: c.Close}), nil
}

func TestBrokenStreamResumesFromCheckpointExactly(t *testing.T) {
	plan := setup(t, "breast_cancer", split.KindWideDeep, 3)
	base, _, err := runInProcess(ctxT(t), plan, t.TempDir(), testlog.Discard(), detPSIRand)
	if err != nil {
		t.Fatal(err)
	}
	lc, fc := PipeConnectors()
	// The first stream only finds that neither side is aligned and closes
	// for the PSI; the second trains. About 4 frames per iteration each
	// way plus heartbeats: break it in iteration ~25, past the checkpoints
	// at 10 and 20.
	lc = &breakingConnector{Connector: lc, n: 100, at: 2}
	state := t.TempDir()
	ctx := ctxT(t)
	var fres *Result
	var ferr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		fres, ferr = Run(ctx, Options{Plan: plan, Role: RoleFollower, StateDir: state + "/f", Connector: fc, Logger: testlog.Discard(), psiRand: detPSIRand})
	}()
	lres, lerr := Run(ctx, Options{Plan: plan, Role: RoleLeader, StateDir: state + "/l", Connector: lc, Logger: testlog.Discard(), psiRand: detPSIRand})
	<-done
	if lerr != nil || ferr != nil {
		t.Fatalf("leader: %v; follower: %v", lerr, ferr)
	}
	if lres.Resumes != 1 || fres.Resumes != 1 {
		t.Fatalf("resumes leader %d follower %d, want 1 each", lres.Resumes, fres.Resumes)
	}
	if lres.Applied != lres.Iterations || fres.Applied != fres.Iterations {
		t.Fatalf("applied %d/%d of %d", lres.Applied, fres.Applied, lres.Iterations)
	}
	sameModel(t, base.Model, lres.Model)
	_, f0, _, _ := base.Model, "", 0, 0
	_ = f0
}

func TestRefusals(t *testing.T) {
	plan := setup(t, "breast_cancer", split.KindLR, 1)
	// A follower whose enclave measurement is not in the leader's list.
	bad := copyDir(t, filepath.Dir(plan))
	pf := partypkg.ConfigFile(bad, RoleFollower)
	b, _ := os.ReadFile(pf)
	mr := simMR(RoleFollower)
	os.WriteFile(pf, []byte(strings.Replace(string(b), mr, strings.Repeat("ab", 32), 1)), 0o644)
	_, _, lerr, _ := twoParties(t, plan, filepath.Join(bad, "plan.yaml"), nil)
	if lerr == nil || !strings.Contains(lerr.Error(), "mr_enclave") || !strings.Contains(lerr.Error(), "(policy)") || strings.Contains(lerr.Error(), "\n") {
		t.Fatalf("wrong measurement: %v", lerr)
	}
	t.Logf("wrong measurement: %v", lerr)
	// A follower with another plan (different seed → different hash).
	other := copyDir(t, filepath.Dir(plan))
	pb, _ := os.ReadFile(filepath.Join(other, "plan.yaml"))
	os.WriteFile(filepath.Join(other, "plan.yaml"), []byte(strings.Replace(string(pb), "seed: 7", "seed: 8", 1)), 0o644)
	_, _, lerr, ferr := twoParties(t, plan, filepath.Join(other, "plan.yaml"), nil)
	if lerr == nil || !strings.Contains(lerr.Error(), "plan hash mismatch") || strings.Contains(lerr.Error(), "\n") {
		t.Fatalf("plan mismatch: leader %v", lerr)
	}
	// The follower refuses too, unless the leader's exit stopped it first.
	if ferr == nil || !(errors.Is(ferr, context.Canceled) || strings.Contains(ferr.Error(), "plan hash mismatch")) {
		t.Fatalf("plan mismatch: follower %v", ferr)
	}
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func sameModel(t *testing.T, a, b string) {
	t.Helper()
	wa, _, err := safetensors.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	wb, _, err := safetensors.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(wa) != len(wb) {
		t.Fatalf("%d vs %d tensors", len(wa), len(wb))
	}
	for i := range wa {
		for j := range wa[i].Data {
			if wa[i].Data[j] != wb[i].Data[j] {
				t.Fatalf("%s[%d]: %v vs %v", wa[i].Name, j, wa[i].Data[j], wb[i].Data[j])
			}
		}
	}
}

func hexOf(b [32]byte) string { return hexEncode(b[:]) }

func itoa(n int64) string { return strconvItoa(n) }

// TestPredictReproducesTheLeadersEvaluation: joint inference over the
// bridge with the exported halves, on the test IDs, gives exactly the
// probabilities the leader computed during training's evaluation.
func TestPredictReproducesTheLeadersEvaluation(t *testing.T) {
	plan := setup(t, "breast_cancer", split.KindWideDeep, 2)
	state := t.TempDir()
	l, _, err := RunInProcess(ctxT(t), plan, state, testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ids := filepath.Join(t.TempDir(), "ids.txt")
	os.WriteFile(ids, []byte(strings.Join(l.TestIDs, "\n")+"\n"), 0o644)
	lc, fc := PipeConnectors()
	ctx := ctxT(t)
	done := make(chan error, 1)
	go func() {
		_, err := Predict(ctx, PredictOptions{Options: Options{Plan: plan, Role: RoleFollower, StateDir: state + "/follower", Connector: fc, Logger: testlog.Discard()}})
		done <- err
	}()
	out := filepath.Join(t.TempDir(), "p.csv")
	res, err := Predict(ctx, PredictOptions{Options: Options{Plan: plan, Role: RoleLeader, StateDir: state + "/leader", Connector: lc, Logger: testlog.Discard()}, IDs: ids, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The prediction's fresh PSI orders the rows differently, so the sums
	// behind the metrics may differ in the last bits.
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-12*max(1, math.Abs(b)) }
	if m, w := res.Metrics, l.Metrics; res.Rows != len(l.TestIDs) || m.N != w.N || !near(m.AUC, w.AUC) || !near(m.Accuracy, w.Accuracy) || !near(m.LogLoss, w.LogLoss) {
		t.Fatalf("predict: %d rows %+v; training evaluation: %d rows %+v", res.Rows, *res.Metrics, len(l.TestIDs), *l.Metrics)
	}
	b, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if lines[0] != "id,probability,label" || len(lines) != len(l.TestIDs)+1 {
		t.Fatalf("csv:\n%s", b)
	}
	want := map[string]float64{}
	for i, id := range l.TestIDs {
		want[id] = l.Predictions[i]
	}
	for _, line := range lines[1:] {
		f := strings.Split(line, ",")
		p, _ := strconv.ParseFloat(f[1], 64)
		if math.Abs(p-want[f[0]]) > 1e-6 {
			t.Fatalf("%s: predicted %v, evaluation %v", f[0], p, want[f[0]])
		}
	}
}

// TestLeaderStartedFirstKeepsDialling: the leader may start before the
// follower listens; it retries until the follower is up and then trains
// to the end over the streams of later dial attempts.
func TestLeaderStartedFirstKeepsDialling(t *testing.T) {
	plan := setup(t, "breast_cancer", split.KindLR, 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx := ctxT(t)
	state := t.TempDir()
	lerr := make(chan error, 1)
	var llog testlog.Buffer
	go func() {
		_, err := Run(ctx, Options{Plan: plan, Role: RoleLeader, Peer: addr, StateDir: state + "/l", Logger: llog.Logger()})
		lerr <- err
	}()
	// The follower starts only after the leader's dial failed twice.
	testenv.Eventually(t, time.Minute, "two refused leader dials", func() bool {
		return strings.Count(llog.String(), "bridge channel: retrying") >= 2
	})
	if _, err := Run(ctx, Options{Plan: plan, Role: RoleFollower, Listen: addr, StateDir: state + "/f", Logger: testlog.Discard()}); err != nil {
		t.Fatalf("follower: %v", err)
	}
	if err := <-lerr; err != nil {
		t.Fatalf("leader: %v", err)
	}
}

// nanConnector corrupts the follower's act1_f of iteration 5 into NaNs.
type nanConnector struct{ Connector }

func (n nanConnector) unwrap() Connector { return n.Connector }

type nanStream struct{ bridge.Stream }

func (n nanStream) Send(f *vflv1.Frame) error {
	if d := f.GetData(); d != nil && d.GetIterId() == 5 {
		ten, _ := bridge.EncodeTensor([]int{32, 1}, nanSlice(32))
		f = &vflv1.Frame{Kind: &vflv1.Frame_Data{Data: &vflv1.Data{IterId: 5, Name: d.GetName(), Tensor: ten}}}
	}
	return n.Stream.Send(f)
}

func nanSlice(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return v
}

func (n nanConnector) Connect(ctx context.Context) (*bridge.Conn, error) {
	c, err := n.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return bridge.WrapConn(c, nanStream{c.Stream}), nil
}

// TestFailureAbortsThePeerWithTheReason: when one side cannot go on (here
// the leader receives NaN activations), the other stops at once with the
// same reason instead of waiting to reconnect.
func TestFailureAbortsThePeerWithTheReason(t *testing.T) {
	plan := setup(t, "breast_cancer", split.KindLR, 1)
	lc, fc := PipeConnectors()
	state := t.TempDir()
	ctx := ctxT(t)
	start := time.Now()
	ferr := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{Plan: plan, Role: RoleFollower, StateDir: state + "/f", Connector: nanConnector{fc}, Logger: testlog.Discard()})
		ferr <- err
	}()
	_, lerr := Run(ctx, Options{Plan: plan, Role: RoleLeader, StateDir: state + "/l", Connector: lc, Logger: testlog.Discard()})
	if lerr == nil || !strings.Contains(lerr.Error(), "act1_f[0] is NaN") {
		t.Fatalf("leader: %v", lerr)
	}
	err := <-ferr
	var abort *bridge.AbortError
	if !errors.As(err, &abort) || !strings.Contains(abort.Reason, "act1_f[0] is NaN") {
		t.Fatalf("follower: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("follower took %s to stop", d)
	}
}

// detPSIRand makes the PSI sessions of two runs identical (same nonces and
// secrets, so the same session id, aligned order and batch order): runs
// over different transports can then be compared bit for bit.
func detPSIRand(role string) io.Reader {
	return rand.NewChaCha8(sha256.Sum256([]byte("teeml vfl test psi " + role)))
}

func dbgLog(who string) *slog.Logger {
	if os.Getenv("VFL_DEBUG") == "" {
		return testlog.Discard()
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("who", who)
}

// TestDifferentAlignmentWithCheckpointsIsRefused: checkpoints belong to the
// rows of one PSI session; if one side lost its stored alignment, a fresh
// PSI would reorder the rows, so both sides refuse with one line instead.
func TestDifferentAlignmentWithCheckpointsIsRefused(t *testing.T) {
	plan := setup(t, "breast_cancer", split.KindLR, 1)
	state := t.TempDir()
	if _, _, err := RunInProcess(ctxT(t), plan, state, testlog.Discard()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(state, "follower", "psi", "session.json")); err != nil {
		t.Fatal(err)
	}
	_, _, err := RunInProcess(ctxT(t), plan, state, testlog.Discard())
	if err == nil || !strings.Contains(err.Error(), "the stored alignments differ (PSI session here ") ||
		!strings.Contains(err.Error(), "checkpoints exist") {
		t.Fatalf("want a refusal naming the differing PSI sessions, got %v", err)
	}
	for _, line := range strings.Split(err.Error(), "\n") { // errors.Join of both sides
		if !strings.Contains(line, "stored alignments differ") && !strings.Contains(line, "context canceled") {
			t.Fatalf("unexpected line %q in %v", line, err)
		}
	}
}

// simMR is the simulated MRENCLAVE (hex) of role.
func simMR(role string) string {
	mr, _ := partysim.MeasurementHex(role)
	return mr
}
