package plan

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/internal/yamlx"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/pki"
)

// MaxSize bounds a plan file.
const MaxSize = 1 << 20

// Parse reads a plan.yaml and validates it. name (usually the file name)
// prefixes errors. Every key of every section is required except those
// documented as optional (aggregator.min_collaborators,
// collaborator.opt_treatment [reset], collaborator.delta_updates [false],
// task_runner.hidden [model default], task_runner.runner [model external
// only; its timeout 10m and env {} optional], network.round_timeout [0, no limit],
// network.tls [ra-tls], data_loader.partitioning.alpha [0, iid only],
// tasks.train.weight_decay [0], aggregation.settings [strategy defaults],
// aggregation.validator and its keys [0], the straggler_handling_policy
// section [absent] and its minimum_reporting [1], the privacy section
// [absent] with its adaptive_clipping [absent], sample_rate [1],
// sample_seed [task_runner.seed] and epsilon_budget [0, none], the
// secure_aggregation section [absent] with its frac_bits [16] and
// phase_timeout [1m]).
func Parse(data []byte, name string) (*Plan, error) {
	p := &Plan{name: name, lines: map[string]int{}}
	root, err := yamlx.Document(data, fileName(name), "plan", MaxSize)
	if err != nil {
		return nil, err
	}
	ps := &parser{p: p, w: &yamlx.Walker{File: fileName(name), Lines: p.lines, Root: "plan"}}
	p.Collaborator.OptTreatment = "reset"
	p.Network.TLS = TLS
	if err := ps.mapping(root, "", []field{
		{"aggregator", true, ps.aggregator},
		{"collaborator", true, ps.collaborator},
		{"data_loader", true, ps.dataLoader},
		{"task_runner", true, ps.taskRunner},
		{"network", true, ps.network},
		{"straggler_handling_policy", false, ps.straggler},
		{"assigner", true, ps.assigner},
		{"tasks", true, ps.tasks},
		{"aggregation", true, ps.aggregation},
		{"attestation", true, ps.attestation},
		{"encryption", false, ps.encryption},
		{"privacy", false, ps.privacy},
		{"secure_aggregation", false, ps.secureAggregation},
	}); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// HashFile is the name of the hash file next to a frozen plan.yaml.
const HashFile = "plan.hash"

// Load reads and validates a plan file. When a plan.hash file sits next to
// it (a frozen plan, see Freeze), the plan's Hash must match it.
func Load(path string) (*Plan, error) {
	p, err := LoadUnfrozen(path)
	if err != nil {
		return nil, err
	}
	hashPath := filepath.Join(filepath.Dir(path), HashFile)
	want, err := ReadHashFile(hashPath)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, err
	}
	if got := p.Hash(); got != want {
		return nil, fmt.Errorf("%s: plan hash %s does not match %s (%s): the frozen plan was modified; re-run plan init to freeze it again", path, got, hashPath, want)
	}
	return p, nil
}

// LoadUnfrozen reads and validates a plan file without checking a hash
// file: for the plan's author editing it before freezing it again.
func LoadUnfrozen(path string) (*Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("plan: %s: %w", path, err)
	}
	return Parse(data, path)
}

type field struct {
	key      string
	required bool
	parse    func(key string, v *yaml.Node) error
}

type parser struct {
	p            *Plan
	w            *yamlx.Walker
	strategyNode *yaml.Node
}

func (ps *parser) errf(n *yaml.Node, key, format string, args ...any) error {
	return ps.w.Errorf(n, key, format, args...)
}

// mapping walks a mapping node: every key must be known, appear once, and
// required ones must be present.
func (ps *parser) mapping(n *yaml.Node, prefix string, fields []field) error {
	fs := make([]yamlx.Field, len(fields))
	for i, f := range fields {
		fs[i] = yamlx.Field{Key: f.key, Required: f.required, Parse: f.parse}
	}
	return ps.w.Mapping(n, prefix, fs)
}

func (ps *parser) scalar(key string, v *yaml.Node, tags ...string) error {
	if v.Kind == yaml.ScalarNode {
		for _, t := range tags {
			if v.ShortTag() == t {
				return nil
			}
		}
	}
	want := map[string]string{"!!str": "a string", "!!int": "an integer", "!!float": "a number", "!!bool": "a boolean"}[tags[0]]
	return ps.errf(v, key, "must be %s, got %s", want, yamlx.KindName(v))
}

func (ps *parser) str(dst *string) func(string, *yaml.Node) error {
	return func(key string, v *yaml.Node) error {
		if err := ps.scalar(key, v, "!!str"); err != nil {
			return err
		}
		*dst = v.Value
		return nil
	}
}

func (ps *parser) boolean(dst *bool) func(string, *yaml.Node) error {
	return func(key string, v *yaml.Node) error {
		if err := ps.scalar(key, v, "!!bool"); err != nil {
			return err
		}
		return v.Decode(dst)
	}
}

