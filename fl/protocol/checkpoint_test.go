package protocol

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/strategy"
)

func testCheckpoint(t testing.TB) *Checkpoint {
	t.Helper()
	s := strategy.NewFedAdam(strategy.Options{})
	g := resWeights()
	next := g.Clone()
	next[0].Data[0] += 1
	if _, _, err := s.AggregateFit(1, g, []strategy.FitResult{{Client: "a", Weights: next, NumExamples: 3}}); err != nil {
		t.Fatal(err)
	}
	st, err := s.State()
	if err != nil {
		t.Fatal(err)
	}
	return &Checkpoint{PlanHash: planHash, Round: 2, Rounds: 5, Global: next, Strategy: st,
		History: []RoundSummary{
			{Round: 1, Participants: []string{"a", "b"}, Accepted: []string{"a"}, Rejected: map[string]string{"b": "norm too large"},
				EvalLoss: math.NaN(), Seconds: 1.5, BytesIn: 10, BytesOut: 20, ClosedBy: ClosedAll},
			{Round: 2, Participants: []string{"a"}, Accepted: []string{"a"}, Stragglers: []string{"b"}, ClosedBy: ClosedCutoff,
				EvalLoss: 0.25, EvalMetrics: map[string]float64{"accuracy": 0.9}, LocalEvalMetrics: map[string]float64{"loss": math.Inf(1)}},
		},
		Extra: map[string]string{"best_round": "2"}}
}

func TestCheckpointRoundTrip(t *testing.T) {
	c := testCheckpoint(t)
	path := filepath.Join(t.TempDir(), "state", "checkpoint.safetensors")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteCheckpoint(path, c); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("checkpoint file: %v %v", fi.Mode(), err)
	}
	got, err := ReadCheckpoint(path, planHash)
	if err != nil {
		t.Fatal(err)
	}
	if !weightsEqual(got.Global, c.Global) || !weightsEqual(got.Strategy.Tensors, c.Strategy.Tensors) ||
		!reflect.DeepEqual(got.Strategy.Scalars, c.Strategy.Scalars) || got.Strategy.Strategy != "fedadam" {
		t.Fatal("weights or strategy state changed in the round trip")
	}
	if got.Round != 2 || got.Rounds != 5 || got.PlanHash != planHash || got.Extra["best_round"] != "2" {
		t.Fatalf("header changed: %+v", got)
	}
	if h := got.History[0]; !math.IsNaN(h.EvalLoss) || h.Rejected["b"] != "norm too large" || h.Seconds != 1.5 || h.BytesOut != 20 {
		t.Fatalf("summary 1: %+v", h)
	}
	if h := got.History[1]; h.ClosedBy != ClosedCutoff || h.Stragglers[0] != "b" || !math.IsInf(h.LocalEvalMetrics["loss"], 1) || h.EvalMetrics["accuracy"] != 0.9 {
		t.Fatalf("summary 2: %+v", h)
	}
	// A restored FedAdam continues like the original.
	s := strategy.NewFedAdam(strategy.Options{})
	if err := s.Restore(got.Strategy); err != nil {
		t.Fatal(err)
	}

	// Another plan's checkpoint: one line naming both plans.
	_, err = ReadCheckpoint(path, otherPlan)
	if err == nil {
		t.Fatal("checkpoint of another plan accepted")
	}
	oneLine(t, "other plan", err.Error(), "belongs to plan 91bc0e77…, not the frozen plan 3fa2c4d1…")
	if _, err := ReadCheckpoint(filepath.Join(t.TempDir(), "none"), planHash); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestCheckpointCorruption: flipping any single byte of the file (header
// or data) is refused with a one-line error.
func TestCheckpointCorruption(t *testing.T) {
	var b bytes.Buffer
	if err := EncodeCheckpoint(&b, testCheckpoint(t)); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	for i := 0; i < len(data); i += max(1, len(data)/97) {
		bad := bytes.Clone(data)
		bad[i] ^= 0x10
		c, err := DecodeCheckpoint(bytes.NewReader(bad))
		if err == nil {
			// Header padding spaces and JSON whitespace may change harmlessly
			// only if the decoded checkpoint is identical.
			want, _ := DecodeCheckpoint(bytes.NewReader(data))
			if !weightsEqual(c.Global, want.Global) || c.Round != want.Round {
				t.Fatalf("byte %d flipped: accepted a different checkpoint", i)
			}
			continue
		}
		oneLine(t, "corrupt checkpoint", err.Error(), "checkpoint: ")
	}
	// A data bit flip is caught by the digest.
	bad := bytes.Clone(data)
	bad[len(bad)-3] ^= 1
	if _, err := DecodeCheckpoint(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "SHA-256 mismatch") {
		t.Fatalf("data corruption: %v", err)
	}
	// Inconsistent checkpoints are not written.
	c := testCheckpoint(t)
	c.History = c.History[:1]
	if err := EncodeCheckpoint(&b, c); err == nil || !strings.Contains(err.Error(), "1 round summaries for 2 completed rounds") {
		t.Fatalf("inconsistent checkpoint: %v", err)
	}
}

// FuzzDecodeCheckpoint: DecodeCheckpoint never panics, errors are one
// line, and an accepted checkpoint re-encodes to one that decodes equal.
func FuzzDecodeCheckpoint(f *testing.F) {
	var b bytes.Buffer
	if err := EncodeCheckpoint(&b, testCheckpoint(f)); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add(b.Bytes()[:40])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCheckpoint(bytes.NewReader(data))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		var out bytes.Buffer
		if err := EncodeCheckpoint(&out, c); err != nil {
			t.Fatalf("accepted checkpoint does not re-encode: %v", err)
		}
		d, err := DecodeCheckpoint(&out)
		if err != nil {
			t.Fatalf("re-encoded checkpoint refused: %v", err)
		}
		if d.Round != c.Round || !weightsEqual(d.Global, c.Global) || !weightsEqual(d.Strategy.Tensors, c.Strategy.Tensors) {
			t.Fatal("re-encoded checkpoint differs")
		}
	})
}

