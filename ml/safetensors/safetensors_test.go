package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/teeml/teeml/ml/tensor"
)

// specialWeights covers the awkward values and shapes: NaN with payloads,
// -0, ±Inf, subnormals, extremes, a scalar, an empty tensor, and names that
// need JSON escaping, in an order that is neither sorted nor reverse sorted.
func specialWeights() tensor.Weights {
	nanPayload := math.Float32frombits(0x7fc00123)
	negNaN := math.Float32frombits(0xffa00001) // signalling-pattern NaN, sign set
	return tensor.Weights{
		{Name: "layer2.weight", Shape: []int{2, 3}, Data: []float32{1, -2.5, 3.25, float32(math.Inf(1)), float32(math.Inf(-1)), nanPayload}},
		{Name: "layer1.bias", Shape: []int{4}, Data: []float32{float32(math.Copysign(0, -1)), 0, negNaN, math.SmallestNonzeroFloat32}},
		{Name: "scalar", Shape: []int{}, Data: []float32{math.MaxFloat32}},
		{Name: "empty", Shape: []int{0, 3}, Data: []float32{}},
		{Name: `we"ird, name <&> ünï\cödé`, Shape: []int{1, 1, 2}, Data: []float32{-math.MaxFloat32, 1e-40}},
		{Name: "a", Shape: []int{3}, Data: []float32{0.1, 0.2, 0.3}},
	}
}

