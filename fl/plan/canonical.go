package plan

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/teeml/teeml/internal/atomicfile"
)

// Canonical returns the plan's canonical encoding, the bytes Hash digests
// and Freeze writes. It is YAML that Parse reads back to an equal plan:
//
//   - no comments; sections and keys in the fixed schema order in which
//     this package documents them (aggregator, collaborator, data_loader,
//     task_runner, network, [straggler_handling_policy], assigner, tasks,
//     aggregation, attestation, [encryption]); encryption only when the plan
//     has it; straggler_handling_policy only when the
//     plan has it (so plans without it keep the hash they had before the
//     section existed), with only its policy's keys;
//     map-valued keys (aggregation.settings, attestation.policy) sorted
//     bytewise;
//   - every key present, optional ones with their defaults, so a plan that
//     spells out a default hashes like one that leaves it out;
//   - two-space indentation, "key: value", LF line ends, a final LF;
//   - strings double-quoted with Go's strconv.Quote escaping (a subset of
//     YAML's double-quoted escapes);
//   - integers in decimal; other numbers as strconv.FormatFloat(v, 'g', -1,
//     64) (shortest round-trip form, no negative zero); booleans true/false;
//     durations as Go's time.Duration.String ("10m0s");
//   - lists of scalars in flow style ([64, 32], [] when empty), the
//     task_groups list in block style.
func (p *Plan) Canonical() []byte {
	var b bytes.Buffer
	w := func(indent int, key, value string) {
		b.WriteString(strings.Repeat("  ", indent))
		b.WriteString(key)
		b.WriteString(":")
		if value != "" {
			b.WriteString(" ")
			b.WriteString(value)
		}
		b.WriteString("\n")
	}
	p.canonicalTraining(&b, w)
	n := &p.Network
	w(0, "network", "")
	w(1, "agg_addr", cq(n.AggAddr))
	w(1, "agg_port", ci(n.AggPort))
	w(1, "round_timeout", cq(n.RoundTimeout.String()))
	w(1, "tls", cq(n.TLS))
	p.canonicalStraggler(w, cq, cf)
	p.canonicalTasks(&b, w)
	p.canonicalAggregation(w)
	w(0, "attestation", "")
	w(1, "policy", "")
	for _, role := range slices.Sorted(maps.Keys(p.Attestation.Policy)) {
		w(2, role, cq(p.Attestation.Policy[role]))
	}
	p.canonicalEncryption(w, cq)
	p.canonicalPrivacy(w)
	p.canonicalSecureAggregation(w)
	return b.Bytes()
}

// The canonical form's value encodings.
var cq = strconv.Quote

func ci(v int) string     { return strconv.Itoa(v) }
func ci64(v int64) string { return strconv.FormatInt(v, 10) }

