// Package quickstart is teeml serve quickstart: train a model, seal it under
// a key broker key, serve it from a separate process that gets the key only
// after its own attestation, and query it from a client that verifies the
// server's attestation first. Like fl/encrypted it composes two services
// (serve and the key broker); neither imports the other.
package quickstart

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/childlog"
	"github.com/teeml/teeml/kms"
	"github.com/teeml/teeml/kms/rootkey"
	"github.com/teeml/teeml/kms/store"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/party/partysim"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/serve"
	"github.com/teeml/teeml/serve/client"
)

// Options configure Run.
type Options struct {
	Dir      string // workspace (empty or missing)
	Exe      string // the teeml binary
	Requests int    // latency requests per concurrency level (default 200)
	Out      io.Writer
}

// Result is what the quickstart measured.
type Result struct {
	Accuracy   float64 // of the served model on the held-out digits, through the server
	LocalAcc   float64 // the same model evaluated locally after training
	Refusal    string  // the client's refusal of a server outside its policy
	Pin        string
	P50, P99   map[int]time.Duration // by concurrency
	Throughput map[int]float64       // requests per second by concurrency
}

const keyID = "models"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Run runs the quickstart.
func Run(ctx context.Context, o Options) (*Result, error) {
	out := o.Out
	if o.Requests == 0 {
		o.Requests = 200
	}
	dir := o.Dir
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("serve quickstart: %s is not empty", dir)
	}
	for _, d := range []string{"policies", "models", "logs", "kms"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	fmt.Fprintln(out, sim.Banner)
	fmt.Fprintf(out, "serving workspace: %s\n", dir)
	roles := map[string]string{"kms": "kms", "trainer": "aggregator", "srv": serve.Role, "cli": "collaborator"}
	cp, err := policy.Parse(partysim.Policy("kms", "aggregator", serve.Role, "collaborator"), "certification policy")
	if err != nil {
		return nil, err
	}
	if err := partysim.Federation(ctx, dir, "serve-sim", roles, map[string]*policy.Policy{"kms": cp, "aggregator": cp, serve.Role: cp, "collaborator": cp}); err != nil {
		return nil, err
	}
	for name, body := range map[string][]byte{"policies/broker.yaml": partysim.Policy("aggregator", serve.Role), "policies/client.yaml": partysim.Policy("kms"),
		"policies/server.yaml": partysim.Policy(serve.Role), "policies/wrong-server.yaml": bytes.Replace(partysim.Policy("collaborator"), []byte("  collaborator:"), []byte("  "+serve.Role+":"), 1)} {
		if err := atomicfile.WriteBytes(filepath.Join(dir, name), body, 0o644); err != nil {
			return nil, err
		}
	}
	if err := rootkey.CreateFile(filepath.Join(dir, "kms", "root.key")); err != nil {
		return nil, err
	}
	bc := kms.Config{Listen: "127.0.0.1:0", Policy: "policies/broker.yaml", RootKey: "file:kms/root.key", Admins: []string{"trainer"},
		Store: store.Config{Driver: "sqlite", Path: "kms/kms.db"}}
	if err := kms.WriteWorkspaceConfig(dir, "kms", filepath.Join(dir, "kms.yaml"), "Key broker of the serving quickstart.", &bc); err != nil {
		return nil, err
	}
	broker, err := childlog.Start(o.Exe, filepath.Join(dir, "logs", "kms.log"), "kms", out, "kms", "serve", "--config", filepath.Join(dir, "kms.yaml"))
	if err != nil {
		return nil, err
	}
	defer broker.Stop()
	addr, err := broker.WaitLine(ctx, kms.ServingPrefix, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("key broker %w (see logs/kms.log)", err)
	}
	addr = strings.TrimSpace(addr)
	tc := kms.Config{Broker: addr, Policy: "policies/client.yaml"}
	if err := kms.WriteWorkspaceConfig(dir, "trainer", filepath.Join(dir, "trainer.yaml"), "The trainer, as the broker's admin.", &tc); err != nil {
		return nil, err
	}
	// The server reaches the broker through its party configuration.
	pc, err := party.LoadConfig(party.ConfigFile(dir, "srv"))
	if err != nil {
		return nil, err
	}
	pc.KMS = &party.KMSConfig{Broker: addr, Policy: "policies/client.yaml"}
	if err := partysim.WriteConfig(dir, "srv", pc, "The inference server's platform and key broker."); err != nil {
		return nil, err
	}
	res := &Result{P50: map[int]time.Duration{}, P99: map[int]time.Duration{}, Throughput: map[int]float64{}}
	if res.LocalAcc, err = trainAndSeal(ctx, dir, out); err != nil {
		return nil, err
	}
	repo := "models:\n  - name: digits\n    kind: teeml\n    file: models/digits.sealed\n    batching: {max_batch_size: 64, max_queue_delay: 1ms, max_queue: 4096}\n"
	if err := atomicfile.WriteBytes(filepath.Join(dir, "serving.yaml"), []byte(repo), 0o644); err != nil {
		return nil, err
	}
	token, err := serve.NewToken(filepath.Join(dir, "tokens.yaml"), "quickstart")
	if err != nil {
		return nil, err
	}
	srv, err := childlog.Start(o.Exe, filepath.Join(dir, "logs", "serve.log"), "serve", out, "serve", "--repository", filepath.Join(dir, "serving.yaml"),
		"-w", dir, "-n", "srv", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--tokens", filepath.Join(dir, "tokens.yaml"))
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	line, err := srv.WaitLine(ctx, serve.ServingPrefix, 2*time.Minute)
	if err != nil {
		return nil, fmt.Errorf("teeml serve %w (see logs/serve.log)", err)
	}
	rest := ""
	if _, after, ok := strings.Cut(line, "REST https://"); ok {
		rest, _, _ = strings.Cut(after, ",")
	}
	if err := query(ctx, dir, rest, token, o.Requests, res, out); err != nil {
		return nil, err
	}
	srv.Stop()
	return res, nil
}

// trainAndSeal trains the digits MLP as the trainer, creates the models key
// (released to the trainer and to the server's measurement) and seals the
// model from memory; it returns the model's held-out accuracy.
func trainAndSeal(ctx context.Context, dir string, out io.Writer) (float64, error) {
	cfg, err := kms.LoadConfig(filepath.Join(dir, "trainer.yaml"))
	if err != nil {
		return 0, err
	}
	cl, err := kms.Dial(ctx, cfg, quiet())
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	rp := partysim.Header("Release policy of the models key: the trainer and the inference server.") +
		"members: [trainer, srv]\n" + partysim.Attestation("", "aggregator", serve.Role)
	if _, err := cl.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: keyID, ReleasePolicy: rp, Description: "serving quickstart models"}); err != nil {
		return 0, fmt.Errorf("create key %s: %w", keyID, err)
	}
	r, err := job.Train(ctx, job.TrainOptions{Dataset: "digits", Model: "mlp", Seed: 1, Output: io.Discard})
	if err != nil {
		return 0, err
	}
	acc := r.Test.Accuracy
	fmt.Fprintf(out, "trained the digits MLP: held-out accuracy %.4f\n", acc)
	path := filepath.Join(dir, "models", "digits.sealed")
	if err := sealed.WriteFile(ctx, path, 0o600, cl.KeySource(), keyID, func(w io.Writer) error {
		return job.Encode(w, r, 1, job.DefaultTestFraction)
	}); err != nil {
		return 0, err
	}
	fmt.Fprintf(out, "sealed it under key %q (released to the trainer and the server's measurement only): %s\n", keyID, path)
	return acc, nil
}