func TestRoundTrip(t *testing.T) {
	ws := specialWeights()
	meta := map[string]string{"format": "pt", "round": "7", "": "empty key", "json": `{"a":[1,2]}`, "ünï": "cödé <&>"}
	var buf bytes.Buffer
	if err := Write(&buf, ws, meta); err != nil {
		t.Fatal(err)
	}
	got, gotMeta, err := readBoth(t, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if d := diffWeights(ws, got); d != "" {
		t.Fatalf("round trip differs: %s", d)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	if !equalMeta(meta, gotMeta) {
		t.Fatalf("metadata %v, want %v", gotMeta, meta)
	}
	if _, ok := gotMeta[OrderKey]; ok {
		t.Fatal("OrderKey leaked into returned metadata")
	}
	// Writing again gives the same bytes: the format is deterministic.
	var buf2 bytes.Buffer
	if err := Write(&buf2, got, gotMeta); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
		t.Fatal("re-encoding is not byte-identical")
	}
	// The header is padded to 8 bytes.
	if n := binary.LittleEndian.Uint64(buf.Bytes()); n%8 != 0 {
		t.Fatalf("header length %d is not a multiple of 8", n)
	}
}

func TestRoundTripEmptyAndNil(t *testing.T) {
	for _, ws := range []tensor.Weights{nil, {}} {
		var buf bytes.Buffer
		if err := Write(&buf, ws, nil); err != nil {
			t.Fatal(err)
		}
		got, meta, err := readBoth(t, buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 || meta == nil || len(meta) != 0 {
			t.Fatalf("got %v, %v", got, meta)
		}
	}
}

func TestWriteFileReadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	ws := specialWeights()
	if err := WriteFile(path, ws, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	got, meta, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffWeights(ws, got); d != "" {
		t.Fatal(d)
	}
	if !equalMeta(meta, map[string]string{"k": "v"}) {
		t.Fatalf("meta %v", meta)
	}

	// Invalid weights: error, the existing file untouched, no temp files.
	before, _ := os.ReadFile(path)
	bad := tensor.Weights{{Name: "x", Shape: []int{2}, Data: []float32{1}}}
	if err := WriteFile(path, bad, nil); err == nil {
		t.Fatal("expected error for invalid weights")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("failed WriteFile changed the file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries", len(entries))
	}

	// ReadFile of a file that is truncated fails.
	if err := os.WriteFile(path, before[:len(before)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadFile(path); err == nil || !strings.HasPrefix(err.Error(), "safetensors: ") {
		t.Fatalf("truncated file: err = %v", err)
	}
	if _, _, err := ReadFile(filepath.Join(dir, "missing")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
}

// TestReadFromFileReader exercises Read on an *os.File positioned after a
// prefix, so the remaining size comes from Stat minus the offset.
func TestReadFromFileReader(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString("PREFIX")
	if err := Write(&buf, specialWeights(), nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(6, 0); err != nil {
		t.Fatal(err)
	}
	got, _, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffWeights(specialWeights(), got); d != "" {
		t.Fatal(d)
	}
}

// TestWriteFixedBytes checks the writer against a file spelled out by hand.
func TestWriteFixedBytes(t *testing.T) {
	ws := tensor.Weights{
		{Name: "b", Shape: []int{2}, Data: []float32{1, -2}},
		{Name: "a", Shape: []int{}, Data: []float32{0.5}},
	}
	header := `{"__metadata__":{"k":"v","teeml.order":"[\"b\",\"a\"]"},` +
		`"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},` +
		`"a":{"dtype":"F32","shape":[],"data_offsets":[8,12]}}` +
		"      " // 162 bytes of JSON + 6 spaces = 168 = 0xa8
	want := []byte{0xa8, 0, 0, 0, 0, 0, 0, 0}
	want = append(want, header...)
	want = append(want,
		0x00, 0x00, 0x80, 0x3f, // 1.0
		0x00, 0x00, 0x00, 0xc0, // -2.0
		0x00, 0x00, 0x00, 0x3f, // 0.5
	)
	var buf bytes.Buffer
	if err := Write(&buf, ws, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("wrote\n%q\nwant\n%q", buf.Bytes(), want)
	}
	got, meta, err := readBoth(t, want)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffWeights(ws, got); d != "" {
		t.Fatal(d)
	}
	if !equalMeta(meta, map[string]string{"k": "v"}) {
		t.Fatalf("meta %v", meta)
	}
}

// TestWriterOutputIsPlainSafetensors decodes the header with encoding/json as
// any other reader would and checks what it sees.
func TestWriterOutputIsPlainSafetensors(t *testing.T) {
	ws := specialWeights()
	var buf bytes.Buffer
	if err := Write(&buf, ws, map[string]string{"teeml.order": "caller value is replaced"}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	n := binary.LittleEndian.Uint64(b)
	var h map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &h); err != nil {
		t.Fatal(err)
	}
	var meta map[string]string
	if err := json.Unmarshal(h["__metadata__"], &meta); err != nil {
		t.Fatal(err)
	}
	var order []string
	if err := json.Unmarshal([]byte(meta[OrderKey]), &order); err != nil {
		t.Fatal(err)
	}
	if len(order) != len(ws) || len(h) != len(ws)+1 {
		t.Fatalf("order %v, header has %d keys", order, len(h))
	}
	var pos int
	for i, w := range ws {
		if order[i] != w.Name {
			t.Fatalf("order[%d] = %q, want %q", i, order[i], w.Name)
		}
		var info struct {
			Dtype       string `json:"dtype"`
			Shape       []int  `json:"shape"`
			DataOffsets []int  `json:"data_offsets"`
		}
		if err := json.Unmarshal(h[w.Name], &info); err != nil {
			t.Fatal(err)
		}
		if info.Dtype != "F32" || info.Shape == nil || len(info.DataOffsets) != 2 || info.DataOffsets[0] != pos {
			t.Fatalf("tensor %q: %+v", w.Name, info)
		}
		pos = info.DataOffsets[1]
		if pos-info.DataOffsets[0] != 4*len(w.Data) {
			t.Fatalf("tensor %q: span %v", w.Name, info.DataOffsets)
		}
	}
	if uint64(len(b)) != 8+n+uint64(pos) {
		t.Fatalf("file is %d bytes, header+data = %d", len(b), 8+n+uint64(pos))
	}
}

func TestWriteErrors(t *testing.T) {
	cases := []struct {
		name string
		ws   tensor.Weights
		meta map[string]string
		want string
	}{
		{"shape mismatch", tensor.Weights{{Name: "x", Shape: []int{2, 2}, Data: []float32{1}}}, nil, `tensor "x"`},
		{"negative dim", tensor.Weights{{Name: "x", Shape: []int{-1}, Data: nil}}, nil, `tensor "x"`},
		{"duplicate", tensor.Weights{{Name: "x", Shape: []int{}, Data: []float32{1}}, {Name: "x", Shape: []int{}, Data: []float32{1}}}, nil, "duplicate"},
		{"empty name", tensor.Weights{{Name: "", Shape: []int{}, Data: []float32{1}}}, nil, "empty name"},
		{"reserved name", tensor.Weights{{Name: "__metadata__", Shape: []int{}, Data: []float32{1}}}, nil, "reserved"},
		{"shape overflow", tensor.Weights{{Name: "x", Shape: []int{1 << 32, 1 << 32}, Data: nil}}, nil, `tensor "x": shape [4294967296 4294967296]: element count overflows`},
		{"bad utf8 name", tensor.Weights{{Name: "a\xff", Shape: []int{}, Data: []float32{1}}}, nil, "UTF-8"},
		{"bad utf8 meta key", nil, map[string]string{"\xfe": "v"}, "UTF-8"},
		{"bad utf8 meta value", nil, map[string]string{"k": "\xfe"}, "UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, c.ws, c.meta)
			if err == nil || !strings.HasPrefix(err.Error(), "safetensors: ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want safetensors error containing %q", err, c.want)
			}
			if buf.Len() != 0 {
				t.Fatal("invalid weights partially written")
			}
		})
	}
}

type failWriter struct{ after int }

var errDisk = errors.New("disk on fire")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.after {
		return 0, errDisk
	}
	f.after -= len(p)
	return len(p), nil
}

func TestWriteWriterError(t *testing.T) {
	big := tensor.Weights{{Name: "w", Shape: []int{100_000}, Data: make([]float32, 100_000)}}
	for _, after := range []int{0, 4, 8, 200, 100_000} {
		err := Write(&failWriter{after: after}, big, nil)
		if !errors.Is(err, errDisk) {
			t.Fatalf("after %d bytes: err = %v", after, err)
		}
	}
}

// TestReadOtherDtypes reads a reference-style file (sorted keys, no
// teeml.order) holding every supported dtype and checks the conversions.
func TestReadOtherDtypes(t *testing.T) {
	nan64 := math.NaN()
	file := buildFile(map[string]string{"format": "pt"},
		rawTensor{"f64", "F64", []int{2, 4}, f64Bytes(0, math.Copysign(0, -1), 1.0/3, 1e300, -1e300, nan64, math.Inf(-1), 1e-50)},
		rawTensor{"i64", "I64", []int{4}, i64Bytes(-5, 1<<40+1, math.MinInt64, math.MaxInt64)},
		rawTensor{"u64", "U64", []int{1}, binary.LittleEndian.AppendUint64(nil, math.MaxUint64)},
		rawTensor{"f32", "F32", []int{3}, f32Bytes(1.5, -0.25, float32(math.Inf(1)))},
		rawTensor{"i32", "I32", []int{2}, binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(0xffffffff)), 1<<31-1)},
		rawTensor{"u32", "U32", []int{1}, binary.LittleEndian.AppendUint32(nil, 0xffffffff)},
		rawTensor{"f16", "F16", []int{6}, u16Bytes(0x3c00, 0xc000, 0x0001, 0x7bff, 0xfc00, 0x8000)},
		rawTensor{"bf16", "BF16", []int{4}, u16Bytes(0x3f80, 0xc040, 0x7f80, 0x0001)},
		rawTensor{"i16", "I16", []int{2}, u16Bytes(0xffff, 0x7fff)},
		rawTensor{"u16", "U16", []int{1}, u16Bytes(0xffff)},
		rawTensor{"i8", "I8", []int{3}, []byte{0x80, 0xff, 0x7f}},
		rawTensor{"u8", "U8", []int{3}, []byte{0, 200, 255}},
		rawTensor{"bool", "BOOL", []int{3}, []byte{0, 1, 7}},
	)
	ws, meta, err := readBoth(t, file)
	if err != nil {
		t.Fatal(err)
	}
	if !equalMeta(meta, map[string]string{"format": "pt"}) {
		t.Fatalf("meta %v", meta)
	}
	// No teeml.order: data-offset order, which here is the build order.
	wantOrder := []string{"f64", "i64", "u64", "f32", "i32", "u32", "f16", "bf16", "i16", "u16", "i8", "u8", "bool"}
	for i, n := range wantOrder {
		if ws[i].Name != n {
			t.Fatalf("tensor %d is %q, want %q", i, ws[i].Name, n)
		}
	}
	negZero := float32(math.Copysign(0, -1))
	want := map[string][]float32{
		"f64":  {0, negZero, float32(1.0 / 3), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), float32(math.Inf(-1)), 0},
		"i64":  {-5, 1 << 40, -(1 << 63), 1 << 63},
		"u64":  {1 << 64},
		"f32":  {1.5, -0.25, float32(math.Inf(1))},
		"i32":  {-1, 1 << 31},
		"u32":  {1 << 32},
		"f16":  {1, -2, 1.0 / (1 << 24), 65504, float32(math.Inf(-1)), negZero},
		"bf16": {1, -3, float32(math.Inf(1)), math.Float32frombits(1 << 16)},
		"i16":  {-1, 32767},
		"u16":  {65535},
		"i8":   {-128, -1, 127},
		"u8":   {0, 200, 255},
		"bool": {0, 1, 1},
	}
	for _, w := range ws {
		exp := want[w.Name]
		if len(exp) != len(w.Data) {
			t.Fatalf("%s: %d values, want %d", w.Name, len(w.Data), len(exp))
		}
		for i := range exp {
			g, e := w.Data[i], exp[i]
			same := math.Float32bits(g) == math.Float32bits(e) || (g != g && e != e)
			if !same {
				t.Errorf("%s[%d] = %v (%#x), want %v (%#x)", w.Name, i, g, math.Float32bits(g), e, math.Float32bits(e))
			}
		}
	}
	if ws[0].Shape[0] != 2 || ws[0].Shape[1] != 4 {
		t.Fatalf("f64 shape %v", ws[0].Shape)
	}
}

