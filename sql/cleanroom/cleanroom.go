// Package cleanroom is the analytics party of a data clean room: it runs
// one bound template of a signed contract (package contract) over the
// owners' sealed tables and applies the contract's output rules before
// anything leaves: groups smaller than k are suppressed, noised columns get
// Laplace noise, and the result is sealed to each recipient's HPKE key.
//
// The owners' key brokers decide whether the keys are released (the
// contract hash, the analytics party's attestation, the template, the
// parameters, the ε budget); this package receives the keys through one
// sealed.KeySource per owner that names the query in every request. It
// knows nothing of gRPC or of the broker (the CLI composes them).
package cleanroom

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/teeml/teeml/contract"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/sql/engine"
	"github.com/teeml/teeml/sql/tables"
)

// Request is one run of a bound template.
type Request struct {
	Contract *contract.Contract
	Query    *contract.Bound
	// Tables are the files of the contract's tables, by table name; only
	// the template's tables are loaded.
	Tables map[string]string
	// Keys unwrap each owner's data keys, by owner.
	Keys   map[string]sealed.KeySource
	Engine engine.Options
	// Rand is the noise source (default crypto/rand.Reader).
	Rand io.Reader
	Log  *slog.Logger
	// Trainer trains a training template's model (contract.Template.Train);
	// required for those templates only.
	Trainer Trainer
}

// Result is what a query may release.
type Result struct {
	Columns []string
	Rows    [][]engine.Value
	// Suppressed counts the groups left out for being smaller than k.
	Suppressed int
	// Noised are the columns that got Laplace noise, with the ε each used.
	Noised  []string
	Epsilon float64
	// Loaded is the row count of each table.
	// Model is a training template's released model (then Columns and
	// Rows are empty: the training table never leaves), ModelSummary its
	// one-line description (kind, trees, rows trained on).
	Model        []byte
	ModelSummary string
	Loaded       map[string]int64
	Load         time.Duration
	Query        time.Duration
}

// Trainer trains a training template's tree model on its result — the
// joined, approved table, which never leaves the analytics party — and
// returns the model file (LightGBM text) and a one-line summary. The
// implementation lives outside sql/ (package cleanroomml): the analytics
// service links no learning code.
type Trainer interface {
	Train(ctx context.Context, spec *contract.Train, columns []string, rows [][]engine.Value) (model []byte, summary string, err error)
}

// Run loads the template's tables (each owner's key through its
// KeySource), runs the bound template and applies the output rules.
func Run(ctx context.Context, req Request) (*Result, error) {
	c, q := req.Contract, req.Query
	if c == nil || q == nil {
		return nil, errors.New("cleanroom: no contract or query")
	}
	if _, ok := c.Templates[q.Template.Name]; !ok || c.Templates[q.Template.Name] != q.Template {
		return nil, fmt.Errorf("cleanroom: template %s is not the contract's", q.Template.Name)
	}
	if req.Log == nil {
		req.Log = slog.Default()
	}
	if req.Engine.Log == nil {
		req.Engine.Log = req.Log
	}
	if req.Rand == nil {
		req.Rand = rand.Reader
	}
	for _, name := range q.Template.Tables {
		if req.Tables[name] == "" {
			return nil, fmt.Errorf("cleanroom: template %s reads table %s: no file given for it", q.Template.Name, name)
		}
		if req.Keys[c.Tables[name].Owner] == nil {
			return nil, fmt.Errorf("cleanroom: table %s: no key source for owner %s", name, c.Tables[name].Owner)
		}
	}
	e, err := engine.Open(ctx, req.Engine)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	res := &Result{Loaded: map[string]int64{}}
	start := time.Now()
	for _, name := range q.Template.Tables {
		t := c.Tables[name]
		// Sealed only: a clean room never reads an owner's plaintext file.
		spec := tables.Spec{Name: name, Path: req.Tables[name]}
		n, err := tables.Load(ctx, e, spec, req.Keys[t.Owner], tables.Policy{}, tables.Schema(t.Columns))
		if err != nil {
			return nil, fmt.Errorf("cleanroom: %w", err)
		}
		if err := checkColumns(ctx, e, t); err != nil {
			return nil, err
		}
		res.Loaded[name] = n
		req.Log.Info("cleanroom: table loaded", "table", name, "owner", t.Owner, "rows", n)
	}
	res.Load = time.Since(start)
	start = time.Now()
	out, err := e.QueryNamed(ctx, q.Template.SQL, q.Args)
	if err != nil {
		return nil, fmt.Errorf("cleanroom: template %s: %w", q.Template.Name, err)
	}
	res.Query = time.Since(start)
	if tr := q.Template.Train; tr != nil {
		if req.Trainer == nil {
			return nil, fmt.Errorf("cleanroom: template %s trains a %s model: no trainer given", q.Template.Name, tr.Model)
		}
		model, summary, err := req.Trainer.Train(ctx, tr, out.Columns, out.Rows)
		if err != nil {
			return nil, fmt.Errorf("cleanroom: template %s: train: %w", q.Template.Name, err)
		}
		res.Model, res.ModelSummary = model, summary
		req.Log.Info("cleanroom: model trained", "template", q.Template.Name, "rows", len(out.Rows), "model", summary)
		return res, nil
	}
	res.Columns = out.Columns
	if err := applyRules(c, q.Template, out, res, req.Rand); err != nil {
		return nil, err
	}
	return res, nil
}

