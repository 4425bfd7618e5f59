package run

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/vfl/bridge"
	"github.com/teeml/teeml/vfl/join"
	"github.com/teeml/teeml/vfl/plan"
	"github.com/teeml/teeml/vfl/split"
)

// Roles.
const (
	RoleLeader   = bridge.RoleLeader
	RoleFollower = bridge.RoleFollower
)

// LoadSide loads what one party holds: the plan's dataset restricted to
// the party's columns (plus the labels for the leader), minus the seeded
// DropIDs fraction of rows that simulates IDs only the other side has.
func LoadSide(p *plan.Plan, role string) (*datasets.Dataset, error) {
	full, err := datasets.Load(p.Dataset)
	if err != nil {
		return nil, err
	}
	if err := p.CheckColumns(full); err != nil {
		return nil, err
	}
	if full.Task != datasets.Classification || full.NumClasses != 2 {
		return nil, p.Errorf("dataset", "%s is not a binary classification dataset (split models are binary classifiers)", p.Dataset)
	}
	// The rest of the columns go to the "other" party of SplitColumns; only
	// this side's part is kept.
	var other []string
	own := p.Side(role).Columns
	for _, c := range full.Columns {
		if !slices.Contains(own, c.Name) {
			other = append(other, c.Name)
		}
	}
	var ds *datasets.Dataset
	if role == RoleLeader {
		ds, _, err = datasets.SplitColumns(full, own, other)
		if len(other) == 0 {
			err = fmt.Errorf("leader holds every column")
		}
	} else {
		_, ds, err = datasets.SplitColumns(full, other, own)
	}
	if err != nil {
		return nil, err
	}
	if f := p.Side(role).DropIDs; f > 0 {
		var keep []string
		for _, id := range ds.IDs {
			if unitHash(p.Seed, "drop-"+role, id) >= f {
				keep = append(keep, id)
			}
		}
		ds, err = selectIDs(ds, keep)
		if err != nil {
			return nil, err
		}
	}
	return ds, nil
}

// unitHash maps (seed, purpose, id) to [0, 1) deterministically, the same
// way at both parties.
func unitHash(seed int64, purpose, id string) float64 {
	h := sha256.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write([]byte(id))
	sum := h.Sum(nil)
	return float64(binary.LittleEndian.Uint64(sum[:8])>>11) / (1 << 53)
}

// selectIDs returns ds's rows with the given IDs, in that order.
func selectIDs(ds *datasets.Dataset, ids []string) (*datasets.Dataset, error) {
	pos := make(map[string]int, ds.N)
	for i, id := range ds.IDs {
		pos[id] = i
	}
	out := &datasets.Dataset{Name: ds.Name, Task: ds.Task, NumClasses: ds.NumClasses, ClassNames: ds.ClassNames,
		Columns: ds.Columns, D: ds.D, N: len(ids), IDs: slices.Clone(ids), X: make([]float32, 0, len(ids)*ds.D)}
	if ds.Y != nil {
		out.Y = make([]float32, 0, len(ids))
	}
	for _, id := range ids {
		i, ok := pos[id]
		if !ok {
			return nil, fmt.Errorf("vfl: %s has no row with ID %q", ds.Name, id)
		}
		out.X = append(out.X, ds.Row(i)...)
		if ds.Y != nil {
			out.Y = append(out.Y, ds.Y[i])
		}
	}
	return out, nil
}

// Prepared is one party's aligned, split and preprocessed data.
type Prepared struct {
	Train, Test *datasets.Dataset
	Pipeline    datasets.Pipeline
	Columns     []split.Column
	// Dropped is how many of this side's rows had no partner at the peer.
	Dropped int
}

