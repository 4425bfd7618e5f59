//go:build duckdb_arrow

package engine

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	duckdb "github.com/duckdb/duckdb-go/v2"
)

// BenchmarkLoadArrow: the same string rows built into Arrow record batches
// (64k rows, string columns) and handed to DuckDB as a view through the
// Arrow C stream interface, then one CAST into the typed table. Run with
// -tags duckdb_arrow.
func BenchmarkLoadArrow(b *testing.B) {
	data := benchData()
	e, err := Open(context.Background(), Options{MemoryLimit: "2GB"})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	fields := make([]arrow.Field, len(benchCols))
	sel := make([]string, len(benchCols))
	for i, c := range benchCols {
		fields[i] = arrow.Field{Name: c.Name, Type: arrow.BinaryTypes.String, Nullable: true}
		sel[i] = "CAST(" + c.Name + " AS " + c.Type + ") AS " + c.Name
	}
	sc := arrow.NewSchema(fields, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var recs []arrow.RecordBatch
		bld := array.NewRecordBuilder(memory.DefaultAllocator, sc)
		for start := 0; start < len(data); start += 64 << 10 {
			end := min(start+64<<10, len(data))
			for _, row := range data[start:end] {
				for j, f := range row {
					bld.Field(j).(*array.StringBuilder).Append(f)
				}
			}
			recs = append(recs, bld.NewRecordBatch())
		}
		bld.Release()
		rdr, err := array.NewRecordReader(sc, recs)
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("t%d", i)
		err = e.conn.Raw(func(dc any) error {
			a, err := duckdb.NewArrowFromConn(dc.(driver.Conn))
			if err != nil {
				return err
			}
			release, err := a.RegisterView(rdr, "v_"+name)
			if err != nil {
				return err
			}
			defer release()
			_, err = dc.(driver.ExecerContext).ExecContext(context.Background(),
				"CREATE TABLE "+name+" AS SELECT "+strings.Join(sel, ", ")+" FROM v_"+name, nil)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			r.Release()
		}
		b.StopTimer()
		e.exec(context.Background(), "DROP TABLE "+name)
		b.StartTimer()
	}
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "rows/s")
}
