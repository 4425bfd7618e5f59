package workspace

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/treefed"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/safetensors"
)

func newWS(t *testing.T, template string) string {
	t.Helper()
	ws := filepath.Join(t.TempDir(), "ws")
	if err := Create(ws, template); err != nil {
		t.Fatal(err)
	}
	return ws
}

func TestTemplatesCreateValidateInit(t *testing.T) {
	for _, tmpl := range Templates() {
		t.Run(tmpl, func(t *testing.T) {
			if tmpl == "mnist_cnn" {
				if _, err := datasets.MNISTDir(); err != nil {
					testenv.MustRun(t, "MNIST unavailable: %v", err)
				}
			}
			ws := newWS(t, tmpl)
			if tp, _ := LoadPlan(ws); tp != nil && tp.TaskRunner.Model == plan.ModelExternal {
				requireTorch(t)
			}
			for _, d := range []string{"plan", "policies", "data", "save", "logs"} {
				if st, err := os.Stat(filepath.Join(ws, d)); err != nil || !st.IsDir() {
					t.Errorf("%s/: %v", d, err)
				}
			}
			p, err := LoadPlan(ws)
			if err != nil {
				t.Fatal(err)
			}
			pols, err := LoadPolicies(ws, p)
			if err != nil {
				t.Fatal(err)
			}
			for role, pol := range pols {
				if pol.Roles[role].AllowSimulation {
					t.Errorf("%s policy allows simulation", role)
				}
				raw, _ := os.ReadFile(filepath.Join(ws, p.Attestation.Policy[role]))
				if !strings.Contains(string(raw), "allow_simulation: true") {
					t.Errorf("%s policy does not explain how to allow simulation", role)
				}
			}
			cols, err := LoadCollaborators(ws)
			if err != nil || len(cols) != 0 {
				t.Fatalf("cols %v %v", cols, err)
			}
			hash, err := InitPlan(ws, "agg.example.org:6000")
			if err != nil {
				t.Fatal(err)
			}
			frozen, err := LoadPlan(ws)
			if err != nil {
				t.Fatal(err)
			}
			if frozen.Hash() != hash || frozen.Network.AggAddr != "agg.example.org" || frozen.Network.AggPort != 6000 {
				t.Errorf("frozen plan %s %+v", frozen.Hash(), frozen.Network)
			}
			if h, err := plan.ReadHashFile(filepath.Join(ws, HashFile)); err != nil || h != hash {
				t.Errorf("hash file %s %v", h, err)
			}
			ws2, md, err := safetensors.ReadFile(filepath.Join(ws, p.Aggregator.InitStatePath))
			if err != nil {
				t.Fatal(err)
			}
			if md[MetaPlanHash] != hash {
				t.Errorf("weights carry plan hash %q, want %s", md[MetaPlanHash], hash)
			}
			if p.TaskRunner.Model == plan.ModelExternal {
				checkExternalInit(t, ws, frozen, ws2, md)
				return
			}
			if plan.IsTreeModel(p.TaskRunner.Model) {
				// No trees before the one round: the empty model.
				if md[MetaModel] != p.TaskRunner.Model || !treefed.IsEmpty(ws2) {
					t.Errorf("tree plan init wrote %v with metadata %v, want treefed.Empty and %s %s", ws2, md, MetaModel, p.TaskRunner.Model)
				}
				return
			}
			m, err := ml.NewFromMetadata(md)
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind() != p.TaskRunner.Model {
				t.Errorf("kind %s", m.Kind())
			}
			if err := m.Weights().Compatible(ws2); err != nil {
				t.Fatalf("shapes: %v", err)
			}
			if err := m.SetWeights(ws2); err != nil {
				t.Fatal(err)
			}
			// The same seed gives the same initial weights.
			for i := range ws2 {
				if !slices.Equal(ws2[i].Data, m.Weights()[i].Data) {
					t.Fatalf("tensor %s differs", ws2[i].Name)
				}
			}
			if len(p.TaskRunner.Hidden) > 0 && !slices.Equal(m.Spec().Hidden, p.TaskRunner.Hidden) {
				t.Errorf("hidden %v, want %v", m.Spec().Hidden, p.TaskRunner.Hidden)
			}
			// Re-init with the same address gives the same hash; a bare
			// host keeps the port.
			if h2, err := InitPlan(ws, "agg.example.org"); err != nil || h2 != hash {
				t.Errorf("re-init: %s %v", h2, err)
			}
		})
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	if err := Create(filepath.Join(dir, "x"), "nope"); err == nil || !strings.Contains(err.Error(), `unknown template "nope"`) {
		t.Errorf("unknown template: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)
	if err := Create(dir, "digits_mlp"); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty dir: %v", err)
	}
}

func TestInitPlanErrors(t *testing.T) {
	ws := newWS(t, "digits_mlp")
	for _, addr := range []string{"host:0", "host:99999", "host:x", ":80", "a b:80", "[::1", "bad/host"} {
		if _, err := InitPlan(ws, addr); err == nil {
			t.Errorf("address %q accepted", addr)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("multi-line error %q", err)
		}
	}
	if _, err := os.Stat(filepath.Join(ws, HashFile)); err == nil {
		t.Error("failed init froze the plan")
	}
	for addr, want := range map[string][2]any{"[::1]:7000": {"::1", 7000}, "10.0.0.1": {"10.0.0.1", 50051}, "::1": {"::1", 50051}} {
		ws := newWS(t, "breast_cancer_logreg")
		if _, err := InitPlan(ws, addr); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		p, _ := LoadPlan(ws)
		if p.Network.AggAddr != want[0] || p.Network.AggPort != want[1] {
			t.Errorf("%s: got %s %d", addr, p.Network.AggAddr, p.Network.AggPort)
		}
	}
	// A broken policy stops init.
	os.WriteFile(filepath.Join(ws, "policies", "aggregator.yaml"), []byte("roles: {}\n"), 0o644)
	if _, err := InitPlan(ws, "h"); err == nil || !strings.Contains(err.Error(), "aggregator.yaml") {
		t.Errorf("broken policy: %v", err)
	}
	// The default policies parse and refuse simulation.
	if _, err := policy.Parse(PolicyTemplate("collaborator"), "p"); err != nil {
		t.Error(err)
	}
}

func TestAddCollaborator(t *testing.T) {
	ws := newWS(t, "digits_mlp")
	if err := AddCollaborator(ws, "bank-a", "shard:0"); err != nil {
		t.Fatal(err)
	}
	if err := AddCollaborator(ws, "bank_b", "data/b.csv"); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, data, want string }{
		{"bank-a", "shard:1", "already in plan/cols.yaml"},
		{"bank-c", "shard:0", "shard:0 already assigned to bank-a"},
		{"bank-c", "shard:2", "outside the plan's 2 shards"},
		{"bank-c", "shard:-1", "want shard:N"},
		{"bank-c", "shard:01", "want shard:N"},
		{"bank-c", "data/c.txt", "want shard:N or a .csv, .csv.sealed or .parquet file"},
		{"bank-c", "", "data path is empty"},
		{"", "shard:1", "member name is empty"},
		{"-bank", "shard:1", "not allowed"},
		{"bank c", "shard:1", "not allowed"},
		{strings.Repeat("a", 65), "shard:1", "at most 64"},
	}
	for _, c := range cases {
		err := AddCollaborator(ws, c.name, c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q %q: got %v, want …%s…", c.name, c.data, err, c.want)
		}
	}
	cols, err := LoadCollaborators(ws)
	if err != nil {
		t.Fatal(err)
	}
	want := []Collaborator{{"bank-a", "shard:0"}, {"bank_b", "data/b.csv"}}
	if !slices.Equal(cols, want) {
		t.Errorf("cols %v", cols)
	}
	// Concurrent adds lose nothing.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := AddCollaborator(ws, fmt.Sprintf("c%d", i), fmt.Sprintf("data/c%d.csv", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if cols, _ := LoadCollaborators(ws); len(cols) != 10 {
		t.Errorf("%d collaborators after concurrent adds, want 10", len(cols))
	}
	// A frozen-and-tampered plan stops it.
	if _, err := InitPlan(ws, "h"); err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(ws, PlanFile)
	data, _ := os.ReadFile(pf)
	os.WriteFile(pf, bytes.Replace(data, []byte("shards: 2"), []byte("shards: 3"), 1), 0o644)
	if err := AddCollaborator(ws, "late", "shard:2"); err == nil || !strings.Contains(err.Error(), "modified") {
		t.Errorf("tampered plan: %v", err)
	}
}

