//go:build !duckdb_arrow

package engine

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// LoadPath names how rows reach DuckDB in this build: duckdb-go's Appender
// (the default), or Arrow record batches with the duckdb_arrow build tag.
const LoadPath = "appender"

// append hands the rows to DuckDB through the Appender, row by row, into
// the VARCHAR staging table.
func (e *Engine) append(ctx context.Context, stage string, ncol int, rows Rows) (n int64, err error) {
	err = e.conn.Raw(func(dc any) error {
		a, err := duckdb.NewAppenderFromConn(dc.(driver.Conn), "", stage)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := a.Close(); err == nil && cerr != nil {
				err = cerr
			}
		}()
		vals := make([]driver.Value, ncol)
		for {
			if n%(64<<10) == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			rec, err := rows.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if len(rec) != ncol {
				return fmt.Errorf("row %d has %d fields, want %d", n+1, len(rec), ncol)
			}
			for i, f := range rec {
				if f == "" {
					vals[i] = nil
				} else {
					vals[i] = f
				}
			}
			if err := a.AppendRow(vals...); err != nil {
				return fmt.Errorf("row %d: %w", n+1, err)
			}
			n++
		}
	})
	return n, err
}
