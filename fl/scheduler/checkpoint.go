package scheduler

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/ml/tensor"
)

// Checkpoint is the durable state of a federation after a completed round:
// everything an aggregator needs to resume at the next round as if it had
// never stopped. The Scheduler hands one to Config.Commit after every
// round, before any collaborator can see that round's result, and takes one
// back in Config.Resume.
type Checkpoint struct {
	// PlanHash is the plan the federation runs; a checkpoint of another
	// plan is refused.
	PlanHash string
	// Round is the number of completed rounds (1..Rounds); Rounds is the
	// plan's total.
	Round, Rounds int
	// Global is the global model after Round.
	Global tensor.Weights
	// Strategy is the strategy's mutable state after Round (FedOpt's
	// server-optimiser moments and step count).
	Strategy strategy.State
	// History has one summary per completed round, rounds 1..Round.
	History []RoundSummary
	// Extra holds the caller's own values that must be durable with the
	// round (fl/run keeps its best-model bookkeeping there).
	Extra map[string]string
}

// Checkpoint file layout: a safetensors file whose tensors are the global
// model ("global/<name>", in order) followed by the strategy's tensors
// ("strategy/<name>"), and whose metadata holds the JSON header below under
// checkpointKey and, under checkpointSumKey, the SHA-256 of the header and
// every tensor's name, shape and float32 bits, so that any change to the
// file (bit rot, a hand edit) is detected on load.
const (
	checkpointKey     = "teeml.fl.checkpoint"
	checkpointSumKey  = "teeml.fl.checkpoint.sha256"
	checkpointFormat  = 1
	globalPrefix      = "global/"
	strategyPrefix    = "strategy/"
	maxCheckpointHist = 10_000_000
)

type checkpointHeader struct {
	Format          int               `json:"format"`
	PlanHash        string            `json:"plan_hash"`
	Round           int               `json:"round"`
	Rounds          int               `json:"rounds"`
	GlobalTensors   int               `json:"global_tensors"`
	Strategy        string            `json:"strategy"`
	StrategyScalars map[string]jfloat `json:"strategy_scalars,omitempty"`
	History         []checkpointRound `json:"history"`
	Extra           map[string]string `json:"extra,omitempty"`
}

type checkpointRound struct {
	Round            int               `json:"round"`
	Participants     []string          `json:"participants"`
	Accepted         []string          `json:"accepted"`
	Rejected         map[string]string `json:"rejected,omitempty"`
	Stragglers       []string          `json:"stragglers,omitempty"`
	ClosedBy         string            `json:"closed_by,omitempty"`
	EvalLoss         jfloat            `json:"eval_loss"`
	EvalMetrics      map[string]jfloat `json:"eval_metrics,omitempty"`
	LocalEvalMetrics map[string]jfloat `json:"local_eval_metrics,omitempty"`
	Seconds          jfloat            `json:"seconds"`
	BytesIn          int64             `json:"bytes_in"`
	BytesOut         int64             `json:"bytes_out"`
	Privacy          map[string]jfloat `json:"privacy,omitempty"`
}

// jfloat is a float64 that survives JSON when it is NaN or ±Inf (a round
// without evaluations has a NaN loss): those are written as strings.
type jfloat float64

func (f jfloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return json.Marshal(v)
}