// BenchmarkWriteCheckpoint10M: the per-round cost of making a round durable
// for a 10M-parameter model with FedAdam's moments (3 × 40 MB written,
// digested, fsynced and renamed).
func BenchmarkWriteCheckpoint10M(b *testing.B) {
	g := testWeights([]int{2500, 1000}, []int{2500, 1000}, []int{2500, 1000}, []int{2500, 1000})
	s := strategy.NewFedAdam(strategy.Options{})
	next := g.Clone()
	next[0].Data[0]++
	if _, _, err := s.AggregateFit(1, g, []strategy.FitResult{{Client: "a", Weights: next, NumExamples: 1}}); err != nil {
		b.Fatal(err)
	}
	st, err := s.State()
	if err != nil {
		b.Fatal(err)
	}
	c := &Checkpoint{PlanHash: planHash, Round: 1, Rounds: 2, Global: next, Strategy: st, History: []RoundSummary{{Round: 1}}}
	path := filepath.Join(b.TempDir(), "checkpoint.safetensors")
	b.SetBytes(int64(3 * 4 * next.NumParams()))
	b.ResetTimer()
	for range b.N {
		if err := WriteCheckpoint(path, c); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	start := time.Now()
	if _, err := ReadCheckpoint(path, planHash); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(start).Seconds(), "read-s")
}

// TestParseCheckpointNamesTheFile: a bad checkpoint's error names the file
// and still wraps DecodeCheckpoint's error.
func TestParseCheckpointNamesTheFile(t *testing.T) {
	var b bytes.Buffer
	c := testCheckpoint(t)
	if err := EncodeCheckpoint(&b, c); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(b.Bytes())
	bad[len(bad)-3] ^= 1
	_, err := ParseCheckpoint("runs/x/state/checkpoint.safetensors", bad, c.PlanHash)
	if err == nil || !strings.HasPrefix(err.Error(), "checkpoint runs/x/state/checkpoint.safetensors: SHA-256 mismatch") {
		t.Fatalf("err %v, want one naming the file", err)
	}
	if inner := errors.Unwrap(err); inner == nil || !strings.HasPrefix(inner.Error(), "checkpoint: SHA-256 mismatch") {
		t.Fatalf("err %v wraps %v, want DecodeCheckpoint's error", err, inner)
	}
	if got, err := ParseCheckpoint("p", b.Bytes(), c.PlanHash); err != nil || got.Round != c.Round {
		t.Fatalf("ParseCheckpoint of a good file: %v", err)
	}
}
