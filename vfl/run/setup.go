package run

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/party/partysim"
	"github.com/teeml/teeml/vfl/split"
)

// SetupOptions configures SetupSimulated.
type SetupOptions struct {
	Dir             string
	Dataset         string     // breast_cancer or credit
	Kind            split.Kind // default widedeep
	Epochs          int
	BatchSize       int
	LearningRate    float64
	CheckpointEvery int
	Seed            int64
	// DropIDs is the fraction of IDs each side lacks (default 0.05 each, so
	// about 10% of all IDs are held by one side only).
	DropIDs float64
}

// quickstartColumns is the vertical split of each quickstart dataset.
var quickstartColumns = map[string][2][]string{
	// breast_cancer: 15/15, the leader holds the label.
	"breast_cancer": {
		{"mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness", "mean compactness", "mean concavity",
			"mean concave points", "mean symmetry", "mean fractal dimension", "radius error", "texture error", "perimeter error",
			"area error", "smoothness error"},
		{"compactness error", "concavity error", "concave points error", "symmetry error", "fractal dimension error",
			"worst radius", "worst texture", "worst perimeter", "worst area", "worst smoothness", "worst compactness",
			"worst concavity", "worst concave points", "worst symmetry", "worst fractal dimension"},
	},
	// credit: the lender (leader) knows the applicant and the loan record,
	// the follower the job, finances and the amount.
	"credit": {
		{"Seniority", "Home", "Time", "Age", "Marital", "Records"},
		{"Job", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"},
	},
}

func quote(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = fmt.Sprintf("%q", c)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// SetupSimulated writes a simulated two-party VFL directory: plan.yaml,
// policies/{leader,follower}.yaml accepting each role's simulated
// measurement, and the parties' simulation keys and configurations
// (party/partysim: party/{leader,follower}.yaml, both sides trusting both
// simulation keys). It returns the plan path.
func SetupSimulated(o SetupOptions) (string, error) {
	cols, ok := quickstartColumns[o.Dataset]
	if !ok {
		return "", fmt.Errorf("vfl setup: no quickstart column split for dataset %q (have breast_cancer, credit)", o.Dataset)
	}
	if o.Kind == "" {
		o.Kind = split.KindWideDeep
	}
	if o.Epochs == 0 {
		o.Epochs = 10
	}
	if o.BatchSize == 0 {
		o.BatchSize = 32
	}
	if o.LearningRate == 0 {
		o.LearningRate = 0.005
		if o.Kind == split.KindLR {
			o.LearningRate = 0.02
		}
	}
	if o.CheckpointEvery == 0 {
		o.CheckpointEvery = 20
	}
	if o.Seed == 0 {
		o.Seed = 7
	}
	if o.DropIDs == 0 {
		o.DropIDs = 0.05
	}
	dir := o.Dir
	for _, d := range []string{"policies", "party"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return "", err
		}
	}
	model := "  kind: lr\n"
	if o.Kind == split.KindWideDeep {
		model = fmt.Sprintf("  kind: widedeep\n  act_width: %d\n  hidden: [32]\n  embedding: %d\n", split.DefaultActWidth, split.DefaultEmbedding)
	}
	plan := fmt.Sprintf(`# %s
# teeml vertical FL plan written by teeml vfl quickstart (see vfl/plan.Plan).
name: quickstart-%s-%s
dataset: %s
test_fraction: 0.2
seed: %d
model:
%sleader:
  columns: %s
  policy: policies/leader.yaml
  drop_ids: %v
follower:
  columns: %s
  policy: policies/follower.yaml
  drop_ids: %v
training:
  batch_size: %d
  epochs: %d
  learning_rate: %v
  checkpoint_every: %d
network:
  recv_timeout: 60s
  heartbeat: 1s
  peer_timeout: 10s
  reconnect_timeout: 60s
`, sim.Banner, o.Dataset, o.Kind, o.Dataset, o.Seed, model, quote(cols[0]), o.DropIDs, quote(cols[1]), o.DropIDs,
		o.BatchSize, o.Epochs, o.LearningRate, o.CheckpointEvery)
	planPath := filepath.Join(dir, "plan.yaml")
	if err := atomicfile.WriteBytes(planPath, []byte(plan), 0o644); err != nil {
		return "", err
	}
	for _, role := range []string{RoleLeader, RoleFollower} {
		pol := partysim.Policy(role)
		if err := atomicfile.WriteBytes(filepath.Join(dir, "policies", role+".yaml"), pol, 0o644); err != nil {
			return "", err
		}
	}
	if err := partysim.Parties(dir, map[string]string{RoleLeader: RoleLeader, RoleFollower: RoleFollower, partysim.DashboardRole: partysim.DashboardRole}); err != nil {
		return "", err
	}
	return planPath, nil
}
