// Package plan is teeml's federated-learning plan: the plan.yaml every
// participant of a horizontal FL experiment agrees on, modelled on OpenFL's
// plan (sections aggregator, collaborator, data_loader, task_runner,
// network, assigner, tasks) plus teeml's aggregation and attestation
// sections. OpenFL's Python "template"/"settings" indirection is gone: each
// section holds its settings directly.
//
// Parsing is strict: unknown keys, duplicate keys, anchors/aliases, wrong
// types and out-of-range values are errors naming the file, line and dotted
// key, e.g.
//
//	plan.yaml:14: aggregator.rounds_to_train: must be ≥ 1, got 0
//
// A plan is identified by its Hash, the SHA-256 of its canonical encoding
// (see Canonical), so comments, key order and quoting do not change it but
// any value does. Freeze writes the canonical plan and its hash into a
// workspace; Load refuses a frozen plan whose hash file does not match.
package plan

import (
	"fmt"
	"maps"
	"math"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/fl/treefed"
	"github.com/teeml/teeml/internal/yamlx"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/pki"
)

// Plan is a parsed, validated plan.yaml.
type Plan struct {
	Aggregator   Aggregator
	Collaborator Collaborator
	DataLoader   DataLoader
	TaskRunner   TaskRunner
	Network      Network
	// StragglerHandling is the optional straggler_handling_policy section.
	StragglerHandling StragglerPolicy
	Assigner          Assigner
	Tasks             Tasks
	Aggregation       Aggregation
	Attestation       Attestation
	// Encryption is the optional encryption section (data at rest).
	Encryption Encryption
	// Privacy is the optional privacy section (DP-FedAvg, privacy.go).
	Privacy Privacy
	// SecureAggregation is the optional secure_aggregation section
	// (secagg.go).
	SecureAggregation SecureAggregation

	name  string         // file name for errors
	lines map[string]int // dotted key → line, when parsed
}

// Aggregator is the aggregator section.
type Aggregator struct {
	RoundsToTrain int // rounds_to_train ≥ 1
	// init_state_path: initial weights (safetensors). The state paths are
	// relative to the workspace and under save/ (never exported).
	InitStatePath string
	BestStatePath string // best_state_path
	LastStatePath string // last_state_path
	// MinCollaborators (min_collaborators, optional) is the number of
	// collaborators a round waits for; 0 means every collaborator in
	// cols.yaml. A round that reaches network.round_timeout closes if it
	// has this many updates. With a straggler_handling_policy section it
	// must be 0: minimum_reporting takes its place.
	MinCollaborators int
}

// Collaborator is the collaborator section.
type Collaborator struct {
	EpochsPerRound int // epochs_per_round ≥ 1: local epochs per round
	// OptTreatment (opt_treatment) is what happens to the local optimiser
	// state between rounds: "reset" (OpenFL RESET, default) or
	// "continue_local" (CONTINUE_LOCAL).
	OptTreatment string
	// DeltaUpdates (delta_updates) sends w_local − w_global instead of
	// w_local.
	DeltaUpdates bool
}

// DataLoader is the data_loader section.
type DataLoader struct {
	Dataset      string  // dataset: a datasets.Names() entry
	BatchSize    int     // batch_size ≥ 1
	TestFraction float64 // test_fraction in (0, 1): held-out test split shared by all
	Seed         int64   // seed of the train/test split
	Partitioning Partitioning
}

// Partitioning (data_loader.partitioning) says how the training split is
// dealt to collaborators in simulation ("shard:i" data paths).
type Partitioning struct {
	Kind   string  // "iid" or "dirichlet"
	Alpha  float64 // dirichlet concentration > 0 (dirichlet only; must be 0 for iid)
	Seed   int64
	Shards int // ≥ 1
}

// TaskRunner is the task_runner section: the model and local optimiser.
type TaskRunner struct {
	Model     string  // model: an ml.Kinds() entry, or ModelExternal
	Hidden    []int   // hidden (optional): hidden widths; empty = model default
	Optimizer string  // optimizer: "adam" or "sgd"
	LR        float64 // lr > 0
	Seed      int64   // seed: model initialisation
	// Runner (runner, model external only) launches the external
	// training runner; see runner.go.
	Runner *Runner
	// Trees (trees, models rf and gbdt only) are the ensembles'
	// hyper-parameters; see trees.go.
	Trees *Trees
}

// TLS is the only transport: mutually attested TLS.
const TLS = "ra-tls"

