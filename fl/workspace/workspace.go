// Package workspace manages a teeml federated-learning workspace, the
// directory every participant of an experiment shares (OpenFL's workspace):
//
//	plan/plan.yaml        the plan (see fl/plan); frozen by InitPlan
//	plan/plan.hash        its hash once frozen
//	plan/cols.yaml        the collaborators and their data
//	policies/*.yaml       attestation policies per role (attest/policy)
//	data/                 collaborators' local data (CSV files)
//	save/                 model states (init, best, last); not exported
//	logs/                 logs
//
// Each exported function is one CLI command: Create (`teeml fl workspace
// create`), InitPlan (`teeml fl plan init`), AddCollaborator (`teeml fl
// collaborator create`), Export/Import (`teeml fl workspace export/import`)
// and LoadShard (a collaborator's data for training).
package workspace

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/ml/safetensors"
)

//go:embed templates
var templateFS embed.FS

// Paths inside a workspace.
const (
	PlanFile  = "plan/plan.yaml"
	HashFile  = "plan/" + plan.HashFile
	ColsFile  = "plan/cols.yaml"
	PolicyDir = "policies"
)

// Subdirectories Create makes.
var dirs = []string{"plan", "policies", "data", "save", "logs"}

// Templates lists the workspace templates, sorted.
func Templates() []string {
	entries, err := templateFS.ReadDir("templates")
	if err != nil {
		panic(err)
	}
	var out []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok && !e.IsDir() {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// TemplatePlan returns a template's plan.yaml.
func TemplatePlan(template string) ([]byte, error) {
	if !slices.Contains(Templates(), template) {
		return nil, fmt.Errorf("workspace: unknown template %q (known: %s)", template, strings.Join(Templates(), ", "))
	}
	return templateFS.ReadFile("templates/" + template + ".yaml")
}

// PolicyTemplate returns the default policy file for a role: it matches no
// real enclave (a placeholder measurement to replace) and refuses simulated
// evidence.
func PolicyTemplate(role string) []byte {
	b, err := templateFS.ReadFile("templates/common/policy.yaml.tmpl")
	if err != nil {
		panic(err)
	}
	return []byte(strings.ReplaceAll(string(b), "ROLE", role))
}

// Create makes a new workspace at prefix (which must not exist, or be an
// empty directory) from a template: plan/plan.yaml, an empty plan/cols.yaml,
// policies/{aggregator,collaborator}.yaml and empty data/, save/, logs/.
func Create(prefix, template string) error {
	planData, err := TemplatePlan(template)
	if err != nil {
		return err
	}
	// The template must be valid as shipped (tests check it; this guards
	// edits to the embedded files).
	p, err := plan.Parse(planData, "template "+template)
	if err != nil {
		return fmt.Errorf("workspace: %w", err)
	}
	if entries, err := os.ReadDir(prefix); err == nil && len(entries) > 0 {
		return fmt.Errorf("workspace: %s: exists and is not empty", prefix)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("workspace: %w", err)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			return fmt.Errorf("workspace: %w", err)
		}
	}
	cols, err := templateFS.ReadFile("templates/common/cols.yaml")
	if err != nil {
		return err
	}
	files := map[string][]byte{PlanFile: planData, ColsFile: cols}
	for role, rel := range p.Attestation.Policy {
		files[rel] = PolicyTemplate(role)
	}
	if err := templateRunnerFiles(p, files); err != nil {
		return err
	}
	for rel, data := range files {
		full := filepath.Join(prefix, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("workspace: %w", err)
		}
		if err := atomicfile.WriteBytes(full, data, 0o644); err != nil {
			return fmt.Errorf("workspace: %w", err)
		}
	}
	return nil
}

// LoadPlan loads the workspace's plan, checking its hash when frozen.
func LoadPlan(ws string) (*plan.Plan, error) {
	return plan.Load(filepath.Join(ws, filepath.FromSlash(PlanFile)))
}

// LoadPolicies loads the attestation policy of every role the plan names.
func LoadPolicies(ws string, p *plan.Plan) (map[string]*policy.Policy, error) {
	out := map[string]*policy.Policy{}
	for role, rel := range p.Attestation.Policy {
		pol, err := policy.Load(filepath.Join(ws, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		if _, ok := pol.Roles[role]; !ok {
			return nil, fmt.Errorf("workspace: %s: policy for role %s has no roles.%s entry", rel, role, role)
		}
		out[role] = pol
	}
	return out, nil
}

// SplitHostPort parses the -a argument of plan init: HOST, HOST:PORT,
// [IPv6] or [IPv6]:PORT. port is 0 when absent.
func SplitHostPort(addr string) (host string, port int, err error) {
	if addr == "" {
		return "", 0, fmt.Errorf("aggregator address is empty")
	}
	h, ps, err := net.SplitHostPort(addr)
	if err != nil {
		// No port: a bare host, [IPv6] or a bare IPv6 address.
		switch {
		case strings.HasPrefix(addr, "["):
			inner, ok := strings.CutSuffix(addr[1:], "]")
			if !ok || net.ParseIP(inner) == nil {
				return "", 0, fmt.Errorf("aggregator address %q: bad bracketed IPv6 address", addr)
			}
			return inner, 0, nil
		case !strings.Contains(addr, ":"):
			return addr, 0, nil
		case net.ParseIP(addr) != nil:
			return addr, 0, nil
		}
		return "", 0, fmt.Errorf("aggregator address %q: want HOST, HOST:PORT or [IPv6]:PORT", addr)
	}
	port, err = strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("aggregator address %q: port %q must be in 1..65535", addr, ps)
	}
	if h == "" {
		return "", 0, fmt.Errorf("aggregator address %q: empty host", addr)
	}
	return h, port, nil
}

// Metadata keys InitPlan adds to the initial weights next to the model's.
const (
	MetaPlanHash = "teeml.fl.plan_hash"
)

// InitPlan is `teeml fl plan init -a HOST[:PORT]`: it sets
// network.agg_addr (and agg_port when given; an empty aggAddr keeps both),
// builds the plan's model (dataset spec, task_runner.hidden, seed), writes
// its initial weights as safetensors at aggregator.init_state_path with the
// model metadata, the dataset, the fitted preprocessing and the plan hash,
// then freezes the plan. It checks the attestation policies load. It
// returns the plan hash. Re-running it (after editing the plan) re-freezes.
func InitPlan(ws, aggAddr string) (string, error) {
	p, err := plan.LoadUnfrozen(filepath.Join(ws, filepath.FromSlash(PlanFile)))
	if err != nil {
		return "", err
	}
	if aggAddr != "" {
		host, port, err := SplitHostPort(aggAddr)
		if err != nil {
			return "", fmt.Errorf("workspace: plan init: %w", err)
		}
		p.Network.AggAddr = host
		if port != 0 {
			p.Network.AggPort = port
		}
		if err := p.Validate(); err != nil {
			return "", fmt.Errorf("workspace: plan init -a %s: %w", aggAddr, err)
		}
	}
	if _, err := LoadPolicies(ws, p); err != nil {
		return "", err
	}
	if _, err := LoadCollaborators(ws); err != nil {
		return "", err
	}
	if p.TaskRunner.Model == plan.ModelExternal {
		return initExternalPlan(ws, p)
	}
	if plan.IsTreeModel(p.TaskRunner.Model) {
		return initTreePlan(ws, p)
	}
	m, pipe, err := NewModel(p)
	if err != nil {
		return "", err
	}
	hash := p.Hash()
	md := m.Metadata()
	md[job.MetaDataset] = p.DataLoader.Dataset
	md[job.MetaPipeline] = pipe.JSON()
	md[job.MetaSplitSeed] = strconv.FormatInt(p.DataLoader.Seed, 10)
	md[job.MetaTestFraction] = strconv.FormatFloat(p.DataLoader.TestFraction, 'g', -1, 64)
	md[MetaPlanHash] = hash
	out := filepath.Join(ws, filepath.FromSlash(p.Aggregator.InitStatePath))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("workspace: plan init: %w", err)
	}
	if err := safetensors.WriteFile(out, m.Weights(), md); err != nil {
		return "", fmt.Errorf("workspace: plan init: %s: %w", p.Aggregator.InitStatePath, err)
	}
	return p.Freeze(ws)
}

// NewModel builds the plan's model with its initial weights: the spec of
// the plan's dataset (training split), task_runner.hidden, task_runner.seed.
// It also returns the preprocessing fitted on the training split.
func NewModel(p *plan.Plan) (*ml.Model, datasets.Pipeline, error) {
	rawTrain, _, err := datasets.LoadSplit(p.DataLoader.Dataset, p.DataLoader.TestFraction, p.DataLoader.Seed)
	if err != nil {
		return nil, datasets.Pipeline{}, err
	}
	spec := ml.SpecFor(rawTrain)
	spec.Hidden = slices.Clone(p.TaskRunner.Hidden)
	m, err := ml.New(p.TaskRunner.Model, spec, p.TaskRunner.Seed)
	if err != nil {
		return nil, datasets.Pipeline{}, fmt.Errorf("workspace: task_runner.model %s on %s: %w", p.TaskRunner.Model, p.DataLoader.Dataset, err)
	}
	return m, datasets.FitPipeline(p.DataLoader.Dataset, rawTrain), nil
}