func (ps *parser) int64v(key string, v *yaml.Node) (int64, error) {
	if err := ps.scalar(key, v, "!!int"); err != nil {
		return 0, err
	}
	var i int64
	if err := v.Decode(&i); err != nil {
		return 0, ps.errf(v, key, "integer %q out of range", v.Value)
	}
	return i, nil
}

func (ps *parser) integer(dst *int) func(string, *yaml.Node) error {
	return func(key string, v *yaml.Node) error {
		i, err := ps.int64v(key, v)
		if err != nil {
			return err
		}
		if i > math.MaxInt32 || i < math.MinInt32 {
			return ps.errf(v, key, "integer %d out of range", i)
		}
		*dst = int(i)
		return nil
	}
}

func (ps *parser) seed(dst *int64) func(string, *yaml.Node) error {
	return func(key string, v *yaml.Node) error {
		i, err := ps.int64v(key, v)
		*dst = i
		return err
	}
}

func (ps *parser) floatv(key string, v *yaml.Node) (float64, error) {
	if err := ps.scalar(key, v, "!!float", "!!int"); err != nil {
		return 0, err
	}
	var f float64
	if err := v.Decode(&f); err != nil {
		return 0, ps.errf(v, key, "bad number %q", v.Value)
	}
	if !finite(f) {
		return 0, ps.errf(v, key, "must be finite, got %v", v.Value)
	}
	if f == 0 {
		f = 0 // no negative zero
	}
	return f, nil
}

func (ps *parser) float(dst *float64) func(string, *yaml.Node) error {
	return func(key string, v *yaml.Node) error {
		f, err := ps.floatv(key, v)
		*dst = f
		return err
	}
}

func (ps *parser) duration(dst *time.Duration) func(string, *yaml.Node) error {
	return func(key string, v *yaml.Node) error {
		if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" && v.Value == "0" {
			*dst = 0
			return nil
		}
		if err := ps.scalar(key, v, "!!str"); err != nil {
			return ps.errf(v, key, "must be a duration such as \"10m\" or \"90s\", got %s", yamlx.KindName(v))
		}
		d, err := time.ParseDuration(v.Value)
		if err != nil {
			return ps.errf(v, key, "must be a duration such as \"10m\" or \"90s\", got %q", v.Value)
		}
		*dst = d
		return nil
	}
}

func (ps *parser) sequence(key string, v *yaml.Node, max int, f func(key string, item *yaml.Node) error) error {
	return ps.w.Sequence(v, key, max, f)
}

func (ps *parser) strList(dst *[]string) func(string, *yaml.Node) error {
	return func(key string, v *yaml.Node) error {
		*dst = []string{}
		return ps.sequence(key, v, 64, func(k string, item *yaml.Node) error {
			var s string
			err := ps.str(&s)(k, item)
			*dst = append(*dst, s)
			return err
		})
	}
}

func (ps *parser) intList(dst *[]int) func(string, *yaml.Node) error {
	return func(key string, v *yaml.Node) error {
		*dst = nil
		return ps.sequence(key, v, 64, func(k string, item *yaml.Node) error {
			var i int
			err := ps.integer(&i)(k, item)
			*dst = append(*dst, i)
			return err
		})
	}
}

func (ps *parser) aggregator(key string, v *yaml.Node) error {
	a := &ps.p.Aggregator
	return ps.mapping(v, key, []field{
		{"rounds_to_train", true, ps.integer(&a.RoundsToTrain)},
		{"init_state_path", true, ps.str(&a.InitStatePath)},
		{"best_state_path", true, ps.str(&a.BestStatePath)},
		{"last_state_path", true, ps.str(&a.LastStatePath)},
		{"min_collaborators", false, ps.integer(&a.MinCollaborators)},
	})
}

func (ps *parser) collaborator(key string, v *yaml.Node) error {
	c := &ps.p.Collaborator
	return ps.mapping(v, key, []field{
		{"epochs_per_round", true, ps.integer(&c.EpochsPerRound)},
		{"opt_treatment", false, ps.str(&c.OptTreatment)},
		{"delta_updates", false, ps.boolean(&c.DeltaUpdates)},
	})
}

func (ps *parser) dataLoader(key string, v *yaml.Node) error {
	d := &ps.p.DataLoader
	pt := &d.Partitioning
	return ps.mapping(v, key, []field{
		{"dataset", true, ps.str(&d.Dataset)},
		{"batch_size", true, ps.integer(&d.BatchSize)},
		{"test_fraction", true, ps.float(&d.TestFraction)},
		{"seed", true, ps.seed(&d.Seed)},
		{"partitioning", true, func(key string, v *yaml.Node) error {
			return ps.mapping(v, key, []field{
				{"kind", true, ps.str(&pt.Kind)},
				{"alpha", false, ps.float(&pt.Alpha)},
				{"seed", true, ps.seed(&pt.Seed)},
				{"shards", true, ps.integer(&pt.Shards)},
			})
		}},
	})
}

