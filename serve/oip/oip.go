// Package oip is the Open Inference Protocol (v2) as data: requests and
// responses, their JSON form (with the binary-tensor extension) and their
// gRPC form (api/proto/teeml/inference/v2), decoded strictly from untrusted
// bytes. It knows nothing of models, batching or transport.
package oip

import (
	"errors"
	"fmt"
	"math"
)

// Datatypes of the protocol.
var sizes = map[string]int{
	"BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8,
	"INT8": 1, "INT16": 2, "INT32": 4, "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8, "BYTES": 0,
}

// Limits on what a request may hold (callers may lower them).
type Limits struct {
	MaxInputs   int // tensors per request
	MaxElements int // elements per tensor
	MaxDims     int
}

// DefaultLimits are the server's defaults.
var DefaultLimits = Limits{MaxInputs: 16, MaxElements: 1 << 24, MaxDims: 8}

// Error is a malformed request: HTTP 400, gRPC INVALID_ARGUMENT.
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

func bad(format string, args ...any) error { return &Error{Reason: fmt.Sprintf(format, args...)} }

// IsBad reports whether err is a malformed-request error.
func IsBad(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// Tensor is one named tensor. Numeric elements (every datatype but BYTES)
// are held as float64 in Values; BOOL as 0/1; BYTES elements in Bytes.
type Tensor struct {
	Name       string
	Datatype   string
	Shape      []int64
	Parameters map[string]any
	Values     []float64
	Bytes      [][]byte
}

// Elements is the product of the shape.
func (t *Tensor) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// check validates name, datatype and shape against the limits and returns
// the element count.
func (t *Tensor) check(l Limits, what string) (int, error) {
	if t.Name == "" {
		return 0, bad("%s: tensor without a name", what)
	}
	if _, ok := sizes[t.Datatype]; !ok {
		return 0, bad("%s %s: unknown datatype %q", what, t.Name, t.Datatype)
	}
	if len(t.Shape) == 0 || len(t.Shape) > l.MaxDims {
		return 0, bad("%s %s: shape has %d dimensions, want 1 to %d", what, t.Name, len(t.Shape), l.MaxDims)
	}
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return 0, bad("%s %s: negative dimension %d in shape %v", what, t.Name, d, t.Shape)
		}
		if d > 0 && n > int64(l.MaxElements)/d {
			return 0, bad("%s %s: shape %v has more than %d elements", what, t.Name, t.Shape, l.MaxElements)
		}
		n *= d
	}
	if n > int64(l.MaxElements) {
		return 0, bad("%s %s: shape %v has more than %d elements", what, t.Name, t.Shape, l.MaxElements)
	}
	return int(n), nil
}

// inRange checks a numeric element fits its datatype.
func inRange(dt string, v float64) bool {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return dt == "FP32" || dt == "FP64" || dt == "FP16"
	}
	switch dt {
	case "BOOL":
		return v == 0 || v == 1
	case "UINT8":
		return v == math.Trunc(v) && v >= 0 && v <= math.MaxUint8
	case "UINT16":
		return v == math.Trunc(v) && v >= 0 && v <= math.MaxUint16
	case "UINT32":
		return v == math.Trunc(v) && v >= 0 && v <= math.MaxUint32
	case "UINT64":
		return v == math.Trunc(v) && v >= 0 && v <= math.MaxUint64
	case "INT8":
		return v == math.Trunc(v) && v >= math.MinInt8 && v <= math.MaxInt8
	case "INT16":
		return v == math.Trunc(v) && v >= math.MinInt16 && v <= math.MaxInt16
	case "INT32":
		return v == math.Trunc(v) && v >= math.MinInt32 && v <= math.MaxInt32
	case "INT64":
		return v == math.Trunc(v) && v >= math.MinInt64 && v <= math.MaxInt64
	case "FP32":
		return math.Abs(v) <= math.MaxFloat32
	}
	return true
}

// Request is an inference request.
type Request struct {
	ID         string
	Parameters map[string]any
	Inputs     []Tensor
	// Outputs names the requested outputs (empty: all); BinaryOutputs
	// those asked for in binary form (binary_data parameter), and
	// BinaryAll the request-level binary_data_output parameter.
	Outputs       []string
	BinaryOutputs map[string]bool
	BinaryAll     bool
}

// Response is an inference response.
type Response struct {
	ModelName    string
	ModelVersion string
	ID           string
	Parameters   map[string]any
	Outputs      []Tensor
}

// Input returns the named input, or the only one when name is "".
func (r *Request) Input(name string) (*Tensor, error) {
	for i := range r.Inputs {
		if r.Inputs[i].Name == name || name == "" && len(r.Inputs) == 1 {
			return &r.Inputs[i], nil
		}
	}
	return nil, bad("no input tensor %q", name)
}