// Prepare aligns ds's rows to the common IDs (in the agreed order), splits
// them into train and test by a seeded hash of the ID (so both sides agree
// without talking), and fits this side's preprocessing on its train rows.
func Prepare(p *plan.Plan, ds *datasets.Dataset, common []string) (*Prepared, error) {
	if len(common) == 0 {
		return nil, fmt.Errorf("vfl: the parties have no ID in common")
	}
	aligned, err := join.Align(ds, common)
	if err != nil {
		return nil, err
	}
	var trainIDs, testIDs []string
	for _, id := range common {
		if unitHash(p.Seed, "test", id) < p.TestFraction {
			testIDs = append(testIDs, id)
		} else {
			trainIDs = append(trainIDs, id)
		}
	}
	if len(trainIDs) == 0 || len(testIDs) == 0 {
		return nil, fmt.Errorf("vfl: %d common IDs leave an empty train or test part", len(common))
	}
	rawTrain, _ := selectIDs(aligned, trainIDs)
	rawTest, _ := selectIDs(aligned, testIDs)
	pipe := datasets.FitPipeline(p.Dataset, rawTrain)
	train, err := pipe.Apply(rawTrain)
	if err != nil {
		return nil, err
	}
	test, err := pipe.Apply(rawTest)
	if err != nil {
		return nil, err
	}
	// Apply may return its input; the IDs and labels travel along.
	train.IDs, test.IDs = trainIDs, testIDs
	cols := make([]split.Column, ds.D)
	for i, c := range ds.Columns {
		cols[i] = split.Column{Name: c.Name, Cardinality: len(c.Categories)}
	}
	return &Prepared{Train: train, Test: test, Pipeline: pipe, Columns: cols, Dropped: ds.N - len(common)}, nil
}

// schedule maps iterations to rows: iterations 1..TrainIters walk the
// training rows batch by batch in the order join.BatchOrder draws for each
// epoch from the PSI session's shuffle seed, which both parties derived
// from both nonces (the last batch of an epoch may be short); the following EvalIters
// iterations walk the test rows in order. A position depends only on the
// iteration number, so a resumed run continues exactly where the
// checkpoint left off.
type schedule struct {
	seed                  [32]byte
	nTrain, nTest, batch  int
	perEpoch, epochs      int
	TrainIters, EvalIters int64
	batchEpoch            int
	batches               [][]int
}

func newSchedule(seed [32]byte, nTrain, nTest, batch, epochs int) *schedule {
	s := &schedule{seed: seed, nTrain: nTrain, nTest: nTest, batch: batch, epochs: epochs, batchEpoch: -1}
	s.perEpoch = (nTrain + batch - 1) / batch
	s.TrainIters = int64(s.perEpoch * epochs)
	s.EvalIters = int64((nTest + batch - 1) / batch)
	return s
}

// Total is the number of iterations of a run.
func (s *schedule) Total() int64 { return s.TrainIters + s.EvalIters }

// rows returns the row indices of iteration it (1-based) and whether they
// are training rows (else test rows).
func (s *schedule) rows(it int64) ([]int, bool) {
	if it <= s.TrainIters {
		k := int(it - 1)
		epoch, b := k/s.perEpoch, k%s.perEpoch
		if epoch != s.batchEpoch {
			s.batches = join.BatchOrder(s.seed, epoch, s.nTrain, s.batch)
			s.batchEpoch = epoch
		}
		return s.batches[b], true
	}
	k := int(it - s.TrainIters - 1)
	lo, hi := k*s.batch, min((k+1)*s.batch, s.nTest)
	r := make([]int, hi-lo)
	for i := range r {
		r[i] = lo + i
	}
	return r, false
}

// epochOf returns the 1-based epoch of training iteration it.
func (s *schedule) epochOf(it int64) int { return int(it-1)/s.perEpoch + 1 }

// gather copies the rows of ds into x (and labels into y when ds has them).
func gather(ds *datasets.Dataset, rows []int, x, y []float32) ([]float32, []float32) {
	x = x[:0]
	y = y[:0]
	for _, r := range rows {
		x = append(x, ds.Row(r)...)
		if ds.Y != nil {
			y = append(y, ds.Y[r])
		}
	}
	return x, y
}
