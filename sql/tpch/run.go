package tpch

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/sql/engine"
	"github.com/teeml/teeml/sql/tables"
)

// RunOptions say which copy of the tables to load and how to run.
type RunOptions struct {
	Dir    string
	SF     int64
	Sealed bool             // load DIR/sealed/*.csv.sealed (else DIR/plain/*.csv)
	Keys   sealed.KeySource // for the sealed copy
	Engine engine.Options
	Log    *slog.Logger
}

// Answer is one query's result and time.
type Answer struct {
	Query   int
	Time    time.Duration
	Columns []string
	Rows    [][]string // NULL is ""
}

// Run is one load of the eight tables and the 22 queries over them.
type Run struct {
	Sealed  bool
	Load    time.Duration
	Rows    map[string]int64
	Answers [NumQueries]Answer
}

// Total is the load time plus every query's time.
func (r *Run) Total() time.Duration {
	t := r.Load
	for _, a := range r.Answers {
		t += a.Time
	}
	return t
}

// RunQueries loads the tables into a fresh engine and runs the 22 queries.
func RunQueries(ctx context.Context, o RunOptions) (*Run, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Engine.Log == nil {
		o.Engine.Log = o.Log
	}
	e, err := engine.Open(ctx, o.Engine)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	run := &Run{Sealed: o.Sealed, Rows: map[string]int64{}}
	start := time.Now()
	for _, t := range Tables {
		spec := tables.Spec{Name: t, Path: PlainPath(o.Dir, t), Format: tables.FormatCSV}
		if o.Sealed {
			spec = tables.Spec{Name: t, Path: SealedPath(o.Dir, t), Format: tables.FormatSealed}
		}
		n, err := tables.Load(ctx, e, spec, o.Keys, tables.Policy{AllowPlaintext: !o.Sealed}, Schema(t))
		if err != nil {
			return nil, fmt.Errorf("tpch: %w", err)
		}
		run.Rows[t] = n
	}
	run.Load = time.Since(start)
	o.Log.Info("tpch tables loaded", "sealed", o.Sealed, "seconds", run.Load.Seconds())
	for i := range NumQueries {
		q, err := Query(i+1, o.SF)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		res, err := e.Query(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("tpch Q%d: %w", i+1, err)
		}
		a := Answer{Query: i + 1, Time: time.Since(start), Columns: res.Columns}
		for _, row := range res.Rows {
			r := make([]string, len(row))
			for j, v := range row {
				r[j] = v.Text
			}
			a.Rows = append(a.Rows, r)
		}
		run.Answers[i] = a
		o.Log.Debug("tpch query", "q", i+1, "rows", len(a.Rows), "ms", a.Time.Milliseconds())
	}
	return run, nil
}

// Same reports whether two answers agree: the same rows in the same order,
// text-identical except floating-point values, which may differ in the last
// bits between runs (DuckDB aggregates doubles in parallel) and must agree
// within 1e-9 relative.
func Same(a, b Answer) error {
	if len(a.Rows) != len(b.Rows) {
		return fmt.Errorf("Q%d: %d rows vs %d", a.Query, len(a.Rows), len(b.Rows))
	}
	for i := range a.Rows {
		if len(a.Rows[i]) != len(b.Rows[i]) {
			return fmt.Errorf("Q%d row %d: %d columns vs %d", a.Query, i+1, len(a.Rows[i]), len(b.Rows[i]))
		}
		for j, x := range a.Rows[i] {
			y := b.Rows[i][j]
			if x == y {
				continue
			}
			fx, ex := strconv.ParseFloat(x, 64)
			fy, ey := strconv.ParseFloat(y, 64)
			if ex == nil && ey == nil && near(fx, fy, 1e-9) {
				continue
			}
			return fmt.Errorf("Q%d row %d column %s: %q vs %q", a.Query, i+1, a.Columns[j], x, y)
		}
	}
	return nil
}

// BenchOptions describe a whole TPC-H run.
type BenchOptions struct {
	Dir       string
	SF        int64
	Limit     int64 // see GenOptions.Limit
	Encrypted bool  // also seal the tables and run on the sealed copy
	Keys      sealed.KeySource
	KeyID     string
	Engine    engine.Options
	Log       *slog.Logger
	Progress  func(done, total int)
	// Rounds repeats the runs (plaintext then sealed, then sealed then
	// plaintext, …) and keeps each step's fastest time; every repeat's
	// answers must equal the first's.
	Rounds int
}

