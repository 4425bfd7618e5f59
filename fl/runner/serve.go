package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// A persistent runner (task_runner.runner.persistent: true) is one process
// per party that serves tasks one after another, so the interpreter and
// its imports start once. It is started with TEEML_SERVE=1 (and no
// TEEML_TASK_FILE); for each task teeml writes the absolute path of the
// task file and a newline to its stdin, and the runner answers with one
// line on file descriptor 3: "done" when the task's outputs are written,
// or "error <reason>" when the task failed (the process stays up). EOF on
// stdin means stop. The same validation applies to every task's outputs.
// When a task times out or is cancelled, or the process exits or answers
// anything else, the process group is killed and the next task starts a
// fresh process.
type server struct {
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	results        chan string   // lines from fd 3; closed at EOF
	exited         chan struct{} // closed once the process has been waited for
	quit           chan struct{} // closed by stop: the fd-3 reader gives up
	waitErr        error
	stdout, stderr *lineLog
}

const maxResultLine = 4096

// start launches the persistent process; r.mu held.
func (r *Runner) start(log *slog.Logger) (*server, error) {
	argv0 := r.cfg.Command[0]
	if !filepath.IsAbs(argv0) {
		argv0 = filepath.Join(r.cfg.Workspace, filepath.FromSlash(argv0))
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv0, r.cfg.Command[1:]...)
	cmd.Dir = r.cfg.Workspace
	cmd.Env = r.env("", r.dir, "")
	s := &server{cmd: cmd, results: make(chan string), exited: make(chan struct{}), quit: make(chan struct{}),
		stdout: newLineLog(log, "stdout", 0), stderr: newLineLog(log, "stderr", 8)}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	cmd.ExtraFiles = []*os.File{pw}
	cmd.WaitDelay = 2 * time.Second
	setProcessGroup(cmd)
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	log.Info("persistent runner starts", "command", r.cfg.Command, "timeout_per_task", r.cfg.Timeout)
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", r.cfg.Command[0], err)
	}
	pw.Close()
	go func() {
		defer pr.Close()
		defer close(s.results)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 256), maxResultLine)
		for sc.Scan() {
			select {
			case s.results <- sc.Text():
			case <-s.quit:
				return
			}
		}
	}()
	go func() {
		s.waitErr = cmd.Wait()
		killGroup(cmd.Process.Pid)
		s.stdout.flush()
		s.stderr.flush()
		close(s.exited)
	}()
	return s, nil
}

// stop ends the process: EOF on stdin, then SIGKILL to the group after
// grace (at once when grace is 0).
func (s *server) stop(grace time.Duration) {
	s.stdin.Close()
	if grace > 0 {
		select {
		case <-s.exited:
		case <-time.After(grace):
		}
	}
	killGroup(s.cmd.Process.Pid)
	<-s.exited
	close(s.quit)
}

// exitError describes how the process ended.
func (s *server) exitError() error {
	tail := s.stderr.tail()
	if tail != "" {
		tail = ": " + tail
	}
	var ee *exec.ExitError
	switch {
	case s.waitErr == nil:
		return fmt.Errorf("the persistent runner exited (status 0) before answering%s", tail)
	case errors.As(s.waitErr, &ee) && ee.Exited():
		return fmt.Errorf("exited with status %d%s", ee.ExitCode(), tail)
	case errors.As(s.waitErr, &ee):
		return fmt.Errorf("%v%s", ee.ProcessState, tail)
	}
	return fmt.Errorf("%w%s", s.waitErr, tail)
}

// serveTask runs one task on the persistent process, starting it if
// needed.
func (r *Runner) serveTask(ctx context.Context, log *slog.Logger, kind, dir, taskFile string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv == nil {
		s, err := r.start(log)
		if err != nil {
			return err
		}
		r.srv = s
	}
	s := r.srv
	s.stdout.retarget(log)
	s.stderr.retarget(log)
	drop := func() { s.stop(0); r.srv = nil }
	tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	if _, err := io.WriteString(s.stdin, taskFile+"\n"); err != nil {
		// The process is gone (or closed stdin): report how it ended.
		select {
		case <-s.exited:
		case <-time.After(2 * time.Second):
		}
		drop()
		return s.exitError()
	}
	select {
	case line, ok := <-s.results:
		switch {
		case !ok:
			<-s.exited
			drop()
			return s.exitError()
		case line == "done":
			return nil
		case strings.HasPrefix(line, "error"):
			s.stdout.flush()
			s.stderr.flush()
			why := strings.TrimSpace(strings.TrimPrefix(line, "error"))
			if why == "" {
				why = s.stderr.tail()
			}
			return fmt.Errorf("the runner reported: %s", why)
		}
		drop()
		return fmt.Errorf("the persistent runner answered %s on fd 3, want \"done\" or \"error <reason>\"; process group killed", quote(line))
	case <-s.exited:
		drop()
		return s.exitError()
	case <-tctx.Done():
		drop()
		tail := s.stderr.tail()
		if tail != "" {
			tail = ": " + tail
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cancelled (%w); process group killed", context.Cause(ctx))
		}
		return fmt.Errorf("timed out after %v; process group killed%s", r.cfg.Timeout, tail)
	}
}
