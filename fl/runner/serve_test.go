package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveScript is a persistent runner in sh: it records each start, then
// for each task file on stdin does what the file "mode" in the workspace
// says: ok (copy weights back), crash, hang, error, junk.
const serveScript = `echo $$ >> starts
while read -r f; do
  d=$(dirname "$f")
  case "$(cat mode)" in
  ok) cp "$d/input.safetensors" "$d/output.safetensors"; echo '` + okMetrics + `' > "$d/metrics.json"; echo "served $f" >&2; echo done >&3 ;;
  crash) echo "Segmentation fault in libtorch" >&2; exit 9 ;;
  hang) echo "stuck" >&2; sleep 600 ;;
  error) echo "error ValueError: bad batch" >&3 ;;
  junk) echo "whatever" >&3 ;;
  esac
done`

func newServeRunner(t *testing.T, timeout time.Duration) (*Runner, string) {
	t.Helper()
	r, ws, _ := newRunner(t, serveScript, timeout, map[string][]byte{"mode": []byte("ok")})
	r.cfg.Persistent = true
	return r, ws
}

func setMode(t *testing.T, ws, mode string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(ws, "mode"), []byte(mode), 0o644); err != nil {
		t.Fatal(err)
	}
}

func starts(t *testing.T, ws string) []string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(ws, "starts"))
	return strings.Fields(string(b))
}

// TestPersistentRunnerServesManyTasks: one process serves every task, and
// recovers from each kind of failure with a fresh process (or the same
// one, after a reported error).
func TestPersistentRunnerServesManyTasks(t *testing.T) {
	r, ws := newServeRunner(t, 2*time.Second)
	ctx := context.Background()
	train := func() error {
		_, _, _, err := r.Train(ctx, global(), map[string]float64{"server_round": 1})
		return err
	}
	for i := 0; i < 3; i++ {
		if err := train(); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := r.Evaluate(ctx, global()); err != nil {
			t.Fatal(err)
		}
	}
	if s := starts(t, ws); len(s) != 1 {
		t.Fatalf("6 tasks started %d processes, want 1", len(s))
	}

	setMode(t, ws, "error")
	if err := train(); err == nil || !strings.Contains(err.Error(), "the runner reported: ValueError: bad batch") {
		t.Fatalf("reported error: %v", err)
	}
	setMode(t, ws, "ok")
	if err := train(); err != nil {
		t.Fatal(err)
	}
	if s := starts(t, ws); len(s) != 1 {
		t.Fatalf("a reported error restarted the process (%d starts)", len(s))
	}

	for _, c := range []struct{ mode, want string }{
		{"crash", "exited with status 9: Segmentation fault in libtorch"},
		{"hang", "timed out after 2s; process group killed: "},
		{"junk", `answered "whatever" on fd 3, want "done" or "error <reason>"`},
	} {
		before := starts(t, ws)
		setMode(t, ws, c.mode)
		err := train()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: error %v, want one line containing %q", c.mode, err, c.want)
		}
		waitDeadPid(t, before[len(before)-1])
		setMode(t, ws, "ok")
		if err := train(); err != nil {
			t.Fatalf("after %s: %v", c.mode, err)
		}
		if s := starts(t, ws); len(s) != len(before)+1 {
			t.Fatalf("after %s: %d starts, want %d", c.mode, len(s), len(before)+1)
		}
	}
	// Close ends the process.
	last := starts(t, ws)
	r.Close()
	waitDeadPid(t, last[len(last)-1])
}

func waitDeadPid(t *testing.T, pid string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pid")
	os.WriteFile(f, []byte(pid), 0o644)
	waitDead(t, f)
}

func TestPersistentRunnerCancel(t *testing.T) {
	r, ws := newServeRunner(t, time.Minute)
	setMode(t, ws, "hang")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, _, _, err := r.Train(ctx, global(), nil)
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("error %v", err)
	}
	s := starts(t, ws)
	waitDeadPid(t, s[0])
}
