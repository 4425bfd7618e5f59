package runner

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/ml/tensor"
)

func global() tensor.Weights {
	return tensor.Weights{
		{Name: "fc.weight", Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}},
		{Name: "fc.bias", Shape: []int{2}, Data: []float32{0.5, -0.5}},
	}
}

func tinyData() *datasets.Dataset {
	return &datasets.Dataset{Name: "tiny", Task: datasets.Classification, NumClasses: 2,
		Columns: []datasets.Column{{Name: "a"}, {Name: "b"}, {Name: "c"}},
		X:       []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, Y: []float32{0, 1, 0, 1}, N: 4, D: 3}
}

// okMetrics is a valid train/evaluate metrics file for tinyData.
const okMetrics = `{"num_examples": 4, "loss": 0.25, "metrics": {"accuracy": 0.75}}`

// newRunner makes a workspace holding script (run by /bin/sh) and extra
// files, and a Runner for it.
func newRunner(t *testing.T, script string, timeout time.Duration, files map[string][]byte) (*Runner, string, *testlog.Buffer) {
	t.Helper()
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "run.sh"), []byte("set -e\nd=$(dirname \"$TEEML_TASK_FILE\")\n"+script+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(ws, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var logs testlog.Buffer
	r, err := New(Config{Command: []string{"/bin/sh", "run.sh"}, Workspace: ws, Timeout: timeout, Party: "col-1",
		Hyper:   Hyperparameters{Epochs: 1, BatchSize: 2, LR: 0.1, Optimizer: "sgd", Seed: 7},
		Dataset: InfoFor(tinyData()), Train: tinyData(), Eval: tinyData(), TempDir: t.TempDir(), Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, ws, &logs
}

func weightsFile(t *testing.T, w tensor.Weights) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := safetensors.Write(&b, w, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestTrainRoundTrip(t *testing.T) {
	r, _, logs := newRunner(t, `
cp "$d/input.safetensors" "$d/output.safetensors"
echo '`+okMetrics+`' > "$d/metrics.json"
if [ "$TEEML_TASK" = train ]; then
  grep -q '"task": "train"' "$TEEML_TASK_FILE"
  grep -q '"seed": 3007' "$TEEML_TASK_FILE"
  grep -q '"epochs": 4' "$TEEML_TASK_FILE"
fi
test -z "$GOPATH$HOME_SECRET"
echo "trained fine"`, time.Minute, nil)
	t.Setenv("HOME_SECRET", "must not leak into the runner")
	w, n, m, err := r.Train(context.Background(), global(), map[string]float64{"server_round": 3, "epochs": 4})
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 || m["train_loss"] != 0.25 || m["accuracy"] != 0.75 {
		t.Fatalf("n %d metrics %v", n, m)
	}
	if err := global().Compatible(w); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "trained fine") || !strings.Contains(logs.String(), "round=3") {
		t.Errorf("runner stdout not logged with the round:\n%s", logs.String())
	}
	n, loss, m, err := r.Evaluate(context.Background(), global())
	if err != nil || n != 4 || loss != 0.25 || m["accuracy"] != 0.75 {
		t.Fatalf("evaluate: %d %v %v %v", n, loss, m, err)
	}
}

// TestOutputInAnotherOrder: tensors come back in the global model's order
// whatever order the runner wrote them in.
func TestOutputInAnotherOrder(t *testing.T) {
	g := global()
	rev := tensor.Weights{g[1], g[0]}
	r, _, _ := newRunner(t, `cp rev.safetensors "$d/output.safetensors"; echo '`+okMetrics+`' > "$d/metrics.json"`,
		time.Minute, map[string][]byte{"rev.safetensors": weightsFile(t, rev)})
	w, _, _, err := r.Train(context.Background(), g, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Compatible(w); err != nil {
		t.Fatal(err)
	}
}

// f64File is a safetensors file whose fc.bias is F64.
func f64File(t *testing.T) []byte {
	t.Helper()
	g := global()
	hdr := `{"fc.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"fc.bias":{"dtype":"F64","shape":[2],"data_offsets":[24,40]}}`
	for len(hdr)%8 != 0 {
		hdr += " "
	}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(hdr)))
	b.WriteString(hdr)
	for _, v := range g[0].Data {
		binary.Write(&b, binary.LittleEndian, v)
	}
	for _, v := range g[1].Data {
		binary.Write(&b, binary.LittleEndian, float64(v))
	}
	return b.Bytes()
}

// TestBadRunnersFailTheTask: every way a runner can go wrong fails the
// task with a one-line error naming the reason.
func TestBadRunnersFailTheTask(t *testing.T) {
	g := global()
	wrongShape := global()
	wrongShape[0].Shape = []int{3, 2}
	nan := global()
	nan[1].Data = []float32{float32(math.NaN()), 1}
	missing := global()[:1]
	extra := append(global(), tensor.Tensor{Name: "extra", Shape: []int{1}, Data: []float32{1}})
	files := map[string][]byte{
		"wrong-shape.safetensors": weightsFile(t, wrongShape),
		"nan.safetensors":         weightsFile(t, nan),
		"missing.safetensors":     weightsFile(t, missing),
		"extra.safetensors":       weightsFile(t, extra),
		"f64.safetensors":         f64File(t),
		"garbage.safetensors":     []byte("this is not a safetensors file at all"),
	}
	copyOut := func(f string) string {
		return `cp ` + f + ` "$d/output.safetensors"; echo '` + okMetrics + `' > "$d/metrics.json"`
	}
	for _, tc := range []struct{ name, script, want string }{
		{"crash", `echo "Traceback (most recent call last):" >&2; echo "RuntimeError: CUDA out of memory" >&2; exit 3`,
			"exited with status 3: Traceback (most recent call last): | RuntimeError: CUDA out of memory"},
		{"killed", `kill -9 $$`, "signal: killed"},
		{"no output", `echo '` + okMetrics + `' > "$d/metrics.json"`, "wrote no output_weights file"},
		{"no metrics", `cp "$d/input.safetensors" "$d/output.safetensors"`, "wrote no metrics file"},
		{"wrong shape", copyOut("wrong-shape.safetensors"), `tensor "fc.weight" has shape [3 2], the global model [2 3]`},
		{"NaN weights", copyOut("nan.safetensors"), `tensor "fc.bias": non-finite value NaN`},
		{"missing tensor", copyOut("missing.safetensors"), `tensor "fc.bias" missing`},
		{"extra tensor", copyOut("extra.safetensors"), `tensor "extra" is not in the global model`},
		{"F64", copyOut("f64.safetensors"), `tensor "fc.bias" has dtype "F64", want F32`},
		{"garbage", copyOut("garbage.safetensors"), "safetensors: header length"},
		{"huge", `head -c 3000000 /dev/zero > "$d/output.safetensors"; echo '` + okMetrics + `' > "$d/metrics.json"`, "3000000 bytes, over the"},
		{"NaN loss", `cp "$d/input.safetensors" "$d/output.safetensors"; echo '{"num_examples": 4, "loss": NaN}' > "$d/metrics.json"`, "NaN and Infinity are not JSON numbers"},
		{"zero examples", `cp "$d/input.safetensors" "$d/output.safetensors"; echo '{"num_examples": 0}' > "$d/metrics.json"`, "num_examples 0 must be a whole number in 1..4"},
		{"more examples than rows", `cp "$d/input.safetensors" "$d/output.safetensors"; echo '{"num_examples": 400}' > "$d/metrics.json"`, "num_examples 400 must be a whole number in 1..4"},
		{"unknown metrics key", `cp "$d/input.safetensors" "$d/output.safetensors"; echo '{"num_examples": 4, "acc": 1}' > "$d/metrics.json"`, `unknown field "acc"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, _ := newRunner(t, tc.script, time.Minute, files)
			_, _, _, err := r.Train(context.Background(), g, map[string]float64{"server_round": 2})
			if err == nil {
				t.Fatal("task succeeded")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "runner: train round 2: ") || !strings.Contains(msg, tc.want) {
				t.Fatalf("error %q, want one line containing %q", msg, tc.want)
			}
			t.Log(msg)
		})
	}
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func waitDead(t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !testenv.WaitFor(5*time.Second, func() bool { return !alive(pid) }) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("runner child %d survived the task", pid)
	}
}

// TestHangIsKilledWithItsProcessGroup: a runner that outlives its timeout
// fails the task, and its whole process group (a background child too) is
// killed.
func TestHangIsKilledWithItsProcessGroup(t *testing.T) {
	r, ws, _ := newRunner(t, `sleep 600 & echo $! > child.pid; echo "stuck in epoch 1" >&2; wait`, time.Second, nil)
	start := time.Now()
	_, _, _, err := r.Train(context.Background(), global(), map[string]float64{"server_round": 1})
	if err == nil || !strings.Contains(err.Error(), "timed out after 1s; process group killed: stuck in epoch 1") {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("took %v", d)
	}
	waitDead(t, filepath.Join(ws, "child.pid"))
}

// TestLeftoverChildIsKilled: a runner that succeeds but leaves a process
// behind does not leak it.
func TestLeftoverChildIsKilled(t *testing.T) {
	r, ws, _ := newRunner(t, `sleep 600 >/dev/null 2>&1 & echo $! > child.pid
cp "$d/input.safetensors" "$d/output.safetensors"; echo '`+okMetrics+`' > "$d/metrics.json"`, time.Minute, nil)
	if _, _, _, err := r.Train(context.Background(), global(), nil); err != nil {
		t.Fatal(err)
	}
	waitDead(t, filepath.Join(ws, "child.pid"))
}

func TestCancelKillsTheRunner(t *testing.T) {
	r, ws, _ := newRunner(t, `echo $$ > main.pid; sleep 600`, time.Minute, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Once the runner has started (or after a minute: then Train's
		// error below will not say "cancelled" if it finished otherwise).
		testenv.WaitFor(time.Minute, func() bool {
			_, err := os.Stat(filepath.Join(ws, "main.pid"))
			return err == nil
		})
		cancel()
	}()
	_, _, _, err := r.Train(ctx, global(), nil)
	if err == nil || !strings.Contains(err.Error(), "cancelled") || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want one wrapping context.Canceled", err)
	}
	waitDead(t, filepath.Join(ws, "main.pid"))
}

func TestVerifyFailureLaunchesNothing(t *testing.T) {
	r, ws, _ := newRunner(t, `touch launched`, time.Minute, nil)
	r.cfg.Verify = func() error { return errors.New("runner/train.py was modified") }
	_, _, _, err := r.Train(context.Background(), global(), nil)
	if err == nil || !strings.Contains(err.Error(), "not launched: runner/train.py was modified") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(filepath.Join(ws, "launched")); err == nil {
		t.Fatal("the runner ran")
	}
}

func TestInit(t *testing.T) {
	r, _, _ := newRunner(t, `grep -q '"task": "init"' "$TEEML_TASK_FILE"; cp init.safetensors "$d/output.safetensors"`,
		time.Minute, map[string][]byte{"init.safetensors": weightsFile(t, global())})
	w, err := r.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := global().Compatible(w); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkNoopTask is the fixed cost of one runner task round trip
// (a train task on a digits-MLP-sized model whose runner returns the
// global weights): teeml writes the task and input files, forks/execs the
// runner, reads and validates its output. sh is teeml's own overhead;
// python3 adds the interpreter's start-up; python3+torch adds `import
// torch`, what every task of a per-task PyTorch runner pays; the
// persistent variant imports torch once and serves every task.
func BenchmarkNoopTask(b *testing.B) {
	const pyCopy = `import json, os, shutil
t = json.load(open(os.environ["TEEML_TASK_FILE"]))
shutil.copyfile(t["input_weights"], t["output_weights"])
json.dump({"num_examples": 4, "loss": 0.25}, open(t["metrics"], "w"))
`
	const pyServe = `import json, os, shutil, sys
import torch
answers = os.fdopen(3, "w", buffering=1)
for line in sys.stdin:
    t = json.load(open(line.strip()))
    shutil.copyfile(t["input_weights"], t["output_weights"])
    json.dump({"num_examples": 4, "loss": 0.25}, open(t["metrics"], "w"))
    answers.write("done\n")
`
	for _, rc := range []struct {
		name, file, script string
		persistent         bool
	}{
		{"sh", "run.sh", `d=$(dirname "$TEEML_TASK_FILE"); cp "$d/input.safetensors" "$d/output.safetensors"; echo '` + okMetrics + `' > "$d/metrics.json"`, false},
		{"python3", "run.py", pyCopy, false},
		{"python3+torch", "run.py", "import torch\n" + pyCopy, false},
		{"python3+torch-persistent", "run.py", pyServe, true},
	} {
		b.Run(rc.name, func(b *testing.B) {
			interp := "/bin/sh"
			if rc.file == "run.py" {
				interp = "/usr/bin/python3"
				if _, err := os.Stat(interp); err != nil {
					testenv.MustRun(b, "%v", err)
				}
			}
			ws := b.TempDir()
			os.WriteFile(filepath.Join(ws, rc.file), []byte(rc.script), 0o644)
			args := []string{interp, rc.file}
			if interp != "/bin/sh" {
				args = []string{interp, "-I", rc.file}
			}
			r, err := New(Config{Command: args, Workspace: ws, Train: tinyData(), Dataset: InfoFor(tinyData()),
				Env: map[string]string{"OMP_NUM_THREADS": "1"}, Persistent: rc.persistent, TempDir: b.TempDir(), Logger: testlog.Discard()})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			// A digits-MLP-sized model (64·128 + 128·128 + 128·10 weights).
			g := tensor.Weights{{Name: "fc1.weight", Shape: []int{128, 64}, Data: make([]float32, 128*64)},
				{Name: "fc2.weight", Shape: []int{128, 128}, Data: make([]float32, 128*128)},
				{Name: "out.weight", Shape: []int{10, 128}, Data: make([]float32, 10*128)}}
			if _, _, _, err := r.Train(context.Background(), g, nil); err != nil {
				// python3-torch missing, for the torch cases (.ci/run installs it).
				testenv.MustRun(b, "runner unavailable: %v", err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, _, err := r.Train(context.Background(), g, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
