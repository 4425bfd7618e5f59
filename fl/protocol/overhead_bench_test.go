package protocol

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/teeml/teeml/fl/scheduler"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/ratls"
)

// Protocol overhead benchmark (issue 5, benchmark b).
//
//	go test ./fl/protocol -run '^$' -bench RoundOverhead -benchtime 2x
//
// BenchmarkRoundOverhead8x10M runs, per iteration, a federation of
// overheadRounds rounds: one aggregator and 8 collaborators on loopback
// over RA-TLS (pki CA, simulated evidence, as in TestFederationDigits), a
// model of 10M float32 parameters (4 tensors of 2.5M) and a trainer that
// returns the global weights plus a tiny deterministic perturbation, so the
// round time is protocol + aggregation only. Reported metrics:
//
//   - s/round: mean RoundSummary.Seconds (round open to aggregated);
//   - wire-B/round: bytes read + written on the aggregator's TCP
//     connections (TLS records, HTTP/2 framing, handshakes, polling and
//     all), counted by wrapping the listener's net.Conn, per round;
//   - wire/payload: wire-B/round / (2·N·model bytes), goal ≤ 1.05;
//   - chunk/payload: RoundSummary BytesIn+BytesOut / (2·N·model bytes);
//   - rawTLS-s: the reference: the same 2·N·model bytes through N
//     concurrent raw crypto/tls 1.3 loopback connections (each receives
//     then sends one model's worth, like a download then an upload);
//   - round/rawTLS: s/round / rawTLS-s;
//   - cpu-s/round, rawTLS-cpu-s and cpu-round/rawTLS: the same in CPU
//     seconds of this process (both ends of every connection, the
//     stand-in trainer and connection setup included), which other load
//     on the machine disturbs far less than wall time;
//   - fedavg-s: FedAvg.AggregateFit over N×10M in-process, the part of a
//     round that is aggregation.
const (
	overheadCollabs = 8
	overheadTensors = 4
	overheadTensor  = 2_500_000 // parameters per tensor: 10M in all
	overheadRounds  = 3
)

// overheadSize is the size of one iteration: 10M parameters and
// overheadRounds rounds, or under -short (CI runs every benchmark once with
// -short) a tenth of the model and one round: the same code in seconds,
// with metrics that are not comparable to the full run's.
func overheadSize() (perTensor, rounds int) {
	if testing.Short() {
		return overheadTensor / 10, 1
	}
	return overheadTensor, overheadRounds
}

func BenchmarkRoundOverhead8x10M(b *testing.B) {
	names := make([]string, overheadCollabs)
	for i := range names {
		names[i] = fmt.Sprintf("col-%d", i+1)
	}
	env := newFedEnv(b, names...)
	perTensor, nRounds := overheadSize()
	if perTensor != overheadTensor {
		b.Logf("-short: %d parameters per tensor, %d round(s) per iteration", perTensor, nRounds)
	}
	initial := make(tensor.Weights, overheadTensors)
	for i := range initial {
		d := make([]float32, perTensor)
		for j := range d {
			d[j] = float32((j+i)%1000) * 1e-3
		}
		initial[i] = tensor.Tensor{Name: fmt.Sprintf("layer%d/w", i), Shape: []int{perTensor / 1000, 1000}, Data: d}
	}
	modelBytes := float64(4 * initial.NumParams())
	payload := 2 * overheadCollabs * modelBytes

	// Aggregation alone, in-process.
	fedavg := benchFedAvg(b, initial)

	var roundSec, wire, chunks, rawSec, roundCPU, rawCPU float64
	var rounds, raws int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cpu0 := processCPU()
		hist, w := env.federation(initial, names, nRounds)
		roundCPU += (processCPU() - cpu0).Seconds()
		for _, s := range hist {
			b.Logf("iteration %d round %d: %.3f s, chunk bytes in %d out %d", i+1, s.Round, s.Seconds, s.BytesIn, s.BytesOut)
			roundSec += s.Seconds
			chunks += float64(s.BytesIn + s.BytesOut)
		}
		rounds += len(hist)
		wire += float64(w)

		b.StopTimer()
		cpu0 = processCPU()
		raw := rawTLSTransfer(b, overheadCollabs, int(modelBytes))
		rawCPU += (processCPU() - cpu0).Seconds()
		b.Logf("iteration %d: wire %d B in %d rounds; raw TLS reference %.3f s", i+1, w, len(hist), raw)
		rawSec += raw
		raws++
		b.StartTimer()
	}
	b.StopTimer()
	perRound := roundSec / float64(rounds)
	raw := rawSec / float64(raws)
	b.ReportMetric(perRound, "s/round")
	b.ReportMetric(wire/float64(rounds), "wire-B/round")
	b.ReportMetric(wire/float64(rounds)/payload, "wire/payload")
	b.ReportMetric(chunks/float64(rounds)/payload, "chunk/payload")
	b.ReportMetric(raw, "rawTLS-s")
	b.ReportMetric(perRound/raw, "round/rawTLS")
	b.ReportMetric(fedavg, "fedavg-s")
	if processCPU() >= 0 {
		b.ReportMetric(roundCPU/float64(rounds), "cpu-s/round")
		b.ReportMetric(rawCPU/float64(raws), "rawTLS-cpu-s")
		b.ReportMetric(roundCPU/float64(rounds)/(rawCPU/float64(raws)), "cpu-round/rawTLS")
	}
}

