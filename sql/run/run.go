// Package run is the query runner of teeml's analytics: it opens a
// locked-down engine (sql/engine), loads the named tables (sql/tables), runs
// one query, and hands the result to an output: printed as CSV, or written
// sealed. Table sourcing, the engine and the output are separate steps so a
// clean room can put its own key release (bound to a contract) in front and
// its own output rules (aggregates only, minimum group size) behind.
package run

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/sql/engine"
	"github.com/teeml/teeml/sql/tables"
)

// Request is one query over some tables.
type Request struct {
	Tables []tables.Spec
	Query  string
	Keys   sealed.KeySource // unwraps the sealed tables' data keys
	Policy tables.Policy
	Engine engine.Options
	Log    *slog.Logger
}

// Stats says how long the steps took.
type Stats struct {
	Load  time.Duration
	Query time.Duration
	Rows  map[string]int64 // rows loaded per table
}

// Query loads every table and runs the query. A table that fails to load
// (bad key, failed authentication, malformed CSV, refused by policy) stops
// the run before the query, with an error naming the table.
func Query(ctx context.Context, req Request) (*engine.Result, *Stats, error) {
	if req.Query == "" {
		return nil, nil, fmt.Errorf("sql run: no query")
	}
	if req.Log == nil {
		req.Log = slog.Default()
	}
	if req.Engine.Log == nil {
		req.Engine.Log = req.Log
	}
	seen := map[string]bool{}
	for _, t := range req.Tables {
		if seen[t.Name] {
			return nil, nil, fmt.Errorf("sql run: table %s given twice", t.Name)
		}
		seen[t.Name] = true
	}
	e, err := engine.Open(ctx, req.Engine)
	if err != nil {
		return nil, nil, err
	}
	defer e.Close()
	st := &Stats{Rows: map[string]int64{}}
	start := time.Now()
	for _, t := range req.Tables {
		n, err := tables.Load(ctx, e, t, req.Keys, req.Policy, nil)
		if err != nil {
			return nil, nil, err
		}
		st.Rows[t.Name] = n
		req.Log.Info("table loaded", "table", t.Name, "rows", n)
	}
	st.Load = time.Since(start)
	start = time.Now()
	res, err := e.Query(ctx, req.Query)
	if err != nil {
		return nil, nil, err
	}
	st.Query = time.Since(start)
	return res, st, nil
}

// WriteCSV writes res as CSV with a header row; NULL is the empty field.
func WriteCSV(w io.Writer, res *engine.Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(res.Columns); err != nil {
		return err
	}
	rec := make([]string, len(res.Columns))
	for _, row := range res.Rows {
		for i, v := range row {
			rec[i] = v.Text
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteSealed writes res as sealed CSV at path under keyID: the plaintext
// exists only in memory, and the file appears only complete.
func WriteSealed(ctx context.Context, path string, ks sealed.KeySource, keyID string, res *engine.Result) error {
	if err := sealed.WriteFile(ctx, path, 0o600, ks, keyID, func(w io.Writer) error { return WriteCSV(w, res) }); err != nil {
		return fmt.Errorf("sql result %s: %w", path, err)
	}
	return nil
}
