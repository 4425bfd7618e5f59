package run

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/treefed"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/trees"
	"github.com/teeml/teeml/sealed"
)

// setupTrees is a simulated workspace of template with cols collaborators
// on IID shards of the training split (SetupSimulated deals Dirichlet
// shards), re-frozen.
func setupTrees(t *testing.T, template string, cols int) string {
	t.Helper()
	ws := filepath.Join(t.TempDir(), "ws")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SetupSimulated(context.Background(), ws, template, 1, 0, cols, port); err != nil {
		t.Fatal(err)
	}
	planPath := filepath.Join(ws, filepath.FromSlash(workspace.PlanFile))
	p, err := plan.LoadUnfrozen(planPath)
	if err != nil {
		t.Fatal(err)
	}
	p.DataLoader.Partitioning.Kind, p.DataLoader.Partitioning.Alpha = "iid", 0
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteBytes(planPath, p.Canonical(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := workspace.InitPlan(ws, ""); err != nil {
		t.Fatal(err)
	}
	return ws
}

// TestFederatedTrees runs the digits_rf and digits_gbdt plans with three
// collaborators over loopback RA-TLS: each grows its ensemble on its IID
// shard, the aggregator merges them, evaluates the merged model on the
// held-out test split and writes it as LightGBM text. The merged model
// must classify within 3 points of the same ensemble trained centrally on
// the whole training split, and its file must predict what the
// aggregator reported.
func TestFederatedTrees(t *testing.T) {
	for _, tc := range []struct {
		template, kind string
		trees          int // per collaborator and class: rf trees, gbdt rounds (the templates')
	}{{"digits_rf", "rf", 100}, {"digits_gbdt", "gbdt", 60}} {
		t.Run(tc.kind, func(t *testing.T) {
			ws := setupTrees(t, tc.template, 3)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			names := []string{"col-1", "col-2", "col-3"}
			logs := make([]lockedBuf, len(names))
			defer func() {
				if t.Failed() {
					for i := range logs {
						t.Logf("%s log:\n%s", names[i], logs[i].String())
					}
				}
			}()
			out := runFederation(t, ctx, AggregatorOptions{Workspace: ws}, names, logs)
			t.Logf("aggregator:\n%s", out)
			for _, w := range []string{"SIMULATION", "strategy treemerge", "round 1/1: participants 3, accepted 3, rejected 0", FinalAccuracyPrefix} {
				if !strings.Contains(out, w) {
					t.Errorf("aggregator output lacks %q", w)
				}
			}
			p, err := workspace.LoadPlan(ws)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(ws, "save", "last.model.txt"))
			if err != nil {
				t.Fatal(err)
			}
			merged, err := trees.ParseText(bytes.NewReader(b), "last.model.txt")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(merged.Trees), 3*tc.trees*merged.K(); got != want {
				t.Errorf("merged model has %d trees, want %d (3 collaborators' ensembles)", got, want)
			}
			if merged.Params["teeml.dataset"] != "digits" || merged.Params[workspace.MetaPlanHash] == "" {
				t.Errorf("model.txt parameters %v lack the dataset and plan hash", merged.Params)
			}
			rawTrain, rawTest, err := datasets.LoadSplit("digits", p.DataLoader.TestFraction, p.DataLoader.Seed)
			if err != nil {
				t.Fatal(err)
			}
			fed := trees.Evaluate(merged, rawTest).Accuracy
			if want := fmt.Sprintf("%s%.4f ", FinalAccuracyPrefix, fed); !strings.Contains(out, want) {
				t.Errorf("aggregator did not report the file's accuracy: no %q", want)
			}
			central, err := treefed.Train(ctx, rawTrain, p.TreesConfig())
			if err != nil {
				t.Fatal(err)
			}
			cen := trees.Evaluate(central, rawTest).Accuracy
			t.Logf("digits %s, 3 IID shards: federated (merged) test accuracy %.4f, central %.4f", tc.kind, fed, cen)
			if fed < cen-0.03 {
				t.Errorf("merged accuracy %.4f more than 3 points below the central model's %.4f", fed, cen)
			}
		})
	}
}

// TestTreeModelSealed: with an encryption section the aggregator's tree
// model files are sealed LightGBM text (no plaintext on disk) that opens
// with the key source and parses back to the same trees; without one
// they are plain model.txt.
func TestTreeModelSealed(t *testing.T) {
	ctx := context.Background()
	train, _, err := datasets.LoadSplit("breast_cancer", 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := treefed.Train(ctx, train, treefed.Config{Model: "gbdt", Trees: 5, NumLeaves: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	w, err := treefed.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	md := map[string]string{workspace.MetaModel: "gbdt", "teeml.dataset": "breast_cancer", workspace.MetaPlanHash: "ab12"}
	p := &plan.Plan{Encryption: plan.Encryption{Key: "fl-data"}}
	rest := newAtRest(ctx, p, testKeys(t, "fl-data"))
	dir := t.TempDir()
	sealedPath, plainPath := filepath.Join(dir, "save", "last.model.txt"), filepath.Join(dir, "plain", "last.model.txt")
	if err := rest.saveWeights(sealedPath, w, md, ml.Metrics{}); err != nil {
		t.Fatal(err)
	}
	var plain *atRest
	if err := plain.saveWeights(plainPath, w, md, ml.Metrics{}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(sealedPath)
	if !bytes.HasPrefix(raw, []byte(sealed.Magic)) || bytes.Contains(raw, []byte("Tree=")) {
		t.Fatalf("%s is not sealed", sealedPath)
	}
	opened, err := rest.open(sealedPath, "model")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(plainPath)
	for name, b := range map[string][]byte{"sealed": opened, "plain": text} {
		back, err := trees.ParseText(bytes.NewReader(b), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(back.Trees) != len(m.Trees) || back.Params["teeml.dataset"] != "breast_cancer" || back.Params[workspace.MetaPlanHash] != "ab12" {
			t.Errorf("%s: %d trees, params %v", name, len(back.Trees), back.Params)
		}
		if a, b := back.Raw(train.Row(0))[0], m.Raw(train.Row(0))[0]; math.Abs(a-b) > 1e-12 {
			t.Errorf("%s: raw %v, want %v", name, a, b)
		}
	}
}
