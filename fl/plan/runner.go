package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/internal/yamlx"
)

// ModelExternal is task_runner.model for a model that an external training
// runner (a user's PyTorch, TensorFlow or scikit-learn script, see
// fl/runner and docs/runners.md) defines and trains. task_runner.runner
// then says how to launch it.
const ModelExternal = "external"

// Limits of the task_runner.runner section.
const (
	// DefaultRunnerTimeout bounds one runner task when
	// task_runner.runner.timeout is absent.
	DefaultRunnerTimeout = 10 * time.Minute
	// MaxRunnerFileSize bounds a pinned runner file (a script, not a model).
	MaxRunnerFileSize = 64 << 20
	maxRunnerArgs     = 64
	maxRunnerArgLen   = 4096
	maxRunnerEnv      = 64
	maxRunnerFiles    = 64
)

// Runner is task_runner.runner: how a collaborator (and the aggregator, to
// evaluate, and plan init, to initialise) launches the external runner.
//
//	task_runner:
//	  model: external
//	  optimizer: adam        # passed to the runner as hyperparameters,
//	  lr: 0.01               # like seed, epochs_per_round, batch_size
//	  seed: 1
//	  runner:
//	    command: [/usr/bin/python3, -I, runner/digits_torch.py]
//	    timeout: 10m         # per task (optional, default 10m)
//	    env: {OMP_NUM_THREADS: "1"}   # optional
//	    files: [runner/digits_torch.py]
//
// files lists the runner's code, relative to the workspace. `teeml fl plan
// init` pins each file's SHA-256 into the frozen plan (the canonical form is
// a mapping path → digest), so the plan hash covers the training code and
// a runner whose files differ from the digests is never launched.
type Runner struct {
	// Command is the argv: Command[0] is an absolute path (an interpreter
	// such as /usr/bin/python3) or a workspace-relative file listed in
	// Files. The working directory is the workspace.
	Command []string
	// Timeout bounds each task (train, evaluate, init); the process group is
	// killed when it expires.
	Timeout time.Duration
	// Env is added to the runner's minimal environment; TEEML_* names are
	// reserved.
	Env map[string]string
	// Files maps workspace-relative paths to their lower-case hex SHA-256,
	// "" until plan init pins them.
	Files map[string]string
	// Persistent (persistent, optional, default false) keeps one runner
	// process per party that serves task after task (task file paths on
	// its stdin, one result line on fd 3) instead of one process per task,
	// so an interpreter's start-up (import torch) is paid once.
	Persistent bool
}

// Pinned reports whether every runner file has a digest.
func (r *Runner) Pinned() bool {
	for _, d := range r.Files {
		if d == "" {
			return false
		}
	}
	return true
}

func (ps *parser) runner(dst **Runner) func(string, *yaml.Node) error {
	return func(key string, v *yaml.Node) error {
		r := &Runner{Timeout: DefaultRunnerTimeout, Env: map[string]string{}, Files: map[string]string{}}
		*dst = r
		return ps.mapping(v, key, []field{
			{"command", true, ps.strList(&r.Command)},
			{"timeout", false, ps.duration(&r.Timeout)},
			{"persistent", false, ps.boolean(&r.Persistent)},
			{"env", false, func(key string, v *yaml.Node) error {
				if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
					return nil
				}
				return ps.stringMap(key, v, maxRunnerEnv, r.Env)
			}},
			{"files", true, func(key string, v *yaml.Node) error {
				// A list (as written by hand) or a mapping path → digest (as
				// frozen by plan init).
				if v.Kind == yaml.SequenceNode {
					var list []string
					if err := ps.strList(&list)(key, v); err != nil {
						return err
					}
					for i, f := range list {
						if _, dup := r.Files[f]; dup {
							return ps.errf(v.Content[i], fmt.Sprintf("%s[%d]", key, i), "file %q listed twice", f)
						}
						r.Files[f] = ""
					}
					return nil
				}
				if v.Kind != yaml.MappingNode {
					return ps.errf(v, key, "must be a list of workspace-relative paths (or the frozen mapping path: sha256), got %s", yamlx.KindName(v))
				}
				return ps.stringMap(key, v, maxRunnerFiles, r.Files)
			}},
		})
	}
}

