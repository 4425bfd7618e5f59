package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"testing"

	"github.com/teeml/teeml/ml/tensor"
)

// rawTensor is a tensor given as raw little-endian bytes of some dtype.
type rawTensor struct {
	name  string
	dtype string
	shape []int
	data  []byte
}

// buildFile assembles a safetensors file the way other implementations do,
// independently of Write: tensors laid out in the given order, the header
// encoded by encoding/json (so keys are sorted), padded with spaces to a
// multiple of 8. meta may be nil (no __metadata__ entry).
func buildFile(meta map[string]string, ts ...rawTensor) []byte {
	h := map[string]any{}
	if meta != nil {
		h["__metadata__"] = meta
	}
	var data []byte
	for _, t := range ts {
		shape := t.shape
		if shape == nil {
			shape = []int{}
		}
		h[t.name] = map[string]any{
			"dtype":        t.dtype,
			"shape":        shape,
			"data_offsets": []int{len(data), len(data) + len(t.data)},
		}
		data = append(data, t.data...)
	}
	hb, err := json.Marshal(h)
	if err != nil {
		panic(err)
	}
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	return rawFile(string(hb), data)
}

// rawFile is the 8-byte length, header and data, with no checks or padding.
func rawFile(header string, data []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}

func f32Bytes(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func f64Bytes(vs ...float64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

func u16Bytes(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

func i64Bytes(vs ...int64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

// plainReader hides Len/Stat so Read takes its unknown-size path.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

// readBoth reads data through the known-size and the unknown-size paths and
// fails the test if they disagree.
func readBoth(t testing.TB, data []byte) (tensor.Weights, map[string]string, error) {
	t.Helper()
	ws1, m1, err1 := Read(bytes.NewReader(data))
	ws2, m2, err2 := Read(plainReader{bytes.NewReader(data)})
	if (err1 == nil) != (err2 == nil) {
		t.Fatalf("known-size read err = %v, streaming read err = %v", err1, err2)
	}
	if err1 != nil {
		return nil, nil, err1
	}
	if d := diffWeights(ws1, ws2); d != "" {
		t.Fatalf("known-size and streaming reads differ: %s", d)
	}
	if !equalMeta(m1, m2) {
		t.Fatalf("metadata differs: %v vs %v", m1, m2)
	}
	return ws1, m1, nil
}

// diffWeights describes the first difference between a and b (names, shapes,
// order and float bits), or returns "".
func diffWeights(a, b tensor.Weights) string {
	if len(a) != len(b) {
		return "different tensor counts"
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			return "tensor " + a[i].Name + " vs " + b[i].Name
		}
		if len(a[i].Shape) != len(b[i].Shape) {
			return "shape rank of " + a[i].Name
		}
		for j := range a[i].Shape {
			if a[i].Shape[j] != b[i].Shape[j] {
				return "shape of " + a[i].Name
			}
		}
		if len(a[i].Data) != len(b[i].Data) {
			return "data length of " + a[i].Name
		}
		for j := range a[i].Data {
			if math.Float32bits(a[i].Data[j]) != math.Float32bits(b[i].Data[j]) {
				return "data bits of " + a[i].Name
			}
		}
	}
	return ""
}

func equalMeta(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
