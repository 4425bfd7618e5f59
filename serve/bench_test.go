package serve

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// benchRepo is a repository of the digits model with the given batching.
func benchRepo(b *testing.B, model, batching string) *Repository {
	p := filepath.Join(b.TempDir(), "serving.yaml")
	y := fmt.Sprintf("models:\n  - name: digits\n    kind: teeml\n    file: %s\n    batching: %s\n", model, batching)
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		b.Fatal(err)
	}
	r, err := LoadRepository(p)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkRESTInferOneRow is one single-row JSON request through the REST
// handler (no network, no TLS) from one caller, batching off and on: the
// server's own per-request cost, which bench/serve.sh measures end to end.
func BenchmarkRESTInferOneRow(b *testing.B) {
	path := digitsModel(b)
	x, _ := expected(b, path, 1)
	body := inferBody(x, 1, len(x))
	for _, bc := range []struct{ name, batching string }{
		{"batching=off", "{max_batch_size: 1, max_queue: 64}"},
		{"batching=on", "{max_batch_size: 32, max_queue_delay: 500us, max_queue: 64}"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := newServer(b, benchRepo(b, path, bc.batching), nil)
			h := s.Handler()
			b.ReportAllocs()
			for b.Loop() {
				if code, out, _ := post(b, h, "/v2/models/digits/infer", "tok-a", body, nil); code != 200 {
					b.Fatalf("%d %s", code, out)
				}
			}
		})
	}
}

// BenchmarkPredictOneRow is the model alone: the pipeline and one GoMLX
// execution for one row.
func BenchmarkPredictOneRow(b *testing.B) {
	path := digitsModel(b)
	x, _ := expected(b, path, 1)
	s := newServer(b, benchRepo(b, path, "{max_batch_size: 1, max_queue: 64}"), nil)
	m := s.models["digits"][0].model
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Predict(ctx, x, 1); err != nil {
			b.Fatal(err)
		}
	}
}
