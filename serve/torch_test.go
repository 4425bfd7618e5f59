package serve

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/sealed"
)

// torchFixture makes a TorchScript MLP (64→32→10, softmax) with Debian's
// python3-torch and the module's own outputs for rows.
const torchFixture = `
import json, sys, torch
torch.manual_seed(1)
m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10), torch.nn.Softmax(dim=-1))
torch.jit.save(torch.jit.script(m), sys.argv[1])
rows = torch.tensor(json.load(open(sys.argv[2])), dtype=torch.float32)
with torch.no_grad():
    json.dump(m(rows).tolist(), open(sys.argv[3], "w"))
`

func needTorch(t *testing.T) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import torch, numpy").Run(); err != nil {
		testenv.MustRun(t, "needs /usr/bin/python3 with python3-torch and python3-numpy: %v", err)
	}
}

// TestServePyTorchRunner (issue 17, model kinds): a sealed TorchScript MLP
// served as kind pytorch — unsealed in memory, handed to two persistent
// runner processes (the embedded runner under python3 -I -c) over a pipe —
// answers one request of 8 rows and 8 concurrent one-row requests with the
// module's own outputs (≤ 1e-6); the model metadata names the platform;
// a corrupt module and a runner that dies are one-line errors, and the
// server answers again once the runner is replaced.
func TestServePyTorchRunner(t *testing.T) {
	needTorch(t)
	dir := t.TempDir()
	x, _ := expected(t, digitsModel(t), 8)
	rows := make([][]float32, 8)
	for i := range rows {
		rows[i] = x[i*64 : (i+1)*64]
	}
	rowsFile, wantFile, plain := filepath.Join(dir, "rows.json"), filepath.Join(dir, "want.json"), filepath.Join(dir, "mlp.pt")
	b, _ := json.Marshal(rows)
	os.WriteFile(rowsFile, b, 0o644)
	if out, err := exec.Command("/usr/bin/python3", "-c", torchFixture, plain, rowsFile, wantFile).CombinedOutput(); err != nil {
		t.Fatalf("making the TorchScript fixture: %v\n%s", err, out)
	}
	var want [][]float64
	wb, _ := os.ReadFile(wantFile)
	json.Unmarshal(wb, &want)

	key := make([]byte, 32)
	rand.Read(key)
	ks, _ := sealed.NewLocalKeys(map[string][]byte{"models": key})
	pt, _ := os.ReadFile(plain)
	sealedPath := filepath.Join(dir, "mlp.sealed")
	if err := sealed.WriteFile(context.Background(), sealedPath, 0o600, ks, "models", func(w io.Writer) error { _, err := w.Write(pt); return err }); err != nil {
		t.Fatal(err)
	}
	os.Remove(plain)
	crashy := filepath.Join(dir, "crashy.py")
	// Loads like the real runner, then dies at its first request.
	os.WriteFile(crashy, []byte("import sys, struct\ni = sys.stdin.buffer\nn = struct.unpack('<Q', i.read(8))[0]\ni.read(n); i.read(4)\n"+
		"sys.stdout.write('READY 10\\n'); sys.stdout.flush()\ni.read(4)\nsys.stderr.write('boom: simulated crash\\n')\nsys.exit(7)\n"), 0o644)
	repo := filepath.Join(dir, "serving.yaml")
	os.WriteFile(repo, []byte(fmt.Sprintf(`models:
  - name: mlp
    kind: pytorch
    file: %s
    concurrency: 2
    batching: {max_batch_size: 8, max_queue_delay: 1ms}
    runner: {input_dim: 64, classes: [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9]}
  - name: crashy
    kind: pytorch
    file: %s
    runner: {input_dim: 64, command: [/usr/bin/python3, -I, %s]}
`, sealedPath, sealedPath, crashy)), 0o644)
	r, err := LoadRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	var log testlog.Buffer
	s, err := New(context.Background(), Options{Repo: r, Keys: ks, Log: log.Logger(), Tokens: map[string]string{tokenHash("tok-a"): "analyst"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	h := s.Handler()

	check := func(what string, got []float64, want []float64) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d outputs, want %d", what, len(got), len(want))
		}
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-6 {
				t.Fatalf("%s: output %d = %v, the module gives %v", what, i, got[i], want[i])
			}
		}
	}
	code, resp := postJSON(t, h, "/v2/models/mlp/infer", map[string]any{"inputs": []map[string]any{
		{"name": "input", "datatype": "FP32", "shape": []int{8, 64}, "data": x}}})
	if code != 200 || len(resp.Outputs) != 1 {
		t.Fatalf("8 rows: %d %+v", code, resp)
	}
	var flatWant []float64
	for _, w := range want {
		flatWant = append(flatWant, w...)
	}
	check("8 rows", resp.Outputs[0].Data, flatWant)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, resp := postJSON(t, h, "/v2/models/mlp/infer", map[string]any{"inputs": []map[string]any{
				{"name": "input", "datatype": "FP32", "shape": []int{1, 64}, "data": rows[i]}}})
			if code != 200 || len(resp.Outputs) != 1 {
				errs <- fmt.Errorf("row %d: %d %+v", i, code, resp)
				return
			}
			for j, v := range resp.Outputs[0].Data {
				if math.Abs(v-want[i][j]) > 1e-6 {
					errs <- fmt.Errorf("row %d output %d = %v, the module gives %v", i, j, v, want[i][j])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// The runner that dies: the client gets 500 (internal details stay in
	// the server's log: one line naming the exit and the runner's stderr);
	// the next request starts a new process, which dies the same way.
	for i := range 2 {
		code, resp = postJSON(t, h, "/v2/models/crashy/infer", map[string]any{"inputs": []map[string]any{
			{"name": "input", "datatype": "FP32", "shape": []int{1, 64}, "data": rows[0]}}})
		if code != 500 {
			t.Fatalf("crashing runner, request %d: %d %q", i, code, resp.Error)
		}
	}
	lg := log.String()
	if n := strings.Count(lg, "runner: process exited (exit status 7); runner stderr: boom: simulated crash"); n != 2 {
		t.Errorf("server log has %d one-line crash reports, want 2:\n%s", n, lg)
	}
	if !strings.Contains(lg, "pyrunner: runner restarted") {
		t.Errorf("server log does not report the restart:\n%s", lg)
	}
	// The other model is unaffected.
	if code, _ := postJSON(t, h, "/v2/models/mlp/infer", map[string]any{"inputs": []map[string]any{
		{"name": "input", "datatype": "FP32", "shape": []int{1, 64}, "data": rows[0]}}}); code != 200 {
		t.Fatalf("mlp after the crash: %d", code)
	}

	// A corrupt module: the server does not start, one line.
	bad := filepath.Join(dir, "bad.pt")
	os.WriteFile(bad, []byte("not a torchscript archive"), 0o644)
	os.WriteFile(repo, []byte(fmt.Sprintf("models:\n  - name: bad\n    kind: pytorch\n    file: %s\n    runner: {input_dim: 64}\n", bad)), 0o644)
	r, err = LoadRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), Options{Repo: r, Anonymous: true}); err == nil || !strings.Contains(err.Error(), "model bad version 1: runner: loading the model: ") ||
		strings.Contains(err.Error(), "\n") {
		t.Fatalf("corrupt module: %v", err)
	}
}