// Report is the outcome of Bench.
type Report struct {
	SF        int64
	Limit     int64
	Rounds    int
	Generate  time.Duration
	Plain     *Run
	Sealed    *Run // nil unless Encrypted
	Checks    [NumQueries]string
	Correct   int // queries whose every check passed
	Verified  int // queries with at least one check
	CheckErrs []error
}

// Bench generates the data, runs the 22 queries on the plaintext copy and,
// if asked, on the sealed copy, and checks the answers: Q1 and Q6 against
// the Go-side recomputation, and every sealed answer against the plaintext
// one.
func Bench(ctx context.Context, o BenchOptions) (*Report, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	ks := o.Keys
	if o.Encrypted && ks == nil {
		return nil, fmt.Errorf("tpch: --encrypted needs a key source")
	}
	rep := &Report{SF: o.SF, Limit: o.Limit}
	start := time.Now()
	gen := GenOptions{Dir: o.Dir, SF: o.SF, Limit: o.Limit, Plain: true, Log: o.Log, Progress: o.Progress}
	if o.Encrypted {
		gen.Keys, gen.KeyID = ks, o.KeyID
	}
	exp, err := Generate(ctx, gen)
	if err != nil {
		return nil, err
	}
	rep.Generate = time.Since(start)
	rounds := max(o.Rounds, 1)
	for r := range rounds {
		// Odd rounds run the sealed copy first (ABBA), so warm-up and drift
		// favour neither side.
		order := []bool{false, true}
		if r%2 == 1 {
			order = []bool{true, false}
		}
		for _, sealedCopy := range order {
			if sealedCopy && !o.Encrypted {
				continue
			}
			run, err := RunQueries(ctx, RunOptions{Dir: o.Dir, SF: o.SF, Sealed: sealedCopy, Keys: ks, Engine: o.Engine, Log: o.Log})
			if err != nil {
				return nil, err
			}
			dst := &rep.Plain
			if sealedCopy {
				dst = &rep.Sealed
			}
			if *dst == nil {
				*dst = run
				continue
			}
			if err := (*dst).keepFaster(run); err != nil {
				rep.CheckErrs = append(rep.CheckErrs, fmt.Errorf("round %d: %w", r+1, err))
			}
		}
	}
	rep.Rounds = rounds
	for i := range NumQueries {
		var checks []string
		ok := true
		fail := func(err error) {
			ok = false
			rep.CheckErrs = append(rep.CheckErrs, err)
		}
		if i == 0 || i == 5 {
			for _, r := range []*Run{rep.Plain, rep.Sealed} {
				if r == nil {
					continue
				}
				check := exp.checkQ1
				if i == 5 {
					check = exp.checkQ6
				}
				if err := check(r.Answers[i].Rows); err != nil {
					fail(fmt.Errorf("%s: %w", r.name(), err))
				}
			}
			checks = append(checks, "Go recomputation")
		}
		if o.SF == 1 && o.Limit == 0 {
			for _, r := range []*Run{rep.Plain, rep.Sealed} {
				if r == nil {
					continue
				}
				if err := checkSF1(r.Answers[i]); err != nil {
					fail(fmt.Errorf("%s: %w", r.name(), err))
				}
			}
			checks = append(checks, "SF1 answer set")
		}
		if rep.Sealed != nil {
			if err := Same(rep.Plain.Answers[i], rep.Sealed.Answers[i]); err != nil {
				fail(fmt.Errorf("sealed vs plaintext: %w", err))
			}
			checks = append(checks, "sealed = plaintext")
		}
		if len(checks) > 0 {
			rep.Verified++
			if ok {
				rep.Correct++
			}
		}
		status := "ok"
		if !ok {
			status = "FAIL"
		}
		if len(checks) == 0 {
			status = "-"
		}
		rep.Checks[i] = status + " " + strings.Join(checks, ", ")
	}
	return rep, nil
}

