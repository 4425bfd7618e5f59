package sealedparquet

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/teeml/teeml/sealed"
)

// benchRecord is a tabular dataset typical of FL: an ID, numeric features, a
// low-cardinality string and a label.
func benchRecord(rows int) arrow.RecordBatch {
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "x1", Type: arrow.PrimitiveTypes.Float64},
		{Name: "x2", Type: arrow.PrimitiveTypes.Float64},
		{Name: "x3", Type: arrow.PrimitiveTypes.Float64},
		{Name: "city", Type: arrow.BinaryTypes.String},
		{Name: "label", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	rng := rand.New(rand.NewPCG(1, 2))
	cities := []string{"Zurich", "Basel", "Geneva", "Bern", "Lausanne", "Lugano"}
	for i := range rows {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		for j := 1; j <= 3; j++ {
			b.Field(j).(*array.Float64Builder).Append(rng.NormFloat64())
		}
		b.Field(4).(*array.StringBuilder).Append(cities[rng.IntN(len(cities))])
		b.Field(5).(*array.Int64Builder).Append(int64(rng.IntN(2)))
	}
	return b.NewRecordBatch()
}

func writeParquet(b testing.TB, rec arrow.RecordBatch, ks *sealed.LocalKeys, plaintext bool) []byte {
	var buf bytes.Buffer
	fw, err := NewFileWriter(context.Background(), &buf, rec.Schema(), ks, WriteOptions{Keys: Keys{Default: "ds"}, Plaintext: plaintext})
	if err != nil {
		b.Fatal(err)
	}
	if err := fw.Write(rec); err != nil {
		b.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func readParquet(b testing.TB, data []byte, ks *sealed.LocalKeys) {
	rd, err := OpenReader(context.Background(), bytes.NewReader(data), "bench", ks)
	if err != nil {
		b.Fatal(err)
	}
	tbl, err := rd.ReadTable(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	tbl.Release()
}

// BenchmarkParquetEncryptedVsPlaintext writes and reads the same table as
// plaintext and as encrypted Parquet (encrypted footer, one key per column),
// alternating inside every iteration, and reports the median paired ratio
// encrypted/plaintext throughput.
func BenchmarkParquetEncryptedVsPlaintext(b *testing.B) {
	ks := newBenchKeys(b)
	for _, rows := range []int{100_000, 1_000_000} {
		rec := benchRecord(rows)
		plain := writeParquet(b, rec, ks, true)
		enc := writeParquet(b, rec, ks, false)
		ops := []struct {
			name      string
			pt, ct    func()
			sizeBytes int
		}{
			{"write", func() { writeParquet(b, rec, ks, true) }, func() { writeParquet(b, rec, ks, false) }, len(plain)},
			{"read", func() { readParquet(b, plain, ks) }, func() { readParquet(b, enc, ks) }, len(plain)},
		}
		for _, op := range ops {
			b.Run(fmt.Sprintf("%s/%drows", op.name, rows), func(b *testing.B) {
				var ratios []float64
				var tp, tc time.Duration
				for i := 0; b.Loop(); i++ {
					first, second := op.pt, op.ct
					if i%2 == 1 {
						first, second = op.ct, op.pt
					}
					t0 := time.Now()
					first()
					t1 := time.Now()
					second()
					d1, d2 := t1.Sub(t0), time.Since(t1)
					p, c := d1, d2
					if i%2 == 1 {
						p, c = d2, d1
					}
					tp += p
					tc += c
					ratios = append(ratios, float64(p)/float64(c))
				}
				slices.Sort(ratios)
				n := float64(len(ratios))
				b.ReportMetric(ratios[len(ratios)/2], "encrypted/plaintext")
				b.ReportMetric(float64(rows)*n/tp.Seconds(), "plaintext-rows/s")
				b.ReportMetric(float64(rows)*n/tc.Seconds(), "encrypted-rows/s")
				b.ReportMetric(float64(len(plain)), "plaintext-bytes")
				b.ReportMetric(float64(len(enc)), "encrypted-bytes")
			})
		}
		rec.Release()
	}
}

func newBenchKeys(b testing.TB) *sealed.LocalKeys {
	return keysFor(b, map[string][]byte{"ds": rnd()})
}