// Network is the network section.
type Network struct {
	AggAddr string // agg_addr: aggregator host name or IP
	AggPort int    // agg_port: 1..65535
	// RoundTimeout (round_timeout, optional, Go duration such as "10m") is
	// how long the aggregator waits for a round; 0 means no limit.
	RoundTimeout time.Duration
	// TLS is always "ra-tls": connections use RA-TLS, there is no insecure
	// mode. The key is optional and only that value is accepted.
	TLS string
}

// Assigner is the assigner section: which tasks collaborators run.
type Assigner struct {
	TaskGroups []TaskGroup // task_groups, percentages summing to 1
}

// TaskGroup is one assigner.task_groups entry.
type TaskGroup struct {
	Name       string
	Percentage float64 // share of collaborators in (0, 1]
	Tasks      []string
}

// Task names.
const (
	TaskAggregatedModelValidation   = "aggregated_model_validation"
	TaskTrain                       = "train"
	TaskLocallyTunedModelValidation = "locally_tuned_model_validation"
)

// TaskNames lists the tasks in their usual round order.
func TaskNames() []string {
	return []string{TaskAggregatedModelValidation, TaskTrain, TaskLocallyTunedModelValidation}
}

// Tasks is the tasks section.
type Tasks struct {
	// AggregatedModelValidation evaluates the received global model on the
	// collaborator's test data.
	AggregatedModelValidation ValidationTask
	Train                     TrainTask
	// LocallyTunedModelValidation evaluates the locally trained model.
	LocallyTunedModelValidation ValidationTask
}

// ValidationTask are a validation task's settings.
type ValidationTask struct {
	Metrics []string // metrics reported (see Metrics)
}

// TrainTask are the train task's settings.
type TrainTask struct {
	Metrics     []string // metrics reported: "loss"
	WeightDecay float64  // weight_decay ≥ 0 (L2)
}

// Metrics lists the metric names a task may report.
func Metrics() []string { return []string{"loss", "accuracy", "auc", "rmse", "mae", "r2"} }

// Aggregation is the aggregation section.
type Aggregation struct {
	Strategy  string             // strategy: a strategy.Names() entry
	Settings  map[string]float64 // settings: strategy hyperparameters (see SettingKeys)
	Validator Validator
}

// Validator is aggregation.validator (strategy.Validator).
type Validator struct {
	MaxUpdateNorm  float64 // max_update_norm ≥ 0; 0 = derived from the round (see Plan.Validator)
	MaxNumExamples int     // max_num_examples ≥ 0; 0 = derived from the partitioning (Plan.ExamplesCap)
	MinAccepted    int     // min_accepted ≥ 0; 0 = 1
}

// Attestation is the attestation section.
type Attestation struct {
	// Policy maps a pki role to its attestation policy file (attest/policy
	// YAML), relative to the workspace and under policies/. aggregator and
	// collaborator are required.
	Policy map[string]string
}

// SettingKeys returns the aggregation.settings keys a strategy accepts.
func SettingKeys(strategyName string) []string {
	switch strategyName {
	case "fedprox":
		return []string{"proximal_mu"}
	case "fedadam", "fedyogi", "fedadagrad":
		return []string{"beta1", "beta2", "eta", "eta_l", "tau"}
	case "trimmedmean":
		return []string{"beta"}
	case "krum", "multikrum":
		return []string{"f", "m"}
	}
	return nil
}

// Name is the file name used in errors.
func (p *Plan) Name() string { return p.name }

// Error is a plan error: file, line (0 if unknown), dotted key, reason
// (yamlx.Error, the style of every teeml configuration file).
type Error = yamlx.Error

// fileName is the file named in errors: name, or "plan" without one.
func fileName(name string) string {
	if name == "" {
		return "plan"
	}
	return name
}

func (p *Plan) errf(key, format string, args ...any) error {
	w := yamlx.Walker{File: fileName(p.name), Lines: p.lines}
	return yamlx.Errorf(w.File, w.Line(key), key, format, args...)
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// checkRelPath accepts a clean, relative, slash-separated path inside the
// workspace.
func checkRelPath(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("must not be empty")
	case strings.HasPrefix(s, "/") || strings.Contains(s, "\\") || (len(s) > 1 && s[1] == ':'):
		return fmt.Errorf("%q must be a relative path inside the workspace", s)
	case path.Clean(s) != s:
		return fmt.Errorf("%q is not a clean path (want %q)", s, path.Clean(s))
	case s == ".." || strings.HasPrefix(s, "../"):
		return fmt.Errorf("%q leaves the workspace", s)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%q contains control characters", s)
	}
	return nil
}