// stringMap reads a mapping of strings to strings into dst.
func (ps *parser) stringMap(key string, v *yaml.Node, max int, dst map[string]string) error {
	if v.Kind != yaml.MappingNode {
		return ps.errf(v, key, "must be a mapping, got %s", yamlx.KindName(v))
	}
	if len(v.Content)/2 > max {
		return ps.errf(v, key, "at most %d entries, got %d", max, len(v.Content)/2)
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return ps.errf(k, key, "keys must be strings, got %s", yamlx.KindName(k))
		}
		kk := key + "." + yamlx.KeyName(k.Value)
		if _, dup := dst[k.Value]; dup {
			return ps.errf(k, kk, "duplicate key")
		}
		ps.p.lines[kk] = val.Line
		var s string
		if err := ps.str(&s)(kk, val); err != nil {
			return err
		}
		dst[k.Value] = s
	}
	return nil
}

// validateRunner checks task_runner for model external (or refuses a
// runner section for a built-in model).
func (p *Plan) validateRunner() error {
	t := &p.TaskRunner
	if t.Model != ModelExternal {
		if t.Runner != nil {
			return p.errf("task_runner.runner", "only for model %s, the model is %s", ModelExternal, t.Model)
		}
		return nil
	}
	r := t.Runner
	if r == nil {
		return p.errf("task_runner.runner", "missing: model %s needs the runner's command and files", ModelExternal)
	}
	if len(t.Hidden) > 0 {
		return p.errf("task_runner.hidden", "model %s: the runner defines the architecture", ModelExternal)
	}
	for _, check := range []func(*Runner) error{p.validateRunnerFiles, p.validateRunnerCommand, p.validateRunnerEnv} {
		if err := check(r); err != nil {
			return err
		}
	}
	return nil
}

// validateRunnerFiles checks task_runner.runner.files: workspace paths,
// digests (once pinned) in lower-case hex.
func (p *Plan) validateRunnerFiles(r *Runner) error {
	if len(r.Files) == 0 {
		return p.errf("task_runner.runner.files", "must list the runner's code (plan init pins its SHA-256 into the plan)")
	}
	if len(r.Files) > maxRunnerFiles {
		return p.errf("task_runner.runner.files", "at most %d files, got %d", maxRunnerFiles, len(r.Files))
	}
	for _, f := range slices.Sorted(maps.Keys(r.Files)) {
		key := "task_runner.runner.files." + yamlx.KeyName(f)
		if err := checkRelPath(f); err != nil {
			return p.errf(key, "%w", err)
		}
		if d := r.Files[f]; d != "" {
			if _, err := hex.DecodeString(d); err != nil || len(d) != 64 || strings.ToLower(d) != d {
				return p.errf(key, "%q is not a lower-case hex SHA-256 digest", d)
			}
		}
	}
	return nil
}

// validateRunnerCommand checks task_runner.runner.command (its executable
// absolute or one of the files, never looked up in PATH) and timeout.
func (p *Plan) validateRunnerCommand(r *Runner) error {
	if len(r.Command) == 0 {
		return p.errf("task_runner.runner.command", "must not be empty")
	}
	if len(r.Command) > maxRunnerArgs {
		return p.errf("task_runner.runner.command", "at most %d arguments, got %d", maxRunnerArgs, len(r.Command))
	}
	for i, a := range r.Command {
		key := fmt.Sprintf("task_runner.runner.command[%d]", i)
		if a == "" || len(a) > maxRunnerArgLen || strings.ContainsRune(a, 0) {
			return p.errf(key, "arguments must be 1..%d bytes without NUL", maxRunnerArgLen)
		}
	}
	exe := r.Command[0]
	switch {
	case strings.HasPrefix(exe, "/"):
		if path.Clean(exe) != exe {
			return p.errf("task_runner.runner.command[0]", "%q is not a clean absolute path", exe)
		}
	default:
		if _, ok := r.Files[exe]; !ok {
			return p.errf("task_runner.runner.command[0]", "%q must be an absolute path (e.g. /usr/bin/python3) or one of task_runner.runner.files, never looked up in PATH", exe)
		}
	}
	if r.Timeout < time.Second || r.Timeout > 7*24*time.Hour {
		return p.errf("task_runner.runner.timeout", "must be in 1s..168h, got %v", r.Timeout)
	}
	return nil
}

