// Package tables reads the tables a query runs on — sealed CSV (package
// sealed, decrypted in memory, segment by authenticated segment), Parquet
// with modular encryption (package sealed/sealedparquet, decrypted in
// memory), or plaintext CSV or Parquet where the caller's policy allows
// it — and loads them into a
// sql/engine session. It decides nothing about who may see a result.
package tables

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/sealed/sealedparquet"
	"github.com/teeml/teeml/sql/engine"
)

// Formats a table file may have.
const (
	FormatSealed = "sealed" // sealed CSV (sealed.WriteFile / teeml data encrypt), header row first
	FormatCSV    = "csv"    // plaintext CSV, header row first; only with Policy.AllowPlaintext
	// FormatParquet is Parquet with modular encryption (sealedparquet;
	// decrypted in memory); unencrypted Parquet only with AllowPlaintext.
	FormatParquet = "parquet"
)

// Spec names one table: the SQL name, the file and its format.
type Spec struct {
	Name   string
	Path   string
	Format string // FormatSealed, FormatParquet, FormatCSV, or "" (detect by magic: sealed, Parquet, else csv)
}

func (s Spec) String() string { return s.Name + "=" + s.Path }

// ParseSpec parses "name=path[:format]" (the CLI's --table). The format
// suffix is taken only when it names a known format, so a path may itself
// contain ':'.
func ParseSpec(s string) (Spec, error) {
	name, path, ok := strings.Cut(s, "=")
	if !ok {
		return Spec{}, fmt.Errorf("table %q: want name=path[:sealed|parquet|csv]", s)
	}
	if err := engine.ValidIdent(name); err != nil {
		return Spec{}, fmt.Errorf("table %q: name %w", s, err)
	}
	var format string
	if i := strings.LastIndexByte(path, ':'); i >= 0 {
		switch f := path[i+1:]; f {
		case FormatSealed, FormatCSV, FormatParquet:
			path, format = path[:i], f
		}
	}
	if path == "" {
		return Spec{}, fmt.Errorf("table %q: empty path", s)
	}
	if strings.ContainsRune(path, 0) {
		return Spec{}, fmt.Errorf("table %q: path contains NUL", s)
	}
	return Spec{Name: name, Path: path, Format: format}, nil
}

// Policy says which sources are acceptable.
type Policy struct {
	// AllowPlaintext admits plaintext CSV tables. Without it only sealed
	// tables load, so a run cannot be pointed at data that was never
	// protected by mistake.
	AllowPlaintext bool
}

// Schema optionally fixes column types by column name (case-insensitive);
// columns it does not name are inferred by the engine.
type Schema map[string]string

// Load reads the table spec names and loads it into e. ks unwraps sealed
// tables' data keys (it may be nil if no table is sealed). Every error
// names the table and its file; on error the table does not exist in e.
func Load(ctx context.Context, e *engine.Engine, spec Spec, ks sealed.KeySource, pol Policy, schema Schema) (int64, error) {
	n, err := load(ctx, e, spec, ks, pol, schema)
	if err != nil {
		return 0, fmt.Errorf("table %s (%s): %w", spec.Name, spec.Path, trimTable(err, spec.Name))
	}
	return n, nil
}

// trimTable drops the engine's own "table NAME: " prefix, which Load repeats
// with the file name.
func trimTable(err error, name string) error {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "table "+name+": "); ok {
		return &prefixed{msg: rest, err: err}
	}
	return err
}

type prefixed struct {
	msg string
	err error
}

func (p *prefixed) Error() string { return p.msg }
func (p *prefixed) Unwrap() error { return errors.Unwrap(p.err) }

func load(ctx context.Context, e *engine.Engine, spec Spec, ks sealed.KeySource, pol Policy, schema Schema) (int64, error) {
	f, err := os.Open(spec.Path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	format := spec.Format
	if format == "" {
		head, _ := br.Peek(len(sealed.Magic))
		switch {
		case bytes.Equal(head, []byte(sealed.Magic)):
			format = FormatSealed
		case bytes.HasPrefix(head, []byte("PAR1")) || bytes.HasPrefix(head, []byte("PARE")):
			format = FormatParquet
		default:
			format = FormatCSV
		}
	}
	var r io.Reader
	switch format {
	case FormatParquet:
		f.Close()
		return loadParquet(ctx, e, spec, ks, pol, schema)
	case FormatSealed:
		if ks == nil {
			return 0, errors.New("sealed table but no key source (give --key-file or --kms)")
		}
		sr, err := sealed.Open(ctx, br, ks)
		if err != nil {
			return 0, err
		}
		r = bufio.NewReaderSize(sr, 1<<20)
	case FormatCSV:
		if !pol.AllowPlaintext {
			return 0, errors.New("plaintext table refused: the policy admits sealed tables only")
		}
		head, _ := br.Peek(len(sealed.Magic))
		if bytes.Equal(head, []byte(sealed.Magic)) {
			return 0, errors.New("file is sealed, not plaintext CSV")
		}
		r = br
	default:
		return 0, fmt.Errorf("unknown format %q", format)
	}
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if err == io.EOF {
		return 0, errors.New("empty: no header row")
	}
	if err != nil {
		return 0, fmt.Errorf("header: %w", err)
	}
	cols := make([]engine.Column, len(header))
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		cols[i] = engine.Column{Name: h, Type: schema[strings.ToLower(h)]}
	}
	rows := newPipeline(cr)
	defer rows.stop()
	return e.Load(ctx, spec.Name, cols, rows)
}

