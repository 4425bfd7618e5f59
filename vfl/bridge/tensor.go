package bridge

import (
	"encoding/binary"
	"fmt"
	"math"

	vflv1 "github.com/teeml/teeml/api/proto/teeml/vfl/v1"
)

// MaxTensorBytes caps one tensor in a Data frame: below gRPC's default 4 MiB
// receive limit with room for the frame around it. A split model exchanges
// batch×width activations (32×16 floats = 2 KiB at the defaults), so a
// bigger tensor is a bug or an attack, not a workload.
const MaxTensorBytes = 3 << 20

// maxRank bounds a tensor's number of dimensions.
const maxRank = 8

// EncodeTensor packs float32 values of the given shape.
func EncodeTensor(shape []int, data []float32) (*vflv1.Tensor, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("bridge: tensor shape %v has a negative dimension", shape)
		}
		n *= d
	}
	if n != len(data) {
		return nil, fmt.Errorf("bridge: tensor shape %v needs %d values, have %d", shape, n, len(data))
	}
	if 4*len(data) > MaxTensorBytes {
		return nil, fmt.Errorf("bridge: tensor of %d bytes exceeds the %d-byte cap", 4*len(data), MaxTensorBytes)
	}
	t := &vflv1.Tensor{Dtype: "float32", Shape: make([]int64, len(shape)), Data: make([]byte, 4*len(data))}
	for i, d := range shape {
		t.Shape[i] = int64(d)
	}
	for i, v := range data {
		binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(v))
	}
	return t, nil
}

// DecodeTensor checks a received tensor (dtype, shape against the byte
// count, size cap) and returns its shape and values.
func DecodeTensor(t *vflv1.Tensor) ([]int, []float32, error) {
	if t == nil {
		return nil, nil, fmt.Errorf("bridge: data frame without a tensor")
	}
	if t.Dtype != "float32" {
		return nil, nil, fmt.Errorf("bridge: tensor dtype %q, only float32 is supported", t.Dtype)
	}
	if len(t.Shape) > maxRank {
		return nil, nil, fmt.Errorf("bridge: tensor rank %d exceeds %d", len(t.Shape), maxRank)
	}
	if len(t.Data) > MaxTensorBytes {
		return nil, nil, fmt.Errorf("bridge: tensor of %d bytes exceeds the %d-byte cap", len(t.Data), MaxTensorBytes)
	}
	n := int64(1)
	shape := make([]int, len(t.Shape))
	for i, d := range t.Shape {
		if d < 0 || d > MaxTensorBytes {
			return nil, nil, fmt.Errorf("bridge: tensor shape %v: dimension %d out of range", t.Shape, d)
		}
		n *= d
		if n > MaxTensorBytes {
			return nil, nil, fmt.Errorf("bridge: tensor shape %v exceeds the size cap", t.Shape)
		}
		shape[i] = int(d)
	}
	if 4*n != int64(len(t.Data)) {
		return nil, nil, fmt.Errorf("bridge: tensor shape %v needs %d bytes, frame has %d", t.Shape, 4*n, len(t.Data))
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return shape, out, nil
}