// validateRunnerEnv checks task_runner.runner.env.
func (p *Plan) validateRunnerEnv(r *Runner) error {
	for _, k := range slices.Sorted(maps.Keys(r.Env)) {
		key := "task_runner.runner.env." + yamlx.KeyName(k)
		if !envName(k) {
			return p.errf(key, "%q is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)", k)
		}
		if strings.HasPrefix(strings.ToUpper(k), "TEEML_") {
			return p.errf(key, "TEEML_* variables are reserved for teeml")
		}
		if v := r.Env[k]; len(v) > maxRunnerArgLen || strings.ContainsRune(v, 0) {
			return p.errf(key, "values must be at most %d bytes without NUL", maxRunnerArgLen)
		}
	}
	return nil
}

func envName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// canonicalRunner appends task_runner.runner to a canonical encoding (only
// present for model external, so built-in plans keep their hashes).
func (r *Runner) canonical(b *bytes.Buffer) {
	q := strconv.Quote
	args := make([]string, len(r.Command))
	for i, a := range r.Command {
		args[i] = q(a)
	}
	b.WriteString("  runner:\n")
	b.WriteString("    command: [" + strings.Join(args, ", ") + "]\n")
	b.WriteString("    timeout: " + q(r.Timeout.String()) + "\n")
	b.WriteString("    persistent: " + strconv.FormatBool(r.Persistent) + "\n")
	if len(r.Env) == 0 {
		b.WriteString("    env: {}\n")
	} else {
		b.WriteString("    env:\n")
		for _, k := range slices.Sorted(maps.Keys(r.Env)) {
			b.WriteString("      " + q(k) + ": " + q(r.Env[k]) + "\n")
		}
	}
	b.WriteString("    files:\n")
	for _, k := range slices.Sorted(maps.Keys(r.Files)) {
		b.WriteString("      " + q(k) + ": " + q(r.Files[k]) + "\n")
	}
}

// PinRunnerFiles sets the SHA-256 of every task_runner.runner file as found
// in workspace ws (plan init calls it before freezing). A plan without an
// external runner is left alone.
func (p *Plan) PinRunnerFiles(ws string) error {
	r := p.TaskRunner.Runner
	if r == nil {
		return nil
	}
	for _, f := range slices.Sorted(maps.Keys(r.Files)) {
		d, err := HashRunnerFile(ws, f)
		if err != nil {
			return err
		}
		r.Files[f] = d
	}
	return p.Validate()
}

// VerifyRunnerFiles checks that every task_runner.runner file in workspace
// ws has its pinned digest: the code about to run is the code the plan
// hash covers.
func (p *Plan) VerifyRunnerFiles(ws string) error {
	r := p.TaskRunner.Runner
	if r == nil {
		return nil
	}
	for _, f := range slices.Sorted(maps.Keys(r.Files)) {
		want := r.Files[f]
		if want == "" {
			return fmt.Errorf("plan: task_runner.runner.files: %s is not pinned: run teeml fl plan init", f)
		}
		got, err := HashRunnerFile(ws, f)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("plan: task_runner.runner.files: %s has SHA-256 %s…, the frozen plan pins %s…: the runner's code was modified; re-run teeml fl plan init",
				f, got[:12], want[:12])
		}
	}
	return nil
}

// HashRunnerFile returns the hex SHA-256 of workspace-relative file rel in
// ws. The file must be a regular file whose real path stays inside ws (a
// symbolic link out of the workspace is refused).
func HashRunnerFile(ws, rel string) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("plan: task_runner.runner.files: %s: "+format, append([]any{rel}, args...)...)
	}
	if err := checkRelPath(rel); err != nil {
		return fail("%w", err)
	}
	root, err := filepath.EvalSymlinks(ws)
	if err != nil {
		return fail("workspace: %w", err)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(ws, filepath.FromSlash(rel)))
	if err != nil {
		return fail("%w", err)
	}
	if r, err := filepath.Rel(root, real); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return fail("resolves to %s, outside the workspace", real)
	}
	f, err := os.Open(real)
	if err != nil {
		return fail("%w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fail("%w", err)
	}
	if !st.Mode().IsRegular() {
		return fail("not a regular file")
	}
	if st.Size() > MaxRunnerFileSize {
		return fail("%d bytes, at most %d", st.Size(), MaxRunnerFileSize)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, MaxRunnerFileSize+1)); err != nil {
		return fail("%w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