// pipeline decrypts and parses in its own goroutine, a batch of records
// ahead of the engine's Appender, so the two use both cores. Batches are
// handed over through a channel; stop ends the reader if the engine gives
// up first.
type pipeline struct {
	batches  chan batch
	done     chan struct{}
	finished chan struct{}
	cur      [][]string
	err      error
}

type batch struct {
	recs [][]string
	err  error // io.EOF at the end
}

const batchRows = 2048

func newPipeline(cr *csv.Reader) *pipeline {
	p := &pipeline{batches: make(chan batch, 4), done: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(p.finished)
		defer close(p.batches)
		recs := make([][]string, 0, batchRows)
		for {
			rec, err := cr.Read()
			if err == nil {
				recs = append(recs, rec)
				if len(recs) < batchRows {
					continue
				}
			}
			select {
			case p.batches <- batch{recs: recs, err: err}:
			case <-p.done:
				return
			}
			if err != nil {
				return
			}
			recs = make([][]string, 0, batchRows)
		}
	}()
	return p
}

// Next implements engine.Rows.
func (p *pipeline) Next() ([]string, error) {
	for len(p.cur) == 0 {
		if p.err != nil {
			return nil, p.err
		}
		b, ok := <-p.batches
		if !ok {
			return nil, io.ErrUnexpectedEOF // not reached: the reader always sends its error
		}
		p.cur, p.err = b.recs, b.err
	}
	r := p.cur[0]
	p.cur = p.cur[1:]
	return r, nil
}

// stop ends the reader goroutine and waits for it, so nothing reads the
// file after Load returns.
func (p *pipeline) stop() {
	close(p.done)
	<-p.finished
}

// loadParquet decrypts a Parquet file in memory (sealedparquet) and streams
// its rows as CSV fields into the engine; column types come from the
// Parquet schema where DuckDB has the same type.
func loadParquet(ctx context.Context, e *engine.Engine, spec Spec, ks sealed.KeySource, pol Policy, schema Schema) (int64, error) {
	rd, err := sealedparquet.Open(ctx, spec.Path, ks)
	if err != nil {
		return 0, err
	}
	defer rd.Close()
	if !rd.Encrypted && !pol.AllowPlaintext {
		return 0, errors.New("plaintext Parquet refused: the policy admits encrypted tables only")
	}
	sc, err := rd.Schema()
	if err != nil {
		return 0, err
	}
	cols := make([]engine.Column, sc.NumFields())
	for i, f := range sc.Fields() {
		typ := schema[strings.ToLower(f.Name)]
		if typ == "" {
			typ = duckType(f.Type)
		}
		cols[i] = engine.Column{Name: f.Name, Type: typ}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := rd.WriteCSV(ctx, pw)
		pw.CloseWithError(err) // nil: io.EOF for the reader
	}()
	defer func() {
		pr.CloseWithError(errors.New("load ended"))
		<-done
	}()
	cr := csv.NewReader(bufio.NewReaderSize(pr, 1<<20))
	if _, err := cr.Read(); err != nil { // the header WriteCSV writes: the schema's names
		return 0, fmt.Errorf("parquet: %w", err)
	}
	rows := newPipeline(cr)
	defer rows.stop()
	return e.Load(ctx, spec.Name, cols, rows)
}

// duckType is the DuckDB type that holds an Arrow type's values as
// WriteCSV renders them, or "" (infer).
func duckType(t arrow.DataType) string {
	switch t.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32:
		return "BIGINT"
	case arrow.FLOAT32, arrow.FLOAT64:
		return "DOUBLE"
	case arrow.STRING, arrow.LARGE_STRING:
		return "VARCHAR"
	case arrow.BOOL:
		return "BOOLEAN"
	case arrow.DATE32, arrow.DATE64:
		return "DATE"
	}
	return ""
}
