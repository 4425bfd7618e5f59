// Package tpch runs the TPC-H benchmark on teeml's SQL engine: it generates
// the eight tables with go-tpc's port of the TPC's dbgen (package
// github.com/pingcap/go-tpc/tpch/dbgen, Apache-2.0; dbgen © TPC — see
// NOTICE), writes them as plaintext CSV, sealed CSV, or both in one pass
// (sealed tables are encrypted as they are generated: their plaintext never
// reaches disk), runs the 22 queries (written for DuckDB from the TPC-H
// specification's templates with its validation parameters) and checks
// answers.
//
// What is checked: Q1 and Q6 against the same aggregates recomputed in Go
// from the generated rows (exact decimals), at any scale; the answers of all
// 22 queries over the sealed tables against the plaintext ones (identical
// text); and at SF1 (whole data) all 22 against the row count and first row
// of the TPC-H SF1 answer set (answers.go).
package tpch

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/pingcap/go-tpc/tpch/dbgen"

	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/sealed"
)

// Tables are the eight TPC-H tables, in generation order.
var Tables = []string{"nation", "region", "supplier", "customer", "part", "partsupp", "orders", "lineitem"}

// GenOptions say what to generate and where.
type GenOptions struct {
	Dir string
	SF  int64 // scale factor (dbgen takes whole numbers)
	// Limit, if positive, keeps only the first Limit rows of supplier,
	// customer, part and orders (and the partsupp and lineitem rows of the
	// kept parts and orders): a consistent prefix of the SF data, for smoke
	// tests. dbgen has no fractional scale.
	Limit int64
	Plain bool             // write DIR/plain/<table>.csv
	Keys  sealed.KeySource // if set, write DIR/sealed/<table>.csv.sealed under KeyID
	KeyID string
	Log   *slog.Logger
	// Progress, if set, is called after each table group with the tables
	// done so far.
	Progress func(done, total int)
}

// PlainPath and SealedPath are where Generate writes table t.
func PlainPath(dir, t string) string  { return filepath.Join(dir, "plain", t+".csv") }
func SealedPath(dir, t string) string { return filepath.Join(dir, "sealed", t+".csv.sealed") }

// dbgen keeps its state in package globals and prints to standard output:
// one generation at a time.
var genMu sync.Mutex

// Generate writes the tables and returns the Go-side check values of Q1 and
// Q6 over the lineitem rows it generated.
func Generate(ctx context.Context, o GenOptions) (*Expected, error) {
	if o.SF < 1 {
		return nil, fmt.Errorf("tpch: scale factor %d: want a whole number ≥ 1", o.SF)
	}
	if !o.Plain && o.Keys == nil {
		return nil, errors.New("tpch: nothing to generate: want plaintext, sealed, or both")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	for _, sub := range []string{"plain", "sealed"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("tpch: %w", err)
		}
	}
	genMu.Lock()
	defer genMu.Unlock()
	restore, err := quietStdout(o.Log)
	if err != nil {
		return nil, err
	}
	defer restore()

	dbgen.InitDbGen(o.SF)
	g := &gen{ctx: ctx, o: o, exp: newExpected()}
	groups := []struct {
		table  dbgen.Table
		names  []string
		loader func(w map[string]*csv.Writer) dbgen.Loader
		extra  []dbgen.Table // tables the group's loader is also registered under
	}{
		{dbgen.TNation, []string{"nation"}, func(w map[string]*csv.Writer) dbgen.Loader { return &loader{g: g, load: g.nation(w)} }, nil},
		{dbgen.TRegion, []string{"region"}, func(w map[string]*csv.Writer) dbgen.Loader { return &loader{g: g, load: g.region(w)} }, nil},
		{dbgen.TSupp, []string{"supplier"}, func(w map[string]*csv.Writer) dbgen.Loader { return &loader{g: g, load: g.supplier(w)} }, nil},
		{dbgen.TCust, []string{"customer"}, func(w map[string]*csv.Writer) dbgen.Loader { return &loader{g: g, load: g.customer(w)} }, nil},
		{dbgen.TPartPsupp, []string{"part", "partsupp"}, func(w map[string]*csv.Writer) dbgen.Loader { return &loader{g: g, load: g.part(w)} }, []dbgen.Table{dbgen.TPart, dbgen.TPsupp}},
		{dbgen.TOrderLine, []string{"orders", "lineitem"}, func(w map[string]*csv.Writer) dbgen.Loader { return &loader{g: g, load: g.order(w)} }, []dbgen.Table{dbgen.TOrder, dbgen.TLine}},
	}
	done := 0
	for _, grp := range groups {
		outs, writers, err := g.open(grp.names)
		if err != nil {
			return nil, err
		}
		l := grp.loader(writers).(*loader)
		loaders := map[dbgen.Table]dbgen.Loader{grp.table: l}
		if grp.extra != nil {
			// dbgen's combined generators call the first table's loader
			// with the whole row and the second's with the same row: the
			// first writes both tables, the second does nothing.
			loaders[grp.extra[0]] = l
			loaders[grp.extra[1]] = nopLoader{}
		}
		l.limit = o.Limit
		if grp.table == dbgen.TNation || grp.table == dbgen.TRegion {
			l.limit = 0
		}
		genErr := dbgen.DbGen(loaders, []dbgen.Table{grp.table})
		if l.stopped {
			genErr = nil
		}
		if l.err != nil {
			genErr = l.err
		}
		if err := g.close(outs, writers, genErr); err != nil {
			return nil, err
		}
		done += len(grp.names)
		o.Log.Info("tpch table generated", "tables", grp.names, "rows", l.rows)
		if o.Progress != nil {
			o.Progress(done, len(Tables))
		}
	}
	return g.exp, nil
}