func TestParseCollaboratorsErrors(t *testing.T) {
	cases := []struct{ data, want string }{
		{"", "cols.yaml: empty file"},
		{"collaborators: x\n", "cols.yaml:1: collaborators: must be a list"},
		{"others: []\n", `cols.yaml:1: "others": unknown key`},
		{"collaborators:\n  - name: a\n    data: shard:0\n  - name: a\n    data: shard:1\n", "cols.yaml:4: collaborators[1].name: collaborator \"a\" already listed at collaborators[0]"},
		{"collaborators:\n  - name: a\n    data: shard:0\n  - name: b\n    data: shard:0\n", "cols.yaml:4: collaborators[1].data: shard:0 already assigned to collaborators[0]"},
		{"collaborators:\n  - name: a\n", "needs name and data"},
		{"collaborators:\n  - name: a\n    data: shard:0\n    extra: 1\n", `cols.yaml:4: collaborators[0]."extra": unknown key`},
		{"collaborators:\n  - name: 12\n    data: shard:0\n", "collaborators[0].name: must be a string"},
	}
	for _, c := range cases {
		_, err := ParseCollaborators([]byte(c.data), "cols.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want …%s…", c.data, err, c.want)
		}
	}
	cols := []Collaborator{{"a", "shard:0"}, {"b", `data/we"ird.csv`}}
	got, err := ParseCollaborators(MarshalCollaborators(cols), "x")
	if err != nil || !slices.Equal(got, cols) {
		t.Errorf("round trip: %v %v", got, err)
	}
}
