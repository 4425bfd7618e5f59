// Package plan is the vertical-FL plan (plan.yaml) both parties of a VFL
// session load: the dataset, each side's columns and attestation policy,
// the split model, the training schedule and the network timeouts. Parsing
// is strict (internal/yamlx): unknown and duplicate keys, anchors and wrong
// types are refused, and every error names file:line: key: reason, e.g.
//
//	plan.yaml:15: training.epochs: 0 outside 1..100000
//
// Load also reads the two policy files the plan names and computes the plan
// hash the parties compare in the bridge handshake.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/internal/yamlx"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/vfl/bridge"
	"github.com/teeml/teeml/vfl/split"
)

// Roles of the two parties.
const (
	RoleLeader   = bridge.RoleLeader
	RoleFollower = bridge.RoleFollower
)

// MaxSize bounds a plan file.
const MaxSize = 1 << 20

// Plan is a vertical-FL plan (plan.yaml), identical at both parties: what
// data each side contributes, the model, the training schedule, and the
// attestation policy each side must satisfy. Its Hash (over the canonical
// plan and the contents of both policy files) is compared in the bridge
// handshake, so two parties only train together on exactly the same plan
// and the same idea of who may run each side.
//
//	name: bc-widedeep
//	dataset: breast_cancer      # a bundled dataset (teeml datasets list)
//	test_fraction: 0.2
//	seed: 7
//	model:
//	  kind: widedeep            # lr | widedeep
//	  act_width: 16             # widedeep only (lr: 1)
//	  hidden: [32]              # widedeep only
//	  embedding: 4              # widedeep only
//	leader:                     # holds the labels
//	  columns: [mean radius, ...]
//	  policy: policies/leader.yaml      # attestation policy the follower checks the leader against
//	  drop_ids: 0.05            # optional, simulation only: fraction of IDs this side lacks
//	follower:
//	  columns: [worst radius, ...]
//	  policy: policies/follower.yaml
//	training:
//	  batch_size: 32
//	  epochs: 10
//	  learning_rate: 0.005
//	  checkpoint_every: 20      # iterations
//	psi_mode: both              # optional; leader-learns is refused
//	network:                    # all optional
//	  recv_timeout: 60s
//	  heartbeat: 2s
//	  peer_timeout: 15s
//	  reconnect_timeout: 2m
type Plan struct {
	Name         string  `yaml:"name" json:"name"`
	Dataset      string  `yaml:"dataset" json:"dataset"`
	TestFraction float64 `yaml:"test_fraction" json:"test_fraction"`
	Seed         int64   `yaml:"seed" json:"seed"`
	Model        Model   `yaml:"model" json:"model"`
	Leader       Side    `yaml:"leader" json:"leader"`
	Follower     Side    `yaml:"follower" json:"follower"`
	Training     Train   `yaml:"training" json:"training"`
	Network      Network `yaml:"network" json:"network"`
	// PSIMode is who learns the intersection in the PSI that aligns the
	// rows: "both" (the default and the only mode split training can use).
	PSIMode string `yaml:"psi_mode,omitempty" json:"psi_mode,omitempty"`

	// Filled by Load.
	path     string
	policies map[string]*policy.Policy
	hash     string
	lines    map[string]int
}

// Model is the plan's model section.
type Model struct {
	Kind      split.Kind `yaml:"kind" json:"kind"`
	ActWidth  int        `yaml:"act_width" json:"act_width"`
	Hidden    []int      `yaml:"hidden" json:"hidden"`
	Embedding int        `yaml:"embedding" json:"embedding"`
}

// Side is one party's section.
type Side struct {
	Columns []string `yaml:"columns" json:"columns"`
	Policy  string   `yaml:"policy" json:"policy"`
	// DropIDs simulates IDs held by only one party: this side drops a
	// seeded fraction of the rows (quickstart uses it to exercise the
	// alignment). Real deployments leave it 0.
	DropIDs float64 `yaml:"drop_ids" json:"drop_ids"`
	// PolicyDigest is SHA-256 of the policy file (filled at load, hashed).
	PolicyDigest string `yaml:"-" json:"policy_sha256"`
}

// Train is the plan's training section.
type Train struct {
	BatchSize       int     `yaml:"batch_size" json:"batch_size"`
	Epochs          int     `yaml:"epochs" json:"epochs"`
	LearningRate    float64 `yaml:"learning_rate" json:"learning_rate"`
	CheckpointEvery int     `yaml:"checkpoint_every" json:"checkpoint_every"`
}

