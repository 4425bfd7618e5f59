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