// benchFedAvg times FedAvg over overheadCollabs perturbed copies of
// initial (best of 3).
func benchFedAvg(b *testing.B, initial tensor.Weights) float64 {
	b.Helper()
	results := make([]strategy.FitResult, overheadCollabs)
	for i := range results {
		w, _, _, err := (&benchTrainer{id: i}).Train(context.Background(), initial, nil)
		if err != nil {
			b.Fatal(err)
		}
		results[i] = strategy.FitResult{Client: fmt.Sprintf("col-%d", i+1), Weights: w, NumExamples: 100 + i}
	}
	best := 0.0
	s := &strategy.FedAvg{}
	for r := 1; r <= 3; r++ {
		start := time.Now()
		if _, _, err := s.AggregateFit(r, initial, results); err != nil {
			b.Fatal(err)
		}
		if d := time.Since(start).Seconds(); best == 0 || d < best {
			best = d
		}
	}
	return best
}

// benchTrainer returns the global weights plus a tiny deterministic
// perturbation (no training).
type benchTrainer struct{ id int }

func (t *benchTrainer) Train(_ context.Context, g tensor.Weights, _ map[string]float64) (tensor.Weights, int, map[string]float64, error) {
	// One pass over the model (not a Clone and then a pass), so that the
	// stand-in for training costs as little as it can.
	w := make(tensor.Weights, len(g))
	eps := float32(t.id+1) * 1e-6
	for i, x := range g {
		d := make([]float32, len(x.Data))
		for j, v := range x.Data {
			d[j] = v + eps
		}
		w[i] = tensor.Tensor{Name: x.Name, Shape: slices.Clone(x.Shape), Data: d}
	}
	return w, 100 + t.id, map[string]float64{"loss": 0.5}, nil
}

func (t *benchTrainer) Evaluate(context.Context, tensor.Weights) (int, float64, map[string]float64, error) {
	return 100 + t.id, 1, map[string]float64{"accuracy": 0.5}, nil
}

// countingListener counts the bytes read from and written to its
// accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n.Add(int64(k))
	return k, err
}

func (c countingConn) Write(p []byte) (int, error) {
	k, err := c.Conn.Write(p)
	c.n.Add(int64(k))
	return k, err
}

// transport is a party's RA-TLS configuration: its leaf for mrGood under its
// identity, verifying the other side against the federation.
func (e *fedEnv) transport(name string) ratls.TransportConfig {
	c := e.leaf(e.members[name], mrGood)
	return ratls.TransportConfig{Certificates: ratls.StaticCertificate{Cert: c}, Verifier: e.verifier(quiet()), Logger: quiet()}
}

// federation runs one federation of rounds rounds from initial and
// returns its round summaries and the bytes on the aggregator's TCP
// connections.
func (e *fedEnv) federation(initial tensor.Weights, names []string, rounds int) ([]RoundSummary, int64) {
	return e.federationWith(initial, names, rounds, nil)
}

