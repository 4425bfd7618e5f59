package sealed

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"io"
	"strconv"
	"testing"
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
