package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/serve"
)

// The child process: an embedded NATS (store dir, port from the
// environment) and a server consuming the request stream until killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("TEEML_QUEUE_CHILD"); dir != "" {
		if err := child(dir, os.Getenv("TEEML_QUEUE_LISTEN"), os.Getenv("TEEML_QUEUE_REPO")); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child(dir, listen, repoPath string) error {
	e, err := StartEmbedded(dir, listen)
	if err != nil {
		return err
	}
	defer e.Close()
	nc, js, err := Connect(e.URL())
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx := context.Background()
	if err := Setup(ctx, js, 0); err != nil {
		return err
	}
	repo, err := serve.LoadRepository(repoPath)
	if err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := serve.New(ctx, serve.Options{Repo: repo, Anonymous: true, Log: quiet})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	return Consume(ctx, js, s, Options{Log: quiet, AckWait: 5 * time.Second})
}

type kid struct {
	cmd *exec.Cmd
}

func startChild(t *testing.T, dir, listen, repo string) *kid {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TEEML_QUEUE_CHILD="+dir, "TEEML_QUEUE_LISTEN="+listen, "TEEML_QUEUE_REPO="+repo)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == "ready" {
			go io.Copy(io.Discard, out)
			return &kid{cmd: cmd}
		}
	}
	t.Fatal("queue child did not start")
	return nil
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestKilledServerAnswersEveryRequestOnce queues a burst of requests,
// SIGKILLs the server (and its embedded NATS) part-way, restarts it on the
// same store, and checks the result stream holds exactly one answer per
// request id, each the model's prediction.
func TestKilledServerAnswersEveryRequestOnce(t *testing.T) {
	n := 10000
	if raceEnabled {
		n = 2000
	}
	if v, err := strconv.Atoi(os.Getenv("TEEML_QUEUE_N")); err == nil {
		n = v
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "digits.safetensors")
	if _, err := job.Train(context.Background(), job.TrainOptions{Dataset: "digits", Model: "logreg", Epochs: 2, Seed: 1, Out: model, Output: io.Discard}); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "serving.yaml")
	os.WriteFile(repo, []byte("models:\n  - name: digits\n    kind: teeml\n    file: "+model+"\n    batching: {max_batch_size: 64, max_queue_delay: 1ms, max_queue: 8192}\n"), 0o644)
	store, listen := filepath.Join(dir, "nats"), freePort(t)
	k := startChild(t, store, listen, repo)

	nc, err := nats.Connect("nats://"+listen, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(n+1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, test, err := datasets.LoadSplit("digits", job.DefaultTestFraction, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		row := test.Row(i % test.N)
		body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input", "datatype": "FP32", "shape": []int{1, 64}, "data": row}}})
		m := nats.NewMsg(RequestPrefix + "digits")
		m.Header.Set(HeaderID, "req-"+strconv.Itoa(i))
		m.Data = body
		if _, err := js.PublishMsgAsync(m, jetstream.WithMsgID("req-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete(): // every request acknowledged by JetStream
	case <-ctx.Done():
		t.Fatal("publishing timed out")
	}
	results := func() uint64 {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, ResultStream)
		if err != nil {
			return 0
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	testenv.Eventually(t, 2*time.Minute, "a fifth of the results", func() bool { return results() >= uint64(n/5) })
	if err := k.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	k.cmd.Wait()
	startChild(t, store, listen, repo)
	deadline := time.Now().Add(90 * time.Second)
	for results() < uint64(n) {
		if time.Now().After(deadline) {
			var info *jetstream.StreamInfo
			var ci *jetstream.ConsumerInfo
			if s, err := js.Stream(ctx, RequestStream); err == nil {
				info, _ = s.Info(ctx)
			}
			if c, err := js.Consumer(ctx, RequestStream, consumerName); err == nil {
				ci, _ = c.Info(ctx)
			}
			t.Fatalf("after restart: %d results of %d; connection %s; request stream %+v; consumer %+v", results(), n, nc.Status(), info, ci)
		}
		time.Sleep(50 * time.Millisecond) // polling the stream's count (work runs in the child)
	}
	// Quiescent: nothing pending, nothing left in the work queue.
	testenv.Eventually(t, time.Minute, "the request stream drained", func() bool {
		s, err := js.Stream(ctx, RequestStream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if got := results(); got != uint64(n) {
		t.Fatalf("result stream holds %d answers for %d requests", got, n)
	}
	// One answer per id, each a probability row.
	seen := map[string]bool{}
	cons, err := js.OrderedConsumer(ctx, ResultStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for len(seen) < n {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			id := m.Headers().Get(HeaderID)
			if seen[id] {
				t.Fatalf("request %s answered twice", id)
			}
			seen[id] = true
			if m.Headers().Get(HeaderStatus) != "200" || !strings.Contains(string(m.Data()), `"shape":[1,10]`) {
				t.Fatalf("answer %s: %s %s", id, m.Headers().Get(HeaderStatus), m.Data())
			}
		}
		if got == 0 {
			break
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct answers for %d requests", len(seen), n)
	}
}