// checkColumns refuses a table whose columns are not the contract's.
func checkColumns(ctx context.Context, e *engine.Engine, t contract.Table) error {
	r, err := e.Query(ctx, `SELECT * FROM "`+t.Name+`" LIMIT 0`)
	if err != nil {
		return fmt.Errorf("cleanroom: table %s: %w", t.Name, err)
	}
	got := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		got[i] = strings.ToLower(c)
	}
	want := make([]string, 0, len(t.Columns))
	for c := range t.Columns {
		want = append(want, c)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("cleanroom: table %s (owner %s): columns %s, the contract says %s", t.Name, t.Owner, strings.Join(got, ", "), strings.Join(want, ", "))
	}
	return nil
}

func column(cols []string, name string) int {
	for i, c := range cols {
		if strings.EqualFold(c, name) {
			return i
		}
	}
	return -1
}

// applyRules suppresses small groups (on the true count) and then noises.
func applyRules(c *contract.Contract, t *contract.Template, out *engine.Result, res *Result, rnd io.Reader) error {
	gi := column(out.Columns, t.GroupSize)
	if gi < 0 {
		return fmt.Errorf("cleanroom: template %s: the result has no group-size column %s (columns: %s)", t.Name, t.GroupSize, strings.Join(out.Columns, ", "))
	}
	var noise []int
	if t.Noise != nil {
		for _, nc := range t.Noise.Columns {
			i := column(out.Columns, nc.Name)
			if i < 0 {
				return fmt.Errorf("cleanroom: template %s: noise column %s is not in the result", t.Name, nc.Name)
			}
			noise = append(noise, i)
		}
	}
	for _, row := range out.Rows {
		n, err := strconv.ParseInt(row[gi].Text, 10, 64)
		if row[gi].Null || err != nil {
			return fmt.Errorf("cleanroom: template %s: group size %q is not an integer", t.Name, row[gi].Text)
		}
		if n < int64(c.MinGroupSize) {
			res.Suppressed++
			continue
		}
		res.Rows = append(res.Rows, row)
	}
	if t.Noise == nil {
		return nil
	}
	per := t.Noise.Epsilon / float64(len(t.Noise.Columns))
	res.Epsilon = t.Noise.Epsilon
	for j, nc := range t.Noise.Columns {
		res.Noised = append(res.Noised, fmt.Sprintf("%s (%s, ε=%g)", nc.Name, nc.Kind, per))
		scale := nc.Sensitivity() / per
		for _, row := range res.Rows {
			v := &row[noise[j]]
			x := 0.0
			if !v.Null {
				f, err := strconv.ParseFloat(v.Text, 64)
				if err != nil {
					return fmt.Errorf("cleanroom: template %s: noise column %s: %q is not a number", t.Name, nc.Name, v.Text)
				}
				x = f
			}
			l, err := Laplace(rnd, scale)
			if err != nil {
				return err
			}
			x += l
			if nc.Kind == contract.Count {
				*v = engine.Value{Text: strconv.FormatInt(int64(math.Max(0, math.Round(x))), 10)}
			} else {
				*v = engine.Value{Text: strconv.FormatFloat(math.Round(x*100)/100, 'f', -1, 64)}
			}
		}
	}
	return nil
}

// Laplace draws from Laplace(0, scale) by inversion of 53 random bits.
func Laplace(r io.Reader, scale float64) (float64, error) {
	var b [8]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, fmt.Errorf("cleanroom: noise: %w", err)
		}
		u := float64(binary.LittleEndian.Uint64(b[:])>>11)/(1<<53) - 0.5 // [-0.5, 0.5)
		if u == -0.5 {
			continue
		}
		if u < 0 {
			return scale * math.Log(1+2*u), nil
		}
		return -scale * math.Log(1-2*u), nil
	}
}
