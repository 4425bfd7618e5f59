package workspace

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/datasets"
)

func TestShardsDisjointAndCovering(t *testing.T) {
	for _, tmpl := range []string{"digits_mlp", "digits_cnn"} { // iid, dirichlet
		t.Run(tmpl, func(t *testing.T) {
			ws := newWS(t, tmpl)
			p, err := LoadPlan(ws)
			if err != nil {
				t.Fatal(err)
			}
			n := p.DataLoader.Partitioning.Shards
			for i := range n {
				if err := AddCollaborator(ws, fmt.Sprintf("c%d", i), fmt.Sprintf("shard:%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := InitPlan(ws, "agg"); err != nil {
				t.Fatal(err)
			}
			rawTrain, rawTest, err := datasets.LoadSplit(p.DataLoader.Dataset, p.DataLoader.TestFraction, p.DataLoader.Seed)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			var testIDs []string
			for i := range n {
				s, err := LoadShard(ws, fmt.Sprintf("c%d", i))
				if err != nil {
					t.Fatal(err)
				}
				if s.Train.N == 0 {
					t.Errorf("shard %d empty", i)
				}
				for _, id := range s.Train.IDs {
					if prev, ok := seen[id]; ok {
						t.Fatalf("row %s in shards %d and %d", id, prev, i)
					}
					seen[id] = i
				}
				if i == 0 {
					testIDs = s.Test.IDs
				} else if !slices.Equal(testIDs, s.Test.IDs) {
					t.Error("collaborators evaluate on different test sets")
				}
				// Preprocessed: digits pixels scaled to [0, 1].
				if m := slices.Max(s.Train.X); m > 1 {
					t.Errorf("shard %d not preprocessed (max %v)", i, m)
				}
			}
			if len(seen) != rawTrain.N {
				t.Errorf("shards cover %d of %d training rows", len(seen), rawTrain.N)
			}
			for _, id := range rawTrain.IDs {
				if _, ok := seen[id]; !ok {
					t.Fatalf("training row %s in no shard", id)
				}
			}
			if !slices.Equal(testIDs, rawTest.IDs) {
				t.Error("test set is not the plan's held-out split")
			}
			for _, id := range testIDs {
				if _, ok := seen[id]; ok {
					t.Fatalf("test row %s also in a training shard", id)
				}
			}
			// Deterministic.
			a, _ := LoadShard(ws, "c0")
			b, _ := LoadShard(ws, "c0")
			if !slices.Equal(a.Train.IDs, b.Train.IDs) || !slices.Equal(a.Train.X, b.Train.X) {
				t.Error("LoadShard not deterministic")
			}
		})
	}
}

func TestLoadShardCSVAndErrors(t *testing.T) {
	ws := newWS(t, "breast_cancer_logreg")
	p, _ := LoadPlan(ws)
	raw, _, err := datasets.LoadSplit(p.DataLoader.Dataset, p.DataLoader.TestFraction, p.DataLoader.Seed)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, c := range raw.Columns {
		sb.WriteString(c.Name + ",")
	}
	sb.WriteString("label\n")
	for i := range 40 {
		for _, v := range raw.Row(i) {
			sb.WriteString(strconv.FormatFloat(float64(v), 'g', -1, 32) + ",")
		}
		y := int(raw.Y[i])
		if len(raw.ClassNames) > 0 {
			sb.WriteString(raw.ClassNames[y] + "\n")
		} else {
			sb.WriteString(strconv.Itoa(y) + "\n")
		}
	}
	os.WriteFile(filepath.Join(ws, "data", "h.csv"), []byte(sb.String()), 0o644)
	if err := AddCollaborator(ws, "hospital", "data/h.csv"); err != nil {
		t.Fatal(err)
	}
	s, err := LoadShard(ws, "hospital")
	if err != nil {
		t.Fatal(err)
	}
	if s.Train.N != 40 || s.Train.D != raw.D || s.Test.N == 0 {
		t.Errorf("csv shard %d×%d, test %d", s.Train.N, s.Train.D, s.Test.N)
	}
	for i := range 40 {
		if s.Train.Y[i] != raw.Y[i] {
			t.Fatalf("row %d label %v, want %v", i, s.Train.Y[i], raw.Y[i])
		}
	}
	// Wrong columns.
	os.WriteFile(filepath.Join(ws, "data", "bad.csv"), []byte("a,b,label\n1,2,benign\n"), 0o644)
	AddCollaborator(ws, "bad", "data/bad.csv")
	if _, err := LoadShard(ws, "bad"); err == nil || !strings.Contains(err.Error(), "feature columns") {
		t.Errorf("bad csv: %v", err)
	}
	AddCollaborator(ws, "missing", "data/none.csv")
	if _, err := LoadShard(ws, "missing"); err == nil || !strings.Contains(err.Error(), "none.csv") {
		t.Errorf("missing csv: %v", err)
	}
	if _, err := LoadShard(ws, "nobody"); err == nil || !strings.Contains(err.Error(), `"nobody" not in plan/cols.yaml`) {
		t.Errorf("unknown collaborator: %v", err)
	}
}
