package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/teeml/teeml/fl/privacy"
	"github.com/teeml/teeml/fl/scheduler"
	"github.com/teeml/teeml/fl/secagg"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
)

// saTrainer returns global + a deterministic update (different per
// collaborator and round, some coordinates beyond the clip) and records
// what it returned, so the test can compute the plain fixed-point sum.
type saTrainer struct {
	id  int
	rec *saRecord
}

type saInput struct {
	global, local tensor.Weights
	n             int
}

type saRecord struct {
	mu sync.Mutex
	in map[int]map[string]saInput // round → collaborator → input
}

func (t *saTrainer) Train(ctx context.Context, g tensor.Weights, cfg map[string]float64) (tensor.Weights, int, map[string]float64, error) {
	r := int(cfg[strategy.KeyRound])
	w := g.Clone()
	k := 0
	for _, x := range w {
		for j := range x.Data {
			x.Data[j] += float32(((t.id+1)*(k+3)*(r+5))%97-48) / 61 // up to ±0.79, some beyond clip 0.5
			k++
		}
	}
	n := 10 + 7*t.id
	name := fmt.Sprintf("col-%d", t.id+1)
	t.rec.mu.Lock()
	if t.rec.in[r] == nil {
		t.rec.in[r] = map[string]saInput{}
	}
	t.rec.in[r][name] = saInput{global: g.Clone(), local: w.Clone(), n: n}
	t.rec.mu.Unlock()
	return w, n, map[string]float64{"loss": 0.5}, nil
}

func (t *saTrainer) Evaluate(context.Context, tensor.Weights) (int, float64, map[string]float64, error) {
	return 10, 1, map[string]float64{"accuracy": 0.5}, nil
}

// plainSum is the sum, mod 2³², of the named collaborators' quantised
// inputs computed without any masking: what FedAvg of the fixed-point
// updates adds up. With clipNorm > 0 each update is first clipped to that
// L2 norm as DP-FedAvg asks the collaborators to (privacy.ClientSide):
// the unmasked sum without the members' noise.
func (rec *saRecord) plainSum(t *testing.T, p secagg.Params, r int, names []string, clipNorm, clip float64) []uint32 {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	sum := make([]uint32, p.Len)
	for _, n := range names {
		in, ok := rec.in[r][n]
		if !ok {
			t.Fatalf("round %d: %s did not train", r, n)
		}
		local := in.local
		if clipNorm > 0 {
			up, _, err := privacy.ClientSide(strategy.Config{privacy.KeyClipNorm: clipNorm}, in.global, in.local, nil)
			if err != nil {
				t.Fatal(err)
			}
			local = up
		}
		x, err := scheduler.ClientInput(p, in.global, local, in.n, clip)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range x {
			sum[i] += v
		}
	}
	return sum
}

func saModel() tensor.Weights {
	return tensor.Weights{
		{Name: "w", Shape: []int{3, 4}, Data: []float32{.1, .2, .3, .4, .5, .6, .7, .8, .9, 1, 1.1, 1.2}},
		{Name: "b", Shape: []int{4}, Data: []float32{-.1, -.2, -.3, -.4}},
	}
}

type saFed struct {
	t      *testing.T
	env    *fedEnv
	names  []string
	rec    *saRecord
	agg    *Aggregator
	addr   string
	aggLog logBuf

	mu      sync.Mutex
	sums    map[int][]uint32
	globals map[int]tensor.Weights
}