// TestFloat16Exhaustive checks every binary16 bit pattern against the
// defining formula evaluated in float64.
func TestFloat16Exhaustive(t *testing.T) {
	for h := range 1 << 16 {
		sign := 1.0
		if h&0x8000 != 0 {
			sign = -1
		}
		exp := (h >> 10) & 0x1f
		mant := h & 0x3ff
		var want float64
		switch {
		case exp == 0x1f && mant == 0:
			want = math.Inf(int(sign))
		case exp == 0x1f:
			want = math.NaN()
		case exp == 0:
			want = sign * math.Ldexp(float64(mant), -24)
		default:
			want = sign * math.Ldexp(1+float64(mant)/1024, exp-15)
		}
		got := float16ToFloat32(uint16(h))
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("%#04x: got %v, want NaN", h, got)
			}
			// The payload is kept: the top mantissa bits match.
			if math.Float32bits(got)>>13&0x3ff != uint32(mant) || (math.Float32bits(got)>>31 == 1) != (sign < 0) {
				t.Fatalf("%#04x: NaN payload/sign lost: %#x", h, math.Float32bits(got))
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("%#04x: got %v, want %v", h, got, want)
		}
	}
}

func TestReadOrder(t *testing.T) {
	a := rawTensor{"a", "F32", []int{1}, f32Bytes(1)}
	b := rawTensor{"b", "F32", []int{1}, f32Bytes(2)}
	c := rawTensor{"c", "F32", []int{1}, f32Bytes(3)}
	e1 := rawTensor{"e1", "F32", []int{0}, nil}
	e0 := rawTensor{"e0", "F32", []int{2, 0}, nil}
	cases := []struct {
		name  string
		order string // "" for no teeml.order
		ts    []rawTensor
		want  string
	}{
		{"offset order", "", []rawTensor{c, a, b}, "c,a,b"},
		{"teeml.order wins", `["b","c","a"]`, []rawTensor{c, a, b}, "b,c,a"},
		{"empty tensors tie by name", "", []rawTensor{c, e1, e0, a}, "c,e0,e1,a"},
		{"teeml.order places empty tensors", `["e1","a","c","e0"]`, []rawTensor{c, e1, e0, a}, "e1,a,c,e0"},
		{"order missing a name", `["b","c"]`, []rawTensor{c, a, b}, "c,a,b"},
		{"order with unknown name", `["b","c","z"]`, []rawTensor{c, a, b}, "c,a,b"},
		{"order repeats a name", `["b","b","a"]`, []rawTensor{c, a, b}, "c,a,b"},
		{"order too long", `["b","c","a","a"]`, []rawTensor{c, a, b}, "c,a,b"},
		{"order not JSON", `b,c,a`, []rawTensor{c, a, b}, "c,a,b"},
		{"order not a list of strings", `[1,2,3]`, []rawTensor{c, a, b}, "c,a,b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var meta map[string]string
			if tc.order != "" {
				meta = map[string]string{OrderKey: tc.order, "other": "x"}
			}
			ws, gotMeta, err := readBoth(t, buildFile(meta, tc.ts...))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, w := range ws {
				names = append(names, w.Name)
			}
			if got := strings.Join(names, ","); got != tc.want {
				t.Fatalf("order %s, want %s", got, tc.want)
			}
			if _, ok := gotMeta[OrderKey]; ok {
				t.Fatal("OrderKey returned in metadata")
			}
			if tc.order != "" && gotMeta["other"] != "x" {
				t.Fatalf("meta %v", gotMeta)
			}
		})
	}
}

