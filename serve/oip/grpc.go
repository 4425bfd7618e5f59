package oip

import (
	inferencev2 "github.com/teeml/teeml/api/proto/teeml/inference/v2"
)

func params(m map[string]*inferencev2.InferParameter) map[string]any {
	if len(m) == 0 {
		return nil
	}
	out := map[string]any{}
	for k, p := range m {
		switch v := p.GetParameterChoice().(type) {
		case *inferencev2.InferParameter_BoolParam:
			out[k] = v.BoolParam
		case *inferencev2.InferParameter_Int64Param:
			out[k] = v.Int64Param
		case *inferencev2.InferParameter_StringParam:
			out[k] = v.StringParam
		}
	}
	return out
}

// FromProto decodes a gRPC inference request.
func FromProto(pr *inferencev2.ModelInferRequest, l Limits) (*Request, error) {
	if len(pr.GetInputs()) == 0 {
		return nil, bad("request has no inputs")
	}
	if len(pr.GetInputs()) > l.MaxInputs {
		return nil, bad("request has %d inputs, at most %d", len(pr.GetInputs()), l.MaxInputs)
	}
	raw := pr.GetRawInputContents()
	if len(raw) > 0 && len(raw) != len(pr.GetInputs()) {
		return nil, bad("%d raw_input_contents for %d inputs", len(raw), len(pr.GetInputs()))
	}
	r := &Request{ID: pr.GetId(), Parameters: params(pr.GetParameters()), BinaryOutputs: map[string]bool{}}
	seen := map[string]bool{}
	for i, in := range pr.GetInputs() {
		t := Tensor{Name: in.GetName(), Datatype: in.GetDatatype(), Shape: in.GetShape(), Parameters: params(in.GetParameters())}
		n, err := t.check(l, "input")
		if err != nil {
			return nil, err
		}
		if seen[t.Name] {
			return nil, bad("input %s given twice", t.Name)
		}
		seen[t.Name] = true
		if len(raw) > 0 {
			if in.GetContents() != nil {
				return nil, bad("input %s: both contents and raw_input_contents given", t.Name)
			}
			if err := t.setRaw(raw[i], n); err != nil {
				return nil, err
			}
		} else if err := t.setContents(in.GetContents(), n); err != nil {
			return nil, err
		}
		r.Inputs = append(r.Inputs, t)
	}
	for _, o := range pr.GetOutputs() {
		if o.GetName() == "" {
			return nil, bad("requested output without a name")
		}
		r.Outputs = append(r.Outputs, o.GetName())
	}
	return r, nil
}

func (t *Tensor) setContents(c *inferencev2.InferTensorContents, n int) error {
	var got int
	add := func(v float64) error {
		if !inRange(t.Datatype, v) {
			return bad("input %s: element %d: %v is not a %s", t.Name, len(t.Values), v, t.Datatype)
		}
		t.Values = append(t.Values, v)
		return nil
	}
	switch t.Datatype {
	case "BOOL":
		got = len(c.GetBoolContents())
		for _, v := range c.GetBoolContents() {
			t.Values = append(t.Values, b2f(v))
		}
	case "INT8", "INT16", "INT32":
		got = len(c.GetIntContents())
		for _, v := range c.GetIntContents() {
			if err := add(float64(v)); err != nil {
				return err
			}
		}
	case "INT64":
		got = len(c.GetInt64Contents())
		for _, v := range c.GetInt64Contents() {
			t.Values = append(t.Values, float64(v))
		}
	case "UINT8", "UINT16", "UINT32":
		got = len(c.GetUintContents())
		for _, v := range c.GetUintContents() {
			if err := add(float64(v)); err != nil {
				return err
			}
		}
	case "UINT64":
		got = len(c.GetUint64Contents())
		for _, v := range c.GetUint64Contents() {
			t.Values = append(t.Values, float64(v))
		}
	case "FP32":
		got = len(c.GetFp32Contents())
		for _, v := range c.GetFp32Contents() {
			t.Values = append(t.Values, float64(v))
		}
	case "FP64":
		got = len(c.GetFp64Contents())
		t.Values = append(t.Values, c.GetFp64Contents()...)
	case "BYTES":
		got = len(c.GetBytesContents())
		t.Bytes = c.GetBytesContents()
	case "FP16":
		return bad("input %s: FP16 needs raw_input_contents", t.Name)
	}
	if got != n {
		return bad("input %s: %d %s elements, shape %v needs %d", t.Name, got, t.Datatype, t.Shape, n)
	}
	return nil
}

// ToProto encodes a response for gRPC (raw contents for FP32/FP64 outputs).
func ToProto(resp *Response) *inferencev2.ModelInferResponse {
	out := &inferencev2.ModelInferResponse{ModelName: resp.ModelName, ModelVersion: resp.ModelVersion, Id: resp.ID}
	for _, o := range resp.Outputs {
		out.Outputs = append(out.Outputs, &inferencev2.ModelInferResponse_InferOutputTensor{Name: o.Name, Datatype: o.Datatype, Shape: o.Shape})
		out.RawOutputContents = append(out.RawOutputContents, o.Raw())
	}
	return out
}

// ValuesFromProto decodes output i of a gRPC response (raw or typed).
func ValuesFromProto(resp *inferencev2.ModelInferResponse, i int) (*Tensor, error) {
	if i >= len(resp.GetOutputs()) {
		return nil, bad("response has %d outputs", len(resp.GetOutputs()))
	}
	o := resp.GetOutputs()[i]
	t := &Tensor{Name: o.GetName(), Datatype: o.GetDatatype(), Shape: o.GetShape()}
	n, err := t.check(DefaultLimits, "output")
	if err != nil {
		return nil, err
	}
	if len(resp.GetRawOutputContents()) > i {
		return t, t.setRaw(resp.GetRawOutputContents()[i], n)
	}
	return t, t.setContents(o.GetContents(), n)
}
