package serve

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	inferencev2 "github.com/teeml/teeml/api/proto/teeml/inference/v2"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/trees"
	"github.com/teeml/teeml/ml/trees/treetest"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/serve/oip"
)

// treeCase finds a treetest case by model file name.
func treeCase(t *testing.T, file string) treetest.Case {
	for _, c := range treetest.Cases(t) {
		if filepath.Base(c.Model) == file {
			return c
		}
	}
	t.Fatalf("no fixture %s", file)
	return treetest.Case{}
}

// flat returns a case's first n input rows as one slice, and the reference
// predictions expanded to what the server answers (binary: both classes).
func flat(t *testing.T, c treetest.Case, n int) (x []float64, want []float64) {
	in, ref := c.Rows(t)
	for i := range n {
		x = append(x, in[i]...)
		if c.Classes == 2 && len(ref[i]) == 1 {
			want = append(want, 1-ref[i][0], ref[i][0])
		} else {
			want = append(want, ref[i]...)
		}
	}
	return x, want
}

type inferResp struct {
	Outputs []struct {
		Name     string    `json:"name"`
		Shape    []int     `json:"shape"`
		Datatype string    `json:"datatype"`
		Data     []float64 `json:"data"`
	} `json:"outputs"`
	Error string `json:"error"`
}

// postJSON posts body as JSON with analyst's token through post and
// decodes the answer.
func postJSON(t *testing.T, h http.Handler, path string, body any) (int, inferResp) {
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	code, raw, _ := post(t, h, path, "tok-a", b, nil)
	var r inferResp
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%s: %d %s: %v", path, code, raw, err)
	}
	return code, r
}

