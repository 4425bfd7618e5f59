package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFLWorkspaceFlowThroughBinary(t *testing.T) {
	bin := buildTeeml(t)
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	steps := [][]string{
		{"fl", "workspace", "create", "--prefix", ws, "--template", "digits_mlp"},
		{"fl", "collaborator", "create", "-w", ws, "-n", "col-1", "-d", "shard:0"},
		{"fl", "collaborator", "create", "-w", ws, "-n", "col-2", "-d", "shard:1"},
		{"fl", "plan", "init", "-w", ws, "-a", "127.0.0.1:50051"},
		{"fl", "workspace", "export", "-w", ws, "-o", filepath.Join(dir, "ws.tar.gz")},
		{"fl", "workspace", "import", "--archive", filepath.Join(dir, "ws.tar.gz"), "--dir", filepath.Join(dir, "copy")},
	}
	var hashLine string
	for _, s := range steps {
		out, e, code := run(t, bin, s...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", s, code, e)
		}
		if strings.HasPrefix(out, "plan frozen: sha256 ") {
			hashLine = strings.SplitN(out, "\n", 2)[0]
		}
	}
	if len(hashLine) != len("plan frozen: sha256 ")+64 {
		t.Fatalf("plan init did not print a hash: %q", hashLine)
	}
	got, err := os.ReadFile(filepath.Join(dir, "copy", "plan", "plan.hash"))
	if err != nil || !strings.Contains(string(got), strings.TrimPrefix(hashLine, "plan frozen: sha256 ")) {
		t.Fatalf("imported plan.hash %q, %v; want the frozen hash", got, err)
	}
	// Bad input: one-line errors, non-zero exit.
	bad := [][]string{
		{"fl", "workspace", "create", "--prefix", filepath.Join(dir, "x"), "--template", "nope"},
		{"fl", "collaborator", "create", "-w", ws, "-n", "col-1", "-d", "shard:1"},
		{"fl", "workspace", "import", "--archive", filepath.Join(dir, "missing.tar.gz"), "--dir", filepath.Join(dir, "y")},
	}
	for _, s := range bad {
		_, e, code := run(t, bin, s...)
		if code == 0 || strings.Count(strings.TrimSpace(e), "\n") != 0 || !strings.HasPrefix(e, "teeml: ") {
			t.Errorf("%v: exit %d, stderr %q", s, code, e)
		}
	}
}

// TestFLPlanLint: teeml fl plan lint prints one warning per weak knob of
// the workspace's plan and exits 0, or non-zero with --strict; a missing
// plan is a one-line error.
func TestFLPlanLint(t *testing.T) {
	bin := buildTeeml(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if _, e, code := run(t, bin, "fl", "workspace", "create", "--prefix", ws, "--template", "digits_mlp"); code != 0 {
		t.Fatalf("workspace create: exit %d: %s", code, e)
	}
	out, e, code := run(t, bin, "fl", "plan", "lint", "-w", ws)
	if code != 0 {
		t.Fatalf("lint: exit %d: %s", code, e)
	}
	for _, want := range []string{"aggregation.validator.max_update_norm: 0: the derived bound", "aggregation.validator.min_accepted: 1:",
		"aggregation.strategy: fedavg is a mean", "3 warnings"} {
		if !strings.Contains(out, want) {
			t.Errorf("lint output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "warning: "+filepath.Join(ws, "plan", "plan.yaml")+":"); n != 3 {
		t.Errorf("%d warning lines naming the plan file, want 3:\n%s", n, out)
	}
	_, e, code = run(t, bin, "fl", "plan", "lint", "-w", ws, "--strict")
	if code == 0 || !strings.HasPrefix(e, "teeml: plan lint: ") || strings.Count(strings.TrimSpace(e), "\n") != 0 {
		t.Errorf("lint --strict: exit %d, stderr %q", code, e)
	}
	_, e, code = run(t, bin, "fl", "plan", "lint", "--plan", filepath.Join(ws, "missing.yaml"))
	if code == 0 || !strings.HasPrefix(e, "teeml: plan: ") || strings.Count(strings.TrimSpace(e), "\n") != 0 {
		t.Errorf("lint of a missing plan: exit %d, stderr %q", code, e)
	}
}