var errStop = errors.New("row limit reached")

type loader struct {
	g       *gen
	load    func(item any) error
	limit   int64
	rows    int64
	stopped bool
	err     error
}

func (l *loader) Load(item any) error {
	if l.limit > 0 && l.rows >= l.limit {
		l.stopped = true
		return errStop
	}
	if l.rows%4096 == 0 {
		if err := l.g.ctx.Err(); err != nil {
			l.err = err
			return err
		}
	}
	l.rows++
	if err := l.load(item); err != nil {
		l.err = err
		return err
	}
	return nil
}

func (l *loader) Flush() error { return nil }

type nopLoader struct{}

func (nopLoader) Load(any) error { return nil }
func (nopLoader) Flush() error   { return nil }

type gen struct {
	ctx context.Context
	o   GenOptions
	exp *Expected
}

// output is one table being written: a pipe per destination, each drained
// by a goroutine that writes the file atomically (sealed: encrypting as it
// goes).
type output struct {
	pipes []*io.PipeWriter
	buf   *bufio.Writer
	done  chan error
	n     int
}

func (g *gen) open(names []string) ([]*output, map[string]*csv.Writer, error) {
	outs := make([]*output, 0, len(names))
	writers := map[string]*csv.Writer{}
	for _, name := range names {
		out := &output{done: make(chan error, 2)}
		var ws []io.Writer
		start := func(write func(r io.Reader) error) {
			pr, pw := io.Pipe()
			out.pipes = append(out.pipes, pw)
			ws = append(ws, pw)
			out.n++
			go func() {
				err := write(pr)
				pr.CloseWithError(err)
				out.done <- err
			}()
		}
		if g.o.Plain {
			path := PlainPath(g.o.Dir, name)
			start(func(r io.Reader) error {
				return atomicfile.WriteFile(path, 0o600, func(w io.Writer) error { _, err := io.Copy(w, r); return err })
			})
		}
		if g.o.Keys != nil {
			path := SealedPath(g.o.Dir, name)
			start(func(r io.Reader) error {
				return sealed.WriteFile(g.ctx, path, 0o600, g.o.Keys, g.o.KeyID, func(w io.Writer) error { _, err := io.Copy(w, r); return err })
			})
		}
		out.buf = bufio.NewWriterSize(io.MultiWriter(ws...), 1<<20)
		cw := csv.NewWriter(out.buf)
		if err := cw.Write(columnNames(name)); err != nil {
			return nil, nil, err
		}
		writers[name] = cw
		outs = append(outs, out)
	}
	return outs, writers, nil
}

func (g *gen) close(outs []*output, writers map[string]*csv.Writer, genErr error) error {
	var errs []error
	for _, cw := range writers {
		cw.Flush()
		if genErr == nil {
			genErr = cw.Error()
		}
	}
	for _, out := range outs {
		if genErr == nil {
			genErr = out.buf.Flush()
		}
		for _, p := range out.pipes {
			if genErr != nil {
				p.CloseWithError(genErr) // the file is not written
			} else {
				p.Close()
			}
		}
		for range out.n {
			if err := <-out.done; err != nil {
				errs = append(errs, err)
			}
		}
	}
	if genErr != nil {
		return fmt.Errorf("tpch: generate: %w", genErr)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tpch: write: %w", err)
	}
	return nil
}

