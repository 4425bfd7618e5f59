package protocol

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
)

func wantCode(t *testing.T, what string, err error, code codes.Code, parts ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v, want %s", what, err, code)
	}
	oneLine(t, what, status.Convert(err).Message(), parts...)
	t.Logf("%s: %s", what, status.Convert(err).Message())
}

// upload sends w (or, with corrupt, w with one payload bit flipped) as
// sender's update and returns the server's answer.
func upload(ctx context.Context, cl flv1.AggregatorClient, w tensor.Weights, h *flv1.Header, corrupt bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := cl.UploadUpdate(ctx)
	if err != nil {
		return err
	}
	n := 0
	_, err = EncodeWeights(w, h, func(c *flv1.Chunk) error {
		n++
		if corrupt && n == 2 {
			// A copy: the chunk may be a view of w's memory.
			d := append([]byte(nil), c.GetData()...)
			d[3] ^= 0x10
			c = &flv1.Chunk{Body: &flv1.Chunk_Data{Data: d}}
		}
		return stream.Send(c)
	})
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = stream.CloseAndRecv()
	return err
}

// TestAggregatorRefusals drives the aggregator with a raw client over
// RA-TLS: sender spoofing, a member that is not expected, wrong shapes, a
// corrupt payload, a wrong round, a duplicate upload; then a round that
// times out closes with the one update it got and logs who was late.
func TestAggregatorRefusals(t *testing.T) {
	env := newFedEnv(t, "col-1", "col-2", "col-9")
	initial := testWeights([]int{3, 4}, []int{4})
	var aggLog logBuf
	agg, err := NewAggregator(AggregatorConfig{
		PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: initial, Collaborators: []string{"col-1", "col-2"},
		Rounds: 1, RoundTimeout: time.Second, StatusEvery: 100 * time.Millisecond, RetryAfter: 20 * time.Millisecond,
		DoneGrace: time.Second, Logger: aggLog.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := env.serve(agg, aggLog.Logger())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	col1 := flv1.NewAggregatorClient(env.dial(addr, env.leaf(env.members["col-1"], mrGood), quiet()))
	col9 := flv1.NewAggregatorClient(env.dial(addr, env.leaf(env.members["col-9"], mrGood), quiet()))
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 30*time.Second) }

	c, cc := call()
	_, err = col1.GetTasks(c, &flv1.TaskRequest{Sender: "col-2", PlanHash: planHash})
	cc()
	wantCode(t, "spoofed sender", err, codes.PermissionDenied, `"col-2"`, `"col-1"`)

	c, cc = call()
	_, err = col9.GetTasks(c, &flv1.TaskRequest{Sender: "col-9", PlanHash: planHash})
	cc()
	wantCode(t, "unexpected member", err, codes.PermissionDenied, `"col-9" is not expected`)

	hdr := func() *flv1.Header {
		return &flv1.Header{Round: 1, Sender: "col-1", PlanHash: planHash, Kind: flv1.PayloadKind_PAYLOAD_KIND_UPDATE, NumExamples: 5}
	}
	err = upload(ctx, col1, testWeights([]int{4, 3}, []int{4}), hdr(), false)
	wantCode(t, "wrong shape", err, codes.InvalidArgument, "shape [4 3]", "[3 4]")

	update := initial.Clone()
	update.ScaleInPlace(3)
	err = upload(ctx, col1, update, hdr(), true)
	wantCode(t, "corrupt payload", err, codes.DataLoss, "crc32c")

	h := hdr()
	h.Round = 7
	err = upload(ctx, col1, update, h, false)
	wantCode(t, "wrong round", err, codes.Aborted, "round 7 is not open")

	h = hdr()
	h.PlanHash = otherPlan
	err = upload(ctx, col1, update, h, false)
	wantCode(t, "other plan upload", err, codes.FailedPrecondition, "plan hash 3fa2c4d1… differs from the aggregator's 91bc0e77…")

	if err := upload(ctx, col1, update, hdr(), false); err != nil {
		t.Fatalf("valid upload: %v", err)
	}
	err = upload(ctx, col1, update, hdr(), false)
	wantCode(t, "second upload", err, codes.AlreadyExists)
	c, cc = call()
	resp, err := col1.GetTasks(c, &flv1.TaskRequest{Sender: "col-1", PlanHash: planHash, Round: 1})
	cc()
	if err != nil || resp.Action != flv1.TaskAction_TASK_ACTION_WAIT {
		t.Fatalf("GetTasks after uploading: %v %v, want WAIT", resp, err)
	}

	// col-2 never shows up: the round times out and closes with col-1.
	type out struct {
		final   tensor.Weights
		history []RoundSummary
		err     error
	}
	done := make(chan out, 1)
	go func() {
		f, h, err := agg.Run(ctx)
		done <- out{f, h, err}
	}()
	for {
		c, cc = call()
		resp, err = col1.GetTasks(c, &flv1.TaskRequest{Sender: "col-1", PlanHash: planHash, Round: 1})
		cc()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Action == flv1.TaskAction_TASK_ACTION_DONE {
			break
		}
		if err := sleep(ctx, time.Duration(resp.RetryAfterMs)*time.Millisecond); err != nil {
			t.Fatalf("no DONE: %v\n%s", err, aggLog.String())
		}
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(res.history) != 1 || strings.Join(res.history[0].Participants, ",") != "col-1" {
		t.Fatalf("history %+v", res.history)
	}
	sameWeights(t, update, res.final)
	logs := aggLog.String()
	for _, w := range []string{"round 1 waits for 1 of 2 collaborators: col-2: never connected", "round 1 timed out; closing with 1 of 2 updates", "refused col-1: sender", "update failed"} {
		if !strings.Contains(logs, w) {
			t.Errorf("aggregator log lacks %q:\n%s", w, logs)
		}
	}
}

// TestCollaboratorWaitsForAggregator: a collaborator started before its
// aggregator retries with backoff until it is up, then runs to DONE.
func TestCollaboratorWaitsForAggregator(t *testing.T) {
	env := newFedEnv(t, "col-1")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens until the aggregator starts
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var colLog logBuf
	col, err := NewCollaborator(CollaboratorConfig{Name: "col-1", PlanHash: planHash,
		Conn:    env.dial(addr, env.leaf(env.members["col-1"], mrGood), quiet()),
		Trainer: &nopTrainer{}, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: colLog.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	colDone := make(chan error, 1)
	go func() { colDone <- col.Run(ctx) }()
	for !strings.Contains(colLog.String(), "aggregator unavailable; retrying") {
		select {
		case err := <-colDone:
			t.Fatalf("collaborator ended before the aggregator started: %v\n%s", err, colLog.String())
		case <-ctx.Done():
			t.Fatal("collaborator never retried")
		case <-time.After(10 * time.Millisecond):
		}
	}
	initial := testWeights([]int{2, 2})
	agg, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: initial,
		Collaborators: []string{"col-1"}, Rounds: 2, RetryAfter: 10 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	env.serveOn(lis, agg, quiet())
	final, hist, err := agg.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-colDone; err != nil {
		t.Fatalf("collaborator: %v\n%s", err, colLog.String())
	}
	if len(hist) != 2 || final[0].Data[0] != initial[0].Data[0]+2 {
		t.Fatalf("history %d rounds, final %v", len(hist), final[0].Data)
	}
}

// TestRoundTimeoutWithoutUpdates: a round in which nobody uploads fails at
// its timeout naming who was late and why, and collaborators are then told
// the aggregator stopped (Unavailable: they retry until it is restarted).
func TestRoundTimeoutWithoutUpdates(t *testing.T) {
	env := newFedEnv(t, "col-1", "col-2")
	agg, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: testWeights([]int{2}),
		Collaborators: []string{"col-1", "col-2"}, Rounds: 1, RoundTimeout: 300 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	addr := env.serve(agg, quiet())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := flv1.NewAggregatorClient(env.dial(addr, env.leaf(env.members["col-1"], mrGood), quiet()))
	resp, err := cl.GetTasks(ctx, &flv1.TaskRequest{Sender: "col-1", PlanHash: planHash})
	if err != nil || resp.Action != flv1.TaskAction_TASK_ACTION_RUN || resp.Round != 1 || len(resp.Tasks) != 3 || resp.Config[strategy.KeyRound] != 1 {
		t.Fatalf("GetTasks: %v %v", resp, err)
	}
	_, _, err = agg.Run(ctx)
	if err == nil {
		t.Fatal("round without updates succeeded")
	}
	oneLine(t, "timeout error", err.Error(), "round 1 timed out", "0 of 2 updates", "col-1: asked for tasks", "col-2: never connected")
	t.Logf("timeout: %v", err)
	_, err = cl.GetTasks(ctx, &flv1.TaskRequest{Sender: "col-1", PlanHash: planHash})
	wantCode(t, "after failure", err, codes.Unavailable, "aggregator stopped: round 1 timed out", "resumes from its last completed round")
}

// TestCollaboratorRefusesNonAggregator: a federation member that is not an
// aggregator (here col-2) serving the Aggregator API is refused by the
// collaborator.
func TestCollaboratorRefusesNonAggregator(t *testing.T) {
	env := newFedEnv(t, "col-1", "col-2")
	agg, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: testWeights([]int{2}),
		Collaborators: []string{"col-1"}, Rounds: 1, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	addr := env.serveAs("col-2", agg, quiet())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	col, err := NewCollaborator(CollaboratorConfig{Name: "col-1", PlanHash: planHash,
		Conn: env.dial(addr, env.leaf(env.members["col-1"], mrGood), quiet()), Trainer: &nopTrainer{}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	err = col.Run(ctx)
	var ref *RefusedError
	if !errors.As(err, &ref) || ref.Code != codes.PermissionDenied {
		t.Fatalf("%v, want a PermissionDenied refusal", err)
	}
	oneLine(t, "refusal", err.Error(), `server "col-2" is verified as "collaborator", not aggregator`)
}

// TestRefusalSaysWhoRefusedWhom (issue 23, defect 9): when the
// collaborator's own RA-TLS verification refuses the server (here: the
// aggregator runs an enclave whose measurement the policy does not allow),
// the error says the collaborator refused the server, never "aggregator
// refused"; when the aggregator refuses the collaborator's certificate,
// it says the aggregator refused the collaborator.
func TestRefusalSaysWhoRefusedWhom(t *testing.T) {
	env := newFedEnv(t, "col-1")
	newAgg := func() *Aggregator {
		agg, err := NewAggregator(AggregatorConfig{PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: testWeights([]int{2}),
			Collaborators: []string{"col-1"}, Rounds: 1, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		return agg
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(addr string, mr [32]byte) (*RefusedError, error) {
		col, err := NewCollaborator(CollaboratorConfig{Name: "col-1", PlanHash: planHash,
			Conn: env.dial(addr, env.leaf(env.members["col-1"], mr), quiet()), Trainer: &nopTrainer{},
			MinBackoff: 20 * time.Millisecond, GiveUpAfter: 20 * time.Second, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		err = col.Run(ctx)
		var ref *RefusedError
		if !errors.As(err, &ref) || ref.Code != codes.PermissionDenied {
			t.Fatalf("%v, want a PermissionDenied refusal", err)
		}
		return ref, err
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := env.serveMeasured(lis, env.members["aggregator"], mrOther, newAgg(), quiet())
	ref, err := run(addr, mrGood)
	if !ref.ByCollaborator {
		t.Errorf("the collaborator's own verification failed, but the refusal is attributed to the aggregator: %v", err)
	}
	oneLine(t, "collaborator refuses the server", err.Error(), `collaborator "col-1" refused the server`, "(policy)")
	if strings.Contains(err.Error(), "aggregator refused") {
		t.Errorf("misattributed refusal: %v", err)
	}

	ref, err = run(env.serve(newAgg(), quiet()), mrOther)
	if ref.ByCollaborator {
		t.Errorf("the aggregator refused the collaborator, but the refusal is attributed to the collaborator: %v", err)
	}
	oneLine(t, "aggregator refuses the collaborator", err.Error(), `aggregator refused collaborator "col-1"`,
		"the server refused this connection", "(policy)")
}