// federationWith is federation, with secure aggregation if sa is set.
func (e *fedEnv) federationWith(initial tensor.Weights, names []string, rounds int, sa *scheduler.SecAgg) ([]RoundSummary, int64) {
	e.t.Helper()
	agg, err := NewAggregator(AggregatorConfig{
		PlanHash: planHash, Strategy: &strategy.FedAvg{}, Initial: initial,
		Collaborators: names, Rounds: rounds, RoundTimeout: 5 * time.Minute,
		RetryAfter: 10 * time.Millisecond, StatusEvery: time.Minute, Logger: quiet(), SecAgg: sa,
		SecAggVerifier: secaggVerifier(e, sa),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	creds, err := ratls.NewServerCredentials(e.transport("aggregator"))
	if err != nil {
		e.t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	var wire atomic.Int64
	srv := grpc.NewServer(append(ServerOptions(), grpc.Creds(creds))...)
	agg.Register(srv)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(countingListener{Listener: lis, n: &wire}) }()
	defer func() { srv.Stop(); <-served }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cols := make([]*Collaborator, len(names))
	for i, n := range names {
		cc, err := ratls.NewClientCredentials(e.transport(n))
		if err != nil {
			e.t.Fatal(err)
		}
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(cc))
		if err != nil {
			e.t.Fatal(err)
		}
		defer conn.Close()
		var id *SecAggIdentity
		if sa != nil {
			m := e.members[n]
			id = &SecAggIdentity{Key: m.Key, Cert: m.Issued.Cert, Verifier: e.fe.Fed}
		}
		if cols[i], err = NewCollaborator(CollaboratorConfig{Name: n, PlanHash: planHash, Conn: conn,
			Trainer: &benchTrainer{id: i}, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
			Logger: quiet(), SecAgg: id}); err != nil {
			e.t.Fatal(err)
		}
	}
	type out struct {
		history []RoundSummary
		err     error
	}
	aggDone := make(chan out, 1)
	start := wire.Load()
	go func() {
		_, h, err := agg.Run(ctx)
		aggDone <- out{h, err}
	}()
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, c := range cols {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.Run(ctx) }()
	}
	wg.Wait()
	res := <-aggDone
	for i, err := range errs {
		if err != nil {
			e.t.Fatalf("%s: %v", names[i], err)
		}
	}
	if res.err != nil {
		e.t.Fatalf("aggregator: %v", res.err)
	}
	if len(res.history) != rounds {
		e.t.Fatalf("%d rounds, want %d", len(res.history), rounds)
	}
	for _, s := range res.history {
		if sa != nil && len(s.Participants) == len(names) && len(s.Accepted) == 1 {
			continue // one result: the unmasked sum
		}
		if len(s.Accepted) != len(names) {
			e.t.Fatalf("round %d: accepted %v rejected %v", s.Round, s.Accepted, s.Rejected)
		}
	}
	return res.history, wire.Load() - start
}

// secaggVerifier is the aggregator's key-certificate check, as fl/run
// sets it, when sa is set.
func secaggVerifier(e *fedEnv, sa *scheduler.SecAgg) IdentityVerifier {
	if sa == nil {
		return nil
	}
	return e.fe.Fed
}

// rawTLSTransfer pushes, over n concurrent TLS 1.3 loopback connections
// (handshakes done beforehand), size bytes from server to client and then
// size bytes back, and returns the seconds the transfers took.
func rawTLSTransfer(tb testing.TB, n, size int) float64 {
	tb.Helper()
	cert := selfSigned(tb)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		tb.Fatal(err)
	}
	defer lis.Close()
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	go1 := make(chan struct{})
	var ready, done sync.WaitGroup
	errs := make(chan error, 2*n)
	buf := make([]byte, 1<<20)
	// Servers: send size bytes, then read size bytes.
	for range n {
		ready.Add(2)
		done.Add(2)
		go func() {
			defer done.Done()
			c, err := lis.Accept()
			if err != nil {
				ready.Done()
				errs <- err
				return
			}
			defer c.Close()
			err = c.(*tls.Conn).Handshake()
			ready.Done()
			if err != nil {
				errs <- err
				return
			}
			<-go1
			if err := sendN(c, buf, size); err != nil {
				errs <- err
				return
			}
			if _, err := io.CopyN(io.Discard, c, int64(size)); err != nil {
				errs <- err
			}
		}()
		// Clients: read size bytes, then send size bytes.
		go func() {
			defer done.Done()
			c, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "raw.test", MinVersion: tls.VersionTLS13})
			if err != nil {
				ready.Done()
				errs <- err
				return
			}
			defer c.Close()
			err = c.Handshake()
			ready.Done()
			if err != nil {
				errs <- err
				return
			}
			<-go1
			if _, err := io.CopyN(io.Discard, c, int64(size)); err != nil {
				errs <- err
				return
			}
			if err := sendN(c, buf, size); err != nil {
				errs <- err
			}
		}()
	}
	ready.Wait()
	start := time.Now()
	close(go1)
	done.Wait()
	d := time.Since(start).Seconds()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	return d
}

func sendN(w io.Writer, buf []byte, n int) error {
	for n > 0 {
		k := min(n, len(buf))
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func selfSigned(tb testing.TB) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "raw.test"}, DNSNames: []string{"raw.test"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
