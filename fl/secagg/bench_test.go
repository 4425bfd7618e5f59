package secagg

import (
	"crypto/rand"
	"fmt"
	"testing"
	"time"
)

// BenchmarkSecAggRound runs one whole round (keys, shares, masking of a
// digits-MLP-sized vector of 17 226 values, a third dropped after masking,
// unmasking) for 10 and 50 clients, and reports per-client seconds and
// bytes next to what a plain float32 upload costs (SecAgg off).
func BenchmarkSecAggRound(b *testing.B) {
	const length = 17226
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			p := Params{N: n, Threshold: n/2 + 1, Len: length, FracBits: 16}
			x := make([]uint32, length)
			var clientSecs, aggSecs float64
			for b.Loop() {
				cs := make([]*Client, n)
				keys := make([]PublicKey, n)
				for i := range cs {
					cs[i], _ = NewClient(p, i, rand.Reader)
					keys[i] = cs[i].Advertise()
				}
				start := time.Now()
				for i, c := range cs {
					c.SetKeys(keys)
					sh, _ := c.Shares(rand.Reader)
					for j, s := range sh {
						if j != i {
							cs[j].Receive(i, s)
						}
					}
				}
				masked := map[int][]uint32{}
				for i, c := range cs {
					masked[i], _ = c.Mask(x)
				}
				var survivors []int
				for i := range cs {
					survivors = append(survivors, i)
				}
				var reveals []Reveal
				for _, i := range survivors[n/3:] { // a third silent after masking
					r, _ := cs[i].Unmask(survivors, nil)
					reveals = append(reveals, r)
				}
				clientSecs += time.Since(start).Seconds() / float64(n)
				start = time.Now()
				if _, err := Aggregate(p, keys, masked, reveals); err != nil {
					b.Fatal(err)
				}
				aggSecs += time.Since(start).Seconds()
			}
			// Bytes one client sends: its public key, n−1 shares, the masked
			// vector, one reveal (32 bytes per survivor or dropped client).
			sent := 32 + (n-1)*shareSize + 4*length + 32*n
			b.ReportMetric(clientSecs/float64(b.N), "client-s/round")
			b.ReportMetric(aggSecs/float64(b.N), "aggregator-s/round")
			b.ReportMetric(float64(sent), "client-bytes/round")
			b.ReportMetric(float64(4*length), "plain-bytes/round")
		})
	}
}