func (f *jfloat) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"NaN"`:
		*f = jfloat(math.NaN())
		return nil
	case `"+Inf"`:
		*f = jfloat(math.Inf(1))
		return nil
	case `"-Inf"`:
		*f = jfloat(math.Inf(-1))
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = jfloat(v)
	return nil
}

func toJ(m map[string]float64) map[string]jfloat {
	if m == nil {
		return nil
	}
	out := make(map[string]jfloat, len(m))
	for k, v := range m {
		out[k] = jfloat(v)
	}
	return out
}

func fromJ(m map[string]jfloat) map[string]float64 {
	if m == nil {
		return nil
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = float64(v)
	}
	return out
}

// check reports the first inconsistency of c.
func (c *Checkpoint) check() error {
	switch {
	case c.PlanHash == "":
		return errors.New("no plan hash")
	case c.Rounds < 1 || c.Round < 1 || c.Round > c.Rounds:
		return fmt.Errorf("round %d of %d is out of range", c.Round, c.Rounds)
	case len(c.History) != c.Round:
		return fmt.Errorf("%d round summaries for %d completed rounds", len(c.History), c.Round)
	case len(c.Global) == 0:
		return errors.New("no global model")
	case c.Strategy.Strategy == "":
		return errors.New("no strategy name")
	}
	for i, h := range c.History {
		if h.Round != i+1 {
			return fmt.Errorf("summary %d is of round %d", i+1, h.Round)
		}
	}
	if err := c.Global.Validate(); err != nil {
		return fmt.Errorf("global model: %w", err)
	}
	if err := c.Global.AllFinite(); err != nil {
		return fmt.Errorf("global model: %w", err)
	}
	if err := c.Strategy.Tensors.Validate(); err != nil {
		return fmt.Errorf("strategy state: %w", err)
	}
	return nil
}

// EncodeCheckpoint writes c in the checkpoint file format.
func EncodeCheckpoint(w io.Writer, c *Checkpoint) error {
	ws, md, err := c.encode()
	if err != nil {
		return err
	}
	return safetensors.Write(w, ws, md)
}

func (c *Checkpoint) encode() (tensor.Weights, map[string]string, error) {
	if err := c.check(); err != nil {
		return nil, nil, fmt.Errorf("checkpoint: %w", err)
	}
	h := checkpointHeader{Format: checkpointFormat, PlanHash: c.PlanHash, Round: c.Round, Rounds: c.Rounds,
		GlobalTensors: len(c.Global), Strategy: c.Strategy.Strategy, StrategyScalars: toJ(c.Strategy.Scalars), Extra: c.Extra}
	for _, s := range c.History {
		h.History = append(h.History, checkpointRound{Round: s.Round, Participants: s.Participants, Accepted: s.Accepted,
			Rejected: s.Rejected, Stragglers: s.Stragglers, ClosedBy: s.ClosedBy, EvalLoss: jfloat(s.EvalLoss),
			EvalMetrics: toJ(s.EvalMetrics), LocalEvalMetrics: toJ(s.LocalEvalMetrics), Seconds: jfloat(s.Seconds),
			BytesIn: s.BytesIn, BytesOut: s.BytesOut, Privacy: toJ(s.Privacy)})
	}
	hdr, err := json.Marshal(h)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint: %w", err)
	}
	ws := make(tensor.Weights, 0, len(c.Global)+len(c.Strategy.Tensors))
	for _, t := range c.Global {
		t.Name = globalPrefix + t.Name
		ws = append(ws, t)
	}
	for _, t := range c.Strategy.Tensors {
		t.Name = strategyPrefix + t.Name
		ws = append(ws, t)
	}
	return ws, map[string]string{checkpointKey: string(hdr), checkpointSumKey: checkpointSum(hdr, ws)}, nil
}

// checkpointSum digests the header and every tensor (name, shape, bits).
func checkpointSum(hdr []byte, ws tensor.Weights) string {
	d := sha256.New()
	var n [8]byte
	put := func(v uint64) { binary.LittleEndian.PutUint64(n[:], v); d.Write(n[:]) }
	put(uint64(len(hdr)))
	d.Write(hdr)
	buf := make([]byte, 0, 64<<10)
	for _, t := range ws {
		put(uint64(len(t.Name)))
		d.Write([]byte(t.Name))
		put(uint64(len(t.Shape)))
		for _, s := range t.Shape {
			put(uint64(s))
		}
		for i, v := range t.Data {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			if len(buf) == cap(buf) || i == len(t.Data)-1 {
				d.Write(buf)
				buf = buf[:0]
			}
		}
	}
	return hex.EncodeToString(d.Sum(nil))
}

// DecodeCheckpoint reads a checkpoint file and checks its digest and
// consistency. Every error is one line starting "checkpoint: ".
func DecodeCheckpoint(r io.Reader) (*Checkpoint, error) {
	ws, md, err := safetensors.Read(r)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	hdr, ok := md[checkpointKey]
	if !ok {
		return nil, errors.New("checkpoint: not a teeml checkpoint (no " + checkpointKey + " metadata)")
	}
	if sum := checkpointSum([]byte(hdr), ws); md[checkpointSumKey] != sum {
		return nil, errors.New("checkpoint: SHA-256 mismatch: the file is corrupt or was modified")
	}
	var h checkpointHeader
	dec := json.NewDecoder(strings.NewReader(hdr))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("checkpoint: header: %w", err)
	}
	if h.Format != checkpointFormat {
		return nil, fmt.Errorf("checkpoint: format %d, this teeml reads format %d", h.Format, checkpointFormat)
	}
	if h.GlobalTensors < 1 || h.GlobalTensors > len(ws) {
		return nil, fmt.Errorf("checkpoint: %d global tensors of %d", h.GlobalTensors, len(ws))
	}
	if len(h.History) > maxCheckpointHist {
		return nil, fmt.Errorf("checkpoint: %d round summaries", len(h.History))
	}
	c := &Checkpoint{PlanHash: h.PlanHash, Round: h.Round, Rounds: h.Rounds, Extra: h.Extra,
		Strategy: strategy.State{Strategy: h.Strategy, Scalars: fromJ(h.StrategyScalars)}}
	for i, t := range ws {
		prefix := globalPrefix
		if i >= h.GlobalTensors {
			prefix = strategyPrefix
		}
		name, ok := strings.CutPrefix(t.Name, prefix)
		if !ok {
			return nil, fmt.Errorf("checkpoint: tensor %d is %q, want a %q name", i, t.Name, prefix)
		}
		t.Name = name
		if i < h.GlobalTensors {
			c.Global = append(c.Global, t)
		} else {
			c.Strategy.Tensors = append(c.Strategy.Tensors, t)
		}
	}
	for _, s := range h.History {
		c.History = append(c.History, RoundSummary{Round: s.Round, Participants: s.Participants, Accepted: s.Accepted,
			Rejected: s.Rejected, Stragglers: s.Stragglers, ClosedBy: s.ClosedBy, EvalLoss: float64(s.EvalLoss),
			EvalMetrics: fromJ(s.EvalMetrics), LocalEvalMetrics: fromJ(s.LocalEvalMetrics), Seconds: float64(s.Seconds),
			BytesIn: s.BytesIn, BytesOut: s.BytesOut, Privacy: fromJ(s.Privacy)})
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return c, nil
}

// WriteCheckpoint writes c to path durably and atomically: a temporary
// file in the same directory, fsync, rename over path, fsync of the
// directory (internal/atomicfile). After it returns nil the checkpoint
// survives a crash or power loss; if it fails, the previous file is intact.
// The file gets mode 0600: it holds the global model.
func WriteCheckpoint(path string, c *Checkpoint) error {
	ws, md, err := c.encode()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, 0o600, func(w io.Writer) error { return safetensors.Write(w, ws, md) }); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// ReadCheckpoint reads the checkpoint at path, which must belong to the
// plan with hash planHash. A missing file is an error wrapping
// os.ErrNotExist.
func ReadCheckpoint(path, planHash string) (*Checkpoint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return ParseCheckpoint(path, b, planHash)
}

// ParseCheckpoint decodes b, the content of the checkpoint file path (read
// or unsealed by the caller), which must belong to the plan with hash
// planHash. Its errors name path and wrap DecodeCheckpoint's.
func ParseCheckpoint(path string, b []byte, planHash string) (*Checkpoint, error) {
	c, err := DecodeCheckpoint(bytes.NewReader(b))
	if err != nil {
		return nil, &fileError{msg: "checkpoint " + path + ": " + strings.TrimPrefix(err.Error(), "checkpoint: "), err: err}
	}
	if c.PlanHash != planHash {
		return nil, fmt.Errorf("checkpoint %s belongs to plan %s, not the frozen plan %s: move it away to start this plan from round 1",
			path, ShortHash(c.PlanHash), ShortHash(planHash))
	}
	return c, nil
}

// fileError is a DecodeCheckpoint error err reworded to name the file
// ("checkpoint PATH: reason" rather than "checkpoint: reason"), wrapping
// err.
type fileError struct {
	msg string
	err error
}

func (e *fileError) Error() string { return e.msg }
func (e *fileError) Unwrap() error { return e.err }
