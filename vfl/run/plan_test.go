package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodPlan = `name: t
dataset: breast_cancer
test_fraction: 0.2
seed: 1
model:
  kind: lr
leader:
  columns: [mean radius]
  policy: policies/leader.yaml
follower:
  columns: [worst radius]
  policy: policies/follower.yaml
training:
  batch_size: 32
  epochs: 1
  learning_rate: 0.01
  checkpoint_every: 5
`

func TestParsePlanErrorsNameFileLineAndKey(t *testing.T) {
	if _, err := ParsePlan([]byte(goodPlan), "plan.yaml"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, to, want string }{
		{"epochs: 1", "epochs: 0", "plan.yaml:15: training.epochs: 0 outside 1..100000"},
		{"kind: lr", "kind: gbdt", `plan.yaml:6: model.kind: "gbdt": want lr or widedeep`},
		{"seed: 1", "seed: 1\nsedd: 2", "plan.yaml:5: sedd: unknown key (not part of the plan format)"},
		{"  columns: [worst radius]", "  columns: [mean radius]", `plan.yaml:11: follower.columns: column "mean radius" also given to the leader`},
		{"  policy: policies/follower.yaml\n", "", "follower.policy: missing"},
		{"batch_size: 32", "batch_size: many", "plan.yaml:14: training.batch_size: cannot unmarshal !!str `many` into int"},
		{"test_fraction: 0.2", "test_fraction: 1.5", "plan.yaml:3: test_fraction: 1.5 outside (0, 1)"},
		{"kind: lr", "kind: lr\n  hidden: [8]", "plan.yaml:5: model: kind lr takes no act_width"},
		{"seed: 1", "seed: 1\nseed: 2", `mapping key "seed" already defined`},
		{"seed: 1", "seed: 1\npsi_mode: leader-learns", "plan.yaml:5: psi_mode: leader-learns leaves the follower without the aligned order"},
		{"seed: 1", "seed: 1\npsi_mode: plain", `plan.yaml:5: psi_mode: "plain": want both`},
	} {
		src := strings.Replace(goodPlan, c.from, c.to, 1)
		_, err := ParsePlan([]byte(src), "plan.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q → %q: error %v, want %q", c.from, c.to, err, c.want)
		}
	}
}

func TestPlanHashCoversPolicies(t *testing.T) {
	dir := t.TempDir()
	plan, err := SetupSimulated(SetupOptions{Dir: dir, Dataset: "breast_cancer"})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := LoadPlan(plan)
	if err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policies", "follower.yaml")
	b, _ := os.ReadFile(pol)
	os.WriteFile(pol, []byte(strings.Replace(string(b), "allow_debug: false", "allow_debug: true", 1)), 0o644)
	p2, err := LoadPlan(plan)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Hash() == p2.Hash() {
		t.Fatal("changing a policy file did not change the plan hash")
	}
	// A comment does not change the plan hash (canonical form).
	pb, _ := os.ReadFile(plan)
	os.WriteFile(plan, append([]byte("# another comment\n"), pb...), 0o644)
	p3, err := LoadPlan(plan)
	if err != nil {
		t.Fatal(err)
	}
	if p3.Hash() != p2.Hash() {
		t.Fatal("a comment changed the plan hash")
	}
	// A policy without the role it is for is refused.
	os.WriteFile(pol, []byte("roles:\n  leader:\n    sgx:\n      - mr_enclave: \""+strings.Repeat("ab", 32)+"\"\n"), 0o644)
	if _, err := LoadPlan(plan); err == nil || !strings.Contains(err.Error(), `has no role "follower"`) {
		t.Fatalf("err %v", err)
	}
}

func FuzzParsePlan(f *testing.F) {
	f.Add([]byte(goodPlan))
	f.Add([]byte("name: [\n"))
	f.Add([]byte("model: {kind: widedeep, hidden: [-1]}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePlan(b, "fuzz.yaml")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if p.Training.BatchSize < 1 || p.Model.ActWidth < 1 {
			t.Fatalf("invalid plan accepted: %+v", p)
		}
	})
}
