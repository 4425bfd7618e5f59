package oip

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	inferencev2 "github.com/teeml/teeml/api/proto/teeml/inference/v2"
)

// FuzzDecodeJSON: any body and header length give a request whose tensors
// fill their shapes, or a one-line malformed-request error; never a panic.
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(specExample), -1)
	js := `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}`
	f.Add(append([]byte(js), 0, 0, 128, 63), len(js))
	f.Add([]byte(`{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":7}}]}`+"\x03\x00\x00\x00abc"), 91)
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[2,1],"datatype":"INT8","data":[[1],[-128]]}]}`), -1)
	f.Fuzz(func(t *testing.T, body []byte, hl int) {
		l := Limits{MaxInputs: 4, MaxElements: 1 << 12, MaxDims: 4}
		r, err := DecodeJSON(body, hl, l)
		if err != nil {
			if !IsBad(err) || strings.ContainsAny(err.Error(), "\n") {
				t.Fatalf("error %q (bad=%v)", err, IsBad(err))
			}
			return
		}
		checkRequest(t, r)
	})
}

// FuzzFromProto: any protobuf bytes give a checked request or an error.
func FuzzFromProto(f *testing.F) {
	b, _ := proto.Marshal(&inferencev2.ModelInferRequest{Inputs: []*inferencev2.ModelInferRequest_InferInputTensor{
		{Name: "x", Datatype: "FP32", Shape: []int64{2}, Contents: &inferencev2.InferTensorContents{Fp32Contents: []float32{1, 2}}}}})
	f.Add(b)
	b, _ = proto.Marshal(&inferencev2.ModelInferRequest{Inputs: []*inferencev2.ModelInferRequest_InferInputTensor{
		{Name: "x", Datatype: "INT64", Shape: []int64{1}}}, RawInputContents: [][]byte{{1, 0, 0, 0, 0, 0, 0, 0}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var pr inferencev2.ModelInferRequest
		if proto.Unmarshal(b, &pr) != nil {
			return
		}
		r, err := FromProto(&pr, Limits{MaxInputs: 4, MaxElements: 1 << 12, MaxDims: 4})
		if err != nil {
			if !IsBad(err) {
				t.Fatalf("error %q not a malformed-request error", err)
			}
			return
		}
		checkRequest(t, r)
	})
}

func checkRequest(t *testing.T, r *Request) {
	t.Helper()
	for _, in := range r.Inputs {
		n := int(in.Elements())
		if in.Datatype == "BYTES" {
			if len(in.Bytes) != n {
				t.Fatalf("input %s: %d BYTES elements for shape %v", in.Name, len(in.Bytes), in.Shape)
			}
		} else if len(in.Values) != n {
			t.Fatalf("input %s: %d elements for shape %v", in.Name, len(in.Values), in.Shape)
		}
	}
}

// FuzzNumbersFast: wherever the fast numeric decoder takes a data array,
// it is valid JSON and the token-by-token decoder takes it too, with the
// very same values.
func FuzzNumbersFast(f *testing.F) {
	for _, s := range []string{`[1,2,3]`, `[[1.5,-2e3],[0,4E-2]]`, ` [ [ 1 ] , [ 2 ] ] `, `[1,,2]`, `[01]`, `[1.]`,
		`[-0,1e400]`, `[[[[[1]]]]]`, `[1,"a"]`, `[true]`, `[1][2]`, `[1,2,3,4]`, `[-]`, `[1e+5]`, `[0.5e-3]`, `[300,1]`} {
		f.Add([]byte(s), 3, "FP32")
		f.Add([]byte(s), 2, "INT8")
	}
	l := Limits{MaxInputs: 4, MaxElements: 1 << 12, MaxDims: 4}
	f.Fuzz(func(t *testing.T, data []byte, n int, dt string) {
		if n < 0 || n > 64 || sizes[dt] == 0 || dt == "BYTES" || dt == "BOOL" {
			return
		}
		fast, ok := numbersFast(data, n, l.MaxDims, dt)
		if !ok {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("fast path took invalid JSON %q", data)
		}
		slow := Tensor{Name: "x", Datatype: dt, Shape: []int64{int64(n)}}
		if err := slow.setJSONTokens(data, n, l); err != nil {
			t.Fatalf("%q: fast path took it, the token decoder refuses: %v", data, err)
		}
		if !slices.Equal(fast, slow.Values) {
			t.Fatalf("%q: fast path %v, token decoder %v", data, fast, slow.Values)
		}
	})
}
