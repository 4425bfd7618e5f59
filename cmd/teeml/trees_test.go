package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/teeml/teeml/ml/trees"
)

func TestTrainTreesCLI(t *testing.T) {
	bin := buildTeeml(t)
	out := filepath.Join(t.TempDir(), "model.txt")
	stdout, stderr, code := run(t, bin, "train", "--dataset", "breast_cancer", "--model", "gbdt", "--trees", "50", "--num-leaves", "8",
		"--min-leaf", "10", "--out", out, "--log-level", "warn")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"iteration 1 valid_loss=", "feature importance (gain, splits):", "\ntest_auc=", "\ntest_accuracy="} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	acc, err := strconv.ParseFloat(strings.TrimPrefix(lines[len(lines)-1], "test_accuracy="), 64)
	if err != nil || acc < 0.9 {
		t.Errorf("last line %q: want test_accuracy >= 0.9", lines[len(lines)-1])
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := trees.ParseText(f, out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Objective != trees.ObjBinary || len(m.Trees) == 0 {
		t.Errorf("saved model: objective %q, %d trees", m.Objective, len(m.Trees))
	}

	// teeml eval re-splits with the seed recorded in the file and gets
	// the same test metrics as training printed.
	ev, stderr, code := run(t, bin, "eval", "--weights", out, "--dataset", "breast_cancer", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, stderr)
	}
	if want := strings.Join(lines[len(lines)-2:], "\n"); strings.TrimSpace(ev) != want {
		t.Errorf("eval printed %q, train %q", ev, want)
	}
	if _, _, code := run(t, bin, "eval", "--weights", out, "--dataset", "digits", "--log-level", "warn"); code == 0 {
		t.Error("eval of a breast_cancer model on digits succeeded")
	}

	stdout, stderr, code = run(t, bin, "train", "--dataset", "digits", "--model", "kmeans", "--k", "10", "--log-level", "warn")
	if code != 0 || !strings.Contains(stdout, "test_ari=") {
		t.Fatalf("kmeans: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
