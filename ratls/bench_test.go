package ratls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
)

// Handshake benchmarks: full mutual TLS 1.3 handshakes over loopback TCP
// through the gRPC TransportCredentials interface, a new connection per
// iteration, no session resumption. Run with
//
//	go test ./ratls -run '^$' -bench 'Handshake|VerifyEvidence' -benchtime 2s -count 5
//
// Each reports handshakes/s and mean latency (ms/handshake) from the
// client's view (dial, both handshakes, close).

// handshaker serves server on 127.0.0.1:0 and returns a function making
// one full client handshake (dial, handshakes, one byte, close).
func handshaker(b *testing.B, server, client credentials.TransportCredentials) func() {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lis.Close() })
	addr := lis.Addr().String()
	errs := make(chan error, 1)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				conn, _, err := server.ServerHandshake(c)
				if err != nil {
					c.Close()
					select {
					case errs <- err:
					default:
					}
					return
				}
				// Read until the client closes, so that both ends finish.
				buf := make([]byte, 1)
				_, _ = conn.Read(buf)
				conn.Close()
			}()
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conn, _, err := client.ClientHandshake(ctx, "server", raw) // authority: the plain TLS server name
		if err != nil {
			raw.Close()
			b.Fatal(err)
		}
		// One byte to the server, which reads it after its handshake (TLS
		// 1.3 servers verify the client after the client's Finished).
		if _, err := conn.Write([]byte{0}); err != nil {
			b.Fatal(err)
		}
		conn.Close()
		select {
		case err := <-errs:
			b.Fatal("server:", err)
		default:
		}
	}
}

// benchHandshakes runs b.N handshakes of client against server.
func benchHandshakes(b *testing.B, server, client credentials.TransportCredentials) {
	b.Helper()
	one := handshaker(b, server, client)
	one() // warm up (for RA-TLS: fills the verified-evidence caches)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	start := time.Now()
	for range b.N {
		one()
	}
	el := time.Since(start)
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "handshakes/s")
	b.ReportMetric(el.Seconds()*1000/float64(b.N), "ms/handshake")
	// Process CPU time (both ends are in this process): robust when the
	// machine is shared.
	b.ReportMetric(cpu.Seconds()*1000/float64(b.N), "cpu-ms/handshake")
	b.ReportMetric(0, "ns/op") // the metrics above say it
}

// cpuTime is the process's user+system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHandshakePlainTLS is the baseline: mutual TLS 1.3, ECDSA P-256
// leaves issued by a CA, standard chain verification on both sides.
func BenchmarkHandshakePlainTLS(b *testing.B) {
	s, c := plainCreds(b)
	benchHandshakes(b, s, c)
}

// plainCreds are gRPC's standard TLS credentials, mutual TLS 1.3 with
// resumption off.
func plainCreds(b *testing.B) (server, client credentials.TransportCredentials) {
	ca := newTestPKI(b)
	now := time.Now()
	leaf := func(name string) tls.Certificate {
		k := mustKey(b)
		c := mustCreate(b, &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: name},
			DNSNames: []string{name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, ca.ca, &k.PublicKey, ca.caKey)
		return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
	}
	server = credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{leaf("server")}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool,
		MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13, SessionTicketsDisabled: true,
	})
	client = credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{leaf("client")}, RootCAs: ca.pool, ServerName: "server",
		MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13,
	})
	return server, client
}

// BenchmarkHandshakeRATLSvsPlain alternates a plain and an RA-TLS (cache
// warm) handshake in every iteration, so that both see the same machine
// load; it reports both mean latencies and their ratio.
func BenchmarkHandshakeRATLSvsPlain(b *testing.B) {
	ps, pc := plainCreds(b)
	rs, rc := raTLSCreds(b, nil)
	plain, ratls := handshaker(b, ps, pc), handshaker(b, rs, rc)
	plain()
	ratls()
	b.ResetTimer()
	var tp, tr time.Duration
	for i := range b.N {
		first, second, t1, t2 := plain, ratls, &tp, &tr
		if i%2 == 1 {
			first, second, t1, t2 = ratls, plain, &tr, &tp
		}
		s := time.Now()
		first()
		m := time.Now()
		second()
		*t1 += m.Sub(s)
		*t2 += time.Since(m)
	}
	b.StopTimer()
	b.ReportMetric(tp.Seconds()*1000/float64(b.N), "plain-ms/handshake")
	b.ReportMetric(tr.Seconds()*1000/float64(b.N), "ratls-ms/handshake")
	b.ReportMetric(float64(tr)/float64(tp), "ratls/plain")
	b.ReportMetric(0, "ns/op")
}

