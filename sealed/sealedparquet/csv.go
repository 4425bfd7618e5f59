package sealedparquet

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/sealed"
)

// InferSchema reads a CSV with a header row and types each column: int64 if
// every non-empty value parses as an integer, else float64 if every one
// parses as a float, else string. Empty values are nulls.
func InferSchema(r io.Reader) (*arrow.Schema, int64, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, 0, fmt.Errorf("csv header: %w", err)
	}
	names := append([]string(nil), head...)
	seen := map[string]bool{}
	for i, n := range names {
		if n == "" {
			return nil, 0, fmt.Errorf("csv header: column %d has no name", i+1)
		}
		if seen[n] {
			return nil, 0, fmt.Errorf("csv header: column %q appears twice", n)
		}
		seen[n] = true
	}
	isInt := make([]bool, len(names))
	isFloat := make([]bool, len(names))
	for i := range names {
		isInt[i], isFloat[i] = true, true
	}
	var rows int64
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("csv: %w", err)
		}
		rows++
		for i, v := range rec {
			if v == "" {
				continue
			}
			if isInt[i] {
				if _, err := strconv.ParseInt(v, 10, 64); err != nil {
					isInt[i] = false
				}
			}
			if isFloat[i] && !isInt[i] {
				if _, err := strconv.ParseFloat(v, 64); err != nil {
					isFloat[i] = false
				}
			}
		}
	}
	fields := make([]arrow.Field, len(names))
	for i, n := range names {
		var t arrow.DataType = arrow.BinaryTypes.String
		switch {
		case isInt[i]:
			t = arrow.PrimitiveTypes.Int64
		case isFloat[i]:
			t = arrow.PrimitiveTypes.Float64
		}
		fields[i] = arrow.Field{Name: n, Type: t, Nullable: true}
	}
	return arrow.NewSchema(fields, nil), rows, nil
}

// WriteOptions control CSVToParquet.
type WriteOptions struct {
	Keys         Keys // which key IDs protect the footer and columns
	Plaintext    bool // write unencrypted Parquet (for comparison only)
	RowGroupRows int  // rows per row group (default 1 Mi)
	BatchRows    int  // rows per Arrow batch while converting (default 64 Ki)
}

// CSVToParquet converts the CSV at src into (encrypted) Parquet at dst, in two
// streaming passes (infer types, then convert), written atomically.
func CSVToParquet(ctx context.Context, src, dst string, ks sealed.KeySource, opt WriteOptions) (rows int64, err error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc, _, err := InferSchema(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", src, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	wprops, err := writerProps(ctx, sc, ks, opt)
	if err != nil {
		return 0, err
	}
	batch := opt.BatchRows
	if batch <= 0 {
		batch = 64 << 10
	}
	err = atomicfile.WriteFile(dst, 0o600, func(w io.Writer) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("parquet write: %v", p)
			}
		}()
		fw, err := pqarrow.NewFileWriter(sc, w, wprops, pqarrow.DefaultWriterProps())
		if err != nil {
			return err
		}
		rows, err = convert(ctx, f, sc, fw, batch)
		if err != nil {
			fw.Close()
			return err
		}
		return fw.Close()
	})
	if err != nil {
		return 0, fmt.Errorf("%s -> %s: %w", src, dst, err)
	}
	return rows, nil
}

// writerProps are teeml's Parquet writer properties: Snappy, and modular
// encryption with fresh data keys unless opt.Plaintext.
func writerProps(ctx context.Context, sc *arrow.Schema, ks sealed.KeySource, opt WriteOptions) (*parquet.WriterProperties, error) {
	wprops := []parquet.WriterProperty{parquet.WithCompression(compress.Codecs.Snappy), parquet.WithCreatedBy("teeml")}
	if opt.RowGroupRows > 0 {
		wprops = append(wprops, parquet.WithMaxRowGroupLength(int64(opt.RowGroupRows)))
	}
	if !opt.Plaintext {
		ep, err := EncryptionProperties(ctx, ks, sc, opt.Keys)
		if err != nil {
			return nil, err
		}
		wprops = append(wprops, parquet.WithEncryptionProperties(ep))
	}
	return parquet.NewWriterProperties(wprops...), nil
}