// keepFaster keeps, step by step, the faster of r's and other's times; the
// answers must be the same.
func (r *Run) keepFaster(other *Run) error {
	r.Load = min(r.Load, other.Load)
	for i := range r.Answers {
		if err := Same(r.Answers[i], other.Answers[i]); err != nil {
			return fmt.Errorf("%s repeat: %w", r.name(), err)
		}
		r.Answers[i].Time = min(r.Answers[i].Time, other.Answers[i].Time)
	}
	return nil
}

func (r *Run) name() string {
	if r.Sealed {
		return "sealed"
	}
	return "plaintext"
}

// Print writes the per-query table and the summary.
func (rep *Report) Print(w io.Writer) {
	size := fmt.Sprintf("SF%d", rep.SF)
	if rep.Limit > 0 {
		size += fmt.Sprintf(" (first %d rows per table)", rep.Limit)
	}
	fmt.Fprintf(w, "TPC-H %s: generated in %.1fs; lineitem %d rows", size, rep.Generate.Seconds(), rep.Plain.Rows["lineitem"])
	if rep.Rounds > 1 {
		fmt.Fprintf(w, "; fastest of %d rounds per step (alternating which copy runs first)", rep.Rounds)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if rep.Sealed != nil {
		fmt.Fprintln(tw, "step\tplaintext ms\tsealed ms\tsealed/plain\trows\tcheck\t")
		row := func(name string, p, s time.Duration, rows int, check string) {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t\n", name, p.Milliseconds(), s.Milliseconds(), ratio(s, p), rows, check)
		}
		row("load", rep.Plain.Load, rep.Sealed.Load, 0, "")
		for i := range NumQueries {
			row(fmt.Sprintf("Q%d", i+1), rep.Plain.Answers[i].Time, rep.Sealed.Answers[i].Time, len(rep.Plain.Answers[i].Rows), rep.Checks[i])
		}
		row("total", rep.Plain.Total(), rep.Sealed.Total(), 0, "")
	} else {
		fmt.Fprintln(tw, "step\tplaintext ms\trows\tcheck\t")
		fmt.Fprintf(tw, "load\t%d\t\t\t\n", rep.Plain.Load.Milliseconds())
		for i := range NumQueries {
			fmt.Fprintf(tw, "Q%d\t%d\t%d\t%s\t\n", i+1, rep.Plain.Answers[i].Time.Milliseconds(), len(rep.Plain.Answers[i].Rows), rep.Checks[i])
		}
		fmt.Fprintf(tw, "total\t%d\t\t\t\n", rep.Plain.Total().Milliseconds())
	}
	tw.Flush()
	for _, err := range rep.CheckErrs {
		fmt.Fprintln(w, "check failed:", err)
	}
	fmt.Fprintf(w, "%d/%d correct (%d of %d queries have a check: Q1, Q6 recomputed in Go", rep.Correct, rep.Verified, rep.Verified, NumQueries)
	if rep.SF == 1 && rep.Limit == 0 {
		fmt.Fprint(w, "; all 22 against the SF1 answer set's row count and first row")
	}
	if rep.Sealed != nil {
		fmt.Fprint(w, "; all 22 sealed answers compared with the plaintext ones")
	}
	fmt.Fprintln(w, ")")
	if rep.Sealed != nil {
		fmt.Fprintf(w, "total sealed/plaintext: %s (load %s, queries %s)\n", ratio(rep.Sealed.Total(), rep.Plain.Total()),
			ratio(rep.Sealed.Load, rep.Plain.Load), ratio(rep.Sealed.Total()-rep.Sealed.Load, rep.Plain.Total()-rep.Plain.Load))
	}
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return strconv.FormatFloat(math.Round(float64(a)/float64(b)*100)/100, 'f', 2, 64)
}

// EphemeralBanner is printed when EphemeralKeys stands in for the key broker.
var EphemeralBanner = sim.Notice("the tables are sealed under a random key held in this process's memory for this run, not released by the attested key broker")

// EphemeralKeys returns a simulation key source holding one fresh random key
// (in memory only) for a benchmark run that has no key file or broker.
func EphemeralKeys() (sealed.KeySource, string, error) {
	k := make([]byte, sealed.DataKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, "", err
	}
	ks, err := sealed.NewLocalKeys(map[string][]byte{"tpch": k})
	return ks, "tpch", err
}