// raTLSCreds builds mutual RA-TLS credentials in PKI mode (identity
// certificates from a CA, checked by x509 chain verification at every
// handshake) with simulated evidence.
func raTLSCreds(b *testing.B, mutate func(*Config)) (server, client credentials.TransportCredentials) {
	f := newFixture(b)
	if mutate == nil {
		mutate = func(*Config) {}
	}
	v := f.verifier(b, mutate)
	sc, cc := f.cert(b, "agg-1", "aggregator", mrGood, false), f.cert(b, "col-1", "collaborator", mrGood, false)
	var err error
	server, err = NewServerCredentials(TransportConfig{Certificates: StaticCertificate{&sc}, Verifier: v, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	client, err = NewClientCredentials(TransportConfig{Certificates: StaticCertificate{&cc}, Verifier: v, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	return server, client
}

// BenchmarkHandshakeRATLS: mutual RA-TLS, verified-evidence cache warm
// (identity, leaf signature and policy checked at every handshake).
func BenchmarkHandshakeRATLS(b *testing.B) {
	s, c := raTLSCreds(b, nil)
	benchHandshakes(b, s, c)
}

// BenchmarkHandshakeRATLSCold: the cache disabled, so each side verifies
// the (simulated) evidence at every handshake.
func BenchmarkHandshakeRATLSCold(b *testing.B) {
	s, c := raTLSCreds(b, func(cfg *Config) { cfg.CacheEntries = -1 })
	benchHandshakes(b, s, c)
}

// dcapCost verifies the real SGX quote (with its collateral, at
// dcaptest.VerifyTime) before answering with the simulated verifier: an
// RA-TLS handshake that pays for a real DCAP verification on each side.
// (The real quote's report data is not our key's, so it cannot be the
// handshake's evidence itself.)
type dcapCost struct {
	attest.Verifier
	quote []byte
	dcap  attest.Verifier
}

func (d dcapCost) Verify(ctx context.Context, ev *attest.Evidence, now time.Time) (*attest.Claims, error) {
	if _, err := d.dcap.Verify(ctx, &attest.Evidence{Quote: d.quote}, dcaptest.VerifyTime); err != nil {
		return nil, err
	}
	return d.Verifier.Verify(ctx, ev, now)
}

// BenchmarkHandshakeRATLSColdDCAP: the cache disabled and each side
// verifying a real DCAP quote per handshake (collateral from the
// verifier's Source; the DCAP verifier's own collateral caches warm).
func BenchmarkHandshakeRATLSColdDCAP(b *testing.B) {
	quote, dv, _ := realDCAP(b)
	s, c := raTLSCreds(b, func(cfg *Config) {
		cfg.CacheEntries = -1
		cfg.Evidence = dcapCost{Verifier: cfg.Evidence, quote: quote, dcap: dv}
	})
	benchHandshakes(b, s, c)
}

// BenchmarkVerifyEvidenceDCAP: verification of the real SGX quote alone.
// "warm": one verifier, its caches of checked collateral and PCK chains
// warm (per-quote signatures are always checked); "cold": a new verifier
// per call, everything parsed and checked from scratch.
func BenchmarkVerifyEvidenceDCAP(b *testing.B) {
	quote, dv, src := realDCAP(b)
	ctx := context.Background()
	b.Run("warm", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := dv.Verify(ctx, &attest.Evidence{Quote: quote}, dcaptest.VerifyTime); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			v := dcapVerifier(b, src)
			if _, err := v.Verify(ctx, &attest.Evidence{Quote: quote}, dcaptest.VerifyTime); err != nil {
				b.Fatal(err)
			}
		}
	})
}
