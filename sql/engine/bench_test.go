package engine

import (
	"context"
	"fmt"
	"io"
	"testing"
)

// benchRows are lineitem-like rows: keys, decimals, a date, flags, text.
const benchRows = 200_000

var benchCols = []Column{
	{Name: "k", Type: "BIGINT"}, {Name: "p", Type: "BIGINT"}, {Name: "qty", Type: "DECIMAL(15,2)"},
	{Name: "price", Type: "DECIMAL(15,2)"}, {Name: "disc", Type: "DECIMAL(15,2)"}, {Name: "flag", Type: "VARCHAR"},
	{Name: "ship", Type: "DATE"}, {Name: "comment", Type: "VARCHAR"},
}

func benchData() [][]string {
	out := make([][]string, benchRows)
	for i := range out {
		out[i] = []string{fmt.Sprint(i), fmt.Sprint(i % 200000), fmt.Sprint(i%50 + 1), fmt.Sprintf("%d.%02d", 900+i%100000, i%100),
			fmt.Sprintf("0.%02d", i%11), "AFNR"[i%4 : i%4+1], fmt.Sprintf("199%d-%02d-%02d", 2+i%7, 1+i%12, 1+i%28),
			"furiously regular deposits sleep carefully"}
	}
	return out
}

type replay struct {
	rows [][]string
	i    int
}

func (r *replay) Next() ([]string, error) {
	if r.i == len(r.rows) {
		return nil, io.EOF
	}
	r.i++
	return r.rows[r.i-1], nil
}

// BenchmarkLoad: string rows into a VARCHAR staging table, then one CAST
// into the typed table (Engine.Load) — through duckdb-go's Appender, or
// with -tags duckdb_arrow through Arrow record batches (LoadPath).
func BenchmarkLoad(b *testing.B) {
	data := benchData()
	e, err := Open(context.Background(), Options{MemoryLimit: "2GB"})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("t%d", i)
		if _, err := e.Load(context.Background(), name, benchCols, &replay{rows: data}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		e.exec(context.Background(), "DROP TABLE "+name)
		b.StartTimer()
	}
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.Logf("load path: %s", LoadPath)
}
