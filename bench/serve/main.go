// Command serve is bench/serve.sh: teeml serve (digits MLP over REST on
// RA-TLS, dynamic batching on and off) against the same MLP in PyTorch
// behind a minimal Python HTTPS server, same machine, same one-row JSON
// requests, concurrency 1, 8 and 64, in one run. Prints throughput and
// p50/p99 latency per side and the ratios. A GBDT (teeml's, 100 rounds ×
// 10 classes, LightGBM text format) is served beside it, batching on and
// off, with no Python peer.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/ml/trees"
	"github.com/teeml/teeml/party/partysim"
	"github.com/teeml/teeml/serve"
)

type result struct {
	side     string
	conc     int
	rps      float64
	p50, p99 time.Duration
}

func main() {
	n := flag.Int("n", 3000, "requests per side and concurrency level")
	flag.Parse()
	tmp, err := os.MkdirTemp("", "teeml-bench-serve")
	check(err)
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	model := filepath.Join(tmp, "digits.safetensors")
	_, err = job.Train(ctx, job.TrainOptions{Dataset: "digits", Model: "mlp", Seed: 1, Out: model, Output: io.Discard})
	check(err)
	train, _, err := datasets.LoadSplit("digits", job.DefaultTestFraction, 1)
	check(err)
	gb, err := trees.TrainGBDT(ctx, train, trees.GBDTConfig{Iterations: 100, NumLeaves: 31, Seed: 1})
	check(err)
	gbdt := filepath.Join(tmp, "gbdt.txt")
	f, err := os.Create(gbdt)
	check(err)
	check(trees.WriteText(f, gb))
	check(f.Close())
	check(partysim.Parties(tmp, map[string]string{"srv": serve.Role}))
	repo := filepath.Join(tmp, "serving.yaml")
	check(os.WriteFile(repo, []byte(fmt.Sprintf(`models:
  - name: digits
    kind: teeml
    file: %s
    batching: {max_batch_size: 64, max_queue_delay: 500us, max_queue: 8192}
  - name: digits_nobatch
    kind: teeml
    file: %s
    batching: {max_batch_size: 1, max_queue: 8192}
  - name: gbdt
    kind: lightgbm
    file: %s
    batching: {max_batch_size: 64, max_queue_delay: 500us, max_queue: 8192}
  - name: gbdt_nobatch
    kind: lightgbm
    file: %s
    batching: {max_batch_size: 1, max_queue: 8192}
`, model, model, gbdt, gbdt)), 0o644))
	ready := make(chan string, 1)
	go func() {
		err := serve.Run(ctx, serve.RunOptions{Repository: repo, Workspace: tmp, Name: "srv", HTTPListen: "127.0.0.1:0", Anonymous: true,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: func(h, _ string) { ready <- h }})
		if err != nil && ctx.Err() == nil {
			log.Fatal(err)
		}
	}()
	teeml := <-ready

	cert, key := selfSigned(tmp)
	py := exec.Command("/usr/bin/python3", "bench/serve_torch.py", "--model", model, "--cert", cert, "--key", key, "--threads", "2")
	py.Stderr = os.Stderr
	out, err := py.StdoutPipe()
	check(err)
	check(py.Start())
	defer py.Process.Kill()
	sc := bufio.NewScanner(out)
	port := ""
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
			port = p
			break
		}
	}
	if port == "" {
		log.Fatal("python server did not start")
	}
	torchURL := "https://127.0.0.1:" + port

	_, test, err := datasets.LoadSplit("digits", job.DefaultTestFraction, 1)
	check(err)
	var bodies [][]byte
	for i := range test.N {
		b, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input", "datatype": "FP32", "shape": []int{1, test.D}, "data": test.Row(i)}}})
		bodies = append(bodies, b)
	}
	fmt.Printf("one-row JSON requests, %d per side and level; teeml over RA-TLS (REST), PyTorch %s behind Python's ThreadingHTTPServer over TLS; 2 threads each\n",
		*n, torchVersion())
	levels := []int{1, 8, 64}
	rs := map[string]map[int]result{}
	for _, c := range levels {
		for _, side := range []struct{ name, url string }{
			{"mlp teeml batching", "https://" + teeml + "/v2/models/digits/infer"},
			{"mlp teeml no batching", "https://" + teeml + "/v2/models/digits_nobatch/infer"},
			{"mlp pytorch", torchURL + "/v2/models/digits/infer"},
			{"gbdt teeml batching", "https://" + teeml + "/v2/models/gbdt/infer"},
			{"gbdt teeml no batching", "https://" + teeml + "/v2/models/gbdt_nobatch/infer"},
		} {
			r := run(side.url, bodies, *n, c)
			r.side = side.name
			if rs[side.name] == nil {
				rs[side.name] = map[int]result{}
			}
			rs[side.name][c] = r
			fmt.Printf("%-23s c=%-3d %8.0f req/s  p50 %8s  p99 %8s\n", r.side, c, r.rps, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond))
		}
	}
	fmt.Println()
	for _, c := range levels {
		b, nb, t := rs["mlp teeml batching"][c], rs["mlp teeml no batching"][c], rs["mlp pytorch"][c]
		gb, gnb := rs["gbdt teeml batching"][c], rs["gbdt teeml no batching"][c]
		fmt.Printf("c=%-3d mlp teeml(batching)/pytorch throughput %.2f×, p99 %.2f×; batching on/off: mlp %.2f×, gbdt %.2f×\n",
			c, b.rps/t.rps, float64(b.p99)/float64(t.p99), b.rps/nb.rps, gb.rps/gnb.rps)
	}
}

func run(url string, bodies [][]byte, n, conc int) result {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
	cl := &http.Client{Transport: tr, Timeout: time.Minute}
	defer tr.CloseIdleConnections()
	// Warm up each connection.
	var wg sync.WaitGroup
	for i := range conc {
		wg.Add(1)
		go func() { defer wg.Done(); post(cl, url, bodies[i%len(bodies)]) }()
	}
	wg.Wait()
	lat := make([]time.Duration, n)
	next := make(chan int)
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				post(cl, url, bodies[i%len(bodies)])
				lat[i] = time.Since(t0)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	wall := time.Since(start)
	slices.Sort(lat)
	return result{conc: conc, rps: float64(n) / wall.Seconds(), p50: lat[n/2], p99: lat[n*99/100]}
}

func post(cl *http.Client, url string, body []byte) {
	resp, err := cl.Post(url, "application/json", bytes.NewReader(body))
	check(err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		log.Fatalf("%s: %d %s", url, resp.StatusCode, b)
	}
}

func selfSigned(dir string) (string, string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	check(err)
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	check(err)
	cert, key := filepath.Join(dir, "py.crt"), filepath.Join(dir, "py.key")
	check(os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	check(os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600))
	return cert, key
}

func torchVersion() string {
	out, err := exec.Command("/usr/bin/python3", "-c", "import torch; print(torch.__version__)").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