func closeTo(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-6*max(1, math.Abs(want[i])) {
			t.Fatalf("%s: value %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestServeTreeModels: XGBoost and LightGBM models trained by those
// libraries and a sealed teeml GBDT, served from one repository over a real
// HTTP listener and gRPC: metadata lists the shapes, FP32 and FP64 inputs
// give the libraries' own predictions, and concurrent one-row requests are
// batched.
func TestServeTreeModels(t *testing.T) {
	xgbBC, xgbDiab, lgb := treeCase(t, "xgb_breast_cancer.model"), treeCase(t, "xgb_diabetes.model"), treeCase(t, "lg_dart_breast_cancer.model")
	// a teeml GBDT, sealed
	train, test, err := datasets.LoadSplit("breast_cancer", 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := trees.TrainGBDT(context.Background(), train, trees.GBDTConfig{Iterations: 10, NumLeaves: 8, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	gb.Params = map[string]string{"teeml.dataset": "breast_cancer"}
	k := make([]byte, 32)
	rand.Read(k)
	ks, _ := sealed.NewLocalKeys(map[string][]byte{"models": k})
	dir := t.TempDir()
	sealedGB := filepath.Join(dir, "gbdt.sealed")
	if err := sealed.WriteFile(context.Background(), sealedGB, 0o600, ks, "models", func(w io.Writer) error { return trees.WriteText(w, gb) }); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "serving.yaml")
	y := fmt.Sprintf(`models:
  - name: xgb
    kind: xgboost
    file: %s
    batching: {max_batch_size: 8, max_queue_delay: 200ms, max_queue: 64}
  - name: diabetes
    kind: xgboost
    file: %s
  - name: lgb
    kind: lightgbm
    file: %s
  - name: gbdt
    kind: lightgbm
    file: %s
`, xgbBC.Model, xgbDiab.Model, lgb.Model, sealedGB)
	if err := os.WriteFile(repo, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := LoadRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := New(context.Background(), Options{Repo: r, Keys: ks, Registerer: reg, Tokens: map[string]string{tokenHash("tok-a"): "analyst"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	h := s.Handler()
	hs := httptest.NewServer(h)
	defer hs.Close()

	for name, want := range map[string]string{"xgb": `"platform":"xgboost"`, "lgb": `"platform":"lightgbm"`} {
		res, err := http.Get(hs.URL + "/v2/models/" + name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(b), want) || !strings.Contains(string(b), `"inputs":[{"name":"input","datatype":"FP32","shape":[-1,30]}]`) ||
			!strings.Contains(string(b), `"outputs":[{"name":"output","datatype":"FP32","shape":[-1,2]}]`) {
			t.Errorf("metadata of %s: %s", name, b)
		}
	}

	// FP64 and FP32 inputs, 5 rows each
	for _, tc := range []struct {
		model, datatype string
		c               treetest.Case
	}{{"xgb", "FP64", xgbBC}, {"xgb", "FP32", xgbBC}, {"lgb", "FP64", lgb}} {
		x, want := flat(t, tc.c, 5)
		code, resp := postJSON(t, h, "/v2/models/"+tc.model+"/infer", map[string]any{"inputs": []map[string]any{
			{"name": "input", "datatype": tc.datatype, "shape": []int{5, 30}, "data": x}}})
		if code != 200 || len(resp.Outputs) != 1 || resp.Outputs[0].Shape[0] != 5 || resp.Outputs[0].Shape[1] != 2 {
			t.Fatalf("%s %s: %d %+v", tc.model, tc.datatype, code, resp)
		}
		// the server answers FP32: compare at float32's precision
		got := resp.Outputs[0].Data
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-6 {
				t.Fatalf("%s %s: value %d = %v, %s gives %v", tc.model, tc.datatype, i, got[i], tc.c.Format, want[i])
			}
		}
	}
	// the sealed teeml model predicts as the model itself
	x := test.X[:3*test.D]
	code, resp := postJSON(t, h, "/v2/models/gbdt/infer", map[string]any{"inputs": []map[string]any{
		{"name": "input", "datatype": "FP32", "shape": []int{3, test.D}, "data": x}}})
	if code != 200 {
		t.Fatalf("gbdt: %d %+v", code, resp)
	}
	for i := range 3 {
		p := gb.Predict(test.Row(i))[0]
		closeTo(t, "sealed gbdt", resp.Outputs[0].Data[2*i:2*i+2], []float64{float64(float32(1 - p)), float64(float32(p))})
	}

	// 16 concurrent one-row requests through the batcher (max_batch_size
	// 8): each gets its own rows back. A tree ensemble costs the same per
	// row however many a call has, so its batches are not held for company
	// (serve/batch: TestWaitIsBoundedByTheCallsFixedCost); rows that queue
	// while a call runs still share the next call.
	xs, want := flat(t, xgbBC, 16)
	var wg sync.WaitGroup
	go1 := make(chan struct{})
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-go1
			code, resp := postJSON(t, h, "/v2/models/xgb/infer", map[string]any{"inputs": []map[string]any{
				{"name": "input", "datatype": "FP32", "shape": []int{1, 30}, "data": xs[i*30 : (i+1)*30]}}})
			if code != 200 || len(resp.Outputs) != 1 || len(resp.Outputs[0].Data) != 2 {
				errs <- fmt.Errorf("request %d: %d %+v", i, code, resp)
				return
			}
			for j, v := range resp.Outputs[0].Data {
				if math.Abs(v-want[2*i+j]) > 1e-6 {
					errs <- fmt.Errorf("request %d: %v, want %v", i, resp.Outputs[0].Data, want[2*i:2*i+2])
					return
				}
			}
		}()
	}
	close(go1)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "teeml_serve_batch_rows" {
			continue
		}
		for _, m := range mf.Metric {
			if m.Label[0].GetValue() == "xgb" {
				h := m.GetHistogram()
				t.Logf("xgb: %d model calls for %v rows", h.GetSampleCount(), h.GetSampleSum())
				if h.GetSampleSum() != 2*5+16 || h.GetSampleCount() > 2+16 {
					t.Errorf("xgb: %d model calls for %v rows, want the 26 rows in at most 18 calls", h.GetSampleCount(), h.GetSampleSum())
				}
			}
		}
	}

	// gRPC, FP64 contents, regression
	c, ctx := grpcClient(t, s, "tok-a")
	xd, wantD := flat(t, xgbDiab, 4)
	gr, err := c.ModelInfer(ctx, &inferencev2.ModelInferRequest{ModelName: "diabetes", Inputs: []*inferencev2.ModelInferRequest_InferInputTensor{
		{Name: "input", Datatype: "FP64", Shape: []int64{4, 10}, Contents: &inferencev2.InferTensorContents{Fp64Contents: xd}}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := oip.ValuesFromProto(gr, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Shape) != 2 || out.Shape[0] != 4 || out.Shape[1] != 1 {
		t.Fatalf("grpc output shape %v", out.Shape)
	}
	closeTo(t, "grpc diabetes", out.Values, wantD)
	mr, err := c.ModelMetadata(ctx, &inferencev2.ModelMetadataRequest{Name: "diabetes"})
	if err != nil || mr.Platform != "xgboost" || mr.Inputs[0].Shape[1] != 10 || mr.Outputs[0].Shape[1] != 1 {
		t.Fatalf("grpc metadata %v %v", mr, err)
	}
}

// TestServeRefusesCorruptTreeModel: a truncated or mislabelled tree model
// stops the server from starting, with one line naming the model.
func TestServeRefusesCorruptTreeModel(t *testing.T) {
	xgb, lgb := treeCase(t, "xgb_breast_cancer.model"), treeCase(t, "lg_dart_breast_cancer.model")
	dir := t.TempDir()
	b, err := os.ReadFile(xgb.Model)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.model")
	if err := os.WriteFile(truncated, b[:len(b)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ kind, file, want string }{
		{"xgboost", truncated, "model bc version 1: model " + truncated + ": XGBoost model: "},
		{"xgboost", lgb.Model, "is a lightgbm model, not kind xgboost"},
		{"lightgbm", xgb.Model, "is a xgboost model, not kind lightgbm"},
		{"lightgbm", filepath.Join(dir, "missing.txt"), "model bc version 1: file "},
	} {
		repo := filepath.Join(dir, "serving.yaml")
		os.WriteFile(repo, []byte(fmt.Sprintf("models:\n  - name: bc\n    kind: %s\n    file: %s\n", tc.kind, tc.file)), 0o644)
		r, err := LoadRepository(repo)
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(context.Background(), Options{Repo: r, Anonymous: true})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "model bc version 1: ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s %s: %v, want one line with %q", tc.kind, filepath.Base(tc.file), err, tc.want)
		}
	}
}
