package plan_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/fl/workspace"
)

func template(t testing.TB, name string) []byte {
	t.Helper()
	b, err := workspace.TemplatePlan(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, data []byte) *plan.Plan {
	t.Helper()
	p, err := plan.Parse(data, "plan.yaml")
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, data)
	}
	return p
}

func TestTemplatesParse(t *testing.T) {
	if len(workspace.Templates()) != 8 {
		t.Fatalf("templates %v, want 8", workspace.Templates())
	}
	for _, name := range workspace.Templates() {
		p := mustParse(t, template(t, name))
		if p.Network.TLS != plan.TLS || p.Collaborator.OptTreatment != "reset" {
			t.Errorf("%s: defaults not applied: %+v %+v", name, p.Network, p.Collaborator)
		}
		if _, err := p.Strategy(1); err != nil {
			t.Errorf("%s: Strategy: %v", name, err)
		}
	}
}

// reorder returns data with comments stripped, every mapping's keys in
// reverse order and scalars restyled, so only the semantics stay.
func reorder(t *testing.T, data []byte) []byte {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		n.HeadComment, n.LineComment, n.FootComment = "", "", ""
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
			n.Style = yaml.SingleQuotedStyle
		}
		if n.Kind == yaml.SequenceNode {
			n.Style = yaml.FlowStyle
		}
		if n.Kind == yaml.MappingNode {
			var pairs [][2]*yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				pairs = append([][2]*yaml.Node{{n.Content[i], n.Content[i+1]}}, pairs...)
			}
			n.Content = n.Content[:0]
			for _, p := range pairs {
				n.Content = append(n.Content, p[0], p[1])
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHashStable(t *testing.T) {
	for _, name := range workspace.Templates() {
		data := template(t, name)
		p := mustParse(t, data)
		h := p.Hash()
		if len(h) != 64 {
			t.Fatalf("hash %q", h)
		}
		c := p.Canonical()
		p2 := mustParse(t, c)
		if p2.Hash() != h || !bytes.Equal(p2.Canonical(), c) {
			t.Errorf("%s: canonical form does not round-trip:\n%s\n---\n%s", name, c, p2.Canonical())
		}
		r := reorder(t, data)
		if bytes.Equal(r, data) {
			t.Fatal("reorder changed nothing")
		}
		if p3 := mustParse(t, r); p3.Hash() != h {
			t.Errorf("%s: hash changed by key order/comments/quoting:\n%s", name, r)
		}
		// Spelling out or dropping optional defaults does not change it.
		noDefaults := strings.Replace(string(data), "  opt_treatment: reset", "", 1)
		noDefaults = strings.Replace(noDefaults, "  tls: ra-tls", "", 1)
		if p4 := mustParse(t, []byte(noDefaults)); p4.Hash() != h {
			t.Errorf("%s: hash changed by dropping defaults", name)
		}
	}
}

// TestHashChangesWithEveryValue mutates every scalar of the canonical plan
// in turn: each mutation that still parses must change the hash.
func TestHashChangesWithEveryValue(t *testing.T) {
	p := mustParse(t, template(t, "credit_widedeep"))
	// More optional keys filled in, so they are mutated too.
	p.TaskRunner.Hidden = []int{32, 16}
	p.Aggregator.MinCollaborators = 3
	p.Aggregation.Validator = plan.Validator{MaxUpdateNorm: 5, MaxNumExamples: 1000, MinAccepted: 2}
	p.Attestation.Policy["kms"] = "policies/kms.yaml"
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	h := p.Hash()
	// The canonical form carries every value (so the walk below sees them all).
	if q := mustParse(t, p.Canonical()); !reflect.DeepEqual(semantic(q), semantic(p)) {
		t.Fatalf("canonical form loses values:\n%+v\n%+v", semantic(q), semantic(p))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(p.Canonical(), &doc); err != nil {
		t.Fatal(err)
	}
	var leaves []*yaml.Node
	var walk func(n *yaml.Node, isKey bool)
	walk = func(n *yaml.Node, isKey bool) {
		if n.Kind == yaml.ScalarNode && !isKey {
			leaves = append(leaves, n)
		}
		for i, c := range n.Content {
			walk(c, n.Kind == yaml.MappingNode && i%2 == 0)
		}
	}
	walk(&doc, false)
	changed := 0
	for _, leaf := range leaves {
		old, oldTag := leaf.Value, leaf.Tag
		var alts []string
		switch leaf.ShortTag() {
		case "!!int":
			v, _ := strconv.Atoi(old)
			alts = []string{strconv.Itoa(v + 1), strconv.Itoa(v - 1)}
		case "!!float":
			v, _ := strconv.ParseFloat(old, 64)
			alts = []string{strconv.FormatFloat(v*0.5, 'g', -1, 64), strconv.FormatFloat(v+0.1, 'g', -1, 64)}
		case "!!bool":
			alts = []string{strconv.FormatBool(old != "true")}
		case "!!str":
			alts = []string{old + "x", "continue_local", "sgd", "1h0m0s", "dirichlet"}
		}
		ok := false
		for _, alt := range alts {
			if alt == old {
				continue
			}
			leaf.Value = alt
			out, err := yaml.Marshal(&doc)
			if err != nil {
				t.Fatal(err)
			}
			q, err := plan.Parse(out, "plan.yaml")
			if err != nil {
				continue
			}
			if q.Hash() == h {
				t.Errorf("line %d: %q → %q parses but keeps the hash", leaf.Line, old, alt)
			}
			ok = true
			break
		}
		leaf.Value, leaf.Tag = old, oldTag
		if ok {
			changed++
		}
	}
	// All but the enumerations without a valid alternative (dataset, model,
	// strategy, tls, task and metric names, role paths must stay valid).
	if changed < 30 {
		t.Errorf("only %d of %d values could be mutated validly", changed, len(leaves))
	}
	t.Logf("%d of %d leaves mutated, each changed the hash", changed, len(leaves))
}

func semantic(p *plan.Plan) []any {
	return []any{p.Aggregator, p.Collaborator, p.DataLoader, p.TaskRunner, p.Network, p.StragglerHandling, p.Assigner, p.Tasks, p.Aggregation, p.Attestation}
}

func lineOf(t *testing.T, data, s string) int {
	t.Helper()
	i := strings.Index(data, s)
	if i < 0 {
		t.Fatalf("%q not in template", s)
	}
	return strings.Count(data[:i], "\n") + 1
}

func TestValidationErrors(t *testing.T) {
	base := string(template(t, "digits_cnn"))
	cases := []struct {
		old, new string // replace old (first occurrence) with new
		key      string // dotted key in the error
		msg      string // rest of the error
		line     string // the error's line is that of this string in base ("" = old)
	}{
		{"rounds_to_train: 10", "rounds_to_train: 0", "aggregator.rounds_to_train", "must be ≥ 1, got 0", ""},
		{"rounds_to_train: 10", "rounds_to_train: ten", "aggregator.rounds_to_train", "must be an integer, got a string", ""},
		{"rounds_to_train: 10", "rounds_to_train: 99999999999", "aggregator.rounds_to_train", "out of range", ""},
		{"  min_collaborators: 0", "  min_collaborators: -1", "aggregator.min_collaborators", "must be ≥ 0", ""},
		{"  min_collaborators: 0", "  bogus: 1", "aggregator.bogus", "unknown key (known in aggregator: rounds_to_train,", ""},
		{"init_state_path: save/init.safetensors", "init_state_path: /etc/passwd", "aggregator.init_state_path", "must be a relative path", ""},
		{"init_state_path: save/init.safetensors", "init_state_path: ../init.safetensors", "aggregator.init_state_path", "leaves the workspace", ""},
		{"init_state_path: save/init.safetensors", "init_state_path: save/last.safetensors", "aggregator.last_state_path", "is also aggregator.init_state_path", "last_state_path"},
		{"epochs_per_round: 1", "epochs_per_round: 0", "collaborator.epochs_per_round", "must be in 1..10000, got 0", ""},
		{"opt_treatment: reset", "opt_treatment: RESET", "collaborator.opt_treatment", "must be reset or continue_local", ""},
		{"delta_updates: false", "delta_updates: 0", "collaborator.delta_updates", "must be a boolean, got an integer", ""},
		{"dataset: digits", "dataset: cifar", "data_loader.dataset", "unknown dataset \"cifar\"", ""},
		{"batch_size: 64", "batch_size: [64]", "data_loader.batch_size", "must be an integer, got a list", ""},
		{"test_fraction: 0.2", "test_fraction: 1.5", "data_loader.test_fraction", "must be in (0, 1), got 1.5", ""},
		{"test_fraction: 0.2", "test_fraction: .nan", "data_loader.test_fraction", "must be finite", ""},
		{"kind: dirichlet", "kind: random", "data_loader.partitioning.kind", "must be iid or dirichlet", ""},
		{"alpha: 0.5", "alpha: 0", "data_loader.partitioning.alpha", "must be positive and finite, got 0", ""},
		{"kind: dirichlet", "kind: iid", "data_loader.partitioning.alpha", "only for kind dirichlet", "alpha: 0.5"},
		{"shards: 2", "shards: 0", "data_loader.partitioning.shards", "must be in 1..1797 (rows of digits), got 0", ""},
		{"model: cnn", "model: transformer", "task_runner.model", "unknown model \"transformer\"", ""},
		{"model: cnn", "model: linreg", "task_runner.model", "linreg does not fit classification dataset digits", ""},
		{"model: cnn", "model: cnn\n  hidden: [0]", "task_runner.hidden[0]", "must be in 1..65536, got 0", "hidden: [0]"},
		{"optimizer: adam", "optimizer: rmsprop", "task_runner.optimizer", "must be adam or sgd", ""},
		{"lr: 0.005", "lr: -1", "task_runner.lr", "must be in (0, 10], got -1", ""},
		{"agg_addr: localhost", "agg_addr: \"a b\"", "network.agg_addr", "not allowed in a host name", ""},
		{"agg_port: 50051", "agg_port: 70000", "network.agg_port", "must be in 1..65535, got 70000", ""},
		{"round_timeout: 10m", "round_timeout: soon", "network.round_timeout", "must be a duration", ""},
		{"round_timeout: 10m", "round_timeout: -5s", "network.round_timeout", "must be ≥ 0", ""},
		{"tls: ra-tls", "tls: false", "network.tls", "there is no insecure mode; got false", ""},
		{"tls: ra-tls", "tls: plain", "network.tls", "there is no insecure mode; got \"plain\"", ""},
		{"percentage: 1.0", "percentage: 0.5", "assigner.task_groups", "percentages must sum to 1, got 0.5", "    - name:"},
		{"        - train\n", "        - training\n", "assigner.task_groups[0].tasks[1]", "unknown task \"training\"", "        - train\n"},
		{"        - locally_tuned_model_validation\n", "        - train\n", "assigner.task_groups[0].tasks[2]", "listed twice", "        - train\n        - train"},
		{"name: train_and_validate", "name: \"\"", "assigner.task_groups[0].name", "name is empty", ""},
		{"    metrics: [loss, accuracy]", "    metrics: [loss, auc]", "tasks.aggregated_model_validation.metrics[1]", "metric \"auc\" not available", ""},
		{"    metrics: [loss]", "    metrics: [loss, accuracy]", "tasks.train.metrics[1]", "not available", "^  train:"},
		{"    metrics: [loss]", "    metrics: []", "tasks.train.metrics", "must list at least one metric", ""},
		{"weight_decay: 0", "weight_decay: 2", "tasks.train.weight_decay", "must be in [0, 1], got 2", ""},
		{"strategy: fedavg", "strategy: fedsgd", "aggregation.strategy", "unknown strategy \"fedsgd\"", ""},
		{"strategy: fedavg", "strategy: fedsgd\n  settings:\n    eta: 0.1", "aggregation.strategy", "unknown strategy \"fedsgd\"", ""},
		{"last_state_path: save/last.safetensors", "last_state_path: plan/plan.yaml", "aggregator.last_state_path", "must be under save/", ""},
		{"collaborator: policies/collaborator.yaml", "collaborator: data/collaborator.yaml", "attestation.policy.collaborator", "must be under policies/", ""},
		{"strategy: fedavg", "strategy: fedavg\n  settings:\n    eta: 0.1", "aggregation.settings.eta", "strategy \"fedavg\" takes no settings", "    eta: 0.1"},
		{"strategy: fedavg", "strategy: fedprox\n  settings:\n    eta: 0.1", "aggregation.settings.eta", "unknown key (known in aggregation.settings: proximal_mu)", "    eta: 0.1"},
		{"strategy: fedavg", "strategy: fedprox\n  settings:\n    proximal_mu: -1", "aggregation.settings.proximal_mu", "must be ≥ 0, got -1", "    proximal_mu: -1"},
		{"strategy: fedavg", "strategy: krum\n  settings:\n    f: 1.5", "aggregation.settings.f", "must be a whole number", "    f: 1.5"},
		{"max_update_norm: 0", "max_update_norm: -3", "aggregation.validator.max_update_norm", "must be ≥ 0", ""},
		{"min_collaborators: 0", "min_collaborators: 1", "aggregation.validator.min_accepted", "", "min_accepted: 1"}, // placeholder, replaced below
		{"aggregator: policies/aggregator.yaml", "aggregator: /policies/aggregator.yaml", "attestation.policy.aggregator", "must be a relative path", ""},
		{"aggregator: policies/aggregator.yaml", "auditor: policies/auditor.yaml", "attestation.policy.auditor", "unknown key", ""},
		{"    collaborator: policies/collaborator.yaml", "", "attestation.policy", "missing policy for role collaborator", "    aggregator: policies"},
		{"  rounds_to_train: 10\n", "  rounds_to_train: 10\n  rounds_to_train: 11\n", "aggregator.rounds_to_train", "duplicate key", "  min_collaborators"},
	}
	for _, c := range cases {
		if c.key == "aggregation.validator.min_accepted" {
			// min_accepted 1 ≤ min_collaborators 1 is fine; make it exceed.
			c.old, c.new, c.msg, c.line = "min_accepted: 1", "min_accepted: 3", "3 exceeds aggregator.min_collaborators 2", ""
			base := strings.Replace(base, "min_collaborators: 0", "min_collaborators: 2", 1)
			checkErr(t, base, c.old, c.new, c.key, c.msg, c.line)
			continue
		}
		checkErr(t, base, c.old, c.new, c.key, c.msg, c.line)
	}
}

func checkErr(t *testing.T, base, old, new, key, msg, lineStr string) {
	t.Helper()
	if !strings.Contains(base, old) {
		t.Fatalf("%q not in template", old)
	}
	data := strings.Replace(base, old, new, 1)
	if lineStr == "" {
		lineStr = new
		if i := strings.IndexByte(new, '\n'); i > 0 && !strings.HasPrefix(new, " ") {
			lineStr = new[:i]
		}
	}
	next := strings.HasPrefix(lineStr, "^")
	line := lineOf(t, data, strings.TrimSuffix(strings.TrimPrefix(lineStr, "^"), "\n"))
	if next {
		line++
	}
	if key == "aggregator.rounds_to_train" && msg == "duplicate key" {
		line = lineOf(t, data, "  rounds_to_train: 11")
	}
	if strings.Contains(msg, "listed twice") {
		line++
	}
	_, err := plan.Parse([]byte(data), "plan.yaml")
	if err == nil {
		t.Errorf("%q → %q: no error", old, new)
		return
	}
	want := fmt.Sprintf("plan.yaml:%d: %s: ", line, key)
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), msg) || strings.Contains(err.Error(), "\n") {
		t.Errorf("%q → %q:\n got  %v\n want %s…%s", old, new, err, want, msg)
	}
}

