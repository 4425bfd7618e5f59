package oip

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"testing"

	inferencev2 "github.com/teeml/teeml/api/proto/teeml/inference/v2"
)

// The request example of the Open Inference Protocol's REST spec (its
// second input as printed there has shape [3] and one element, which the
// spec's own rule — data must fill the shape — refuses; here it has three).
const specExample = `{
  "id" : "42",
  "inputs" : [
    {"name" : "input0", "shape" : [ 2, 2 ], "datatype" : "UINT32", "data" : [ 1, 2, 3, 4 ]},
    {"name" : "input1", "shape" : [ 3 ], "datatype" : "BOOL", "data" : [ true, false, true ]}
  ],
  "outputs" : [ {"name" : "output0"} ]
}`

func TestDecodeSpecExample(t *testing.T) {
	r, err := DecodeJSON([]byte(specExample), -1, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "42" || len(r.Inputs) != 2 || r.Inputs[0].Values[3] != 4 || r.Inputs[1].Values[1] != 0 || r.Outputs[0] != "output0" {
		t.Fatalf("decoded %+v", r)
	}
	// As printed in the spec (shape [3], one element): refused, with why.
	printed := strings.Replace(specExample, "[ true, false, true ]", "[ true ]", 1)
	if _, err := DecodeJSON([]byte(printed), -1, DefaultLimits); err == nil || !strings.Contains(err.Error(), "1 data elements, shape [3] needs 3") {
		t.Fatalf("spec's printed example: %v", err)
	}
}

func TestNestedAndBinary(t *testing.T) {
	r, err := DecodeJSON([]byte(`{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6.5]]}]}`), -1, DefaultLimits)
	if err != nil || r.Inputs[0].Values[5] != 6.5 {
		t.Fatalf("nested: %v %v", r, err)
	}
	js := `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`
	bin := make([]byte, 16)
	for i, v := range []float32{1, -2, 3.5, 4} {
		binary.LittleEndian.PutUint32(bin[i*4:], math.Float32bits(v))
	}
	r, err = DecodeJSON(append([]byte(js), bin...), len(js), DefaultLimits)
	if err != nil || r.Inputs[0].Values[2] != 3.5 || !r.BinaryOutputs["y"] {
		t.Fatalf("binary: %+v %v", r, err)
	}
	resp := &Response{ModelName: "m", Outputs: []Tensor{{Name: "y", Datatype: "FP32", Shape: []int64{2}, Values: []float64{0.25, 0.75}}}}
	body, hl, err := EncodeJSON(resp, r)
	if err != nil || hl < 0 || len(body) != hl+8 {
		t.Fatalf("binary response: %d %d %v", len(body), hl, err)
	}
	var back map[string]any
	if err := json.Unmarshal(body[:hl], &back); err != nil {
		t.Fatal(err)
	}
	if math.Float32frombits(binary.LittleEndian.Uint32(body[hl+4:])) != 0.75 {
		t.Fatal("binary output value")
	}
	body, hl, _ = EncodeJSON(resp, &Request{})
	if hl != -1 || !strings.Contains(string(body), `"data":[0.25,0.75]`) {
		t.Fatalf("JSON response %s", body)
	}
}

func TestMalformedRequests(t *testing.T) {
	big := `{"inputs":[{"name":"x","shape":[100000,100000],"datatype":"FP32","data":[1]}]}`
	for _, tc := range []struct{ body, want string }{
		{`{`, "request JSON"},
		{`{"inputs":[]}`, "no inputs"},
		{`{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2,3]}]}`, "more data elements than shape [2]"},
		{`{"inputs":[{"name":"x","shape":[2],"datatype":"FLOAT","data":[1,2]}]}`, `unknown datatype "FLOAT"`},
		{`{"inputs":[{"name":"x","shape":[2],"datatype":"UINT8","data":[1,300]}]}`, "300 is not a UINT8"},
		{`{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,"a"]}]}`, "a string in a FP32 tensor"},
		{`{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}`, "negative dimension"},
		{big, "more than 16777216 elements"},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"extra":1}`, "unknown field"},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[{"a":1}]}]}`, "objects are not tensor elements"},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]},{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`, "given twice"},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}`, "no data"},
		{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]} {}`, "data after the request object"},
	} {
		_, err := DecodeJSON([]byte(tc.body), -1, DefaultLimits)
		if err == nil || !IsBad(err) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one-line %q", tc.body, err, tc.want)
		}
	}
	// Binary header errors.
	js := `{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}`
	for _, tc := range []struct {
		body []byte
		hl   int
		want string
	}{
		{[]byte(js), len(js) + 5, "longer than the body"},
		{append([]byte(js), 1, 2, 3), len(js), "binary_data_size 8 but only 3"},
		{append([]byte(js), make([]byte, 12)...), len(js), "4 binary bytes after the last"},
	} {
		if _, err := DecodeJSON(tc.body, tc.hl, DefaultLimits); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("binary: %v, want %q", err, tc.want)
		}
	}
}

func TestProtoRoundTrip(t *testing.T) {
	pr := &inferencev2.ModelInferRequest{Id: "7", Inputs: []*inferencev2.ModelInferRequest_InferInputTensor{
		{Name: "x", Datatype: "FP32", Shape: []int64{1, 2}, Contents: &inferencev2.InferTensorContents{Fp32Contents: []float32{1.5, 2}}}}}
	r, err := FromProto(pr, DefaultLimits)
	if err != nil || r.Inputs[0].Values[0] != 1.5 {
		t.Fatalf("%v %v", r, err)
	}
	pr.Inputs[0].Contents.Fp32Contents = []float32{1}
	if _, err := FromProto(pr, DefaultLimits); err == nil || !strings.Contains(err.Error(), "1 FP32 elements, shape [1 2] needs 2") {
		t.Fatalf("short contents: %v", err)
	}
	resp := ToProto(&Response{ModelName: "m", Outputs: []Tensor{{Name: "y", Datatype: "FP32", Shape: []int64{2}, Values: []float64{0.5, 1}}}})
	back, err := ValuesFromProto(resp, 0)
	if err != nil || back.Values[1] != 1 {
		t.Fatalf("%v %v", back, err)
	}
	if half(0x3c00) != 1 || half(0xc000) != -2 || half(0x0001) != float32(math.Ldexp(1, -24)) {
		t.Fatal("FP16 conversion")
	}
}
