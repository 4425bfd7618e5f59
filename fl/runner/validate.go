package runner

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/ml/tensor"
)

// Limits on the metrics file.
const (
	MaxMetricsBytes = 64 << 10
	maxMetrics      = 32
	maxMetricName   = 64
)

// readWeights reads and validates a runner's output model: a regular
// file of at most maxBytes, every tensor F32, finite; with a reference
// (the global model) exactly its names and shapes, returned in its order.
func readWeights(path string, maxBytes int64, ref tensor.Weights) (tensor.Weights, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errors.New("the runner wrote no output_weights file")
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%v)", st.Mode().Type())
	}
	if st.Size() > maxBytes {
		return nil, fmt.Errorf("%d bytes, over the %d-byte limit for this model", st.Size(), maxBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxBytes {
		return nil, fmt.Errorf("over the %d-byte limit for this model", maxBytes)
	}
	return checkWeights(data, ref)
}

// checkWeights validates a safetensors file's bytes; see readWeights.
func checkWeights(data []byte, ref tensor.Weights) (tensor.Weights, error) {
	if err := checkDtypes(data); err != nil {
		return nil, err
	}
	w, _, err := safetensors.Read(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if len(w) == 0 {
		return nil, errors.New("no tensors")
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if ref != nil {
		byName := make(map[string]tensor.Tensor, len(w))
		for _, t := range w {
			byName[t.Name] = t
		}
		out := make(tensor.Weights, len(ref))
		for i, rt := range ref {
			t, ok := byName[rt.Name]
			if !ok {
				return nil, fmt.Errorf("tensor %s missing (the global model has %d tensors)", quote(rt.Name), len(ref))
			}
			if !slices.Equal(t.Shape, rt.Shape) {
				return nil, fmt.Errorf("tensor %s has shape %v, the global model %v", quote(rt.Name), t.Shape, rt.Shape)
			}
			out[i] = t
			delete(byName, rt.Name)
		}
		if len(byName) > 0 {
			extra := slices.Sorted(maps.Keys(byName))
			return nil, fmt.Errorf("tensor %s is not in the global model", quote(extra[0]))
		}
		w = out
	}
	if err := w.AllFinite(); err != nil {
		return nil, err
	}
	return w, nil
}

// checkDtypes requires every tensor of a safetensors file to be F32,
// teeml's element type (safetensors.Read would silently convert others).
// The rest of the header is validated by safetensors.Read.
func checkDtypes(data []byte) error {
	if len(data) < 8 {
		return fmt.Errorf("safetensors: %d bytes, too short for the header length", len(data))
	}
	hlen := binary.LittleEndian.Uint64(data[:8])
	if hlen > uint64(len(data)-8) || hlen > safetensors.MaxHeaderSize {
		return fmt.Errorf("safetensors: header length %d exceeds the file's %d bytes", hlen, len(data))
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+hlen], &header); err != nil {
		return fmt.Errorf("safetensors: header: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(header)) {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			Dtype string `json:"dtype"`
		}
		if err := json.Unmarshal(header[name], &e); err != nil {
			return fmt.Errorf("safetensors: tensor %s: %w", quote(name), err)
		}
		if e.Dtype != "F32" {
			return fmt.Errorf("tensor %s has dtype %s, want F32 (the global model's; e.g. tensor.float())", quote(name), quote(e.Dtype))
		}
	}
	return nil
}

type metrics struct {
	n       int
	loss    float64
	metrics map[string]float64
}

// readMetrics reads a runner's metrics.json.
func readMetrics(path string, needLoss bool, rows int) (*metrics, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errors.New("the runner wrote no metrics file")
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxMetricsBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxMetricsBytes {
		return nil, fmt.Errorf("over %d bytes", MaxMetricsBytes)
	}
	return parseMetrics(data, needLoss, rows)
}

// parseMetrics validates metrics.json: {"num_examples": n, "loss": l,
// "metrics": {name: value}}. num_examples must be a whole number in
// 1..rows (the rows teeml handed in: the aggregator weighs updates by it);
// every number finite.
func parseMetrics(data []byte, needLoss bool, rows int) (*metrics, error) {
	var m struct {
		NumExamples *float64           `json:"num_examples"`
		Loss        *float64           `json:"loss"`
		Metrics     map[string]float64 `json:"metrics"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		msg := err.Error()
		if strings.Contains(msg, "invalid character 'N'") || strings.Contains(msg, "invalid character 'I'") || strings.Contains(msg, "invalid character '-' in numeric literal") {
			msg += " (NaN and Infinity are not JSON numbers: the runner produced a non-finite value)"
		}
		return nil, fmt.Errorf("not valid JSON: %s", msg)
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	if m.NumExamples == nil {
		return nil, errors.New("num_examples missing")
	}
	n := *m.NumExamples
	if n != math.Trunc(n) || n < 1 || n > float64(rows) {
		return nil, fmt.Errorf("num_examples %v must be a whole number in 1..%d (the rows handed to the runner)", n, rows)
	}
	out := &metrics{n: int(n), metrics: map[string]float64{}}
	if m.Loss == nil {
		if needLoss {
			return nil, errors.New("loss missing")
		}
	} else {
		out.loss = *m.Loss
		if !needLoss {
			out.metrics["train_loss"] = *m.Loss
		}
	}
	if len(m.Metrics) > maxMetrics {
		return nil, fmt.Errorf("%d metrics, at most %d", len(m.Metrics), maxMetrics)
	}
	for k, v := range m.Metrics {
		if !metricName(k) {
			return nil, fmt.Errorf("metric name %s: want 1..%d characters of [a-z0-9_.]", quote(k), maxMetricName)
		}
		if k == "loss" {
			return nil, errors.New(`metric "loss" goes in the top-level loss field`)
		}
		out.metrics[k] = v
	}
	return out, nil
}

func metricName(s string) bool {
	if s == "" || len(s) > maxMetricName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
