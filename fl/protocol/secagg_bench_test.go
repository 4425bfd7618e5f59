package protocol

import (
	"fmt"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/scheduler"
)

// Secure aggregation overhead (issue 20).
//
//	go test ./fl/protocol -run '^$' -bench SecAggOverhead -benchtime 1x
//
// Each iteration runs, side by side in one process, two federations of
// secaggRounds rounds over loopback RA-TLS with the same N collaborators,
// the same model (secaggParams float32 parameters) and the stand-in
// trainer of BenchmarkRoundOverhead8x10M: plain FedAvg, then FedAvg with
// secure aggregation (dropout tolerance 1/3, 16 fraction bits). Reported
// per round: plain-s, secagg-s and their ratio time-x (mean
// RoundSummary.Seconds: round open to aggregated, so the advertise, share
// and unmask phases are in); plain-wireB, secagg-wireB and bytes-x (bytes
// on the aggregator's TCP connections, handshakes and polling included).
// The aggregator checks the key certificates as fl/run's does
// (SecAggVerifier). plain-cpu-s, secagg-cpu-s and cpu-x are the same in
// CPU seconds of the whole process (aggregator and every collaborator,
// connection set-up included, per round), which other load on the
// machine disturbs far less than wall time.
const (
	secaggParams = 10_000
	secaggRounds = 2
)

func BenchmarkSecAggOverhead(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("col-%d", i+1)
			}
			env := newFedEnv(b, names...)
			initial := testWeights([]int{secaggParams / 10, 10})
			sa := &scheduler.SecAgg{Dropout: 1.0 / 3, FracBits: 16, Clip: 1, PhaseTimeout: time.Minute}
			var plainS, saS, plainB, saB, plainCPU, saCPU float64
			for range b.N {
				c0 := processCPU()
				h, w := env.federationWith(initial, names, secaggRounds, nil)
				c1 := processCPU()
				plainS += meanSeconds(h)
				plainB += float64(w) / secaggRounds
				plainCPU += (c1 - c0).Seconds() / secaggRounds
				h, w = env.federationWith(initial, names, secaggRounds, sa)
				saCPU += (processCPU() - c1).Seconds() / secaggRounds
				saS += meanSeconds(h)
				saB += float64(w) / secaggRounds
			}
			k := float64(b.N)
			b.ReportMetric(plainS/k, "plain-s/round")
			b.ReportMetric(saS/k, "secagg-s/round")
			b.ReportMetric(saS/plainS, "time-x")
			b.ReportMetric(plainB/k, "plain-wireB/round")
			b.ReportMetric(saB/k, "secagg-wireB/round")
			b.ReportMetric(saB/plainB, "bytes-x")
			if plainCPU > 0 {
				b.ReportMetric(plainCPU/k, "plain-cpu-s/round")
				b.ReportMetric(saCPU/k, "secagg-cpu-s/round")
				b.ReportMetric(saCPU/plainCPU, "cpu-x")
			}
		})
	}
}

func meanSeconds(h []RoundSummary) float64 {
	var s float64
	for _, r := range h {
		s += r.Seconds
	}
	return s / float64(len(h))
}