func TestStructuralErrors(t *testing.T) {
	base := string(template(t, "digits_mlp"))
	cases := []struct{ data, want string }{
		{"", "plan.yaml: plan is empty"},
		{"# only a comment\n", "plan.yaml: plan is empty"},
		{"[1, 2]", "plan.yaml:1: must be a mapping, got a list"},
		{base + "---\n" + base, "more than one YAML document"},
		{strings.Replace(base, "aggregator:\n", "aggregator: &a\n", 1), "anchors and aliases are not supported"},
		{strings.Replace(base, "tasks:\n  aggregated", "extra: 1\ntasks:\n  aggregated", 1), "plan.yaml:49: extra: unknown key (known in plan: aggregator,"},
		{strings.Replace(base, "data_loader:", "data_loader: 3\nx_data_loader:", 1), "data_loader: must be a mapping, got an integer"},
		{base[:strings.Index(base, "attestation:")], "plan.yaml:5: attestation: missing"},
		{"aggregator: {rounds_to_train: 1\n", "plan.yaml:1: did not find expected"}, // the line of a syntax error is the line of the error
		{"1: 2\n", "plan.yaml:1: keys must be strings, got an integer"},
		{"\"a\\nb\": 1\n", `plan.yaml:1: "a\nb": unknown key`},
	}
	for _, c := range cases {
		_, err := plan.Parse([]byte(c.data), "plan.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("got %v, want …%s…", err, c.want)
		}
	}
	if _, err := plan.Parse(bytes.Repeat([]byte("#"), plan.MaxSize+1), "plan.yaml"); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("oversized plan: %v", err)
	}
}

