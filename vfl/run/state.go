package run

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/vfl/split"
)

// Checkpoint and model metadata keys.
const (
	metaPlanHash  = "teeml.vfl.plan_hash"
	metaRole      = "teeml.vfl.role"
	metaIteration = "teeml.vfl.iteration"
	metaApplied   = "teeml.vfl.applied"
	metaRows      = "teeml.vfl.rows_sha256"
	metaSpec      = "teeml.vfl.spec"
	metaPipeline  = "teeml.vfl.pipeline"
)

// keepCheckpoints is how many checkpoints a side keeps. The two sides are
// never more than one checkpoint interval apart (each commits iteration i
// only after the other has sent its part of i), so the newest common
// checkpoint is always among the last two; one more is kept for margin.
const keepCheckpoints = 3

func (pt *party) ckptPath(it int64) string {
	return filepath.Join(pt.ckptDir, fmt.Sprintf("ckpt-%010d.safetensors", it))
}

// checkpoints lists the iterations this side holds a valid checkpoint of
// for this plan (newest first, at most keepCheckpoints).
func (pt *party) checkpoints() []int64 {
	ents, err := os.ReadDir(pt.ckptDir)
	if err != nil {
		return nil
	}
	var its []int64
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), "ckpt-")
		if !ok {
			continue
		}
		s, ok = strings.CutSuffix(s, ".safetensors")
		if !ok {
			continue
		}
		it, err := strconv.ParseInt(s, 10, 64)
		if err != nil || it <= 0 {
			continue
		}
		_, md, err := safetensors.ReadFile(pt.ckptPath(it))
		if err != nil || md[metaPlanHash] != pt.plan.Hash() || md[metaRole] != pt.role || md[metaIteration] != strconv.FormatInt(it, 10) {
			pt.log.Warn("ignoring unusable checkpoint", "file", e.Name(), "err", err)
			continue
		}
		its = append(its, it)
	}
	slices.Sort(its)
	slices.Reverse(its)
	if len(its) > keepCheckpoints {
		its = its[:keepCheckpoints]
	}
	return its
}

// checkpoint atomically writes this side's state after iteration it and
// prunes old checkpoints.
func (pt *party) checkpoint(it int64) error {
	var st = pt.stateWeights()
	md := map[string]string{
		metaPlanHash: pt.plan.Hash(), metaRole: pt.role, metaIteration: strconv.FormatInt(it, 10),
		metaApplied: strconv.FormatInt(pt.applied, 10), metaRows: pt.alignSum,
	}
	if err := os.MkdirAll(pt.ckptDir, 0o700); err != nil {
		return err
	}
	if err := safetensors.WriteFile(pt.ckptPath(it), st, md); err != nil {
		return fmt.Errorf("checkpoint %d: %w", it, err)
	}
	pt.log.Debug("checkpoint written", "iter_id", it, "applied", pt.applied)
	its := pt.checkpoints()
	ents, _ := os.ReadDir(pt.ckptDir)
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), "ckpt-")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(s, ".safetensors"), 10, 64)
		if err == nil && n < it && !slices.Contains(its, n) {
			os.Remove(filepath.Join(pt.ckptDir, e.Name()))
		}
	}
	return nil
}

func (pt *party) stateWeights() []tensorT {
	if pt.leader != nil {
		return pt.leader.State()
	}
	return pt.follower.State()
}

