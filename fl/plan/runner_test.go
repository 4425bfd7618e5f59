package plan_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/fl/plan"
)

func TestRunnerValidationErrors(t *testing.T) {
	base := string(template(t, "digits_torch"))
	for _, c := range []struct{ old, new, key, msg, line string }{
		{"model: external", "model: mlp", "task_runner.runner", "only for model external, the model is mlp", "    command: ["},
		{"    files: [runner/digits_torch.py]", "    files: []", "task_runner.runner.files", "must list the runner's code", ""},
		{"    files: [runner/digits_torch.py]", "    files: [../escape.py]", "task_runner.runner.files.\"../escape.py\"", "leaves the workspace", "    files:"},
		{"    files: [runner/digits_torch.py]", "    files: [/etc/passwd]", "task_runner.runner.files.\"/etc/passwd\"", "must be a relative path", "    files:"},
		{"    files: [runner/digits_torch.py]", "    files: [a.py, a.py]", "task_runner.runner.files[1]", `"a.py" listed`, ""},
		{"    files: [runner/digits_torch.py]", "    files:\n      runner/digits_torch.py: abc", "task_runner.runner.files.\"runner/digits_torch.py\"", "not a lower-case hex SHA-256", "      runner/digits_torch.py: abc"},
		{"    files: [runner/digits_torch.py]", "    files: 3", "task_runner.runner.files", "must be a list of workspace-relative paths", ""},
		{"command: [/usr/bin/python3, -I, runner/digits_torch.py]", "command: [python3, runner/digits_torch.py]", "task_runner.runner.command[0]", "never looked up in PATH", "    command:"},
		{"command: [/usr/bin/python3, -I, runner/digits_torch.py]", "command: []", "task_runner.runner.command", "must not be empty", ""},
		{"command: [/usr/bin/python3, -I, runner/digits_torch.py]", "command: [/usr/bin/../bin/python3]", "task_runner.runner.command[0]", "not a clean absolute path", "    command:"},
		{"timeout: 5m", "timeout: 0", "task_runner.runner.timeout", "must be in 1s..168h, got 0s", ""},
		{"timeout: 5m", "timeout: forever", "task_runner.runner.timeout", "must be a duration", ""},
		{"      OMP_NUM_THREADS: \"1\"", "      TEEML_TASK_FILE: /etc/shadow", "task_runner.runner.env.TEEML_TASK_FILE", "reserved", ""},
		{"      OMP_NUM_THREADS: \"1\"", "      \"BAD NAME\": x", "task_runner.runner.env.\"BAD NAME\"", "not an environment variable name", ""},
		{"      OMP_NUM_THREADS: \"1\"", "      OMP_NUM_THREADS: 1", "task_runner.runner.env.OMP_NUM_THREADS", "must be a string, got an integer", ""},
		{"    env:\n", "    bogus: 1\n    env:\n", "task_runner.runner.bogus", "unknown key (known in task_runner.runner: command, timeout, persistent, env, files)", "    bogus: 1"},
		{"  seed: 1                                  # model initialisation (init", "  seed: 1\n  hidden: [64]\n  #", "task_runner.hidden", "the runner defines the architecture", "  hidden: [64]"},
	} {
		checkErr(t, base, c.old, c.new, c.key, c.msg, c.line)
	}
	// model external without a runner section.
	i := strings.Index(base, "  runner:")
	j := strings.Index(base, "network:")
	checkErr(t, base, base[i:j], "\n", "task_runner.runner", "missing: model external needs the runner's command and files", "  model: external")
}

// TestRunnerFilesPinnedIntoHash: plan init pins the runner's code into the
// plan, so the hash changes with it, and VerifyRunnerFiles refuses a
// modified, missing or escaping file.
func TestRunnerFilesPinnedIntoHash(t *testing.T) {
	ws := t.TempDir()
	script := filepath.Join(ws, "runner", "digits_torch.py")
	os.MkdirAll(filepath.Dir(script), 0o755)
	if err := os.WriteFile(script, []byte("print('v1')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, template(t, "digits_torch"))
	if p.TaskRunner.Runner.Pinned() {
		t.Fatal("template plan is pinned")
	}
	if err := p.VerifyRunnerFiles(ws); err == nil || !strings.Contains(err.Error(), "is not pinned: run teeml fl plan init") {
		t.Fatalf("unpinned: %v", err)
	}
	unpinned := p.Hash()
	if err := p.PinRunnerFiles(ws); err != nil {
		t.Fatal(err)
	}
	h1 := p.Hash()
	if h1 == unpinned {
		t.Fatal("pinning does not change the hash")
	}
	// The canonical form reads back to the same plan and hash.
	back := mustParse(t, p.Canonical())
	if back.Hash() != h1 || !back.TaskRunner.Runner.Pinned() {
		t.Fatalf("canonical round trip: %s vs %s\n%s", back.Hash(), h1, p.Canonical())
	}
	if err := back.VerifyRunnerFiles(ws); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte("print('v2: poisoned')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := back.VerifyRunnerFiles(ws); err == nil || !strings.Contains(err.Error(), "the runner's code was modified") {
		t.Fatalf("modified: %v", err)
	}
	if err := p.PinRunnerFiles(ws); err != nil || p.Hash() == h1 {
		t.Fatalf("re-pinning modified code keeps hash %s (%v)", h1, err)
	}
	// A symbolic link out of the workspace is refused.
	outside := filepath.Join(t.TempDir(), "evil.py")
	os.WriteFile(outside, []byte("x"), 0o644)
	os.Remove(script)
	if err := os.Symlink(outside, script); err != nil {
		t.Fatal(err)
	}
	if _, err := plan.HashRunnerFile(ws, "runner/digits_torch.py"); err == nil || !strings.Contains(err.Error(), "outside the workspace") {
		t.Fatalf("symlink: %v", err)
	}
	os.Remove(script)
	if err := back.VerifyRunnerFiles(ws); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing: %v", err)
	}
}

// TestBuiltinPlanHashUnchanged: the runner section appears in the
// canonical form only for model external.
func TestBuiltinPlanCanonicalHasNoRunner(t *testing.T) {
	p := mustParse(t, template(t, "digits_mlp"))
	if strings.Contains(string(p.Canonical()), "  runner:") {
		t.Fatalf("canonical built-in plan mentions the runner:\n%s", p.Canonical())
	}
}