// NewFileWriter returns an Arrow-to-Parquet writer onto w for schema sc,
// encrypted as opt says (fresh data keys from ks for the footer and every
// column). The caller writes record batches and must Close it; arrow-go may
// panic on internal errors, which callers of long writes should recover.
func NewFileWriter(ctx context.Context, w io.Writer, sc *arrow.Schema, ks sealed.KeySource, opt WriteOptions) (*pqarrow.FileWriter, error) {
	props, err := writerProps(ctx, sc, ks, opt)
	if err != nil {
		return nil, err
	}
	return pqarrow.NewFileWriter(sc, w, props, pqarrow.DefaultWriterProps())
}

func convert(ctx context.Context, r io.Reader, sc *arrow.Schema, fw *pqarrow.FileWriter, batch int) (int64, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	if _, err := cr.Read(); err != nil {
		return 0, err
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	var rows int64
	flush := func() error {
		rec := b.NewRecordBatch()
		defer rec.Release()
		if rec.NumRows() == 0 {
			return nil
		}
		return fw.WriteBuffered(rec)
	}
	line := 1
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line++
		if err != nil {
			return 0, fmt.Errorf("csv: %w", err)
		}
		for i, v := range rec {
			fb := b.Field(i)
			if v == "" {
				fb.AppendNull()
				continue
			}
			switch fb := fb.(type) {
			case *array.Int64Builder:
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("csv line %d column %q: %w (file changed between passes?)", line, sc.Field(i).Name, err)
				}
				fb.Append(n)
			case *array.Float64Builder:
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return 0, fmt.Errorf("csv line %d column %q: %w (file changed between passes?)", line, sc.Field(i).Name, err)
				}
				fb.Append(x)
			case *array.StringBuilder:
				fb.Append(v)
			}
		}
		rows++
		if rows%int64(batch) == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	return rows, flush()
}

// ParquetToCSV decrypts (if needed) the Parquet file src and writes it as CSV
// to dst, batch by batch. dst appears only after every batch decrypted.
func ParquetToCSV(ctx context.Context, src, dst string, ks sealed.KeySource) (rows int64, encrypted bool, err error) {
	rd, err := Open(ctx, src, ks)
	if err != nil {
		return 0, false, err
	}
	defer rd.Close()
	err = atomicfile.WriteFile(dst, 0o600, func(w io.Writer) error {
		rows, err = rd.WriteCSV(ctx, w)
		return err
	})
	return rows, rd.Encrypted, err
}

// WriteCSV writes every row as CSV with a header row.
func (r *Reader) WriteCSV(ctx context.Context, w io.Writer) (rows int64, err error) {
	rr, err := r.RecordReader(ctx)
	if err != nil {
		return 0, err
	}
	defer rr.Release()
	defer r.ret.guard("columns", &err)
	sc := rr.Schema()
	cw := csv.NewWriter(w)
	head := make([]string, sc.NumFields())
	for i, f := range sc.Fields() {
		head[i] = f.Name
	}
	if err := cw.Write(head); err != nil {
		return 0, err
	}
	row := make([]string, sc.NumFields())
	for rr.Next() {
		rec := rr.RecordBatch()
		for i := 0; i < int(rec.NumRows()); i++ {
			for j := range row {
				col := rec.Column(j)
				if col.IsNull(i) {
					row[j] = ""
					continue
				}
				switch c := col.(type) {
				case *array.Int64:
					row[j] = strconv.FormatInt(c.Value(i), 10)
				case *array.Float64:
					row[j] = strconv.FormatFloat(c.Value(i), 'g', -1, 64)
				case *array.String:
					row[j] = c.Value(i)
				default:
					row[j] = col.ValueStr(i)
				}
			}
			if err := cw.Write(row); err != nil {
				return 0, err
			}
		}
		rows += rec.NumRows()
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		if kerr := r.ret.lastErrOrNil(); kerr != nil {
			return 0, fmt.Errorf("parquet: %w", kerr)
		}
		if strings.Contains(err.Error(), "message authentication failed") {
			return 0, fmt.Errorf("parquet: column data %w (file modified, or wrong column key): %w", ErrAuthentication, err)
		}
		return 0, fmt.Errorf("parquet: %w", err)
	}
	cw.Flush()
	return rows, cw.Error()
}
