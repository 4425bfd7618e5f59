package oip

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// HeaderLength is the binary-tensor extension's HTTP header: the length of
// the JSON part of a body whose binary tensors follow it.
const HeaderLength = "Inference-Header-Content-Length"

type jsonTensor struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

type jsonOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

type jsonRequest struct {
	ID         string         `json:"id,omitempty"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Inputs     []jsonTensor   `json:"inputs"`
	Outputs    []jsonOutput   `json:"outputs,omitempty"`
}

// DecodeJSON decodes a REST inference request body. headerLen is the
// Inference-Header-Content-Length header (-1 when absent): the JSON is the
// first headerLen bytes and the binary tensors follow, in input order.
func DecodeJSON(body []byte, headerLen int, l Limits) (*Request, error) {
	js, bin := body, []byte(nil)
	if headerLen >= 0 {
		if headerLen > len(body) {
			return nil, bad("%s %d is longer than the body (%d bytes)", HeaderLength, headerLen, len(body))
		}
		js, bin = body[:headerLen], body[headerLen:]
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var jr jsonRequest
	if err := dec.Decode(&jr); err != nil {
		return nil, bad("request JSON: %s", oneLine(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bad("request JSON: data after the request object")
	}
	if len(jr.Inputs) == 0 {
		return nil, bad("request has no inputs")
	}
	if len(jr.Inputs) > l.MaxInputs {
		return nil, bad("request has %d inputs, at most %d", len(jr.Inputs), l.MaxInputs)
	}
	r := &Request{ID: jr.ID, Parameters: jr.Parameters, BinaryOutputs: map[string]bool{}}
	if b, ok := jr.Parameters["binary_data_output"].(bool); ok {
		r.BinaryAll = b
	}
	seen := map[string]bool{}
	for i := range jr.Inputs {
		jt := &jr.Inputs[i]
		t := Tensor{Name: jt.Name, Datatype: jt.Datatype, Shape: jt.Shape, Parameters: jt.Parameters}
		n, err := t.check(l, "input")
		if err != nil {
			return nil, err
		}
		if seen[t.Name] {
			return nil, bad("input %s given twice", t.Name)
		}
		seen[t.Name] = true
		if size, ok := jt.Parameters["binary_data_size"]; ok {
			sz, err := intParam(size)
			if err != nil || sz < 0 {
				return nil, bad("input %s: binary_data_size %v: want a non-negative integer", t.Name, size)
			}
			if len(jt.Data) > 0 {
				return nil, bad("input %s: both data and binary_data_size given", t.Name)
			}
			if sz > int64(len(bin)) {
				return nil, bad("input %s: binary_data_size %d but only %d binary bytes left", t.Name, sz, len(bin))
			}
			if err := t.setRaw(bin[:sz], n); err != nil {
				return nil, err
			}
			bin = bin[sz:]
		} else {
			if len(jt.Data) == 0 {
				return nil, bad("input %s: no data (give data, or binary_data_size with %s)", t.Name, HeaderLength)
			}
			if err := t.setJSON(jt.Data, n, l); err != nil {
				return nil, err
			}
		}
		r.Inputs = append(r.Inputs, t)
	}
	if len(bin) > 0 {
		return nil, bad("%d binary bytes after the last binary input", len(bin))
	}
	for _, o := range jr.Outputs {
		if o.Name == "" {
			return nil, bad("requested output without a name")
		}
		r.Outputs = append(r.Outputs, o.Name)
		if b, ok := o.Parameters["binary_data"].(bool); ok && b {
			r.BinaryOutputs[o.Name] = true
		}
	}
	return r, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func intParam(v any) (int64, error) {
	switch x := v.(type) {
	case json.Number:
		return strconv.ParseInt(x.String(), 10, 64)
	case float64:
		if x != math.Trunc(x) {
			return 0, errors.New("not an integer")
		}
		return int64(x), nil
	case int64:
		return x, nil
	}
	return 0, fmt.Errorf("%T is not an integer", v)
}

// setJSON flattens data (flat or nested arrays, row-major) into t.
func (t *Tensor) setJSON(data json.RawMessage, n int, l Limits) error {
	if t.Datatype != "BYTES" && t.Datatype != "BOOL" {
		if v, ok := numbersFast(data, n, l.MaxDims, t.Datatype); ok {
			t.Values = v
			return nil
		}
	}
	// Anything the fast path does not take (strings, booleans, objects, a
	// wrong count, an out-of-range element) is decoded token by token,
	// which also gives the one-line reason.
	return t.setJSONTokens(data, n, l)
}

// setJSONTokens is setJSON with encoding/json's token decoder.
func (t *Tensor) setJSONTokens(data json.RawMessage, n int, l Limits) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if t.Datatype == "BYTES" {
		t.Bytes = make([][]byte, 0, min(n, 1<<16))
	} else {
		t.Values = make([]float64, 0, min(n, 1<<20))
	}
	depth, count := 0, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bad("input %s: data: %s", t.Name, oneLine(err.Error()))
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '[':
				depth++
				if depth > l.MaxDims {
					return bad("input %s: data nested deeper than %d", t.Name, l.MaxDims)
				}
			case ']':
				depth--
			default:
				return bad("input %s: data: objects are not tensor elements", t.Name)
			}
			continue
		}
		count++
		if count > n {
			return bad("input %s: more data elements than shape %v holds (%d)", t.Name, t.Shape, n)
		}
		switch v := tok.(type) {
		case json.Number:
			if t.Datatype == "BYTES" || t.Datatype == "BOOL" {
				return bad("input %s: element %d: a number in a %s tensor", t.Name, count, t.Datatype)
			}
			f, err := strconv.ParseFloat(v.String(), 64)
			if err != nil || !inRange(t.Datatype, f) {
				return bad("input %s: element %d: %s is not a %s", t.Name, count, v, t.Datatype)
			}
			t.Values = append(t.Values, f)
		case bool:
			if t.Datatype != "BOOL" {
				return bad("input %s: element %d: a boolean in a %s tensor", t.Name, count, t.Datatype)
			}
			t.Values = append(t.Values, b2f(v))
		case string:
			if t.Datatype != "BYTES" {
				return bad("input %s: element %d: a string in a %s tensor", t.Name, count, t.Datatype)
			}
			t.Bytes = append(t.Bytes, []byte(v))
		default:
			return bad("input %s: element %d: %v is not a tensor element", t.Name, count, tok)
		}
	}
	if depth != 0 {
		return bad("input %s: data: unbalanced brackets", t.Name)
	}
	if count != n {
		return bad("input %s: %d data elements, shape %v needs %d", t.Name, count, t.Shape, n)
	}
	return nil
}

// numbersFast decodes data, nested JSON arrays of exactly n numbers at most
// maxDims deep, each in dt's range, without the token-by-token decoder (a
// one-row request spent 40 % of its handler time in json.Decoder.Token).
// It gives up (ok false) at anything else, leaving the reason to setJSON's
// decoder; FuzzNumbersFast checks that both agree.
func numbersFast(data []byte, n, maxDims int, dt string) (v []float64, ok bool) {
	v = make([]float64, 0, min(n, 1<<20))
	depth := 0
	// expect: 0 a value or ']' (after '['), 1 ',' or ']' (after a value),
	// 2 a value (after ',').
	expect := 2
	i := 0
	for ; i < len(data); i++ {
		switch c := data[i]; c {
		case ' ', '\t', '\n', '\r':
		case '[':
			if expect == 1 {
				return nil, false
			}
			if depth++; depth > maxDims {
				return nil, false
			}
			expect = 0
		case ']':
			if expect == 2 || depth == 0 {
				return nil, false
			}
			depth--
			expect = 1
			if depth == 0 {
				i++
				goto tail
			}
		case ',':
			if expect != 1 || depth == 0 {
				return nil, false
			}
			expect = 2
		default:
			if expect == 1 || depth == 0 || len(v) == n {
				return nil, false
			}
			j := numberEnd(data, i)
			if j == i {
				return nil, false
			}
			f, err := strconv.ParseFloat(string(data[i:j]), 64)
			if err != nil || !inRange(dt, f) {
				return nil, false
			}
			v = append(v, f)
			i = j - 1
			expect = 1
		}
	}
	return nil, false // unbalanced
tail:
	for ; i < len(data); i++ {
		if c := data[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return nil, false
		}
	}
	return v, len(v) == n
}

// numberEnd is the end of the JSON number starting at data[i] (RFC 8259:
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?), or i when there is none.
func numberEnd(data []byte, i int) int {
	start, j := i, i
	digits := func() int {
		k := j
		for j < len(data) && data[j] >= '0' && data[j] <= '9' {
			j++
		}
		return j - k
	}
	if j < len(data) && data[j] == '-' {
		j++
	}
	switch {
	case j < len(data) && data[j] == '0':
		j++
	case j < len(data) && data[j] >= '1' && data[j] <= '9':
		digits()
	default:
		return start
	}
	if j < len(data) && data[j] == '.' {
		j++
		if digits() == 0 {
			return start
		}
	}
	if j < len(data) && (data[j] == 'e' || data[j] == 'E') {
		j++
		if j < len(data) && (data[j] == '+' || data[j] == '-') {
			j++
		}
		if digits() == 0 {
			return start
		}
	}
	return j
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// setRaw decodes n little-endian elements (the binary extension and gRPC
// raw contents; BYTES elements are each a 4-byte length and the bytes).
func (t *Tensor) setRaw(b []byte, n int) error {
	sz := sizes[t.Datatype]
	if t.Datatype == "BYTES" {
		for len(b) > 0 {
			if len(b) < 4 {
				return bad("input %s: truncated BYTES element length", t.Name)
			}
			k := binary.LittleEndian.Uint32(b)
			if uint64(k) > uint64(len(b)-4) {
				return bad("input %s: BYTES element of %d bytes, %d left", t.Name, k, len(b)-4)
			}
			t.Bytes = append(t.Bytes, b[4:4+k])
			b = b[4+k:]
			if len(t.Bytes) > n {
				break
			}
		}
		if len(t.Bytes) != n {
			return bad("input %s: %d BYTES elements, shape %v needs %d", t.Name, len(t.Bytes), t.Shape, n)
		}
		return nil
	}
	if len(b) != n*sz {
		return bad("input %s: %d binary bytes, shape %v of %s needs %d", t.Name, len(b), t.Shape, t.Datatype, n*sz)
	}
	t.Values = make([]float64, n)
	for i := range n {
		e := b[i*sz : (i+1)*sz]
		var v float64
		switch t.Datatype {
		case "BOOL":
			if e[0] > 1 {
				return bad("input %s: element %d: BOOL byte %d", t.Name, i, e[0])
			}
			v = float64(e[0])
		case "UINT8":
			v = float64(e[0])
		case "INT8":
			v = float64(int8(e[0]))
		case "UINT16":
			v = float64(binary.LittleEndian.Uint16(e))
		case "INT16":
			v = float64(int16(binary.LittleEndian.Uint16(e)))
		case "FP16":
			v = float64(half(binary.LittleEndian.Uint16(e)))
		case "UINT32":
			v = float64(binary.LittleEndian.Uint32(e))
		case "INT32":
			v = float64(int32(binary.LittleEndian.Uint32(e)))
		case "FP32":
			v = float64(math.Float32frombits(binary.LittleEndian.Uint32(e)))
		case "UINT64":
			v = float64(binary.LittleEndian.Uint64(e))
		case "INT64":
			v = float64(int64(binary.LittleEndian.Uint64(e)))
		case "FP64":
			v = math.Float64frombits(binary.LittleEndian.Uint64(e))
		}
		t.Values[i] = v
	}
	return nil
}

// half converts an IEEE 754 binary16 to float32.
func half(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch exp {
	case 0: // zero and subnormals: frac × 2⁻²⁴
		f := float32(frac) * float32(math.Ldexp(1, -24))
		if sign != 0 {
			f = -f
		}
		return f
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}

// Raw encodes t's elements little-endian (FP32 and FP64 outputs).
func (t *Tensor) Raw() []byte {
	sz := sizes[t.Datatype]
	out := make([]byte, len(t.Values)*sz)
	for i, v := range t.Values {
		switch t.Datatype {
		case "FP32":
			binary.LittleEndian.PutUint32(out[i*4:], math.Float32bits(float32(v)))
		case "FP64":
			binary.LittleEndian.PutUint64(out[i*8:], math.Float64bits(v))
		case "INT64":
			binary.LittleEndian.PutUint64(out[i*8:], uint64(int64(v)))
		case "INT32":
			binary.LittleEndian.PutUint32(out[i*4:], uint32(int32(v)))
		}
	}
	return out
}

type jsonOutTensor struct {
	Name       string         `json:"name"`
	Shape      []int64        `json:"shape"`
	Datatype   string         `json:"datatype"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Data       any            `json:"data,omitempty"`
}