func newSAFed(t *testing.T, n, rounds int, sa scheduler.SecAgg, roundTimeout time.Duration, mod ...func(*saFed, *AggregatorConfig)) *saFed {
	t.Helper()
	f := &saFed{t: t, rec: &saRecord{in: map[int]map[string]saInput{}}, sums: map[int][]uint32{}, globals: map[int]tensor.Weights{}}
	for i := range n {
		f.names = append(f.names, fmt.Sprintf("col-%d", i+1))
	}
	f.env = newFedEnv(t, f.names...)
	sa.OnSum = func(r int, sum []uint32) {
		f.mu.Lock()
		f.sums[r] = sum
		f.mu.Unlock()
	}
	cfg := AggregatorConfig{
		PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: saModel(),
		Collaborators: f.names, Rounds: rounds, RoundTimeout: roundTimeout, RetryAfter: 50 * time.Millisecond,
		StatusEvery: time.Second, Logger: f.aggLog.Logger(), SecAgg: &sa, DoneGrace: 3 * time.Second,
		Commit: func(_ context.Context, c *Checkpoint) error {
			f.mu.Lock()
			f.globals[c.Round] = c.Global.Clone()
			f.mu.Unlock()
			return nil
		},
	}
	for _, m := range mod {
		m(f, &cfg)
	}
	var err error
	if f.agg, err = NewAggregator(cfg); err != nil {
		t.Fatal(err)
	}
	f.addr = f.env.serve(f.agg, f.aggLog.Logger())
	return f
}

// run starts every collaborator (set, when not nil, adjusts collaborator i
// and may cancel that collaborator's own context to kill it), runs the
// aggregator to the end — a failed federation fails the test — and returns
// the round summaries and each collaborator's error.
func (f *saFed) run(ctx context.Context, set func(i int, c *Collaborator, kill context.CancelFunc)) ([]RoundSummary, []error) {
	f.t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(f.names))
	for i := range f.names {
		c := f.collaborator(i)
		cctx, kill := context.WithCancel(ctx)
		defer kill()
		if set != nil {
			set(i, c, kill)
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.Run(cctx) }()
	}
	_, sums, err := f.agg.Run(ctx)
	if err != nil {
		f.t.Fatalf("federation: %v\n%s", err, f.aggLog.String())
	}
	wg.Wait()
	return sums, errs
}

// runKilledAfterMasked runs the federation with the collaborators from index
// live on killed right after their masked upload of round r is acknowledged
// (they never reveal). The first live must end without error, the killed
// with context.Canceled.
func (f *saFed) runKilledAfterMasked(t *testing.T, ctx context.Context, live int, r int64) []RoundSummary {
	t.Helper()
	sums, errs := f.run(ctx, func(i int, c *Collaborator, kill context.CancelFunc) {
		if i >= live {
			c.afterMasked = func(round int64) {
				if round == r {
					kill()
				}
			}
		}
	})
	for i, err := range errs {
		if i < live && err != nil {
			t.Errorf("%s: %v", f.names[i], err)
		}
		if i >= live && !errors.Is(err, context.Canceled) {
			t.Errorf("%s (killed): %v, want context.Canceled", f.names[i], err)
		}
	}
	return sums
}