// checkHost accepts a DNS name or an IP address literal (no brackets).
func checkHost(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(s) > 253 {
		return fmt.Errorf("%.20q… is %d bytes, at most 253", s, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '_') {
			return fmt.Errorf("%q: character %q not allowed in a host name or IP address", s, c)
		}
	}
	return nil
}

func datasetInfo(name string) (datasets.Info, bool) {
	for _, in := range datasets.List() {
		if in.Name == name {
			return in, true
		}
	}
	return datasets.Info{}, false
}

// Validate checks every value and the consistency between sections. Parse
// calls it; call it again after changing a Plan in code. Sections are
// checked in file order and the first problem is returned.
func (p *Plan) Validate() error {
	if err := p.validateAggregator(); err != nil {
		return err
	}
	if err := p.validateCollaborator(); err != nil {
		return err
	}
	info, err := p.validateDataLoader()
	if err != nil {
		return err
	}
	for _, check := range []func() error{
		func() error { return p.validateTaskRunner(info) },
		p.validateNetwork,
		p.validateAssigner,
		func() error { return p.validateTasks(info) },
		p.validateAggregation,
		p.validateStraggler,
		p.validateEncryption,
		p.validatePrivacy,
		p.validateSecureAggregation,
		p.validateAttestation,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (p *Plan) validateAggregator() error {
	a := &p.Aggregator
	if a.RoundsToTrain < 1 {
		return p.errf("aggregator.rounds_to_train", "must be ≥ 1, got %d", a.RoundsToTrain)
	}
	if a.RoundsToTrain > 1_000_000 {
		return p.errf("aggregator.rounds_to_train", "must be ≤ 1000000, got %d", a.RoundsToTrain)
	}
	states := map[string]string{}
	for _, kv := range [][2]string{{"init_state_path", a.InitStatePath}, {"best_state_path", a.BestStatePath}, {"last_state_path", a.LastStatePath}} {
		if err := checkRelPath(kv[1]); err != nil {
			return p.errf("aggregator."+kv[0], "%w", err)
		}
		if !strings.HasPrefix(kv[1], "save/") {
			return p.errf("aggregator."+kv[0], "%q must be under save/", kv[1])
		}
		if prev, ok := states[kv[1]]; ok {
			return p.errf("aggregator."+kv[0], "%q is also aggregator.%s", kv[1], prev)
		}
		states[kv[1]] = kv[0]
	}
	if a.MinCollaborators < 0 {
		return p.errf("aggregator.min_collaborators", "must be ≥ 0 (0 = all), got %d", a.MinCollaborators)
	}
	return nil
}

func (p *Plan) validateCollaborator() error {
	c := &p.Collaborator
	if c.EpochsPerRound < 1 || c.EpochsPerRound > 10000 {
		return p.errf("collaborator.epochs_per_round", "must be in 1..10000, got %d", c.EpochsPerRound)
	}
	if c.OptTreatment != "reset" && c.OptTreatment != "continue_local" {
		return p.errf("collaborator.opt_treatment", "must be reset or continue_local, got %q", c.OptTreatment)
	}
	return nil
}

// validateDataLoader also returns the dataset's description, which the
// model and metrics are checked against.
func (p *Plan) validateDataLoader() (datasets.Info, error) {
	d := &p.DataLoader
	info, ok := datasetInfo(d.Dataset)
	if !ok {
		return info, p.errf("data_loader.dataset", "unknown dataset %q (known: %s)", d.Dataset, strings.Join(datasets.Names(), ", "))
	}
	if d.BatchSize < 1 || d.BatchSize > 1<<20 {
		return info, p.errf("data_loader.batch_size", "must be in 1..1048576, got %d", d.BatchSize)
	}
	if !(d.TestFraction > 0 && d.TestFraction < 1) {
		return info, p.errf("data_loader.test_fraction", "must be in (0, 1), got %v", d.TestFraction)
	}
	pt := &d.Partitioning
	switch pt.Kind {
	case "iid":
		if pt.Alpha != 0 {
			return info, p.errf("data_loader.partitioning.alpha", "only for kind dirichlet, got %v with kind iid", pt.Alpha)
		}
	case "dirichlet":
		if !(pt.Alpha > 0) || !finite(pt.Alpha) {
			return info, p.errf("data_loader.partitioning.alpha", "must be positive and finite, got %v", pt.Alpha)
		}
		if info.Task != datasets.Classification {
			return info, p.errf("data_loader.partitioning.kind", "dirichlet needs a classification dataset, %s is %s", d.Dataset, info.Task)
		}
	default:
		return info, p.errf("data_loader.partitioning.kind", "must be iid or dirichlet, got %q", pt.Kind)
	}
	if pt.Shards < 1 || pt.Shards > info.Rows {
		return info, p.errf("data_loader.partitioning.shards", "must be in 1..%d (rows of %s), got %d", info.Rows, d.Dataset, pt.Shards)
	}
	return info, nil
}

func (p *Plan) validateTaskRunner(info datasets.Info) error {
	t := &p.TaskRunner
	if err := p.validateRunner(); err != nil {
		return err
	}
	if err := p.validateTrees(info); err != nil {
		return err
	}
	if t.Model != ModelExternal && !IsTreeModel(t.Model) && !slices.Contains(ml.Kinds(), t.Model) {
		return p.errf("task_runner.model", "unknown model %q (known: %s, %s, %s)", t.Model, strings.Join(ml.Kinds(), ", "),
			strings.Join(treefed.Kinds, ", "), ModelExternal)
	}
	switch {
	case t.Model == ml.KindLogReg && info.Task != datasets.Classification,
		t.Model == ml.KindLinReg && info.Task != datasets.Regression:
		return p.errf("task_runner.model", "%s does not fit %s dataset %s", t.Model, info.Task, p.DataLoader.Dataset)
	}
	if len(t.Hidden) > 0 && (t.Model == ml.KindLogReg || t.Model == ml.KindLinReg) {
		return p.errf("task_runner.hidden", "%s has no hidden layers", t.Model)
	}
	if len(t.Hidden) > 16 {
		return p.errf("task_runner.hidden", "at most 16 layers, got %d", len(t.Hidden))
	}
	for i, h := range t.Hidden {
		if h < 1 || h > 65536 {
			return p.errf(fmt.Sprintf("task_runner.hidden[%d]", i), "must be in 1..65536, got %d", h)
		}
	}
	if t.Optimizer != "adam" && t.Optimizer != "sgd" {
		return p.errf("task_runner.optimizer", "must be adam or sgd, got %q", t.Optimizer)
	}
	if !(t.LR > 0) || !finite(t.LR) || t.LR > 10 {
		return p.errf("task_runner.lr", "must be in (0, 10], got %v", t.LR)
	}
	return nil
}

func (p *Plan) validateNetwork() error {
	n := &p.Network
	if err := checkHost(n.AggAddr); err != nil {
		return p.errf("network.agg_addr", "%w", err)
	}
	if n.AggPort < 1 || n.AggPort > 65535 {
		return p.errf("network.agg_port", "must be in 1..65535, got %d", n.AggPort)
	}
	if n.RoundTimeout < 0 {
		return p.errf("network.round_timeout", "must be ≥ 0, got %v", n.RoundTimeout)
	}
	if n.TLS != TLS {
		return p.errf("network.tls", "must be %q: connections are always attested TLS, there is no insecure mode; got %q", TLS, n.TLS)
	}
	return nil
}

func (p *Plan) validateAssigner() error {
	if len(p.Assigner.TaskGroups) == 0 {
		return p.errf("assigner.task_groups", "must list at least one task group")
	}
	var sum float64
	groups := map[string]bool{}
	for i, g := range p.Assigner.TaskGroups {
		key := fmt.Sprintf("assigner.task_groups[%d]", i)
		if err := pki.CheckName(g.Name); err != nil {
			return p.errf(key+".name", "%v", strings.Replace(err.Error(), "member name", "name", 1))
		}
		if groups[g.Name] {
			return p.errf(key+".name", "task group %q defined twice", g.Name)
		}
		groups[g.Name] = true
		if !(g.Percentage > 0 && g.Percentage <= 1) {
			return p.errf(key+".percentage", "must be in (0, 1], got %v", g.Percentage)
		}
		sum += g.Percentage
		if len(g.Tasks) == 0 {
			return p.errf(key+".tasks", "must list at least one task")
		}
		for j, name := range g.Tasks {
			if !slices.Contains(TaskNames(), name) {
				return p.errf(fmt.Sprintf("%s.tasks[%d]", key, j), "unknown task %q (known: %s)", name, strings.Join(TaskNames(), ", "))
			}
			if slices.Index(g.Tasks, name) != j {
				return p.errf(fmt.Sprintf("%s.tasks[%d]", key, j), "task %q listed twice", name)
			}
		}
	}
	if math.Abs(sum-1) > 1e-9 {
		return p.errf("assigner.task_groups", "percentages must sum to 1, got %v", sum)
	}
	return nil
}

func (p *Plan) validateTasks(info datasets.Info) error {
	for _, vt := range []struct {
		key     string
		metrics []string
	}{
		{"tasks." + TaskAggregatedModelValidation + ".metrics", p.Tasks.AggregatedModelValidation.Metrics},
		{"tasks." + TaskTrain + ".metrics", p.Tasks.Train.Metrics},
		{"tasks." + TaskLocallyTunedModelValidation + ".metrics", p.Tasks.LocallyTunedModelValidation.Metrics},
	} {
		if err := p.validateMetrics(vt.key, vt.metrics, info); err != nil {
			return err
		}
	}
	if wd := p.Tasks.Train.WeightDecay; !(wd >= 0) || !finite(wd) || wd > 1 {
		return p.errf("tasks.train.weight_decay", "must be in [0, 1], got %v", wd)
	}
	return nil
}

// validateMetrics checks one task's metrics list (at key): known, once
// each, and available for the dataset's task (train reports loss only).
func (p *Plan) validateMetrics(listKey string, metrics []string, info datasets.Info) error {
	if len(metrics) == 0 {
		return p.errf(listKey, "must list at least one metric")
	}
	for j, m := range metrics {
		key := fmt.Sprintf("%s[%d]", listKey, j)
		if !slices.Contains(Metrics(), m) {
			return p.errf(key, "unknown metric %q (known: %s)", m, strings.Join(Metrics(), ", "))
		}
		if slices.Index(metrics, m) != j {
			return p.errf(key, "metric %q listed twice", m)
		}
		ok := true
		switch m {
		case "accuracy":
			ok = info.Task == datasets.Classification
		case "auc":
			ok = info.Task == datasets.Classification && info.NumClasses == 2
		case "rmse", "mae", "r2":
			ok = info.Task == datasets.Regression
		}
		if listKey == "tasks.train.metrics" && m != "loss" {
			ok = false
		}
		if !ok {
			return p.errf(key, "metric %q not available for this task on %s (%s)", m, p.DataLoader.Dataset, info.Task)
		}
	}
	return nil
}

func (p *Plan) validateAggregation() error {
	ag := &p.Aggregation
	if !slices.Contains(strategy.Names(), ag.Strategy) {
		return p.errf("aggregation.strategy", "unknown strategy %q (known: %s)", ag.Strategy, strings.Join(strategy.Names(), ", "))
	}
	allowed := SettingKeys(ag.Strategy)
	for _, k := range slices.Sorted(maps.Keys(ag.Settings)) {
		v := ag.Settings[k]
		key := "aggregation.settings." + k
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return p.errf(key, "strategy %s takes no settings", ag.Strategy)
			}
			return p.errf(key, "not a setting of strategy %s (known: %s)", ag.Strategy, strings.Join(allowed, ", "))
		}
		if err := checkSetting(k, v); err != nil {
			return p.errf(key, "%w", err)
		}
	}
	if v := ag.Validator.MaxUpdateNorm; !(v >= 0) || !finite(v) {
		return p.errf("aggregation.validator.max_update_norm", "must be ≥ 0 and finite (0 = derived from the round's median norm), got %v", v)
	}
	if ag.Validator.MaxNumExamples < 0 {
		return p.errf("aggregation.validator.max_num_examples", "must be ≥ 0 (0 = derived from the plan's shard sizes), got %d", ag.Validator.MaxNumExamples)
	}
	if ag.Validator.MinAccepted < 0 {
		return p.errf("aggregation.validator.min_accepted", "must be ≥ 0, got %d", ag.Validator.MinAccepted)
	}
	if mc := p.Aggregator.MinCollaborators; mc > 0 && ag.Validator.MinAccepted > mc {
		return p.errf("aggregation.validator.min_accepted", "%d exceeds aggregator.min_collaborators %d", ag.Validator.MinAccepted, mc)
	}
	return nil
}

