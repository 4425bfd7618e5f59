package serve

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	inferencev2 "github.com/teeml/teeml/api/proto/teeml/inference/v2"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/serve/oip"
)

var (
	trainOnce sync.Once
	trained   string
	trainErr  error
)

// digitsModel trains a small digits MLP once per test binary.
func digitsModel(t testing.TB) string {
	trainOnce.Do(func() {
		dir, err := os.MkdirTemp("", "teeml-serve-test")
		if err != nil {
			trainErr = err
			return
		}
		trained = filepath.Join(dir, "digits.safetensors")
		_, trainErr = job.Train(context.Background(), job.TrainOptions{Dataset: "digits", Model: "logreg", Epochs: 3, Seed: 1, Out: trained, Output: io.Discard})
	})
	if trainErr != nil {
		t.Fatal(trainErr)
	}
	return trained
}

func TestMain(m *testing.M) {
	code := m.Run()
	if trained != "" {
		os.RemoveAll(filepath.Dir(trained))
	}
	os.Exit(code)
}

func tokenHash(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

func writeRepo(t testing.TB, file, extra string) *Repository {
	dir := t.TempDir()
	y := fmt.Sprintf("models:\n  - name: digits\n    kind: teeml\n    file: %s\n    batching: {max_batch_size: 32, max_queue_delay: 1ms, max_queue: 64}\n%s", file, extra)
	p := filepath.Join(dir, "serving.yaml")
	os.WriteFile(p, []byte(y), 0o644)
	r, err := LoadRepository(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newServer(t testing.TB, r *Repository, ks sealed.KeySource) *Server {
	s, err := New(context.Background(), Options{Repo: r, Keys: ks, Tokens: map[string]string{tokenHash("tok-a"): "analyst", tokenHash("tok-b"): "other"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// expected computes the model's outputs for the first rows of digits
// directly (no server).
func expected(t testing.TB, path string, rows int) ([]float32, []float32) {
	l, err := job.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := l.Rows("digits", "test")
	if err != nil {
		t.Fatal(err)
	}
	// Raw rows (before the pipeline) are what a client sends.
	_, rawTest, err := datasets.LoadSplit("digits", l.TestFraction, l.SplitSeed)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Model.PredictX(ds.X[:rows*ds.D], rows)
	if err != nil {
		t.Fatal(err)
	}
	return rawTest.X[:rows*rawTest.D], p
}

func post(t testing.TB, h http.Handler, path, token string, body []byte, hdr map[string]string) (int, []byte, http.Header) {
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.Bytes(), w.Header()
}

func inferBody(x []float32, rows, d int) []byte {
	b, _ := json.Marshal(map[string]any{"id": "r1", "inputs": []map[string]any{{"name": "input", "datatype": "FP32", "shape": []int{rows, d}, "data": x}}})
	return b
}

func TestRESTPredictionsMatchTheModel(t *testing.T) {
	path := digitsModel(t)
	s := newServer(t, writeRepo(t, path, ""), nil)
	h := s.Handler()
	x, want := expected(t, path, 5)
	code, body, _ := post(t, h, "/v2/models/digits/infer", "tok-a", inferBody(x, 5, 64), nil)
	if code != 200 {
		t.Fatalf("infer: %d %s", code, body)
	}
	var resp struct {
		ModelName, ModelVersion, ID string `json:"-"`
		Outputs                     []struct {
			Name     string    `json:"name"`
			Shape    []int     `json:"shape"`
			Datatype string    `json:"datatype"`
			Data     []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	o := resp.Outputs[0]
	if o.Name != "output" || o.Shape[0] != 5 || o.Shape[1] != 10 || len(o.Data) != 50 {
		t.Fatalf("output %+v", o)
	}
	for i := range want {
		if math.Abs(o.Data[i]-float64(want[i])) > 1e-6 {
			t.Fatalf("output %d: %v, model gives %v", i, o.Data[i], want[i])
		}
	}
	// The binary extension, both ways.
	js := fmt.Sprintf(`{"inputs":[{"name":"input","datatype":"FP32","shape":[5,64],"parameters":{"binary_data_size":%d}}],"parameters":{"binary_data_output":true}}`, 5*64*4)
	raw := make([]byte, 5*64*4)
	for i, v := range x {
		binary.LittleEndian.PutUint32(raw[i*4:], math.Float32bits(v))
	}
	code, body, hdr := post(t, h, "/v2/models/digits/infer", "tok-a", append([]byte(js), raw...), map[string]string{oip.HeaderLength: fmt.Sprint(len(js))})
	if code != 200 || hdr.Get(oip.HeaderLength) == "" {
		t.Fatalf("binary infer: %d %s", code, body)
	}
	var hl int
	fmt.Sscan(hdr.Get(oip.HeaderLength), &hl)
	if len(body)-hl != 50*4 || math.Float32frombits(binary.LittleEndian.Uint32(body[hl:])) != want[0] {
		t.Fatalf("binary output: %d bytes after %d", len(body)-hl, hl)
	}
	// Health and metadata.
	for path, want := range map[string]string{"/v2/health/live": `"live":true`, "/v2/health/ready": `"ready":true`, "/v2": `"binary_tensor_data"`,
		"/v2/models/digits": `"shape":[-1,64]`, "/v2/models/digits/ready": `"ready":true`, "/v2/models/digits/versions/1": `"versions":["1"]`} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != 200 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("GET %s: %d %s", path, w.Code, w.Body)
		}
	}
}

func TestRESTRefusals(t *testing.T) {
	path := digitsModel(t)
	s := newServer(t, writeRepo(t, path, "    access: [analyst]\n"), nil)
	s.o.MaxBody = 1 << 16
	h := s.Handler()
	x, _ := expected(t, path, 1)
	ok := inferBody(x, 1, 64)
	for _, tc := range []struct {
		name, path, token string
		body              []byte
		hdr               map[string]string
		code              int
		want              string
	}{
		{"no token", "/v2/models/digits/infer", "", ok, nil, 401, "no API token"},
		{"bad token", "/v2/models/digits/infer", "nope", ok, nil, 401, "not recognised"},
		{"not on the access list", "/v2/models/digits/infer", "tok-b", ok, nil, 403, `caller "other" may not use model digits`},
		{"unknown model", "/v2/models/cats/infer", "tok-a", ok, nil, 404, `no model "cats"`},
		{"unknown version", "/v2/models/digits/versions/9/infer", "tok-a", ok, nil, 404, `no version "9"`},
		{"wrong shape", "/v2/models/digits/infer", "tok-a", inferBody(x[:32], 1, 32), nil, 400, "wants [rows, 64]"},
		{"wrong datatype", "/v2/models/digits/infer", "tok-a", []byte(`{"inputs":[{"name":"input","datatype":"BYTES","shape":[1,1],"data":["a"]}]}`), nil, 400, "wants [rows, 64]"},
		{"bad JSON", "/v2/models/digits/infer", "tok-a", []byte(`{"inputs":`), nil, 400, "request JSON"},
		{"huge payload", "/v2/models/digits/infer", "tok-a", bytes.Repeat([]byte(" "), 1<<17), nil, 400, "larger than 65536 bytes"},
		{"bad binary header", "/v2/models/digits/infer", "tok-a", ok, map[string]string{oip.HeaderLength: "x"}, 400, "want a byte count"},
		{"unknown output", "/v2/models/digits/infer", "tok-a", []byte(strings.Replace(string(ok), `"id"`, `"outputs":[{"name":"logits"}],"id"`, 1)), nil, 400, `no output "logits"`},
	} {
		code, body, _ := post(t, h, tc.path, tc.token, tc.body, tc.hdr)
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		if code != tc.code || !strings.Contains(e.Error, tc.want) || strings.Contains(e.Error, "\n") {
			t.Errorf("%s: %d %s, want %d %q", tc.name, code, body, tc.code, tc.want)
		}
	}
}

func TestGRPC(t *testing.T) {
	path := digitsModel(t)
	s := newServer(t, writeRepo(t, path, ""), nil)
	c, ctx := grpcClient(t, s, "tok-a")
	x, want := expected(t, path, 3)
	r, err := c.ModelInfer(ctx, &inferencev2.ModelInferRequest{ModelName: "digits", Inputs: []*inferencev2.ModelInferRequest_InferInputTensor{
		{Name: "input", Datatype: "FP32", Shape: []int64{3, 64}, Contents: &inferencev2.InferTensorContents{Fp32Contents: x}}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := oip.ValuesFromProto(r, 0)
	if err != nil || len(out.Values) != 30 || float32(out.Values[7]) != want[7] {
		t.Fatalf("grpc output %v %v", out, err)
	}
	_, err = c.ModelInfer(context.Background(), &inferencev2.ModelInferRequest{ModelName: "digits"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	_, err = c.ModelInfer(ctx, &inferencev2.ModelInferRequest{ModelName: "digits", Inputs: []*inferencev2.ModelInferRequest_InferInputTensor{
		{Name: "input", Datatype: "FP32", Shape: []int64{3, 64}, Contents: &inferencev2.InferTensorContents{Fp32Contents: x[:10]}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "10 FP32 elements") {
		t.Fatalf("short input: %v", err)
	}
	mr, err := c.ModelMetadata(ctx, &inferencev2.ModelMetadataRequest{Name: "digits"})
	if err != nil || mr.Inputs[0].Shape[1] != 64 || mr.Platform != "teeml_gomlx" {
		t.Fatalf("metadata %v %v", mr, err)
	}
	if _, err := c.ModelReady(ctx, &inferencev2.ModelReadyRequest{Name: "cats"}); status.Code(err) != codes.NotFound {
		t.Fatalf("ready cats: %v", err)
	}
}

func TestSealedModelTamperRefusedAtLoad(t *testing.T) {
	path := digitsModel(t)
	k := make([]byte, 32)
	rand.Read(k)
	ks, _ := sealed.NewLocalKeys(map[string][]byte{"models": k})
	dir := t.TempDir()
	sp := filepath.Join(dir, "digits.sealed")
	b, _ := os.ReadFile(path)
	if err := sealed.WriteFile(context.Background(), sp, 0o600, ks, "models", func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
		t.Fatal(err)
	}
	repo := writeRepo(t, sp, "")
	if _, err := New(context.Background(), Options{Repo: repo, Keys: ks, Anonymous: true}); err != nil {
		t.Fatalf("sealed model: %v", err)
	}
	if _, err := New(context.Background(), Options{Repo: repo, Anonymous: true}); err == nil || !strings.Contains(err.Error(), "sealed") {
		t.Fatalf("sealed without keys: %v", err)
	}
	sb, _ := os.ReadFile(sp)
	sb[len(sb)/2] ^= 1
	os.WriteFile(sp, sb, 0o600)
	if _, err := New(context.Background(), Options{Repo: repo, Keys: ks, Anonymous: true}); err == nil || !strings.Contains(err.Error(), "model digits version 1") {
		t.Fatalf("tampered: %v", err)
	}
}

// grpcClient serves s's gRPC API on a loopback listener for the test and
// returns a client and a context carrying token.
func grpcClient(t *testing.T, s *Server, token string) (inferencev2.GRPCInferenceServiceClient, context.Context) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.RegisterGRPC(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return inferencev2.NewGRPCInferenceServiceClient(conn), metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}
