package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/tensor"
)

// fuzzSeeds are valid files of several dtypes and layouts plus broken ones.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	var buf bytes.Buffer
	_ = Write(&buf, specialWeights(), map[string]string{"k": "v"})
	seeds = append(seeds, bytes.Clone(buf.Bytes()))
	buf.Reset()
	_ = Write(&buf, tensor.Weights{{Name: "w", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}}}, nil)
	seeds = append(seeds, bytes.Clone(buf.Bytes()))
	buf.Reset()
	_ = Write(&buf, nil, nil)
	seeds = append(seeds, bytes.Clone(buf.Bytes()))

	seeds = append(seeds,
		buildFile(map[string]string{"format": "pt"},
			rawTensor{"f64", "F64", []int{2}, f64Bytes(1.0/3, math.Inf(-1))},
			rawTensor{"i64", "I64", []int{2}, i64Bytes(-5, 1<<40+1)},
			rawTensor{"f32", "F32", []int{1}, f32Bytes(1.5)},
			rawTensor{"i32", "I32", []int{1}, []byte{1, 2, 3, 4}},
			rawTensor{"f16", "F16", []int{2}, u16Bytes(0x3c00, 0x7e01)},
			rawTensor{"bf16", "BF16", []int{2, 1}, u16Bytes(0x3f80, 0xff81)},
			rawTensor{"i16", "I16", []int{1}, u16Bytes(0x8000)},
			rawTensor{"u16", "U16", []int{1}, u16Bytes(0xffff)},
			rawTensor{"i8", "I8", []int{2}, []byte{0x80, 0x7f}},
			rawTensor{"u8", "U8", []int{1}, []byte{9}},
			rawTensor{"bool", "BOOL", []int{1}, []byte{1}},
			rawTensor{"u32", "U32", []int{1}, []byte{1, 2, 3, 4}},
			rawTensor{"u64", "U64", []int{1}, i64Bytes(-1)},
		),
		buildFile(map[string]string{OrderKey: `["b","e","a"]`},
			rawTensor{"a", "F32", []int{1}, f32Bytes(1)},
			rawTensor{"e", "F16", []int{0, 4}, nil},
			rawTensor{"b", "BF16", []int{}, u16Bytes(0x4000)},
		),
		buildFile(nil, rawTensor{"x", "U8", []int{3}, []byte{1, 2, 3}}),
		// Broken ones.
		nil,
		[]byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' '},
		rawFile(`{}`, nil),
		rawFile(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, f32Bytes(1)),
		rawFile(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32Bytes(1, 2)),
		rawFile(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, f32Bytes(1, 2, 3)),
		rawFile(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32Bytes(1, 2)),
		rawFile(`{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, f32Bytes(1)),
		rawFile(`{"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, f32Bytes(1)),
		rawFile(`{"x":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4398046511104]}}`, f32Bytes(1)),
		rawFile(`{"x":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}`, f32Bytes(1)),
		rawFile(`{"__metadata__":{"k":1}}`, nil),
		rawFile(`{"__metadata__":null,"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, f32Bytes(1)),
		binary.LittleEndian.AppendUint64(nil, MaxHeaderSize),
		binary.LittleEndian.AppendUint64(nil, math.MaxUint64),
	)
	return seeds
}

// FuzzRead checks that Read never panics, that errors are one-line
// safetensors errors, that the known-size and streaming paths agree, and that
// whatever it accepts is valid and survives a Write/Read round trip.
func FuzzRead(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkRead(t, data) })
}

// checkRead is the property both fuzz targets check for one input.
func checkRead(t *testing.T, data []byte) {
	ws, meta, err := readBoth(t, data)
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "safetensors: ") || strings.ContainsAny(msg, "\n\r") {
			t.Fatalf("bad error message %q", msg)
		}
		return
	}
	if meta == nil {
		t.Fatal("nil metadata")
	}
	if _, ok := meta[OrderKey]; ok {
		t.Fatal("OrderKey in returned metadata")
	}
	if err := ws.Validate(); err != nil {
		t.Fatalf("accepted invalid weights: %v", err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, ws, meta); err != nil {
		t.Fatalf("cannot re-write accepted weights: %v", err)
	}
	ws2, meta2, err := readBoth(t, buf.Bytes())
	if err != nil {
		t.Fatalf("cannot re-read: %v", err)
	}
	if d := diffWeights(ws, ws2); d != "" {
		t.Fatalf("round trip differs: %s", d)
	}
	if !equalMeta(meta, meta2) {
		t.Fatalf("metadata round trip: %v vs %v", meta, meta2)
	}
}

// FuzzReadHeader is FuzzRead with the header length kept consistent, so the
// fuzzer spends its time on the JSON and the layout rules rather than on the
// length prefix.
func FuzzReadHeader(f *testing.F) {
	for _, s := range fuzzSeeds() {
		if len(s) < 8 {
			continue
		}
		n := binary.LittleEndian.Uint64(s)
		if n > uint64(len(s)-8) {
			continue
		}
		f.Add(string(s[8:8+n]), s[8+n:])
	}
	f.Add(`{"a":{"dtype":"F16","shape":[1,2],"data_offsets":[0,4]},"b":{"dtype":"I64","shape":[],"data_offsets":[4,12]}}`, make([]byte, 12))
	f.Fuzz(func(t *testing.T, header string, data []byte) { checkRead(t, rawFile(header, data)) })
}

// FuzzWriteRoundTrip writes arbitrary names, metadata and float bits and
// checks they read back identically, or that Write rejects them cleanly.
func FuzzWriteRoundTrip(f *testing.F) {
	f.Add("w", "b", "k", "v", f32Bytes(1, float32(math.NaN()), -0.0))
	f.Add(`we"ird <&> \u2028`, "ünï,cödé", "teeml.order", `["x"]`, []byte{0, 0, 0xc0, 0x7f, 1})
	f.Add("same", "same", "", "", []byte(nil))
	f.Add("__metadata__", "x", "a", "b", []byte{1, 2, 3, 4})
	f.Add("a\xff", "b", "\xfe", "v", []byte{})
	f.Fuzz(func(t *testing.T, name1, name2, key, value string, raw []byte) {
		data := make([]float32, len(raw)/4)
		for i := range data {
			data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		ws := tensor.Weights{
			{Name: name1, Shape: []int{len(data)}, Data: data},
			{Name: name2, Shape: []int{}, Data: []float32{float32(len(raw))}},
		}
		meta := map[string]string{key: value}
		var buf bytes.Buffer
		if err := Write(&buf, ws, meta); err != nil {
			if !strings.HasPrefix(err.Error(), "safetensors: ") || buf.Len() != 0 {
				t.Fatalf("bad rejection %q after %d bytes", err, buf.Len())
			}
			return
		}
		got, gotMeta, err := readBoth(t, buf.Bytes())
		if err != nil {
			t.Fatalf("cannot read own output: %v", err)
		}
		if d := diffWeights(ws, got); d != "" {
			t.Fatal(d)
		}
		if key == OrderKey {
			delete(meta, key)
		}
		if !equalMeta(meta, gotMeta) {
			t.Fatalf("metadata %q, want %q", gotMeta, meta)
		}
	})
}
