//go:build duckdb_arrow

package engine

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	duckdb "github.com/duckdb/duckdb-go/v2"
)

// LoadPath names how rows reach DuckDB in this build: Arrow record batches
// (duckdb_arrow build tag), or duckdb-go's Appender (the default).
const LoadPath = "arrow"

const arrowBatch = 64 << 10

// append builds Arrow record batches of strings from the rows and lets
// DuckDB scan them through the Arrow C stream interface into the VARCHAR
// staging table, one INSERT for the whole stream.
func (e *Engine) append(ctx context.Context, stage string, ncol int, rows Rows) (int64, error) {
	fields := make([]arrow.Field, ncol)
	for i := range fields {
		fields[i] = arrow.Field{Name: fmt.Sprintf("c%d", i), Type: arrow.BinaryTypes.String, Nullable: true}
	}
	rr := &rowReader{ctx: ctx, rows: rows, schema: arrow.NewSchema(fields, nil), ncol: ncol}
	rr.refs.Store(1)
	defer rr.Release()
	view := "__arrow_" + stage
	err := e.conn.Raw(func(dc any) error {
		a, err := duckdb.NewArrowFromConn(dc.(driver.Conn))
		if err != nil {
			return err
		}
		release, err := a.RegisterView(rr, view)
		if err != nil {
			return err
		}
		defer release()
		ex, ok := dc.(driver.ExecerContext)
		if !ok {
			return fmt.Errorf("driver connection %T cannot Exec", dc)
		}
		_, err = ex.ExecContext(ctx, "INSERT INTO "+quote(stage)+" SELECT * FROM "+quote(view), nil)
		return err
	})
	if rr.err != nil && !errors.Is(rr.err, io.EOF) {
		return 0, rr.err // the rows' own error (e.g. authentication) first
	}
	if err != nil {
		return 0, err
	}
	return rr.n, nil
}

// rowReader is an array.RecordReader over Rows.
type rowReader struct {
	ctx    context.Context
	rows   Rows
	schema *arrow.Schema
	ncol   int
	cur    arrow.RecordBatch
	err    error
	n      int64
	refs   atomic.Int64
}

func (r *rowReader) Retain() { r.refs.Add(1) }
func (r *rowReader) Release() {
	if r.refs.Add(-1) == 0 && r.cur != nil {
		r.cur.Release()
		r.cur = nil
	}
}
func (r *rowReader) Schema() *arrow.Schema          { return r.schema }
func (r *rowReader) Record() arrow.RecordBatch      { return r.cur }
func (r *rowReader) RecordBatch() arrow.RecordBatch { return r.cur }

func (r *rowReader) Err() error {
	if errors.Is(r.err, io.EOF) {
		return nil
	}
	return r.err
}

func (r *rowReader) Next() bool {
	if r.cur != nil {
		r.cur.Release()
		r.cur = nil
	}
	if r.err != nil {
		return false
	}
	if err := r.ctx.Err(); err != nil {
		r.err = err
		return false
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, r.schema)
	defer b.Release()
	sb := make([]*array.StringBuilder, r.ncol)
	for i := range sb {
		sb[i] = b.Field(i).(*array.StringBuilder)
	}
	k := 0
	for ; k < arrowBatch; k++ {
		rec, err := r.rows.Next()
		if err != nil {
			r.err = err
			break
		}
		if len(rec) != r.ncol {
			r.err = fmt.Errorf("row %d has %d fields, want %d", r.n+1, len(rec), r.ncol)
			break
		}
		for i, f := range rec {
			if f == "" {
				sb[i].AppendNull()
			} else {
				sb[i].Append(f)
			}
		}
		r.n++
	}
	if k == 0 || (r.err != nil && !errors.Is(r.err, io.EOF)) {
		return false
	}
	r.cur = b.NewRecordBatch()
	return true
}
