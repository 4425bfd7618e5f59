package plan

import (
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
	if _, err := Parse([]byte(goodPlan), "plan.yaml"); err != nil {
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
		{"seed: 1", "seed: 1\nseed: 2", "plan.yaml:5: seed: duplicate key"},
		{"seed: 1", "seed: &s 1\nname: *s", "plan.yaml:4: YAML anchors and aliases are not supported"},
		{"seed: 1", "seed: 1\n---\nname: u", "more than one YAML document"},
		{"name: t", "", "plan.yaml: name: missing"},
		{"dataset: breast_cancer", "", "plan.yaml: dataset: missing"},
		{"  kind: lr", "  embedding: 0", "plan.yaml:5: model.kind: missing (lr or widedeep)"},
		{"  columns: [worst radius]", "  columns: []", "plan.yaml:11: follower.columns: the follower needs at least one column"},
		{"  policy: policies/leader.yaml", "  policy: policies/leader.yaml\n  drop_ids: 0.5", "plan.yaml:10: leader.drop_ids: 0.5 outside [0, 0.5)"},
		{"batch_size: 32", "batch_size: 0", "plan.yaml:14: training.batch_size: 0 outside 1..65536"},
		{"learning_rate: 0.01", "learning_rate: 10", "plan.yaml:5: model: split: learning rate 10 outside (0, 10)"},
		{"checkpoint_every: 5", "checkpoint_every: 0", "plan.yaml:17: training.checkpoint_every: 0: want at least 1 (iterations)"},
		{"checkpoint_every: 5\n", "checkpoint_every: 5\nnetwork:\n  heartbeat: 20s\n", "plan.yaml:18: network.peer_timeout: 15s must exceed network.heartbeat 20s"},
		{"checkpoint_every: 5\n", "checkpoint_every: 5\nnetwork:\n  heartbeat: -1s\n", `plan.yaml:19: network.heartbeat: "-1s" is not a non-negative duration such as 30s`},
		{"seed: 1", "seed: 1\npsi_mode: leader-learns", "plan.yaml:5: psi_mode: leader-learns leaves the follower without the aligned order"},
		{"seed: 1", "seed: 1\npsi_mode: plain", `plan.yaml:5: psi_mode: "plain": want both`},
	} {
		src := strings.Replace(goodPlan, c.from, c.to, 1)
		_, err := Parse([]byte(src), "plan.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q → %q: error %v, want %q", c.from, c.to, err, c.want)
		}
	}
}

func FuzzParsePlan(f *testing.F) {
	f.Add([]byte(goodPlan))
	f.Add([]byte("name: [\n"))
	f.Add([]byte("model: {kind: widedeep, hidden: [-1]}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b, "fuzz.yaml")
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
