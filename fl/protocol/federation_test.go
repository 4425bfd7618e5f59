package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/ratls"
)

// TestFederationDigits runs a real federation on loopback: an aggregator
// and three collaborators with RA-TLS identities from a pki CA (simulated
// attestation), the digits MLP on three IID shards, FedAvg, 3 rounds of one
// local epoch. Before the members start, three impostors are refused: a
// member with another plan hash, a non-member (identity from another CA)
// and a member whose enclave measurement is not in the policy.
//
// Under -race (GoMLX's kernels trip checkptr there) and -short the
// collaborators run a stand-in trainer instead of the MLP and the accuracy
// checks are skipped; the protocol, RA-TLS and refusals are the same.
func TestFederationDigits(t *testing.T) {
	useML := !testing.Short() && !raceEnabled
	names := []string{"col-1", "col-2", "col-3"}
	env := newFedEnv(t, names...)
	train, test, err := datasets.Prepare("digits", 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	shards, err := datasets.PartitionIID(train, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	model, err := ml.New(ml.KindMLP, ml.SpecFor(train), 1)
	if err != nil {
		t.Fatal(err)
	}
	var aggLog logBuf
	agg, err := NewAggregator(AggregatorConfig{
		PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: model.Weights(),
		Collaborators: names, Rounds: 3, RoundTimeout: 2 * time.Minute, RetryAfter: 50 * time.Millisecond,
		StatusEvery: 2 * time.Second, Logger: aggLog.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := env.serve(agg, aggLog.Logger())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// 1. A member with another plan: refused with the one-line reason on
	// both sides.
	var badLog logBuf
	bad, err := NewCollaborator(CollaboratorConfig{Name: "col-1", PlanHash: otherPlan,
		Conn:    env.dial(addr, env.leaf(env.members["col-1"], mrGood), quiet()),
		Trainer: &nopTrainer{}, Logger: badLog.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	err = bad.Run(ctx)
	var ref *RefusedError
	if !errors.As(err, &ref) || ref.Code != codes.FailedPrecondition {
		t.Fatalf("other plan: %v, want a FailedPrecondition refusal", err)
	}
	want := "plan hash 3fa2c4d1… differs from the aggregator's 91bc0e77…"
	oneLine(t, "plan refusal", err.Error(), want)
	if !strings.Contains(badLog.String(), want) || !strings.Contains(aggLog.String(), want) {
		t.Errorf("plan refusal not logged on both sides:\ncollaborator: %s\naggregator: %s", badLog.String(), aggLog.String())
	}
	t.Logf("other plan: %v", err)

	// 2. A non-member: identity certificate from another CA.
	rogueCA, err := pki.InitCA(filepath.Join(t.TempDir(), "rogue"), pki.InitOptions{Federation: "test", Now: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	rogue := certify(t, ctx, rogueCA, env, "col-4", "collaborator", time.Now())
	refusedAtTLS(t, ctx, env, addr, "col-4", env.leaf(rogue, mrGood), &aggLog, "(identity)")

	// 3. A member's identity key in an enclave whose measurement is not in
	// the policy.
	refusedAtTLS(t, ctx, env, addr, "col-2", env.leaf(env.members["col-2"], mrOther), &aggLog, "(policy)")

	// The federation.
	type out struct {
		final   tensor.Weights
		history []RoundSummary
		err     error
	}
	aggDone := make(chan out, 1)
	go func() {
		f, h, err := agg.Run(ctx)
		aggDone <- out{f, h, err}
	}()
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	logs := make([]logBuf, len(names))
	for i, n := range names {
		m, err := ml.New(ml.KindMLP, ml.SpecFor(train), 1)
		if err != nil {
			t.Fatal(err)
		}
		cfg := ml.DefaultTrainConfig(ml.KindMLP)
		cfg.Epochs = 1
		cfg.Seed = int64(10 + i)
		c, err := NewCollaborator(CollaboratorConfig{Name: n, PlanHash: planHash,
			Conn:    env.dial(addr, env.leaf(env.members[n], mrGood), quiet()),
			Trainer: &MLTrainer{Model: m, Data: shards[i], Config: cfg}, MinBackoff: 20 * time.Millisecond,
			MaxBackoff: 500 * time.Millisecond, Logger: logs[i].Logger()})
		if err != nil {
			t.Fatal(err)
		}
		if !useML {
			c.cfg.Trainer = &nopTrainer{}
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.Run(ctx) }()
	}
	wg.Wait()
	res := <-aggDone
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v\n%s", names[i], err, logs[i].String())
		}
	}
	if res.err != nil {
		t.Fatalf("aggregator: %v\n%s", res.err, aggLog.String())
	}
	if len(res.history) != 3 {
		t.Fatalf("%d rounds", len(res.history))
	}
	for _, s := range res.history {
		t.Logf("round %d: participants %v accepted %v rejected %v eval loss %.4f metrics %v local %v, %.2f s, in %d B, out %d B",
			s.Round, s.Participants, s.Accepted, s.Rejected, s.EvalLoss, s.EvalMetrics, s.LocalEvalMetrics, s.Seconds, s.BytesIn, s.BytesOut)
		if len(s.Participants) != 3 || len(s.Accepted) != 3 || len(s.Rejected) != 0 {
			t.Errorf("round %d: participants %v accepted %v rejected %v", s.Round, s.Participants, s.Accepted, s.Rejected)
		}
		params := int64(4 * model.NumParams())
		if s.BytesIn < 3*params || s.BytesIn > 3*params*105/100 || s.BytesOut < 3*params || s.BytesOut > 3*params*105/100 {
			t.Errorf("round %d: bytes in %d out %d for 3 × %d payload bytes", s.Round, s.BytesIn, s.BytesOut, params)
		}
		if !useML {
			continue
		}
		if s.EvalMetrics["accuracy"] <= 0 {
			t.Errorf("round %d: no aggregated evaluation accuracy", s.Round)
		}
	}
	if !useML {
		t.Log("stand-in trainer: accuracy not checked")
		return
	}
	if a, b := res.history[0].EvalLoss, res.history[2].EvalLoss; !(b < a) {
		t.Errorf("evaluation loss did not fall: round 1 %.4f, round 3 %.4f", a, b)
	}
	if err := model.SetWeights(res.final); err != nil {
		t.Fatal(err)
	}
	met, err := model.Evaluate(test)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("final global model on the held-out test set: %s", met)
	if met.Accuracy < 0.9 {
		t.Errorf("final accuracy %.4f < 0.9", met.Accuracy)
	}
	for _, w := range []string{"collaborator connected", "round closed", "update received"} {
		if !strings.Contains(aggLog.String(), w) {
			t.Errorf("aggregator log lacks %q", w)
		}
	}
}

// refusedAtTLS runs a collaborator presenting cert and checks it is
// refused by the RA-TLS layer, on both sides, naming check.
func refusedAtTLS(t *testing.T, ctx context.Context, env *fedEnv, addr, name string, cert *tls.Certificate, aggLog *logBuf, check string) {
	t.Helper()
	before := len(aggLog.String())
	c, err := NewCollaborator(CollaboratorConfig{Name: name, PlanHash: planHash,
		Conn:    env.dial(addr, cert, quiet()),
		Trainer: &nopTrainer{}, MinBackoff: 20 * time.Millisecond, GiveUpAfter: 20 * time.Second, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Run(ctx)
	var ref *RefusedError
	if !errors.As(err, &ref) || ref.Code != codes.PermissionDenied {
		t.Fatalf("%s: %v, want a PermissionDenied refusal", name, err)
	}
	oneLine(t, name+" refusal", err.Error(), "RA-TLS handshake refused")
	if _, ok := ratls.RefusalOf(err); !ok {
		t.Errorf("%s: ratls.RefusalOf does not see the handshake refusal through %v", name, err)
	}
	// The aggregator's reason reaches the collaborator (ratls verdict).
	if !strings.Contains(err.Error(), "the server refused this connection") || !strings.Contains(err.Error(), check) {
		t.Errorf("%s: collaborator-side error %q does not carry the aggregator's %s reason", name, err, check)
	}
	t.Logf("%s (collaborator side): %v", name, err)
	// The client can see the TLS alert before the server has logged the
	// refusal: wait for the line.
	var server string
	deadline := time.Now().Add(30 * time.Second)
	for {
		server = aggLog.String()[before:]
		if strings.Contains(server, "refused connection") && strings.Contains(server, check) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("aggregator did not log a %s refusal for %s:\n%s", check, name, server)
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range strings.Split(server, "\n") {
		if strings.Contains(l, "refused connection") {
			t.Logf("%s (aggregator side): %s", name, l)
			break
		}
	}
}

// nopTrainer returns the global model plus one.
type nopTrainer struct{}

func (nopTrainer) Train(_ context.Context, g tensor.Weights, _ map[string]float64) (tensor.Weights, int, map[string]float64, error) {
	w := g.Clone()
	for _, t := range w {
		for j := range t.Data {
			t.Data[j]++
		}
	}
	return w, 10, nil, nil
}

func (nopTrainer) Evaluate(context.Context, tensor.Weights) (int, float64, map[string]float64, error) {
	return 10, 1, map[string]float64{"accuracy": 0.5}, nil
}