func (f *saFed) collaborator(i int) *Collaborator {
	f.t.Helper()
	name := f.names[i]
	m := f.env.members[name]
	c, err := NewCollaborator(CollaboratorConfig{Name: name, PlanHash: planHash,
		Conn:    f.env.dial(f.addr, f.env.leaf(m, mrGood), quiet()),
		Trainer: &saTrainer{id: i, rec: f.rec}, MinBackoff: 20 * time.Millisecond, LongPoll: 5 * time.Second,
		GiveUpAfter: 30 * time.Second, Logger: quiet(),
		SecAgg: &SecAggIdentity{Key: m.Key, Cert: m.Issued.Cert, Verifier: f.env.fe.Fed}})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// check compares round r's unmasked sum with the plain sum of names'
// inputs bit for bit, and the committed model with FedAvg of the one
// result built from that sum.
func (f *saFed) check(r int, sa scheduler.SecAgg, members, survivors []string) {
	f.t.Helper()
	f.mu.Lock()
	got, global := f.sums[r], f.globals[r]
	f.mu.Unlock()
	p := secagg.Params{N: len(members), Threshold: secagg.Threshold(len(members), sa.Dropout), Len: saModel().NumParams() + 1, FracBits: sa.FracBits}
	want := f.rec.plainSum(f.t, p, r, survivors, 0, sa.Clip)
	if !slices.Equal(got, want) {
		f.t.Fatalf("round %d: unmasked sum differs from the plain fixed-point sum of %v:\n got %v\nwant %v", r, survivors, got, want)
	}
	f.rec.mu.Lock()
	prev := f.rec.in[r][survivors[0]].global
	f.rec.mu.Unlock()
	res, err := scheduler.MeanFromSum(p, prev, want, len(survivors))
	if err != nil {
		f.t.Fatal(err)
	}
	next, _, err := (&strategy.FedAvg{}).AggregateFit(r, prev, []strategy.FitResult{res})
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range next {
		if !slices.Equal(next[i].Data, global[i].Data) {
			f.t.Fatalf("round %d: committed model tensor %s differs from FedAvg of the plain sum", r, next[i].Name)
		}
	}
	wantExamples := 0
	for _, n := range survivors {
		f.rec.mu.Lock()
		wantExamples += f.rec.in[r][n].n
		f.rec.mu.Unlock()
	}
	if res.NumExamples != wantExamples {
		f.t.Fatalf("round %d: %d examples in the sum, want %d", r, res.NumExamples, wantExamples)
	}
}

// TestSecAggFederation: six collaborators over RA-TLS, secure aggregation
// with dropout tolerance 1/3. Round 1: everyone; the unmasked sum equals
// the plain fixed-point sum bit for bit. Round 2: col-5 and col-6 are
// killed right after their masked upload was acknowledged (their contexts
// end, so they never reveal): the round still completes from the four
// survivors' reveals, with all six inputs in the sum. Round 3: the four
// alive advertise; the phase timeout fixes them as the members, and the
// round completes with their sum.
func TestSecAggFederation(t *testing.T) {
	sa := scheduler.SecAgg{Dropout: 1.0 / 3, FracBits: 16, Clip: 0.5, PhaseTimeout: 2 * time.Second}
	f := newSAFed(t, 6, 3, sa, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sums := f.runKilledAfterMasked(t, ctx, 4, 2)
	if len(sums) != 3 {
		t.Fatalf("%d rounds, want 3", len(sums))
	}
	f.check(1, sa, f.names, f.names)
	f.check(2, sa, f.names, f.names) // the killed uploaded: their inputs are in
	f.check(3, sa, f.names[:4], f.names[:4])
	if !strings.Contains(f.aggLog.String(), "secure aggregation: sum unmasked") {
		t.Error("aggregator did not log the unmasking")
	}
}

// TestSecAggMalformedReveal: one of four collaborators sends a reveal
// that does not decode. The aggregator refuses it in a one-line error
// naming the sender, and the round completes from the three others
// (threshold 3).
func TestSecAggMalformedReveal(t *testing.T) {
	sa := scheduler.SecAgg{Dropout: 0.25, FracBits: 16, Clip: 0.5, PhaseTimeout: 2 * time.Second}
	f := newSAFed(t, 4, 1, sa, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, errs := f.run(ctx, func(i int, c *Collaborator, _ context.CancelFunc) {
		if i == 3 {
			c.corruptReveal = func(b []byte) []byte { return b[:len(b)-1] }
		}
	})
	for i := range 3 {
		if errs[i] != nil {
			t.Errorf("%s: %v", f.names[i], errs[i])
		}
	}
	var ref *RefusedError
	if !errors.As(errs[3], &ref) || ref.Code != codes.InvalidArgument {
		t.Fatalf("col-4: %v, want an InvalidArgument refusal", errs[3])
	}
	oneLine(t, "malformed reveal refusal", errs[3].Error(), `reveal from "col-4" refused`, "bytes, want")
	if !strings.Contains(f.aggLog.String(), `reveal from \"col-4\" refused`) {
		t.Errorf("aggregator did not log the refusal:\n%s", f.aggLog.String())
	}
	f.check(1, sa, f.names, f.names)
}

// killOnUpdate calls kill on the first update of round.
type killOnUpdate struct {
	scheduler.NopObserver
	round int
	once  sync.Once
	kill  func()
}

func (k *killOnUpdate) UpdateReceived(e UpdateEvent) {
	if e.Round == k.round {
		k.once.Do(k.kill)
	}
}

// TestSecAggResumeMidRound: the aggregator dies in round 2 after the
// shares were exchanged and a masked update arrived. Restarted on the same
// address from the round-1 checkpoint, it redoes round 2 from the start:
// the collaborators (still running) draw fresh keys, exchange fresh shares
// and upload again, and the unmasked sum equals the plain sum bit for bit.
func TestSecAggResumeMidRound(t *testing.T) {
	sa := scheduler.SecAgg{Dropout: 0.34, FracBits: 16, Clip: 0.5, PhaseTimeout: 5 * time.Second}
	f := &saFed{t: t, rec: &saRecord{in: map[int]map[string]saInput{}}, sums: map[int][]uint32{}, globals: map[int]tensor.Weights{},
		names: []string{"col-1", "col-2", "col-3"}}
	f.env = newFedEnv(t, f.names...)
	sa.OnSum = func(r int, sum []uint32) {
		f.mu.Lock()
		f.sums[r] = sum
		f.mu.Unlock()
	}
	var ckpt []byte
	aggCtx, kill := context.WithCancel(context.Background())
	defer kill()
	cfg := func(resume *Checkpoint, obs Observer) AggregatorConfig {
		return AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: saModel(), Collaborators: f.names, Rounds: 2,
			RoundTimeout: time.Minute, RetryAfter: 20 * time.Millisecond, Resume: resume, Logger: f.aggLog.Logger(), SecAgg: &sa,
			DoneGrace: 5 * time.Second, Observer: obs,
			Commit: func(_ context.Context, c *Checkpoint) error {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.globals[c.Round] = c.Global.Clone()
				var b bytes.Buffer
				if err := EncodeCheckpoint(&b, c); err != nil {
					return err
				}
				ckpt = b.Bytes()
				return nil
			}}
	}
	agg, err := NewAggregator(cfg(nil, &killOnUpdate{round: 2, kill: kill}))
	if err != nil {
		t.Fatal(err)
	}
	s := f.env.serveAt("127.0.0.1:0", agg)
	f.agg, f.addr = agg, s.addr
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make(chan error, len(f.names))
	for i := range f.names {
		c := f.collaborator(i)
		go func() { errs <- c.Run(ctx) }()
	}
	if _, _, err := agg.Run(aggCtx); !errors.Is(err, context.Canceled) {
		t.Fatalf("first aggregator: %v, want it killed in round 2", err)
	}
	s.stop()
	f.mu.Lock()
	if _, ok := f.sums[2]; ok {
		t.Fatal("round 2 was unmasked before the kill")
	}
	c, err := DecodeCheckpoint(bytes.NewReader(ckpt))
	f.mu.Unlock()
	if err != nil || c.Round != 1 {
		t.Fatalf("checkpoint of round %d: %v", c.Round, err)
	}
	agg2, err := NewAggregator(cfg(c, nil))
	if err != nil {
		t.Fatal(err)
	}
	f.env.serveAt(s.addr, agg2)
	if _, _, err := agg2.Run(ctx); err != nil {
		t.Fatalf("resumed aggregator: %v\n%s", err, f.aggLog.String())
	}
	for range f.names {
		if err := <-errs; err != nil {
			t.Errorf("collaborator: %v", err)
		}
	}
	f.check(2, sa, f.names, f.names)
}

// TestSecAggCorruptReveal: one of five collaborators reveals a well-formed
// reveal with one wrong seed share. The aggregator's consistency check
// (more than t shares) catches it, finds whose it is by leaving reveals
// out, refuses it naming the sender, and the round completes with the
// exact sum from the other four (threshold 3).
func TestSecAggCorruptReveal(t *testing.T) {
	sa := scheduler.SecAgg{Dropout: 0.4, FracBits: 16, Clip: 0.5, PhaseTimeout: 5 * time.Second}
	f := newSAFed(t, 5, 1, sa, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, errs := f.run(ctx, func(i int, c *Collaborator, _ context.CancelFunc) {
		if i == 4 {
			c.corruptReveal = func(b []byte) []byte { b[5] ^= 0x40; return b } // first seed share's first byte
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", f.names[i], err)
		}
	}
	lg := f.aggLog.String()
	if !strings.Contains(lg, `round 1: reveal from \"col-5\" refused: its shares are inconsistent with the other 4 reveals`) {
		t.Errorf("aggregator did not name col-5:\n%s", lg)
	}
	f.check(1, sa, f.names, f.names)
}

// TestSecAggImpersonatedKeysRefused: col-1 (its RA-TLS identity) holds
// col-2's identity key and certificate and advertises round keys under
// them. The aggregator (with the federation as SecAggVerifier) refuses
// them in one line naming col-1 and relays nothing; col-2 and col-3 are
// the round's members and it completes with their exact sum.
func TestSecAggImpersonatedKeysRefused(t *testing.T) {
	sa := scheduler.SecAgg{Dropout: 0, FracBits: 16, Clip: 0.5, PhaseTimeout: time.Second}
	f := newSAFed(t, 3, 1, sa, time.Minute, func(f *saFed, c *AggregatorConfig) { c.SecAggVerifier = f.env.fe.Fed })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, errs := f.run(ctx, func(i int, c *Collaborator, _ context.CancelFunc) {
		if i == 0 {
			c.cfg.SecAgg.Key, c.cfg.SecAgg.Cert = f.env.members["col-2"].Key, f.env.members["col-2"].Issued.Cert
		}
	})
	var ref *RefusedError
	if !errors.As(errs[0], &ref) || ref.Code != codes.InvalidArgument {
		t.Fatalf("col-1: %v, want an InvalidArgument refusal", errs[0])
	}
	oneLine(t, "impersonation refusal", errs[0].Error(), `keys advertised by "col-1" refused: key certificate belongs to "col-2"`)
	for i := 1; i < 3; i++ {
		if errs[i] != nil {
			t.Errorf("%s: %v", f.names[i], errs[i])
		}
	}
	f.check(1, sa, f.names[1:], f.names[1:])
}

// TestSecAggMemberLostBeforeSharing: col-3 is killed (its context ends)
// right after it learnt the round's members, before it sends its shares.
// The share phase times out, col-1 and col-2's share calls are told, they
// ask for tasks again, advertise fresh keys and the round completes with
// their exact sum.
func TestSecAggMemberLostBeforeSharing(t *testing.T) {
	sa := scheduler.SecAgg{Dropout: 0.34, FracBits: 16, Clip: 0.5, PhaseTimeout: time.Second}
	f := newSAFed(t, 3, 1, sa, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, errs := f.run(ctx, func(i int, c *Collaborator, kill context.CancelFunc) {
		if i == 2 {
			c.afterAdvertise = func(int64) { kill() }
		}
	})
	if !errors.Is(errs[2], context.Canceled) {
		t.Errorf("col-3: %v, want context.Canceled", errs[2])
	}
	for i := range 2 {
		if errs[i] != nil {
			t.Errorf("%s: %v", f.names[i], errs[i])
		}
	}
	lg := f.aggLog.String()
	if !strings.Contains(lg, "no shares from col-3 within 1s (every member's shares are needed before masking); secure aggregation of the round starts over") {
		t.Errorf("no start-over in the aggregator log:\n%s", lg)
	}
	f.check(1, sa, f.names[:2], f.names[:2])
}
