// Command treesbig is the synthetic large GBDT run of bench/trees.sh.
//
//	treesbig gen -rows 1000000 -cols 50 -seed 1 -o train.csv
//	treesbig train -train train.csv -test test.csv -trees 100 -threads 2
//
// gen writes a deterministic binary-classification table (header x0..,y;
// "nan" marks a missing value; the same file is given to scikit-learn);
// train reads it with a streaming parser, boosts trees with ml/trees and
// prints "test_auc=A fit_seconds=S" (S: TrainGBDT alone, as the
// scikit-learn side times fit alone).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/trees"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "treesbig:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: treesbig gen|train [flags]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "gen":
		rows := fs.Int("rows", 1_000_000, "rows")
		cols := fs.Int("cols", 50, "feature columns")
		seed := fs.Uint64("seed", 1, "generator seed")
		out := fs.String("o", "", "output CSV")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *out == "" || *rows < 1 || *cols < 10 {
			return fmt.Errorf("gen: want -o FILE, -rows >= 1, -cols >= 10 (got %q, %d, %d)", *out, *rows, *cols)
		}
		return atomicfile.WriteFile(*out, 0o644, func(w io.Writer) error { return generate(w, *rows, *cols, *seed) })
	case "train":
		train := fs.String("train", "", "training CSV")
		test := fs.String("test", "", "test CSV")
		iters := fs.Int("trees", 100, "boosting rounds")
		lr := fs.Float64("lr", 0.1, "learning rate")
		leaves := fs.Int("leaves", 31, "leaves per tree")
		minLeaf := fs.Int("min-leaf", 20, "min rows per leaf")
		threads := fs.Int("threads", 2, "threads")
		cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the training to this file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		tr, err := readCSV(*train)
		if err != nil {
			return err
		}
		te, err := readCSV(*test)
		if err != nil {
			return err
		}
		if te.D != tr.D {
			return fmt.Errorf("train: %s has %d features, %s %d", *test, te.D, *train, tr.D)
		}
		if *cpuProfile != "" {
			pf, err := os.Create(*cpuProfile)
			if err != nil {
				return fmt.Errorf("train: cpu profile: %w", err)
			}
			defer pf.Close()
			if err := pprof.StartCPUProfile(pf); err != nil {
				return fmt.Errorf("train: cpu profile: %w", err)
			}
			defer pprof.StopCPUProfile()
		}
		start := time.Now()
		m, err := trees.TrainGBDT(ctx, tr, trees.GBDTConfig{Iterations: *iters, LR: *lr, NumLeaves: *leaves,
			MinDataInLeaf: *minLeaf, Threads: *threads, Seed: 1})
		if err != nil {
			return err
		}
		secs := time.Since(start).Seconds()
		s := trees.Evaluate(m, te)
		slog.Info("trained", "rows", tr.N, "features", tr.D, "trees", len(m.Trees))
		fmt.Printf("test_auc=%.4f fit_seconds=%.3f\n", s.AUC, secs)
		return nil
	}
	return fmt.Errorf("unknown command %q: want gen or train", args[0])
}

// generate writes rows of cols features: Gaussian, uniform and small-integer
// columns, 5 % missing in five of them; the label is a noisy threshold of
// a sum of linear, non-linear and interaction terms.
func generate(w io.Writer, rows, cols int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0x7472656573626967))
	bw := bufio.NewWriterSize(w, 1<<20)
	for j := range cols {
		fmt.Fprintf(bw, "x%d,", j)
	}
	bw.WriteString("y\n")
	x := make([]float64, cols)
	var line []byte
	for range rows {
		for j := range cols {
			switch j % 5 {
			case 0, 1, 2:
				x[j] = rng.NormFloat64()
			case 3:
				x[j] = rng.Float64()*2 - 1
			default:
				x[j] = float64(rng.IntN(10))
			}
		}
		z := 1.2*x[0] - 0.8*x[1] + 0.5*x[2]*x[5] + math.Sin(3*x[3]) + 0.3*(x[4]-4.5) +
			0.7*math.Abs(x[6]) - 0.6*x[7]*x[8] + 0.4*x[10] + rng.NormFloat64()
		if x[9] > 6 {
			z += 0.8
		}
		y := 0
		if z > 0.5 {
			y = 1
		}
		line = line[:0]
		for j := range cols {
			if j < 25 && j%5 == 1 && rng.Float64() < 0.05 {
				line = append(line, "nan,"...)
				continue
			}
			line = strconv.AppendFloat(line, x[j], 'f', 4, 32)
			line = append(line, ',')
		}
		line = strconv.AppendInt(line, int64(y), 10)
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// readCSV reads a table written by generate: header, then numbers (or
// "nan"), the last column the 0/1 label.
func readCSV(path string) (*datasets.Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	header, err := br.ReadSlice('\n')
	if err != nil {
		return nil, fmt.Errorf("read %s: header: %w", path, err)
	}
	names := bytes.Split(bytes.TrimRight(header, "\r\n"), []byte(","))
	d := len(names) - 1
	if d < 1 {
		return nil, fmt.Errorf("read %s: header has %d columns, want features and a label", path, len(names))
	}
	ds := &datasets.Dataset{Name: path, Task: datasets.Classification, NumClasses: 2, D: d}
	for _, n := range names[:d] {
		ds.Columns = append(ds.Columns, datasets.Column{Name: string(n)})
	}
	for line := 2; ; line++ {
		b, err := br.ReadSlice('\n')
		if err == io.EOF && len(b) == 0 {
			break
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read %s:%d: %w", path, line, err)
		}
		b = bytes.TrimRight(b, "\r\n")
		for j := 0; j <= d; j++ {
			field := b
			if i := bytes.IndexByte(b, ','); i >= 0 {
				field, b = b[:i], b[i+1:]
			} else if j < d {
				return nil, fmt.Errorf("read %s:%d: %d fields, want %d", path, line, j+1, d+1)
			} else {
				b = nil
			}
			v, perr := strconv.ParseFloat(string(field), 32)
			if perr != nil {
				return nil, fmt.Errorf("read %s:%d: column %d: %w", path, line, j+1, perr)
			}
			if j < d {
				ds.X = append(ds.X, float32(v))
			} else if v != 0 && v != 1 {
				return nil, fmt.Errorf("read %s:%d: label %v: want 0 or 1", path, line, v)
			} else {
				ds.Y = append(ds.Y, float32(v))
			}
		}
		if len(b) > 0 {
			return nil, fmt.Errorf("read %s:%d: more than %d fields", path, line, d+1)
		}
		ds.N++
		if err == io.EOF {
			break
		}
	}
	if ds.N == 0 {
		return nil, fmt.Errorf("read %s: no rows", path)
	}
	return ds, nil
}