// TestReadRejects checks each malformed input gives a one-line safetensors
// error mentioning what is wrong, through both read paths.
func TestReadRejects(t *testing.T) {
	ok := `"dtype":"F32","shape":[2],"data_offsets":[0,8]`
	data8 := f32Bytes(1, 2)
	hdr := func(h string) []byte { return rawFile(h, data8) }
	lenOnly := func(n uint64, rest string) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
	}
	cases := []struct {
		name  string
		input []byte
		want  string
	}{
		{"empty input", nil, "too short"},
		{"short length", []byte{1, 0, 0}, "too short"},
		{"header over limit", lenOnly(MaxHeaderSize+1, "{}"), "over the 100000000-byte limit"},
		{"header length max uint64", lenOnly(math.MaxUint64, "{}"), "limit"},
		{"header longer than input", lenOnly(1000, `{"a":{}}`), "larger than the remaining input"},
		{"header just over input", lenOnly(9, `{"a":{}}`), "larger than the remaining input"},
		{"invalid JSON", hdr(`{"x":{` + ok + `}`), "invalid header JSON: unexpected end of JSON"},
		{"invalid JSON trailing comma", hdr(`{"x":{` + ok + `},}`), "invalid header JSON"},
		{"not an object", hdr(`[1,2]`), "does not start with '{'"},
		{"leading garbage", hdr(` {"x":{` + ok + `}}`), "does not start with '{'"},
		{"empty header", rawFile("", nil), "does not start with '{'"},
		{"trailing garbage after JSON", hdr(`{"x":{` + ok + `}} x`), "invalid header JSON"},
		{"two objects", hdr(`{"x":{` + ok + `}}{}`), "invalid header JSON"},
		{"invalid UTF-8", hdr("{\"x\xff\":{" + ok + "}}"), "UTF-8"},
		{"duplicate names", rawFile(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data8), `tensor "x": duplicate name`},
		{"duplicate metadata key", hdr(`{"__metadata__":{"k":"a","k":"b"},"x":{` + ok + `}}`), `duplicate key "k"`},
		{"duplicate field", hdr(`{"x":{"dtype":"F32",` + ok + `}}`), `tensor "x": duplicate key "dtype"`},
		{"metadata not object", hdr(`{"__metadata__":[1],"x":{` + ok + `}}`), "__metadata__"},
		{"metadata value not string", hdr(`{"__metadata__":{"k":1},"x":{` + ok + `}}`), `__metadata__ "k": value is not a string`},
		{"tensor not object", hdr(`{"x":[1]}`), `tensor "x"`},
		{"empty name", hdr(`{"":{` + ok + `}}`), `tensor "": empty tensor name`},
		{"missing dtype", hdr(`{"x":{"shape":[2],"data_offsets":[0,8]}}`), `tensor "x": missing dtype`},
		{"missing shape", hdr(`{"x":{"dtype":"F32","data_offsets":[0,8]}}`), `tensor "x": missing shape`},
		{"missing offsets", hdr(`{"x":{"dtype":"F32","shape":[2]}}`), `tensor "x": missing data_offsets`},
		{"multi-line raw value", hdr("{\"x\":{\"dtype\":\"F32\",\"shape\":{\n\"a\":\r\t2},\"data_offsets\":[0,8]}}"), `tensor "x": shape: { "a":  2} is not a list`},
		{"null shape", hdr(`{"x":{"dtype":"F32","shape":null,"data_offsets":[0,8]}}`), `tensor "x": shape`},
		{"unknown dtype", hdr(`{"x":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}}`), `tensor "x": unsupported dtype "F128"`},
		{"fp8 dtype", hdr(`{"x":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}`), `unsupported dtype`},
		{"lower-case dtype", hdr(`{"x":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}`), `unsupported dtype`},
		{"dtype not string", hdr(`{"x":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`), `tensor "x": dtype 4 is not a string`},
		{"negative dim", hdr(`{"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`), `tensor "x": negative dimension -2`},
		{"negative dims cancel", hdr(`{"x":{"dtype":"F32","shape":[-1,-2],"data_offsets":[0,8]}}`), `negative dimension`},
		{"fractional dim", hdr(`{"x":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`), `tensor "x": shape: 2.0 is not an integer`},
		{"exponent dim", hdr(`{"x":{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}}`), `not an integer`},
		{"huge dim", hdr(`{"x":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}}`), `not an integer in the int64 range`},
		{"string dim", hdr(`{"x":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}`), `not an integer`},
		{"shape not list", hdr(`{"x":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}`), `tensor "x": shape: 2 is not a list`},
		{"shape overflow", hdr(`{"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`), `tensor "x": shape [4294967296 4294967296]: element count overflows`},
		{"shape overflow before zero", hdr(`{"x":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]},"y":{` + ok + `}}`), `overflows`},
		{"byte size overflow", hdr(`{"x":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}}`), `byte size overflows`},
		{"byte length mismatch", hdr(`{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`), `tensor "x": shape [3] of F32 needs 12 bytes, data_offsets [0, 8] span 8`},
		{"dtype size mismatch", hdr(`{"x":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}`), `needs 16 bytes`},
		{"offsets length 3", hdr(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`), `tensor "x": data_offsets has 3 entries`},
		{"offsets length 1", hdr(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[8]}}`), `data_offsets has 1 entries`},
		{"offsets reversed", hdr(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`), `tensor "x": data_offsets [8, 0] out of range`},
		{"offsets negative", hdr(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}`), `out of range`},
		{"offsets huge", hdr(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[9223372036854775800,9223372036854775808]}}`), `not an integer in the int64 range`},
		{"offsets beyond data", hdr(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`), `the header needs 12`},
		{"hole at start", hdr(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`), `tensor "x": data_offsets [4, 8] leave a hole`},
		{"hole in middle", rawFile(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, f32Bytes(1, 2, 3)), `tensor "y": data_offsets [8, 12] leave a hole after tensor "x"`},
		{"overlap", rawFile(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, f32Bytes(1, 2, 3)), `tensor "y": data_offsets [4, 12] overlap tensor "x" [0, 8]`},
		{"same range twice", rawFile(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, f32Bytes(1, 2)), `overlap tensor "x"`},
		{"trailing data", rawFile(`{"x":{`+ok+`}}`, f32Bytes(1, 2, 3)), `4 bytes after the 8-byte data buffer`},
		{"data truncated", rawFile(`{"x":{`+ok+`}}`, f32Bytes(1)), `data buffer is 4 bytes, the header needs 8`},
		{"nested too deep", hdr(`{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`), "invalid header JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{"known-size", "streaming"} {
				var err error
				if path == "known-size" {
					_, _, err = Read(bytes.NewReader(c.input))
				} else {
					_, _, err = Read(plainReader{bytes.NewReader(c.input)})
				}
				if err == nil {
					t.Fatalf("%s: no error", path)
				}
				msg := err.Error()
				if os.Getenv("SHOWERR") != "" && path == "known-size" {
					t.Logf("%s", msg)
				}
				if !strings.HasPrefix(msg, "safetensors: ") || strings.Contains(msg, "\n") {
					t.Fatalf("%s: error not a one-line safetensors error: %q", path, msg)
				}
				// The streaming path cannot know the input size in advance,
				// so size-related messages differ; the rest must match.
				if path == "known-size" || !sizeDependent(c.name) {
					if !strings.Contains(msg, c.want) {
						t.Fatalf("%s: error %q does not contain %q", path, msg, c.want)
					}
				}
			}
		})
	}
}

func sizeDependent(name string) bool {
	switch name {
	case "trailing data", "data truncated", "offsets beyond data":
		return true
	}
	return false
}

func TestReadStreamingMessages(t *testing.T) {
	ok := `{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	_, _, err := Read(plainReader{bytes.NewReader(rawFile(ok, f32Bytes(1, 2, 3)))})
	if err == nil || !strings.Contains(err.Error(), "bytes after the 8-byte data buffer") {
		t.Fatalf("trailing: %v", err)
	}
	_, _, err = Read(plainReader{bytes.NewReader(rawFile(ok, f32Bytes(1)))})
	if err == nil || !strings.Contains(err.Error(), `tensor "x": data truncated`) {
		t.Fatalf("truncated: %v", err)
	}
}

// TestReadHugeClaimsDoNotAllocate feeds headers that claim enormous tensors
// with tiny inputs; reading must fail without trying to allocate.
func TestReadHugeClaimsDoNotAllocate(t *testing.T) {
	n := int64(1) << 40 // 4 TiB of F32
	h := `{"x":{"dtype":"F32","shape":[` + strconv.FormatInt(n, 10) + `],"data_offsets":[0,` + strconv.FormatInt(4*n, 10) + `]}}`
	in := rawFile(h, f32Bytes(1, 2))
	// A huge make would panic or run out of memory; this also guards
	// against large-but-possible allocations.
	var ms1, ms2 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	for range 5 {
		if _, _, err := Read(bytes.NewReader(in)); err == nil {
			t.Fatal("expected error")
		}
		if _, _, err := Read(plainReader{bytes.NewReader(in)}); err == nil {
			t.Fatal("expected error")
		}
	}
	runtime.ReadMemStats(&ms2)
	if d := ms2.TotalAlloc - ms1.TotalAlloc; d > 10<<20 {
		t.Fatalf("10 reads of a tiny file allocated %d bytes", d)
	}
}

// TestReadReaderErrors: I/O errors and odd readers are handled.
func TestReadReaderErrors(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, specialWeights(), nil); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	ioErr := errors.New("device error")
	for cut := 0; cut < len(b); cut += 7 {
		r := io.MultiReader(bytes.NewReader(b[:cut]), iotest.ErrReader(ioErr))
		_, _, err := Read(r)
		if err == nil {
			t.Fatalf("cut %d: no error", cut)
		}
		if !strings.HasPrefix(err.Error(), "safetensors: ") {
			t.Fatalf("cut %d: %v", cut, err)
		}
	}
	for _, r := range []io.Reader{
		iotest.OneByteReader(bytes.NewReader(b)),
		iotest.HalfReader(bytes.NewReader(b)),
		iotest.DataErrReader(bytes.NewReader(b)),
	} {
		got, _, err := Read(r)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffWeights(specialWeights(), got); d != "" {
			t.Fatal(d)
		}
	}
}

// TestReadSizedReaders covers the reader types whose remaining size is known
// up front, including trailing bytes they hold.
func TestReadSizedReaders(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, specialWeights(), nil); err != nil {
		t.Fatal(err)
	}
	file := buf.Bytes()
	for name, r := range map[string]io.Reader{
		"bytes.Buffer":   bytes.NewBuffer(bytes.Clone(file)),
		"strings.Reader": strings.NewReader(string(file)),
	} {
		got, _, err := Read(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := diffWeights(specialWeights(), got); d != "" {
			t.Fatalf("%s: %s", name, d)
		}
	}
	for name, r := range map[string]io.Reader{
		"bytes.Buffer":   bytes.NewBuffer(append(bytes.Clone(file), 0)),
		"strings.Reader": strings.NewReader(string(file) + "x"),
	} {
		if _, _, err := Read(r); err == nil || !strings.Contains(err.Error(), "1 bytes after") {
			t.Fatalf("%s with a trailing byte: err = %v", name, err)
		}
	}
}