type jsonResponse struct {
	ModelName    string          `json:"model_name"`
	ModelVersion string          `json:"model_version,omitempty"`
	ID           string          `json:"id,omitempty"`
	Parameters   map[string]any  `json:"parameters,omitempty"`
	Outputs      []jsonOutTensor `json:"outputs"`
}

// EncodeJSON encodes a response for a REST request: outputs the request
// asked for in binary go after the JSON, and headerLen (≥ 0) then says
// where the JSON ends; otherwise headerLen is -1.
func EncodeJSON(resp *Response, req *Request) (body []byte, headerLen int, err error) {
	jr := jsonResponse{ModelName: resp.ModelName, ModelVersion: resp.ModelVersion, ID: resp.ID, Parameters: resp.Parameters}
	var bin bytes.Buffer
	for _, o := range resp.Outputs {
		jt := jsonOutTensor{Name: o.Name, Shape: o.Shape, Datatype: o.Datatype}
		if req != nil && (req.BinaryAll || req.BinaryOutputs[o.Name]) {
			raw := o.Raw()
			jt.Parameters = map[string]any{"binary_data_size": len(raw)}
			bin.Write(raw)
		} else if o.Datatype == "BYTES" {
			s := make([]string, len(o.Bytes))
			for i, b := range o.Bytes {
				s[i] = base64.StdEncoding.EncodeToString(b)
			}
			jt.Data = s
		} else {
			jt.Data = finite(o.Values)
		}
		jr.Outputs = append(jr.Outputs, jt)
	}
	js, err := json.Marshal(jr)
	if err != nil {
		return nil, -1, fmt.Errorf("oip: encoding the response: %w", err)
	}
	if bin.Len() == 0 {
		return js, -1, nil
	}
	return append(js, bin.Bytes()...), len(js), nil
}

// finite replaces NaN and infinities (which JSON cannot carry) by null.
func finite(v []float64) []any {
	out := make([]any, len(v))
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			out[i] = nil
		} else {
			out[i] = x
		}
	}
	return out
}
