package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return strings.TrimSpace(s[strings.LastIndex(s, "\n")+1:])
}

// checkSealedModel fails unless path is a sealed file holding none of the
// model's plaintext markers.
func checkSealedModel(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"end of trees", "Tree=", "teeml.", "centroids", "tree\n"} {
		if bytes.Contains(b, []byte(plain)) {
			t.Errorf("%s holds plaintext %q", path, plain)
		}
	}
	if !bytes.HasPrefix(b, []byte("TEEMLSEALED")) {
		t.Errorf("%s lacks the sealed magic: starts %.20q", path, b)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, st.Mode().Perm())
	}
}

// refusedInOneLine fails unless a run exited 1 with a last stderr line
// "teeml: …" containing want.
func refusedInOneLine(t *testing.T, what string, stderr string, code int, want string) {
	t.Helper()
	last := lastLine(stderr)
	if code != 1 || !strings.HasPrefix(last, "teeml: ") || !strings.Contains(last, want) {
		t.Errorf("%s: exit %d, last line %q, want one teeml: line containing %q", what, code, last, want)
	}
}

// TestTrainTreesSealed: teeml train --model gbdt|rf|kmeans with --key-file
// reads a sealed CSV input in memory and writes the model sealed; eval and
// predict read it back with the same key and refuse it with no key or a
// different one, in one line, writing nothing.
func TestTrainTreesSealed(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	for _, kf := range []string{"keys.json", "other.json"} {
		if _, e, code := run(t, bin, "data", "keygen", "--key-file", p(kf), "--key", "data"); code != 0 {
			t.Fatal(e)
		}
	}
	if _, e, code := run(t, bin, "datasets", "export", "--dataset", "breast_cancer", "--split", "train", "-o", p("bc.csv")); code != 0 {
		t.Fatal(e)
	}
	if _, e, code := run(t, bin, "data", "encrypt", "--key-file", p("keys.json"), "--in", p("bc.csv"), "--out", p("bc.sealed")); code != 0 {
		t.Fatal(e)
	}

	// Sealed CSV in, sealed model out.
	out, e, code := run(t, bin, "train", "--model", "gbdt", "--input", p("bc.sealed"), "--key-file", p("keys.json"), "--trees", "30",
		"--num-leaves", "8", "--min-leaf", "10", "--out", p("gbdt.sealed"), "--log-level", "warn")
	if code != 0 {
		t.Fatalf("train gbdt on sealed input: exit %d %s", code, e)
	}
	if !strings.Contains(out, "SIMULATION") || !strings.Contains(out, "feature importance (gain, splits):") {
		t.Errorf("train output lacks the simulation banner or the importances:\n%s", out)
	}
	if last := lastLine(out); !strings.HasPrefix(last, "test_accuracy=0.9") {
		t.Errorf("train on sealed breast_cancer: last line %q, want test_accuracy >= 0.9", last)
	}
	checkSealedModel(t, p("gbdt.sealed"))

	// predict opens the sealed model and the sealed input with the same key.
	if _, e, code := run(t, bin, "predict", "--key-file", p("keys.json"), "--weights", p("gbdt.sealed"), "--input", p("bc.sealed"), "-o", p("pred.csv")); code != 0 {
		t.Fatalf("predict: exit %d %s", code, e)
	}
	plain, _ := os.ReadFile(p("bc.csv"))
	if rows, want := readCSVFile(t, p("pred.csv")), bytes.Count(plain, []byte("\n")); len(rows) != want {
		t.Errorf("predict wrote %d lines, want %d (header + one per input row)", len(rows), want)
	}

	// eval re-creates a bundled split; a model trained on a file has none.
	_, e, code = run(t, bin, "eval", "--key-file", p("keys.json"), "--weights", p("gbdt.sealed"), "--dataset", "breast_cancer")
	refusedInOneLine(t, "eval of a model trained on --input", e, code, "trained on input file bc.sealed, not a bundled dataset")

	// No key and a different key are refused in one line; nothing written.
	_, e, code = run(t, bin, "train", "--model", "gbdt", "--input", p("bc.sealed"), "--trees", "5", "--out", p("nokey.txt"))
	refusedInOneLine(t, "train on a sealed input without a key", e, code, `bc.sealed: sealed (key "data")`)
	_, e, code = run(t, bin, "train", "--model", "rf", "--input", p("bc.sealed"), "--key-file", p("other.json"), "--trees", "5", "--out", p("wrongkey.sealed"))
	refusedInOneLine(t, "train on a sealed input with another key file", e, code, `bc.sealed: sealed: unwrap data key: key "data": wrapped data key does not authenticate`)
	_, e, code = run(t, bin, "predict", "--weights", p("gbdt.sealed"), "--input", p("bc.csv"), "-o", p("nokey.csv"))
	refusedInOneLine(t, "predict with a sealed model and no key", e, code, `gbdt.sealed: sealed (key "data")`)
	_, e, code = run(t, bin, "predict", "--key-file", p("other.json"), "--weights", p("gbdt.sealed"), "--input", p("bc.csv"), "-o", p("wrongkey.csv"))
	refusedInOneLine(t, "predict with a sealed model and another key file", e, code, `gbdt.sealed: sealed: unwrap data key: key "data": wrapped data key does not authenticate`)
	for _, f := range []string{"nokey.txt", "wrongkey.sealed", "nokey.csv", "wrongkey.csv"} {
		if _, err := os.Stat(p(f)); err == nil {
			t.Errorf("a refused run wrote %s", f)
		}
	}

	// A bundled dataset with a key file: the model is sealed and eval reads
	// it back with the recorded split and prints what train printed.
	out, e, code = run(t, bin, "train", "--model", "rf", "--dataset", "breast_cancer", "--trees", "20", "--key-file", p("keys.json"),
		"--out", p("rf.sealed"), "--importance", p("imp.sealed"), "--log-level", "warn")
	if code != 0 {
		t.Fatalf("train rf: exit %d %s", code, e)
	}
	checkSealedModel(t, p("rf.sealed"))
	checkImportance(t, bin, p("imp.sealed"), p("keys.json"), out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	ev, e, code := run(t, bin, "eval", "--key-file", p("keys.json"), "--weights", p("rf.sealed"), "--dataset", "breast_cancer", "--log-level", "warn")
	if want := strings.Join(lines[len(lines)-2:], "\n"); code != 0 || !strings.HasSuffix(strings.TrimSpace(ev), want) {
		t.Errorf("eval of the sealed rf: exit %d, printed %q (stderr %q), train printed %q", code, ev, e, want)
	}
	_, e, code = run(t, bin, "eval", "--weights", p("rf.sealed"), "--dataset", "breast_cancer")
	refusedInOneLine(t, "eval of a sealed rf without a key", e, code, `rf.sealed: sealed (key "data")`)
	_, e, code = run(t, bin, "eval", "--key-file", p("other.json"), "--weights", p("rf.sealed"), "--dataset", "breast_cancer")
	refusedInOneLine(t, "eval of a sealed rf with another key file", e, code, `rf.sealed: sealed: unwrap data key: key "data": wrapped data key does not authenticate`)

	// k-means: sealed JSON, read back by predict.
	if _, e, code := run(t, bin, "train", "--model", "kmeans", "--dataset", "digits", "--k", "10", "--n-init", "2", "--key-file", p("keys.json"),
		"--out", p("km.sealed"), "--log-level", "warn"); code != 0 {
		t.Fatalf("train kmeans: exit %d %s", code, e)
	}
	checkSealedModel(t, p("km.sealed"))
	if out, e, code := run(t, bin, "predict", "--key-file", p("keys.json"), "--weights", p("km.sealed"), "--dataset", "digits", "-o", "-"); code != 0 || strings.Count(out, "\n") < 100 {
		t.Errorf("predict with the sealed k-means: exit %d, stdout starts %.80q, stderr %q", code, out, e)
	}

	// Flags that do not fit.
	_, e, code = run(t, bin, "train", "--model", "kmeans", "--dataset", "digits", "--importance", p("km-imp.csv"))
	refusedInOneLine(t, "train kmeans with --importance", e, code, "k-means has no feature importances")
	_, e, code = run(t, bin, "train", "--model", "logreg", "--dataset", "breast_cancer", "--key-file", p("keys.json"))
	refusedInOneLine(t, "train logreg with --key-file", e, code, "for rf, gbdt and kmeans")
	_, e, code = run(t, bin, "train", "--model", "gbdt", "--dataset", "breast_cancer", "--input", p("bc.csv"))
	refusedInOneLine(t, "train with --input and --dataset", e, code, "not both")
}

// TestTrainTreesKMS: with --kms the model is sealed under a broker key; the
// member the key's release policy admits reads it back, the other is
// refused in one line.
func TestTrainTreesKMS(t *testing.T) {
	bin := buildTeeml(t)
	dir, _, col1, col2 := simBrokerWithKey(t, bin, "models")
	model := filepath.Join(dir, "gbdt.sealed")
	out, e, code := run(t, bin, "train", "--model", "gbdt", "--dataset", "breast_cancer", "--trees", "20", "--num-leaves", "8",
		"--kms", col1, "--key", "models", "--out", model, "--log-level", "warn")
	if code != 0 || !strings.Contains(e, "SIMULATION") {
		t.Fatalf("train --kms: exit %d, stderr %q", code, e)
	}
	checkSealedModel(t, model)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	ev, e, code := run(t, bin, "eval", "--kms", col1, "--weights", model, "--dataset", "breast_cancer", "--log-level", "warn")
	if want := strings.Join(lines[len(lines)-2:], "\n"); code != 0 || strings.TrimSpace(ev) != want {
		t.Errorf("eval --kms col-1: exit %d, printed %q (stderr %q), train printed %q", code, ev, e, want)
	}
	_, e, code = run(t, bin, "eval", "--kms", col2, "--weights", model, "--dataset", "breast_cancer")
	refusedInOneLine(t, "eval --kms col-2", e, code, `member "col-2" (role collaborator) is not allowed`)
	_, e, code = run(t, bin, "train", "--model", "gbdt", "--dataset", "breast_cancer", "--kms", col1, "--out", filepath.Join(dir, "x.sealed"))
	refusedInOneLine(t, "train --kms without --key", e, code, "--key ID is required")
}

// checkImportance decrypts the sealed importance file and checks it against
// what train printed: one row per breast_cancer feature, gains decreasing,
// the first row the first printed feature.
func checkImportance(t *testing.T, bin, path, keys, trainOut string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("TEEMLSEALED")) || bytes.Contains(b, []byte("gain")) {
		t.Fatalf("%s is not sealed", path)
	}
	plain := path + ".csv"
	if _, e, code := run(t, bin, "data", "decrypt", "--key-file", keys, "--in", path, "--out", plain); code != 0 {
		t.Fatalf("decrypt importance: %s", e)
	}
	rows := readCSVFile(t, plain)
	if len(rows) != 31 || strings.Join(rows[0], ",") != "feature,gain,splits" {
		t.Fatalf("importance: %d rows, header %v; want 30 features under feature,gain,splits", len(rows), rows[0])
	}
	prev, total := math.Inf(1), 0
	for _, r := range rows[1:] {
		g, err1 := strconv.ParseFloat(r[1], 64)
		n, err2 := strconv.Atoi(r[2])
		if err1 != nil || err2 != nil || g > prev || g < 0 || n < 0 {
			t.Fatalf("importance row %v after gain %v: want decreasing non-negative gain and a split count", r, prev)
		}
		prev, total = g, total+n
	}
	if total == 0 {
		t.Error("importance: no splits at all")
	}
	_, after, _ := strings.Cut(trainOut, "feature importance (gain, splits):\n")
	if !strings.HasPrefix(strings.TrimSpace(after), rows[1][0]+" ") {
		t.Errorf("importance file starts with %q, train printed %.60q", rows[1][0], after)
	}
}