// Network is the plan's network section (timeouts).
type Network struct {
	RecvTimeout      Duration `yaml:"recv_timeout" json:"recv_timeout"`
	Heartbeat        Duration `yaml:"heartbeat" json:"heartbeat"`
	PeerTimeout      Duration `yaml:"peer_timeout" json:"peer_timeout"`
	ReconnectTimeout Duration `yaml:"reconnect_timeout" json:"reconnect_timeout"`
}

// Duration is a time.Duration written as "60s" in YAML.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a non-negative duration such as 30s", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Error is a plan problem: file:line: key: reason.
type Error = yamlx.Error

// Errorf is an Error at key (dotted, e.g. "training.epochs"), on the line
// of key or of its nearest enclosing key.
func (p *Plan) Errorf(key, format string, args ...any) error {
	w := yamlx.Walker{File: p.path, Lines: p.lines}
	return yamlx.Errorf(p.path, w.Line(key), key, format, args...)
}

// Parse parses plan bytes strictly (unknown keys, duplicate keys and
// wrong types refused with file:line) and validates them; policy files are
// not read (see Load).
func Parse(data []byte, path string) (*Plan, error) {
	p := &Plan{path: path}
	lines, err := yamlx.Decode(data, path, "plan", MaxSize, p)
	if err != nil {
		return nil, err
	}
	p.lines = lines
	if err := p.validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// validate checks the plan section by section (first problem returned)
// and fills the defaults.
func (p *Plan) validate() error {
	for _, check := range []func() error{p.validateTop, p.validateModel, p.validateSides, p.validateTraining, p.validateNetwork} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// validateTop checks the top-level keys.
func (p *Plan) validateTop() error {
	if p.Name == "" {
		return p.Errorf("name", "missing")
	}
	if p.Dataset == "" {
		return p.Errorf("dataset", "missing")
	}
	if !(p.TestFraction > 0 && p.TestFraction < 1) {
		return p.Errorf("test_fraction", "%v outside (0, 1)", p.TestFraction)
	}
	switch p.PSIMode {
	case "", "both":
	case "leader-learns":
		return p.Errorf("psi_mode", "leader-learns leaves the follower without the aligned order, so it cannot build its half of each batch; split training needs both (use teeml vfl psi --mode leader-learns for a leader-only intersection)")
	default:
		return p.Errorf("psi_mode", "%q: want both", p.PSIMode)
	}
	return nil
}

// validateModel checks the model section and fills its kind's defaults.
func (p *Plan) validateModel() error {
	m := &p.Model
	switch m.Kind {
	case split.KindLR:
		if m.ActWidth == 0 {
			m.ActWidth = 1
		}
		if m.ActWidth != 1 || len(m.Hidden) > 0 || m.Embedding != 0 {
			return p.Errorf("model", "kind lr takes no act_width (other than 1), hidden or embedding")
		}
	case split.KindWideDeep:
		if m.ActWidth == 0 {
			m.ActWidth = split.DefaultActWidth
		}
		if m.Embedding == 0 {
			m.Embedding = split.DefaultEmbedding
		}
		if m.Hidden == nil {
			m.Hidden = append([]int(nil), split.DefaultHidden...)
		}
	case "":
		return p.Errorf("model.kind", "missing (lr or widedeep)")
	default:
		return p.Errorf("model.kind", "%q: want lr or widedeep", m.Kind)
	}
	if err := p.Spec(RoleLeader).Validate(); err != nil {
		return p.Errorf("model", "%w", err)
	}
	return nil
}

// validateSides checks the leader and follower sections: disjoint
// columns (the follower has at least one), a policy each, drop_ids.
func (p *Plan) validateSides() error {
	seen := map[string]string{}
	for _, s := range []struct {
		role string
		side *Side
	}{{RoleLeader, &p.Leader}, {RoleFollower, &p.Follower}} {
		if len(s.side.Columns) == 0 && s.role == RoleFollower {
			return p.Errorf(s.role+".columns", "the follower needs at least one column")
		}
		for _, c := range s.side.Columns {
			if prev, ok := seen[c]; ok {
				return p.Errorf(s.role+".columns", "column %q also given to the %s", c, prev)
			}
			seen[c] = s.role
		}
		if s.side.Policy == "" {
			return p.Errorf(s.role+".policy", "missing: the attestation policy the other party checks the %s against", s.role)
		}
		if !(s.side.DropIDs >= 0 && s.side.DropIDs < 0.5) {
			return p.Errorf(s.role+".drop_ids", "%v outside [0, 0.5)", s.side.DropIDs)
		}
	}
	return nil
}

func (p *Plan) validateTraining() error {
	t := &p.Training
	if t.BatchSize < 1 || t.BatchSize > 65536 {
		return p.Errorf("training.batch_size", "%d outside 1..65536", t.BatchSize)
	}
	if t.Epochs < 1 || t.Epochs > 100000 {
		return p.Errorf("training.epochs", "%d outside 1..100000", t.Epochs)
	}
	if !(t.LearningRate > 0 && t.LearningRate < 10) {
		return p.Errorf("training.learning_rate", "%v outside (0, 10)", t.LearningRate)
	}
	if t.CheckpointEvery < 1 {
		return p.Errorf("training.checkpoint_every", "%d: want at least 1 (iterations)", t.CheckpointEvery)
	}
	return nil
}

// validateNetwork fills the default timeouts and checks them.
func (p *Plan) validateNetwork() error {
	n := &p.Network
	if n.RecvTimeout == 0 {
		n.RecvTimeout = Duration(time.Minute)
	}
	if n.Heartbeat == 0 {
		n.Heartbeat = Duration(2 * time.Second)
	}
	if n.PeerTimeout == 0 {
		n.PeerTimeout = Duration(15 * time.Second)
	}
	if n.ReconnectTimeout == 0 {
		n.ReconnectTimeout = Duration(2 * time.Minute)
	}
	if n.PeerTimeout <= n.Heartbeat {
		return p.Errorf("network.peer_timeout", "%s must exceed network.heartbeat %s", time.Duration(n.PeerTimeout), time.Duration(n.Heartbeat))
	}
	return nil
}

// Load reads and validates a plan file and the two policy files it
// names (relative to the plan's directory), and computes the plan hash.
func Load(path string) (*Plan, error) {
	data, err := yamlx.ReadFile(path, "plan", MaxSize)
	if err != nil {
		return nil, err
	}
	p, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	p.policies = map[string]*policy.Policy{}
	for _, s := range []struct {
		role string
		side *Side
	}{{RoleLeader, &p.Leader}, {RoleFollower, &p.Follower}} {
		pp := p.resolve(s.side.Policy)
		b, err := yamlx.ReadFile(pp, "policy", policy.MaxSize)
		if err != nil {
			return nil, p.Errorf(s.role+".policy", "%w", err)
		}
		pol, err := policy.Parse(b, pp)
		if err != nil {
			return nil, p.Errorf(s.role+".policy", "%w", err)
		}
		if _, ok := pol.Roles[s.role]; !ok {
			return nil, p.Errorf(s.role+".policy", "%s has no role %q", pp, s.role)
		}
		sum := sha256.Sum256(b)
		s.side.PolicyDigest = hex.EncodeToString(sum[:])
		p.policies[s.role] = pol
	}
	p.hash = p.computeHash()
	return p, nil
}

// Dir is the directory of the plan file (relative paths resolve there).
func (p *Plan) Dir() string { return filepath.Dir(p.path) }

// Path is the plan file.
func (p *Plan) Path() string { return p.path }

func (p *Plan) resolve(rel string) string {
	if filepath.IsAbs(rel) {
		return rel
	}
	return filepath.Join(p.Dir(), filepath.FromSlash(rel))
}

// Canonical is the plan as canonical JSON (struct order, defaults filled,
// policy file digests included): what Hash covers.
func (p *Plan) Canonical() []byte {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // plain data
	}
	return b
}

func (p *Plan) computeHash() string {
	sum := sha256.Sum256(append([]byte("teeml vfl plan v1\n"), p.Canonical()...))
	return hex.EncodeToString(sum[:])
}

// Hash is the plan hash (hex SHA-256), set by Load.
func (p *Plan) Hash() string { return p.hash }

// ShortHash is the first 16 hex digits of the hash.
func (p *Plan) ShortHash() string { return p.hash[:16] }

// Policy returns the policy the given role is checked against.
func (p *Plan) Policy(role string) *policy.Policy { return p.policies[role] }

// Side returns the plan section of role.
func (p *Plan) Side(role string) *Side {
	if role == RoleLeader {
		return &p.Leader
	}
	return &p.Follower
}

// Spec is the split model spec of role (columns filled in by the data
// preparation, which knows the categorical cardinalities).
func (p *Plan) Spec(role string) split.Spec {
	return split.Spec{Kind: p.Model.Kind, ActWidth: p.Model.ActWidth, Hidden: p.Model.Hidden,
		Embedding: p.Model.Embedding, LearningRate: p.Training.LearningRate, Seed: p.Seed}
}

// CheckColumns verifies that the plan's columns exist in the dataset and
// cover it (the label is not a column).
func (p *Plan) CheckColumns(ds *datasets.Dataset) error {
	for _, role := range []string{RoleLeader, RoleFollower} {
		for _, c := range p.Side(role).Columns {
			if ds.ColumnIndex(c) < 0 {
				return p.Errorf(role+".columns", "dataset %s has no column %q", ds.Name, c)
			}
		}
	}
	return nil
}