func TestValidateWithoutLines(t *testing.T) {
	p := mustParse(t, template(t, "digits_mlp"))
	q := *p
	q.Aggregator.RoundsToTrain = 0
	// A copied plan keeps the file name and lines of its origin.
	if err := q.Validate(); err == nil || !strings.HasPrefix(err.Error(), "plan.yaml:6: aggregator.rounds_to_train: must be ≥ 1, got 0") {
		t.Errorf("got %v", err)
	}
	var z plan.Plan
	if err := z.Validate(); err == nil || err.Error() != "plan: aggregator.rounds_to_train: must be ≥ 1, got 0" {
		t.Errorf("zero plan: %v", err)
	}
}

func TestFreezeAndTamper(t *testing.T) {
	dir := t.TempDir()
	p := mustParse(t, template(t, "digits_cnn"))
	h, err := p.Freeze(dir)
	if err != nil {
		t.Fatal(err)
	}
	if h != p.Hash() {
		t.Fatalf("Freeze returned %s, Hash %s", h, p.Hash())
	}
	path := filepath.Join(dir, "plan", "plan.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, p.Canonical()) {
		t.Fatal("frozen plan is not the canonical form")
	}
	hashFile, _ := os.ReadFile(filepath.Join(dir, "plan", plan.HashFile))
	if string(hashFile) != h+"  plan.yaml\n" {
		t.Fatalf("hash file %q", hashFile)
	}
	q, err := plan.Load(path)
	if err != nil || q.Hash() != h {
		t.Fatalf("Load frozen: %v", err)
	}
	// A comment does not change the plan.
	if err := os.WriteFile(path, append([]byte("# reviewed\n"), data...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Load(path); err != nil {
		t.Errorf("comment refused: %v", err)
	}
	// Any value change is refused.
	tampered := bytes.Replace(data, []byte("rounds_to_train: 10"), []byte("rounds_to_train: 11"), 1)
	if err := os.WriteFile(path, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Load(path); err == nil || !strings.Contains(err.Error(), "frozen plan was modified") {
		t.Errorf("tampered plan: %v", err)
	}
	if _, err := plan.LoadUnfrozen(path); err != nil {
		t.Errorf("LoadUnfrozen: %v", err)
	}
	// A tampered or broken hash file too.
	os.WriteFile(path, data, 0o644)
	os.WriteFile(filepath.Join(dir, "plan", plan.HashFile), []byte(strings.Repeat("0", 64)+"\n"), 0o644)
	if _, err := plan.Load(path); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("wrong hash file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "plan", plan.HashFile), []byte("xyz\n"), 0o644)
	if _, err := plan.Load(path); err == nil || !strings.Contains(err.Error(), "not a SHA-256") {
		t.Errorf("bad hash file: %v", err)
	}
	// Freeze refuses an invalid plan.
	p.Aggregator.RoundsToTrain = 0
	if _, err := p.Freeze(t.TempDir()); err == nil {
		t.Error("invalid plan frozen")
	}
}

func TestStrategyAndTrainConfig(t *testing.T) {
	p := mustParse(t, template(t, "credit_widedeep"))
	s, err := p.Strategy(2)
	if err != nil {
		t.Fatal(err)
	}
	fo, ok := s.(*strategy.FedOpt)
	if !ok || fo.Eta != 0.01 || fo.Tau != 0.001 || fo.Beta1 != 0.9 || fo.Validator.MinAccepted != 1 {
		t.Errorf("strategy %#v", s)
	}
	p = mustParse(t, template(t, "breast_cancer_logreg"))
	if s, _ := p.Strategy(0); s.(*strategy.FedProx).Mu != 0.01 {
		t.Error("proximal_mu not applied")
	}
	c := p.TrainConfig()
	if c.Epochs != 1 || c.BatchSize != 32 || c.LR != 0.01 || c.Optimizer != "adam" || c.Seed != 1 {
		t.Errorf("train config %+v", c)
	}
}

// TestTreePlans: the tree models' settings are checked in one line naming
// the key, and a tree plan builds the merge strategy and its ensembles'
// configuration.
func TestTreePlans(t *testing.T) {
	base := string(template(t, "digits_gbdt"))
	for _, c := range []struct{ old, new, key, msg string }{
		{"rounds_to_train: 1 ", "rounds_to_train: 3 ", "aggregator.rounds_to_train", "trains in one round"},
		{"strategy: fedavg", "strategy: median", "aggregation.strategy", "must be fedavg"},
		{"delta_updates: false", "delta_updates: true", "collaborator.delta_updates", "whole ensembles"},
		{"num_leaves: 15", "num_leaves: 1", "task_runner.trees.num_leaves", "must be ≥ 2"},
		{"num_leaves: 15", "num_leaves: -4", "task_runner.trees.num_leaves", "must be in 0..131072"},
		{"num_leaves: 15", "max_features: 3", "task_runner.trees.max_features", "an rf setting"},
		{"lambda: 0 ", "lambda: -1 ", "task_runner.trees.lambda", "must be ≥ 0"},
		{"lambda: 0 ", "bogus: 0 ", "task_runner.trees.bogus", "unknown key"},
		{"model: gbdt", "model: mlp", "task_runner.trees", "only for models [rf gbdt]"},
		{"    min_accepted: 1", "    max_update_norm: 3\n    min_accepted: 1", "aggregation.validator", "do not apply to merged ensembles"},
		{"  delta_updates: false\n", "  delta_updates: false\nsecure_aggregation:\n  enabled: true\n  dropout_tolerance: 0\n  clip: 1\n", "secure_aggregation", "merges whole ensembles"},
	} {
		if !strings.Contains(base, c.old) {
			t.Fatalf("template lacks %q", c.old)
		}
		_, err := plan.Parse([]byte(strings.Replace(base, c.old, c.new, 1)), "plan.yaml")
		if err == nil || !strings.Contains(err.Error(), c.key+": ") || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s → %s: err = %v, want %s: …%s…", c.old, c.new, err, c.key, c.msg)
		}
	}
	p := mustParse(t, []byte(base))
	s, err := p.Strategy(1)
	if err != nil || s.Name() != "treemerge" {
		t.Fatalf("strategy %v, %v", s, err)
	}
	if c := p.TreesConfig(); c.Model != "gbdt" || c.Trees != 60 || c.NumLeaves != 15 || c.MinLeaf != 5 || c.LR != 0.1 {
		t.Errorf("trees config %+v", c)
	}
}

// TestTreePlanLint: a tree plan's lint names the knobs that apply to the
// merge, not the norm and example bounds that do not.
func TestTreePlanLint(t *testing.T) {
	p := mustParse(t, template(t, "digits_rf"))
	got := strings.Join(p.Lint(), "\n")
	for _, want := range []string{"aggregation.validator.min_accepted: 1:", "task_runner.model: rf: the merge averages"} {
		if !strings.Contains(got, want) {
			t.Errorf("lint lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "max_update_norm") || strings.Contains(got, "max_num_examples") {
		t.Errorf("lint warns about bounds trees do not use:\n%s", got)
	}
}