func (ps *parser) taskRunner(key string, v *yaml.Node) error {
	t := &ps.p.TaskRunner
	return ps.mapping(v, key, []field{
		{"model", true, ps.str(&t.Model)},
		{"hidden", false, ps.intList(&t.Hidden)},
		{"optimizer", true, ps.str(&t.Optimizer)},
		{"lr", true, ps.float(&t.LR)},
		{"seed", true, ps.seed(&t.Seed)},
		{"runner", false, ps.runner(&t.Runner)},
		{"trees", false, ps.trees(&t.Trees)},
	})
}

func (ps *parser) network(key string, v *yaml.Node) error {
	n := &ps.p.Network
	return ps.mapping(v, key, []field{
		{"agg_addr", true, ps.str(&n.AggAddr)},
		{"agg_port", true, ps.integer(&n.AggPort)},
		{"round_timeout", false, ps.duration(&n.RoundTimeout)},
		{"tls", false, func(key string, v *yaml.Node) error {
			if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool" {
				return ps.errf(v, key, "must be %q: connections are always attested TLS, there is no insecure mode; got %s", TLS, v.Value)
			}
			return ps.str(&n.TLS)(key, v)
		}},
	})
}

func (ps *parser) assigner(key string, v *yaml.Node) error {
	a := &ps.p.Assigner
	return ps.mapping(v, key, []field{
		{"task_groups", true, func(key string, v *yaml.Node) error {
			return ps.sequence(key, v, 16, func(k string, item *yaml.Node) error {
				var g TaskGroup
				err := ps.mapping(item, k, []field{
					{"name", true, ps.str(&g.Name)},
					{"percentage", true, ps.float(&g.Percentage)},
					{"tasks", true, ps.strList(&g.Tasks)},
				})
				a.TaskGroups = append(a.TaskGroups, g)
				return err
			})
		}},
	})
}

func (ps *parser) tasks(key string, v *yaml.Node) error {
	t := &ps.p.Tasks
	validation := func(dst *ValidationTask) func(string, *yaml.Node) error {
		return func(key string, v *yaml.Node) error {
			return ps.mapping(v, key, []field{{"metrics", true, ps.strList(&dst.Metrics)}})
		}
	}
	return ps.mapping(v, key, []field{
		{TaskAggregatedModelValidation, true, validation(&t.AggregatedModelValidation)},
		{TaskTrain, true, func(key string, v *yaml.Node) error {
			return ps.mapping(v, key, []field{
				{"metrics", true, ps.strList(&t.Train.Metrics)},
				{"weight_decay", false, ps.float(&t.Train.WeightDecay)},
			})
		}},
		{TaskLocallyTunedModelValidation, true, validation(&t.LocallyTunedModelValidation)},
	})
}

func (ps *parser) aggregation(key string, v *yaml.Node) error {
	ag := &ps.p.Aggregation
	ag.Settings = map[string]float64{}
	var settings *yaml.Node
	err := ps.mapping(v, key, []field{
		{"strategy", true, func(key string, v *yaml.Node) error {
			ps.strategyNode = v
			return ps.str(&ag.Strategy)(key, v)
		}},
		{"settings", false, func(key string, v *yaml.Node) error {
			settings = v
			return nil
		}},
		{"validator", false, func(key string, v *yaml.Node) error {
			return ps.mapping(v, key, []field{
				{"max_update_norm", false, ps.float(&ag.Validator.MaxUpdateNorm)},
				{"max_num_examples", false, ps.integer(&ag.Validator.MaxNumExamples)},
				{"min_accepted", false, ps.integer(&ag.Validator.MinAccepted)},
			})
		}},
	})
	if err != nil || settings == nil {
		return err
	}
	// Settings depend on the strategy, known only once the section is read.
	skey := key + ".settings"
	if settings.Kind == yaml.ScalarNode && settings.ShortTag() == "!!null" {
		return nil
	}
	if !slices.Contains(strategy.Names(), ag.Strategy) {
		return ps.errf(ps.strategyNode, key+".strategy", "unknown strategy %q (known: %s)", ag.Strategy, strings.Join(strategy.Names(), ", "))
	}
	var fields []field
	for _, k := range SettingKeys(ag.Strategy) {
		fields = append(fields, field{k, false, func(key string, v *yaml.Node) error {
			f, err := ps.floatv(key, v)
			ag.Settings[k] = f
			return err
		}})
	}
	if fields == nil && settings.Kind == yaml.MappingNode && len(settings.Content) > 0 {
		k := settings.Content[0]
		return ps.errf(k, skey+"."+yamlx.KeyName(k.Value), "strategy %q takes no settings", ag.Strategy)
	}
	return ps.mapping(settings, skey, fields)
}

func (ps *parser) attestation(key string, v *yaml.Node) error {
	at := &ps.p.Attestation
	at.Policy = map[string]string{}
	return ps.mapping(v, key, []field{
		{"policy", true, func(key string, v *yaml.Node) error {
			var fields []field
			for _, role := range pki.Roles {
				fields = append(fields, field{role, false, func(key string, v *yaml.Node) error {
					var s string
					err := ps.str(&s)(key, v)
					at.Policy[role] = s
					return err
				}})
			}
			return ps.mapping(v, key, fields)
		}},
	})
}
