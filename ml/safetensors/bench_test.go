package safetensors

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/teeml/teeml/ml/tensor"
)

// benchWeights is about 50 MB of float32 weights in a few dozen tensors of
// mixed sizes, like a small convolutional or MLP model.
func benchWeights() tensor.Weights {
	var ws tensor.Weights
	x := uint32(1)
	add := func(name string, shape ...int) {
		t := tensor.Tensor{Name: name, Shape: shape, Data: make([]float32, tensor.NumElements(shape))}
		for i := range t.Data {
			x = x*1664525 + 1013904223
			t.Data[i] = float32(int32(x)) / (1 << 31)
		}
		ws = append(ws, t)
	}
	for l := range 12 {
		add(fmt.Sprintf("layer%d.weight", l), 1024, 1024)
		add(fmt.Sprintf("layer%d.bias", l), 1024)
	}
	add("head.weight", 512, 64)
	return ws // 12·(1024·1024+1024)·4 + 512·64·4 ≈ 50.5 MB
}

func benchBytes(ws tensor.Weights) int64 { return int64(4 * ws.NumParams()) }

func BenchmarkWrite(b *testing.B) {
	ws := benchWeights()
	var buf bytes.Buffer
	buf.Grow(int(benchBytes(ws)) + 1<<16)
	b.SetBytes(benchBytes(ws))
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := Write(&buf, ws, map[string]string{"round": "1"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead(b *testing.B) {
	ws := benchWeights()
	var buf bytes.Buffer
	if err := Write(&buf, ws, nil); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.Run("known-size", func(b *testing.B) {
		b.SetBytes(benchBytes(ws))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := Read(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("streaming", func(b *testing.B) {
		b.SetBytes(benchBytes(ws))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := Read(plainReader{bytes.NewReader(data)}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFile includes the file system: atomic write with fsync, and read.
func BenchmarkFile(b *testing.B) {
	ws := benchWeights()
	path := filepath.Join(b.TempDir(), "w.safetensors")
	b.Run("WriteFile", func(b *testing.B) {
		b.SetBytes(benchBytes(ws))
		for b.Loop() {
			if err := WriteFile(path, ws, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadFile", func(b *testing.B) {
		b.SetBytes(benchBytes(ws))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ReadFile(path); err != nil {
				b.Fatal(err)
			}
		}
	})
}
