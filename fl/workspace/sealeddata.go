package workspace

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/sealed/sealedparquet"
)

// ShardOptions configures LoadShardWith.
type ShardOptions struct {
	// Context bounds key requests to the key broker (default Background).
	Context context.Context
	// Keys releases the data keys of sealed data files (the party's key
	// broker, see party.Config's kms section and Party.KeySource); nil
	// refuses sealed files with an error saying so.
	Keys sealed.KeySource
}

// Data file suffixes a collaborator's data path may have. The format is
// decided by the file's content (sealed magic, Parquet magic), not by the
// name: a sealed file is never parsed as CSV.
var dataSuffixes = []string{".csv", ".csv.sealed", ".parquet"}

func hasDataSuffix(data string) bool {
	l := strings.ToLower(data)
	for _, s := range dataSuffixes {
		if strings.HasSuffix(l, s) {
			return true
		}
	}
	return false
}

// openData opens collaborator c's data file at path as CSV text:
//
//   - a sealed file (sealed.Magic) is decrypted as it is read, with its
//     data key from o.Keys;
//   - Parquet (encrypted or not) is decoded into CSV in memory;
//   - anything else is read as plaintext CSV.
//
// Decrypted bytes exist only in memory. When the plan requires encryption
// (keyID != ""), plaintext CSV and Parquet without an encrypted footer are
// refused.
func openData(o ShardOptions, path string, c Collaborator, keyID string) (io.Reader, func(), error) {
	ctx := o.Context
	if ctx == nil {
		ctx = context.Background()
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("workspace: collaborator %s: %s: "+format, append([]any{c.Name, c.Data}, args...)...)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("workspace: collaborator %s: %w", c.Name, err)
	}
	br := bufio.NewReader(f)
	head, _ := br.Peek(len(sealed.Magic))
	switch {
	case bytes.Equal(head, []byte(sealed.Magic)):
		if o.Keys == nil {
			f.Close()
			return nil, nil, fail("sealed file, but this party has no key source (add a kms section to its party configuration)")
		}
		r, err := sealed.Open(ctx, br, o.Keys)
		if err != nil {
			f.Close()
			return nil, nil, fail("%w", err)
		}
		return r, func() { f.Close() }, nil
	case bytes.HasPrefix(head, []byte("PAR1")) || bytes.HasPrefix(head, []byte("PARE")): // plaintext / encrypted footer
		defer f.Close()
		rd, err := sealedparquet.OpenReader(ctx, f, c.Data, o.Keys)
		if err != nil {
			return nil, nil, fail("%w", err)
		}
		defer rd.Close()
		if keyID != "" && !rd.Encrypted {
			return nil, nil, fail("plaintext Parquet, but the plan requires encrypted data (encryption.key %s): encrypt it with `teeml data encrypt --format parquet`", keyID)
		}
		var buf bytes.Buffer
		if _, err := rd.WriteCSV(ctx, &buf); err != nil {
			return nil, nil, fail("%w", err)
		}
		return &buf, func() {}, nil
	}
	if keyID != "" {
		f.Close()
		return nil, nil, fail("plaintext file, but the plan requires encrypted data (encryption.key %s): seal it with `teeml data encrypt --kms CONFIG --key %s`", keyID, keyID)
	}
	return br, func() { f.Close() }, nil
}

// WriteShardCSV writes ds (raw, before preprocessing) as the CSV a
// collaborator's data file holds: the dataset's feature columns (categories
// by name, missing values empty) and a "label" column (class names when the
// dataset has them). It writes to w only: sealing it (sealed.NewWriter)
// keeps the plaintext off the disk.
func WriteShardCSV(w io.Writer, ds *datasets.Dataset) error {
	cw := csv.NewWriter(w)
	rec := make([]string, 0, ds.D+1)
	for _, c := range ds.Columns {
		rec = append(rec, c.Name)
	}
	if err := cw.Write(append(rec, "label")); err != nil {
		return err
	}
	for i := range ds.N {
		rec = rec[:0]
		for j, v := range ds.Row(i) {
			c := ds.Columns[j]
			switch {
			case math.IsNaN(float64(v)):
				rec = append(rec, "")
			case c.IsCategorical() && int(v) >= 0 && int(v) < len(c.Categories):
				rec = append(rec, c.Categories[int(v)])
			default:
				rec = append(rec, strconv.FormatFloat(float64(v), 'g', -1, 32))
			}
		}
		y := ds.Y[i]
		if k := int(y); len(ds.ClassNames) > 0 && k >= 0 && k < len(ds.ClassNames) {
			rec = append(rec, ds.ClassNames[k])
		} else {
			rec = append(rec, strconv.FormatFloat(float64(y), 'g', -1, 32))
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