func cf(v float64) string {
	if v == 0 {
		return "0"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func cstrs(ss []string) string {
	parts := make([]string, len(ss))
	for k, s := range ss {
		parts[k] = cq(s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func cints(is []int) string {
	parts := make([]string, len(is))
	for k, v := range is {
		parts[k] = ci(v)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// canonicalTraining writes the aggregator, collaborator, data_loader and
// task_runner sections.
func (p *Plan) canonicalTraining(b *bytes.Buffer, w func(indent int, key, value string)) {
	a := &p.Aggregator
	w(0, "aggregator", "")
	w(1, "rounds_to_train", ci(a.RoundsToTrain))
	w(1, "init_state_path", cq(a.InitStatePath))
	w(1, "best_state_path", cq(a.BestStatePath))
	w(1, "last_state_path", cq(a.LastStatePath))
	w(1, "min_collaborators", ci(a.MinCollaborators))

	c := &p.Collaborator
	w(0, "collaborator", "")
	w(1, "epochs_per_round", ci(c.EpochsPerRound))
	w(1, "opt_treatment", cq(c.OptTreatment))
	w(1, "delta_updates", strconv.FormatBool(c.DeltaUpdates))

	d := &p.DataLoader
	w(0, "data_loader", "")
	w(1, "dataset", cq(d.Dataset))
	w(1, "batch_size", ci(d.BatchSize))
	w(1, "test_fraction", cf(d.TestFraction))
	w(1, "seed", ci64(d.Seed))
	w(1, "partitioning", "")
	w(2, "kind", cq(d.Partitioning.Kind))
	w(2, "alpha", cf(d.Partitioning.Alpha))
	w(2, "seed", ci64(d.Partitioning.Seed))
	w(2, "shards", ci(d.Partitioning.Shards))

	t := &p.TaskRunner
	w(0, "task_runner", "")
	w(1, "model", cq(t.Model))
	w(1, "hidden", cints(t.Hidden))
	w(1, "optimizer", cq(t.Optimizer))
	w(1, "lr", cf(t.LR))
	w(1, "seed", ci64(t.Seed))
	if t.Runner != nil {
		t.Runner.canonical(b)
	}
	if t.Trees != nil {
		t.Trees.canonical(w)
	}
}

// canonicalTasks writes the assigner and tasks sections.
func (p *Plan) canonicalTasks(b *bytes.Buffer, w func(indent int, key, value string)) {
	w(0, "assigner", "")
	w(1, "task_groups", "")
	for _, g := range p.Assigner.TaskGroups {
		b.WriteString("    - name: " + cq(g.Name) + "\n")
		w(3, "percentage", cf(g.Percentage))
		w(3, "tasks", cstrs(g.Tasks))
	}
	w(0, "tasks", "")
	w(1, TaskAggregatedModelValidation, "")
	w(2, "metrics", cstrs(p.Tasks.AggregatedModelValidation.Metrics))
	w(1, TaskTrain, "")
	w(2, "metrics", cstrs(p.Tasks.Train.Metrics))
	w(2, "weight_decay", cf(p.Tasks.Train.WeightDecay))
	w(1, TaskLocallyTunedModelValidation, "")
	w(2, "metrics", cstrs(p.Tasks.LocallyTunedModelValidation.Metrics))
}

// canonicalAggregation writes the aggregation section.
func (p *Plan) canonicalAggregation(w func(indent int, key, value string)) {
	ag := &p.Aggregation
	w(0, "aggregation", "")
	w(1, "strategy", cq(ag.Strategy))
	if len(ag.Settings) == 0 {
		w(1, "settings", "{}")
	} else {
		w(1, "settings", "")
		for _, k := range slices.Sorted(maps.Keys(ag.Settings)) {
			w(2, k, cf(ag.Settings[k]))
		}
	}
	w(1, "validator", "")
	w(2, "max_update_norm", cf(ag.Validator.MaxUpdateNorm))
	w(2, "max_num_examples", ci(ag.Validator.MaxNumExamples))
	w(2, "min_accepted", ci(ag.Validator.MinAccepted))
}

// Hash is the lower-case hex SHA-256 of Canonical: the plan's identity.
// For a frozen plan it equals `sha256sum plan/plan.yaml`.
func (p *Plan) Hash() string {
	sum := sha256.Sum256(p.Canonical())
	return hex.EncodeToString(sum[:])
}

// Freeze validates the plan and writes it into workspace dir as
// plan/plan.yaml (canonical form) and plan/plan.hash ("<hash>  plan.yaml",
// the sha256sum format, so `cd plan && sha256sum -c plan.hash` checks it),
// each atomically. It returns the hash.
func (p *Plan) Freeze(dir string) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	pd := filepath.Join(dir, "plan")
	if err := os.MkdirAll(pd, 0o755); err != nil {
		return "", fmt.Errorf("plan: freeze: %w", err)
	}
	h := p.Hash()
	// The hash file goes first: a crash between the two writes leaves a
	// mismatch that Load reports, never an unverified plan.
	if err := atomicfile.WriteBytes(filepath.Join(pd, HashFile), []byte(h+"  plan.yaml\n"), 0o644); err != nil {
		return "", fmt.Errorf("plan: freeze: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(pd, "plan.yaml"), p.Canonical(), 0o644); err != nil {
		return "", fmt.Errorf("plan: freeze: %w", err)
	}
	return h, nil
}

// ReadHashFile reads a plan.hash file: 64 hex digits, optionally followed by
// whitespace and a file name (sha256sum format).
func ReadHashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, err := bufio.NewReader(io.LimitReader(f, 1024)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("plan: %s: %w", path, err)
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return "", fmt.Errorf("plan: %s: empty hash file", path)
	}
	h := strings.ToLower(fields[0])
	if _, err := hex.DecodeString(h); err != nil || len(h) != 64 {
		return "", fmt.Errorf("plan: %s: %q is not a SHA-256 hex digest", path, fields[0])
	}
	return h, nil
}