func (p *Plan) validateAttestation() error {
	for _, role := range []string{"aggregator", "collaborator"} {
		if _, ok := p.Attestation.Policy[role]; !ok {
			return p.errf("attestation.policy", "missing policy for role %s", role)
		}
	}
	for _, role := range slices.Sorted(maps.Keys(p.Attestation.Policy)) {
		key := "attestation.policy." + role
		if err := pki.CheckRole(role); err != nil {
			return p.errf(key, "%w", err)
		}
		if err := checkRelPath(p.Attestation.Policy[role]); err != nil {
			return p.errf(key, "%w", err)
		}
		if !strings.HasPrefix(p.Attestation.Policy[role], "policies/") {
			return p.errf(key, "%q must be under policies/", p.Attestation.Policy[role])
		}
	}
	return nil
}

func checkSetting(k string, v float64) error {
	if !finite(v) {
		return fmt.Errorf("must be finite, got %v", v)
	}
	switch k {
	case "proximal_mu", "eta_l":
		if v < 0 {
			return fmt.Errorf("must be ≥ 0, got %v", v)
		}
	case "eta", "tau":
		if !(v > 0) {
			return fmt.Errorf("must be > 0, got %v", v)
		}
	case "beta1", "beta2":
		if !(v >= 0 && v < 1) {
			return fmt.Errorf("must be in [0, 1), got %v", v)
		}
	case "beta":
		if !(v >= 0 && v < 0.5) {
			return fmt.Errorf("must be in [0, 0.5), got %v", v)
		}
	case "f", "m":
		if v < 0 || v != math.Trunc(v) || v > 1e6 {
			return fmt.Errorf("must be a whole number ≥ 0, got %v", v)
		}
	}
	return nil
}

