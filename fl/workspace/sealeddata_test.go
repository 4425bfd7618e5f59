package workspace

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/sealed/sealedparquet"
)

func localKeys(t *testing.T, ids ...string) *sealed.LocalKeys {
	t.Helper()
	m := map[string][]byte{}
	for _, id := range ids {
		k := make([]byte, sealed.DataKeySize)
		rand.Read(k)
		m[id] = k
	}
	ks, err := sealed.NewLocalKeys(m)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestLoadShardSealedData reads a collaborator's sealed CSV and encrypted
// Parquet with keys from a key source, refuses them without one or with the
// wrong keys, and, once the plan requires encryption, refuses plaintext
// files and shard:N partitions.
func TestLoadShardSealedData(t *testing.T) {
	ctx := context.Background()
	ws := newWS(t, "breast_cancer_logreg")
	p, _ := LoadPlan(ws)
	raw, _, err := datasets.LoadSplit(p.DataLoader.Dataset, p.DataLoader.TestFraction, p.DataLoader.Seed)
	if err != nil {
		t.Fatal(err)
	}
	var csvText bytes.Buffer
	if err := WriteShardCSV(&csvText, raw); err != nil {
		t.Fatal(err)
	}
	ks := localKeys(t, "fl-data")
	var sealedBuf bytes.Buffer
	w, err := sealed.NewWriter(ctx, &sealedBuf, ks, "fl-data", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(csvText.Bytes())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ws, "data", "h.csv.sealed"), sealedBuf.Bytes(), 0o600)
	os.WriteFile(filepath.Join(ws, "data", "plain.csv"), csvText.Bytes(), 0o600)
	if _, err := sealedparquet.CSVToParquet(ctx, filepath.Join(ws, "data", "plain.csv"), filepath.Join(ws, "data", "h.parquet"), ks,
		sealedparquet.WriteOptions{Keys: sealedparquet.Keys{Default: "fl-data"}}); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"sealed": "data/h.csv.sealed", "parquet": "data/h.parquet", "plain": "data/plain.csv", "part": "shard:0"} {
		if err := AddCollaborator(ws, name, data); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"sealed", "parquet", "plain"} {
		s, err := LoadShardWith(ws, name, ShardOptions{Keys: ks})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Train.N != raw.N || s.Train.D != raw.D {
			t.Fatalf("%s: %d×%d, want %d×%d", name, s.Train.N, s.Train.D, raw.N, raw.D)
		}
		for i := range raw.N {
			if s.Train.Y[i] != raw.Y[i] {
				t.Fatalf("%s: row %d label %v, want %v", name, i, s.Train.Y[i], raw.Y[i])
			}
		}
	}
	for _, c := range []struct {
		name string
		ks   sealed.KeySource
		want string
	}{
		{"sealed", nil, "data/h.csv.sealed: sealed file, but this party has no key source"},
		{"parquet", nil, "encrypted footer: a key source is needed"},
		{"sealed", localKeys(t, "other"), `key "fl-data": not in`},
		{"parquet", localKeys(t, "other"), `fl-data`},
	} {
		_, err := LoadShardWith(ws, c.name, ShardOptions{Keys: c.ks})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s with keys %v: %v, want one line with %q", c.name, c.ks, err, c.want)
		}
		// A key the key source lacks is a *sealed.KeyError for the caller.
		var ke *sealed.KeyError
		if c.ks != nil && !errors.As(err, &ke) {
			t.Errorf("%s with keys %v: %v is not a *sealed.KeyError", c.name, c.ks, err)
		}
	}

	// A modified sealed file: the integrity error reaches the caller
	// wrapped (errors.As), not only as text.
	tampered := bytes.Clone(sealedBuf.Bytes())
	tampered[len(tampered)/2] ^= 1
	os.WriteFile(filepath.Join(ws, "data", "t.csv.sealed"), tampered, 0o600)
	if err := AddCollaborator(ws, "tampered", "data/t.csv.sealed"); err != nil {
		t.Fatal(err)
	}
	var ie *sealed.IntegrityError
	if _, err := LoadShardWith(ws, "tampered", ShardOptions{Keys: ks}); !errors.As(err, &ie) || !strings.Contains(err.Error(), "workspace: collaborator tampered: data/t.csv.sealed: ") {
		t.Errorf("tampered sealed file: %v, want a *sealed.IntegrityError", err)
	}

	// The plan requires encryption: plaintext data is refused.
	f, _ := os.OpenFile(filepath.Join(ws, PlanFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("\nencryption:\n  key: fl-data\n")
	f.Close()
	for _, c := range []struct{ name, want string }{
		{"plain", "data/plain.csv: plaintext file, but the plan requires encrypted data (encryption.key fl-data)"},
		{"part", "shard:0 is a partition of the plan's dataset, but the plan requires sealed data"},
	} {
		_, err := LoadShardWith(ws, c.name, ShardOptions{Keys: ks})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s under encryption: %v, want %q", c.name, err, c.want)
		}
	}
	for _, name := range []string{"sealed", "parquet"} {
		if _, err := LoadShardWith(ws, name, ShardOptions{Keys: ks}); err != nil {
			t.Errorf("%s under encryption: %v", name, err)
		}
	}
}