func i64[T ~int64](v T) string { return strconv.FormatInt(int64(v), 10) }

func (g *gen) nation(w map[string]*csv.Writer) func(any) error {
	cw := w["nation"]
	return func(item any) error {
		n := item.(*dbgen.Nation)
		return cw.Write([]string{i64(n.Code), n.Text, i64(n.Join), n.Comment})
	}
}

func (g *gen) region(w map[string]*csv.Writer) func(any) error {
	cw := w["region"]
	return func(item any) error {
		r := item.(*dbgen.Region)
		return cw.Write([]string{i64(r.Code), r.Text, r.Comment})
	}
}

func (g *gen) supplier(w map[string]*csv.Writer) func(any) error {
	cw := w["supplier"]
	return func(item any) error {
		s := item.(*dbgen.Supp)
		return cw.Write([]string{i64(s.SuppKey), s.Name, s.Address, i64(s.NationCode), s.Phone, dbgen.FmtMoney(s.Acctbal), s.Comment})
	}
}

func (g *gen) customer(w map[string]*csv.Writer) func(any) error {
	cw := w["customer"]
	return func(item any) error {
		c := item.(*dbgen.Cust)
		return cw.Write([]string{i64(c.CustKey), c.Name, c.Address, i64(c.NationCode), c.Phone, dbgen.FmtMoney(c.Acctbal), c.MktSegment, c.Comment})
	}
}

func (g *gen) part(w map[string]*csv.Writer) func(any) error {
	pw, sw := w["part"], w["partsupp"]
	return func(item any) error {
		p := item.(*dbgen.Part)
		if err := pw.Write([]string{i64(p.PartKey), p.Name, p.Mfgr, p.Brand, p.Type, i64(p.Size), p.Container, dbgen.FmtMoney(p.RetailPrice), p.Comment}); err != nil {
			return err
		}
		for _, s := range p.S {
			if err := sw.Write([]string{i64(s.PartKey), i64(s.SuppKey), i64(s.Qty), dbgen.FmtMoney(s.SCost), s.Comment}); err != nil {
				return err
			}
		}
		return nil
	}
}

func (g *gen) order(w map[string]*csv.Writer) func(any) error {
	ow, lw := w["orders"], w["lineitem"]
	rec := make([]string, 16)
	return func(item any) error {
		o := item.(*dbgen.Order)
		if err := ow.Write([]string{i64(o.OKey), i64(o.CustKey), string(rune(o.Status)), dbgen.FmtMoney(o.TotalPrice), o.Date,
			o.OrderPriority, o.Clerk, strconv.FormatInt(o.ShipPriority, 10), o.Comment}); err != nil {
			return err
		}
		for i := range o.Lines {
			l := &o.Lines[i]
			rec[0], rec[1], rec[2], rec[3] = i64(l.OKey), i64(l.PartKey), i64(l.SuppKey), i64(l.LCnt)
			rec[4], rec[5], rec[6], rec[7] = i64(l.Quantity), dbgen.FmtMoney(l.EPrice), dbgen.FmtMoney(l.Discount), dbgen.FmtMoney(l.Tax)
			rec[8], rec[9] = string(rune(l.RFlag)), string(rune(l.LStatus))
			rec[10], rec[11], rec[12] = l.SDate, l.CDate, l.RDate
			rec[13], rec[14], rec[15] = l.ShipInstruct, l.ShipMode, l.Comment
			if err := lw.Write(rec); err != nil {
				return err
			}
			g.exp.add(int64(l.Quantity), int64(l.EPrice), int64(l.Discount), int64(l.Tax), l.RFlag, l.LStatus, l.SDate)
		}
		return nil
	}
}

// quietStdout sends what dbgen prints ("generating …") to the debug log
// instead of standard output, where the caller's results go.
func quietStdout(log *slog.Logger) (func(), error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("tpch: %w", err)
	}
	saved := os.Stdout
	os.Stdout = w
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			log.Debug("dbgen", "msg", sc.Text())
		}
	}()
	return func() {
		os.Stdout = saved
		w.Close()
		<-done
		r.Close()
	}, nil
}