// Strategy builds the plan's aggregation strategy with its settings and
// validator. workers bounds aggregation goroutines (≤ 0: GOMAXPROCS). A
// plan with a privacy section needs its collaborators: see StrategyFor.
func (p *Plan) Strategy(workers int) (strategy.Strategy, error) {
	if p.Privacy.Enabled() {
		return nil, fmt.Errorf("plan: privacy: DP-FedAvg samples among the collaborators: build the strategy with StrategyFor")
	}
	return p.StrategyFor(workers, nil)
}

// StrategyFor is Strategy for the federation of collaborators: with a
// privacy section the strategy is wrapped in DP-FedAvg (fl/privacy), which
// runs the validator on the raw updates itself.
func (p *Plan) StrategyFor(workers int, collaborators []string) (strategy.Strategy, error) {
	ag := &p.Aggregation
	v := p.Validator()
	o := strategy.Options{Workers: workers, Validator: v}
	if IsTreeModel(p.TaskRunner.Model) {
		return &treefed.Merge{Options: strategy.Options{Workers: workers}, MinAccepted: v.MinAccepted}, nil
	}
	if p.Privacy.Enabled() {
		o.Validator = strategy.Validator{}
	}
	s, err := strategy.New(ag.Strategy, o)
	if err != nil {
		return nil, err
	}
	set := func(k string, dst *float64) {
		if v, ok := ag.Settings[k]; ok {
			*dst = v
		}
	}
	switch s := s.(type) {
	case *strategy.FedProx:
		set("proximal_mu", &s.Mu)
	case *strategy.FedOpt:
		set("eta", &s.Eta)
		set("eta_l", &s.EtaL)
		set("beta1", &s.Beta1)
		set("beta2", &s.Beta2)
		set("tau", &s.Tau)
	case *strategy.TrimmedMean:
		set("beta", &s.Beta)
	case *strategy.Krum:
		if v, ok := ag.Settings["f"]; ok {
			s.F = int(v)
		}
		if v, ok := ag.Settings["m"]; ok {
			s.M = int(v)
		}
	}
	if p.Privacy.Enabled() {
		return p.privacyStrategy(s, v, workers, collaborators)
	}
	return s, nil
}

// TrainConfig is the local training configuration of one round: the model
// kind's defaults (ml.DefaultTrainConfig) overridden by the plan's epochs,
// batch size, optimiser, learning rate, weight decay and seed.
func (p *Plan) TrainConfig() ml.TrainConfig {
	c := ml.DefaultTrainConfig(p.TaskRunner.Model)
	c.Epochs = p.Collaborator.EpochsPerRound
	c.BatchSize = p.DataLoader.BatchSize
	c.Optimizer = p.TaskRunner.Optimizer
	c.LR = p.TaskRunner.LR
	c.WeightDecay = p.Tasks.Train.WeightDecay
	c.Seed = p.TaskRunner.Seed
	return c
}
