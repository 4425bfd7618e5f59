package sealed

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"io"
	"slices"
	"strconv"
	"testing"
	"time"
)

// Throughput of sealed files against raw AES-256-GCM from crypto/cipher over
// the same buffer, in the same run. Raw GCM seals the buffer in 1 MiB chunks
// (the sealed segment size) into a preallocated buffer with a fixed nonce:
// the upper bound a streaming AEAD can approach. docs/benchmarks.md quotes the
// ratio; bench/sealed_bench.sh runs this and prints it.
var benchSizes = []int{1 << 20, 16 << 20, 64 << 20}

func sizeName(n int) string { return strconv.Itoa(n>>20) + "MiB" }

func BenchmarkSealed(b *testing.B) {
	ks := testKeys(b, "bench")
	for _, n := range benchSizes {
		plain := make([]byte, n)
		rand.Read(plain)
		key := make([]byte, 32)
		rand.Read(key)
		blk, _ := aes.NewCipher(key)
		gcm, _ := cipher.NewGCM(blk)
		nonce := make([]byte, gcm.NonceSize())
		const chunk = DefaultSegmentSize - tagLen
		rawCT := make([]byte, 0, n+(n/chunk+1)*tagLen)
		for off := 0; off < n; off += chunk {
			rawCT = gcm.Seal(rawCT, nonce, plain[off:min(off+chunk, n)], nil)
		}
		var sealedCT bytes.Buffer
		w, err := NewWriter(context.Background(), &sealedCT, ks, "bench", nil)
		if err != nil {
			b.Fatal(err)
		}
		w.Write(plain)
		w.Close()

		b.Run("raw-aes-gcm-seal/"+sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			dst := make([]byte, 0, cap(rawCT))
			for b.Loop() {
				dst = dst[:0]
				for off := 0; off < n; off += chunk {
					dst = gcm.Seal(dst, nonce, plain[off:min(off+chunk, n)], nil)
				}
			}
		})
		b.Run("sealed-encrypt/"+sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				w, err := NewWriter(context.Background(), io.Discard, ks, "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := w.Write(plain); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("raw-aes-gcm-open/"+sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			dst := make([]byte, 0, n)
			for b.Loop() {
				dst = dst[:0]
				for off := 0; off < len(rawCT); off += DefaultSegmentSize {
					var err error
					if dst, err = gcm.Open(dst, nonce, rawCT[off:min(off+DefaultSegmentSize, len(rawCT))], nil); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run("sealed-decrypt/"+sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			buf := make([]byte, 256<<10)
			for b.Loop() {
				r, err := Open(context.Background(), bytes.NewReader(sealedCT.Bytes()), ks)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSealedVsRawPaired times raw AES-256-GCM and the sealed format
// alternately inside every iteration and reports the median of the paired
// ratios. On a shared, loaded machine this is far steadier than comparing two
// benchmarks run minutes apart. Two baselines:
//   - raw-mem: crypto/cipher GCM over the in-memory buffer in 1 MiB chunks
//     into a preallocated buffer (no I/O, no copies): the brief's baseline;
//   - raw-stream: the same GCM calls in a streaming loop with the I/O a
//     streaming format needs (read a chunk from an io.Reader into a buffer,
//     seal/open in place, write to an io.Writer).
func BenchmarkSealedVsRawPaired(b *testing.B) {
	ks := testKeys(b, "bench")
	for _, n := range benchSizes {
		plain := make([]byte, n)
		rand.Read(plain)
		key := make([]byte, 32)
		rand.Read(key)
		blk, _ := aes.NewCipher(key)
		gcm, _ := cipher.NewGCM(blk)
		nonce := make([]byte, gcm.NonceSize())
		const chunk = DefaultSegmentSize - tagLen
		rawCT := make([]byte, 0, n+(n/chunk+1)*tagLen)
		for off := 0; off < n; off += chunk {
			rawCT = gcm.Seal(rawCT, nonce, plain[off:min(off+chunk, n)], nil)
		}
		var sealedCT bytes.Buffer
		w, _ := NewWriter(context.Background(), &sealedCT, ks, "bench", nil)
		w.Write(plain)
		w.Close()
		dst := make([]byte, 0, cap(rawCT))
		seg := make([]byte, DefaultSegmentSize)

		rawSeal := func() {
			dst = dst[:0]
			for off := 0; off < n; off += chunk {
				dst = gcm.Seal(dst, nonce, plain[off:min(off+chunk, n)], nil)
			}
		}
		rawStreamSeal := func() {
			r := bytes.NewReader(plain)
			for {
				k, err := io.ReadFull(r, seg[:chunk])
				if k > 0 {
					io.Discard.Write(gcm.Seal(seg[:0], nonce, seg[:k], nil))
				}
				if err != nil {
					return
				}
			}
		}
		// sealedEnc is plaintext in memory, as for raw-mem: io.Copy from a
		// bytes.Reader hands the whole slice to Writer.Write.
		sealedEnc := func() {
			w, err := NewWriter(context.Background(), io.Discard, ks, "bench", nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(w, bytes.NewReader(plain)); err != nil {
				b.Fatal(err)
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
		// sealedEncStream is plaintext from a reader without WriteTo (a
		// file, a pipe): Writer.ReadFrom reads into the segment buffer, the
		// copy raw-stream makes too.
		sealedEncStream := func() {
			w, err := NewWriter(context.Background(), io.Discard, ks, "bench", nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := w.ReadFrom(struct{ io.Reader }{bytes.NewReader(plain)}); err != nil {
				b.Fatal(err)
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
		rawOpen := func() {
			dst = dst[:0]
			for off := 0; off < len(rawCT); off += DefaultSegmentSize {
				var err error
				if dst, err = gcm.Open(dst, nonce, rawCT[off:min(off+DefaultSegmentSize, len(rawCT))], nil); err != nil {
					b.Fatal(err)
				}
			}
		}
		rawStreamOpen := func() {
			r := bytes.NewReader(rawCT)
			for {
				k, err := io.ReadFull(r, seg)
				if k > 0 {
					pt, oerr := gcm.Open(seg[:0], nonce, seg[:k], nil)
					if oerr != nil {
						b.Fatal(oerr)
					}
					io.Discard.Write(pt)
				}
				if err != nil {
					return
				}
			}
		}
		sealedDec := func() {
			r, err := Open(context.Background(), bytes.NewReader(sealedCT.Bytes()), ks)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := r.WriteTo(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
		for _, op := range []struct {
			name                   string
			raw, rawStream, sealed func()
			sealedStream           func() // encrypt: the ReadFrom path
		}{{"encrypt", rawSeal, rawStreamSeal, sealedEnc, sealedEncStream}, {"decrypt", rawOpen, rawStreamOpen, sealedDec, nil}} {
			b.Run(op.name+"/"+sizeName(n), func(b *testing.B) {
				var memRatios, streamRatios, sStreamRatios []float64
				fns := []func(){op.raw, op.rawStream, op.sealed}
				if op.sealedStream != nil {
					fns = append(fns, op.sealedStream)
				}
				tot := make([]time.Duration, len(fns))
				t := make([]time.Duration, len(fns))
				for i := 0; b.Loop(); i++ {
					// Rotate the order so no side always runs on a warm cache.
					for j := range fns {
						k := (i + j) % len(fns)
						t0 := time.Now()
						fns[k]()
						t[k] = time.Since(t0)
						tot[k] += t[k]
					}
					memRatios = append(memRatios, float64(t[0])/float64(t[2]))
					streamRatios = append(streamRatios, float64(t[1])/float64(t[2]))
					if len(fns) > 3 {
						sStreamRatios = append(sStreamRatios, float64(t[1])/float64(t[3]))
					}
				}
				median := func(r []float64) float64 { slices.Sort(r); return r[len(r)/2] }
				iters := float64(len(memRatios))
				b.ReportMetric(median(memRatios), "sealed/raw-mem")
				b.ReportMetric(median(streamRatios), "sealed/raw-stream")
				b.ReportMetric(float64(n)*iters/tot[0].Seconds()/1e6, "raw-mem-MB/s")
				b.ReportMetric(float64(n)*iters/tot[1].Seconds()/1e6, "raw-stream-MB/s")
				b.ReportMetric(float64(n)*iters/tot[2].Seconds()/1e6, "sealed-MB/s")
				if len(fns) > 3 {
					b.ReportMetric(median(sStreamRatios), "sealed-readfrom/raw-stream")
					b.ReportMetric(float64(n)*iters/tot[3].Seconds()/1e6, "sealed-readfrom-MB/s")
				}
			})
		}
	}
}