// restore sets this side's model to the state after iteration it: a fresh
// initialisation for 0, else the checkpoint.
func (pt *party) restore(it int64) error {
	if err := pt.newModel(); err != nil {
		return err
	}
	pt.applied = 0
	pt.lastLossSum, pt.lastLossN = 0, 0
	if it == 0 {
		return nil
	}
	path := pt.ckptPath(it)
	w, md, err := safetensors.ReadFile(path)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if md[metaRows] != pt.alignSum {
		return fmt.Errorf("checkpoint %s was written for other rows (rows %s, now %s)", path, short(md[metaRows]), short(pt.alignSum))
	}
	applied, err := strconv.ParseInt(md[metaApplied], 10, 64)
	if err != nil || applied < 0 || applied > it {
		return fmt.Errorf("checkpoint %s: applied-updates counter %q is not in 0..%d", path, md[metaApplied], it)
	}
	if pt.leader != nil {
		err = pt.leader.SetState(w)
	} else {
		err = pt.follower.SetState(w)
	}
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	pt.applied = applied
	return nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// Card is the model card written next to each exported half.
type Card struct {
	Role           string         `json:"role"`
	Plan           string         `json:"plan"`
	PlanHash       string         `json:"plan_hash"`
	Dataset        string         `json:"dataset"`
	Model          split.Spec     `json:"model"`
	Weights        string         `json:"weights"`
	WeightsSHA256  string         `json:"weights_sha256"`
	Iterations     int64          `json:"iterations"`
	AppliedUpdates int64          `json:"applied_updates"`
	Resumes        int            `json:"resumes"`
	TrainRows      int            `json:"train_rows"`
	TestRows       int            `json:"test_rows"`
	Alignment      *Alignment     `json:"alignment"`
	Own            *Measurement   `json:"own_measurement,omitempty"`
	Peer           *Measurement   `json:"peer_measurement,omitempty"`
	Metrics        *split.Metrics `json:"test_metrics,omitempty"`
	Simulated      bool           `json:"simulated"`
	Created        string         `json:"created"`
}

// export writes this side's half (safetensors, with its spec and
// preprocessing in the metadata) and its model card.
func (pt *party) export(res *Result) error {
	if err := os.MkdirAll(pt.modelDir, 0o755); err != nil {
		return err
	}
	var w []tensorT
	var spec split.Spec
	if pt.leader != nil {
		w, spec = pt.leader.Weights(), pt.leader.Spec()
	} else {
		w, spec = pt.follower.Weights(), pt.follower.Spec()
	}
	specJSON, _ := json.Marshal(spec)
	md := map[string]string{metaPlanHash: pt.plan.Hash(), metaRole: pt.role, metaSpec: string(specJSON),
		metaPipeline: pt.prep.Pipeline.JSON(), metaIteration: strconv.FormatInt(pt.sched.TrainIters, 10)}
	res.Model = filepath.Join(pt.modelDir, pt.role+".safetensors")
	if err := safetensors.WriteFile(res.Model, w, md); err != nil {
		return err
	}
	b, err := os.ReadFile(res.Model)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	card := Card{Role: pt.role, Plan: pt.plan.Name, PlanHash: pt.plan.Hash(), Dataset: pt.plan.Dataset, Model: spec,
		Weights: filepath.Base(res.Model), WeightsSHA256: hex.EncodeToString(sum[:]), Iterations: pt.sched.TrainIters,
		AppliedUpdates: pt.applied, Resumes: pt.resumes, TrainRows: pt.prep.Train.N, TestRows: pt.prep.Test.N,
		Alignment: pt.al.card(), Peer: pt.peer, Metrics: res.Metrics,
		Created: time.Now().UTC().Format(time.RFC3339)}
	if pt.att != nil {
		card.Own = measurementOf(pt.att.own)
		if pt.att.ownErr != nil {
			card.Own = &Measurement{Error: pt.att.ownErr.Error()}
		}
		card.Simulated = pt.att.party.Simulated() || (pt.peer != nil && pt.peer.Simulated)
	}
	cb, _ := json.MarshalIndent(card, "", "  ")
	res.Card = filepath.Join(pt.modelDir, pt.role+".model-card.json")
	if err := atomicfile.WriteBytes(res.Card, append(cb, '\n'), 0o644); err != nil {
		return err
	}
	return nil
}

// LoadHalf reads an exported half: weights, spec and preprocessing.
func LoadHalf(path string) (map[string]string, []tensorT, split.Spec, datasets.Pipeline, error) {
	w, md, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, nil, split.Spec{}, datasets.Pipeline{}, err
	}
	var spec split.Spec
	if err := json.Unmarshal([]byte(md[metaSpec]), &spec); err != nil {
		return nil, nil, split.Spec{}, datasets.Pipeline{}, fmt.Errorf("%s: no split model spec in the metadata: %w", path, err)
	}
	pipe, err := datasets.ParsePipeline(md[metaPipeline])
	if err != nil {
		return nil, nil, split.Spec{}, datasets.Pipeline{}, fmt.Errorf("%s: %w", path, err)
	}
	return md, w, spec, pipe, nil
}

type tensorT = tensor.Tensor