// query verifies the server, then sends the held-out digits and measures
// latency, and shows a client with another policy refusing the server.
func query(ctx context.Context, dir, addr, token string, n int, res *Result, out io.Writer) error {
	cli, err := party.LoadAttested(party.Files{Dir: dir, Config: party.ConfigFile(dir, "cli")}, "client", quiet())
	if err != nil {
		return err
	}
	pol, err := policy.Load(filepath.Join(dir, "policies", "server.yaml"))
	if err != nil {
		return err
	}
	peer := party.Peer{Role: serve.Role, Policy: pol}
	vp, pin, err := cli.VerifyServer(ctx, addr, peer, quiet())
	if err != nil {
		return err
	}
	mr, _ := partysim.MeasurementHex(serve.Role)
	sim := ""
	if vp.Claims.Simulated {
		sim = " (SIMULATED evidence)"
	}
	res.Pin = pin
	fmt.Fprintf(out, "\nclient: server %s attested: SGX mr_enclave %.16s…%s, policy role %s accepted\n", addr, mr, sim, serve.Role)
	fmt.Fprintf(out, "client: for curl: curl -k --pinnedpubkey '%s' -H 'Authorization: Bearer <token>' https://%s/v2/models/digits\n", pin, addr)
	wrong, err := policy.Load(filepath.Join(dir, "policies", "wrong-server.yaml"))
	if err != nil {
		return err
	}
	wtc, _, err := cli.ClientTLS(party.Peer{Role: serve.Role, Policy: wrong}, quiet())
	if err != nil {
		return err
	}
	wc := client.New("https://"+addr, wtc, token)
	_, werr := wc.Infer(ctx, "digits", [][]float32{make([]float32, 64)})
	wc.Close()
	if werr == nil {
		return fmt.Errorf("a client expecting another measurement sent its input")
	}
	res.Refusal = oneLine(werr.Error())
	fmt.Fprintf(out, "client with a policy for another measurement: refused before sending any input: %s\n", res.Refusal)

	tc, _, err := cli.ClientTLS(peer, quiet())
	if err != nil {
		return err
	}
	c := client.New("https://"+addr, tc, token)
	defer c.Close()
	_, test, err := datasets.LoadSplit("digits", job.DefaultTestFraction, 1)
	if err != nil {
		return err
	}
	rows := make([][]float32, test.N)
	for i := range rows {
		rows[i] = test.Row(i)
	}
	pred, err := c.Infer(ctx, "digits", rows)
	if err != nil {
		return err
	}
	correct := 0
	for i, p := range pred {
		if argmax(p) == int(test.Y[i]) {
			correct++
		}
	}
	res.Accuracy = float64(correct) / float64(test.N)
	fmt.Fprintf(out, "client: %d held-out digits in one request: accuracy %.4f (local evaluation after training %.4f)\n", test.N, res.Accuracy, res.LocalAcc)
	for _, conc := range []int{1, 8} {
		lat, wall, err := load(ctx, c, rows, n, conc)
		if err != nil {
			return err
		}
		slices.Sort(lat)
		res.P50[conc], res.P99[conc] = lat[len(lat)/2], lat[len(lat)*99/100]
		res.Throughput[conc] = float64(len(lat)) / wall.Seconds()
		fmt.Fprintf(out, "client: %d one-row requests at concurrency %d: p50 %s, p99 %s, %.0f requests/s\n", len(lat), conc,
			res.P50[conc].Round(10*time.Microsecond), res.P99[conc].Round(10*time.Microsecond), res.Throughput[conc])
	}
	return nil
}

func load(ctx context.Context, c *client.Client, rows [][]float32, n, conc int) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	next := make(chan int)
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				if _, err := c.Infer(ctx, "digits", rows[i%len(rows):i%len(rows)+1]); err != nil {
					errs <- err
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	for i := range n {
		select {
		case next <- i:
		case err := <-errs:
			close(next)
			wg.Wait()
			return nil, 0, err
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, 0, err
	default:
	}
	return lat, time.Since(start), nil
}

func argmax(p []float32) int {
	best := 0
	for i := range p {
		if p[i] > p[best] {
			best = i
		}
	}
	return best
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
