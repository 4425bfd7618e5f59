// Package join turns the result of a private set intersection (vfl/psi)
// into the training tables of a vertical-FL party: the party's rows for the
// common users, in the aligned order both parties share, and the
// deterministic batch order both parties draw from the seed agreed in the
// PSI handshake. Batch k of epoch e then holds the same users on both
// sides without any party revealing its other rows.
//
// The API is three calls:
//
//	ids, _ := join.ReadAligned("aligned.txt")     // written by teeml vfl psi
//	rows, _ := join.Align(table, ids)             // table: datasets.Load(...) + SplitColumns, or join.LoadCSV
//	for _, batch := range join.BatchOrder(seed, epoch, rows.N, 64) { ... }
//
// IDs are compared after psi.NormalizeID (Unicode NFC), exactly as the PSI
// compared them.
package join

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"

	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/vfl/psi"
)

// ReadAligned reads an aligned ID file (one ID per line, as written by the
// PSI). Duplicates are refused: the PSI never writes them, so one means the
// file is not a PSI output.
func ReadAligned(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("join: aligned IDs: %w", err)
	}
	defer f.Close()
	r := psi.NewIDReader(f, path)
	var ids []string
	seen := map[string]int{}
	for {
		id, err := r.Next()
		if errors.Is(err, io.EOF) {
			return ids, nil
		}
		if err != nil {
			return nil, fmt.Errorf("join: %w", err)
		}
		if first, ok := seen[id]; ok {
			return nil, fmt.Errorf("join: aligned IDs %s: %q on lines %d and %d", path, id, first, r.Line())
		}
		seen[id] = r.Line()
		ids = append(ids, id)
	}
}

// Align returns the rows of table whose IDs are in ids, in the order of
// ids: row k of the result is the user ids[k]. Every aligned ID must be in
// the table exactly once (after normalisation); otherwise the table is not
// the one the PSI ran on and Align refuses it.
func Align(table *datasets.Dataset, ids []string) (*datasets.Dataset, error) {
	if len(table.IDs) != table.N {
		return nil, fmt.Errorf("join: table %s has %d IDs for %d rows", table.Name, len(table.IDs), table.N)
	}
	row := make(map[string]int, table.N)
	for i, id := range table.IDs {
		id = psi.NormalizeID(id)
		if prev, ok := row[id]; ok {
			return nil, fmt.Errorf("join: table %s: ID %q on rows %d and %d", table.Name, id, prev, i)
		}
		row[id] = i
	}
	rows := make([]int, len(ids))
	for k, id := range ids {
		i, ok := row[psi.NormalizeID(id)]
		if !ok {
			return nil, fmt.Errorf("join: aligned ID %q (position %d) is not in table %s", id, k, table.Name)
		}
		rows[k] = i
	}
	out := table.Subset(rows)
	for k, id := range ids {
		out.IDs[k] = psi.NormalizeID(id)
	}
	return out, nil
}

// LoadCSV reads a CSV table with a header row whose column idColumn holds
// the row IDs; the other columns are read as datasets.LoadCSV does with
// opts, and the IDs become the dataset's IDs.
func LoadCSV(r io.Reader, idColumn string, opts datasets.CSVOptions) (*datasets.Dataset, error) {
	name := opts.Name
	if name == "" {
		name = "csv"
	}
	cr := csv.NewReader(r)
	if opts.Comma != 0 {
		cr.Comma = opts.Comma
	}
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("join: csv %s: %w", name, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("join: csv %s: empty", name)
	}
	col := slices.Index(recs[0], idColumn)
	if col < 0 {
		return nil, fmt.Errorf("join: csv %s: no ID column %q in header", name, idColumn)
	}
	ids := make([]string, 0, len(recs)-1)
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if opts.Comma != 0 {
		w.Comma = opts.Comma
	}
	for i, rec := range recs {
		if i > 0 {
			if rec[col] == "" {
				return nil, fmt.Errorf("join: csv %s: row %d: empty ID", name, i)
			}
			ids = append(ids, rec[col])
		}
		w.Write(slices.Delete(slices.Clone(rec), col, col+1))
	}
	w.Flush()
	ds, err := datasets.LoadCSV(&buf, opts)
	if err != nil {
		return nil, err
	}
	if ds.N != len(ids) {
		return nil, fmt.Errorf("join: csv %s: %d rows but %d IDs", name, ds.N, len(ids))
	}
	ds.IDs = ids
	return ds, nil
}

// BatchOrder splits the positions 0..n-1 of the aligned table into batches
// of batchSize (the last may be smaller) in an order shuffled for epoch by
// a ChaCha8 stream keyed with SHA-256("teeml-vfl-batch-order" || seed ||
// epoch). Both parties call it with the PSI session's ShuffleSeed, so batch
// k of an epoch holds the same users on both sides. The shuffle is
// Fisher-Yates with rejection sampling written here, not math/rand's
// Shuffle, so the order cannot change with the Go version.
func BatchOrder(seed [32]byte, epoch, n, batchSize int) [][]int {
	if n <= 0 || batchSize <= 0 {
		return nil
	}
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], uint64(epoch))
	key := sha256.Sum256(slices.Concat([]byte("teeml-vfl-batch-order"), seed[:], e[:]))
	rng := rand.NewChaCha8(key)
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int(uniform(rng, uint64(i+1)))
		perm[i], perm[j] = perm[j], perm[i]
	}
	var out [][]int
	for lo := 0; lo < n; lo += batchSize {
		out = append(out, perm[lo:min(lo+batchSize, n)])
	}
	return out
}

// uniform returns a uniform value in [0, bound) by rejection sampling.
func uniform(rng *rand.ChaCha8, bound uint64) uint64 {
	limit := -bound % bound // 2^64 mod bound
	for {
		if v := rng.Uint64(); v >= limit {
			return v % bound
		}
	}
}
