package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/party/partysim"
	"github.com/teeml/teeml/serve"
)

// TestServeStartsItsParty: queue mode starts the server's party like
// teeml serve (the simulation banner is printed before it serves) and then
// answers a queued request; without a party it refuses to start.
func TestServeStartsItsParty(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "digits.safetensors")
	if _, err := job.Train(context.Background(), job.TrainOptions{Dataset: "digits", Model: "logreg", Epochs: 1, Seed: 1, Out: model, Output: io.Discard}); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "serving.yaml")
	os.WriteFile(repo, []byte("models:\n  - name: digits\n    kind: teeml\n    file: "+model+"\n"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Serve(ctx, ServeOptions{Repository: repo, StoreDir: filepath.Join(dir, "none"), Anonymous: true}); err == nil ||
		!strings.Contains(err.Error(), "give the server's party") {
		t.Fatalf("without a party: %v", err)
	}
	if err := partysim.Parties(dir, map[string]string{"srv": serve.Role}); err != nil {
		t.Fatal(err)
	}
	var out testlog.Buffer
	listen := freePort(t)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Serve(sctx, ServeOptions{Repository: repo, StoreDir: filepath.Join(dir, "nats"), Listen: listen, Workspace: dir, Name: "srv",
			Anonymous: true, Out: &out, Log: testlog.Discard()})
	}()
	ready := func() bool { return strings.Contains(out.String(), "serve queue: NATS ") }
	deadline := time.Now().Add(time.Minute)
	for !ready() {
		select {
		case err := <-done:
			t.Fatalf("queue mode ended: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue mode did not start:\n%s", out.String())
		}
	}
	o := out.String()
	if b, s := strings.Index(o, sim.Banner), strings.Index(o, "serve queue: NATS "); b < 0 || b > s {
		t.Fatalf("the simulation banner is not printed before serving:\n%s", o)
	}
	nc, err := nats.Connect("nats://" + listen)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, test, err := datasets.LoadSplit("digits", job.DefaultTestFraction, 1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input", "datatype": "FP32", "shape": []int{1, 64}, "data": test.Row(0)}}})
	m := nats.NewMsg(RequestPrefix + "digits")
	m.Header.Set(HeaderID, "one")
	m.Data = body
	if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID("one")); err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, ResultStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if id := msg.Headers().Get(HeaderID); id != "one" || !strings.Contains(string(msg.Data()), `"outputs"`) {
		t.Fatalf("result %q: %s", id, msg.Data())
	}
	stop()
	if err := <-done; err != nil && ctx.Err() == nil && !strings.Contains(fmt.Sprint(err), "context canceled") {
		t.Fatalf("queue mode: %v", err)
	}
}
