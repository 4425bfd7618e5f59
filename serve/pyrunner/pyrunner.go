// Package pyrunner serves a model through a persistent external process: a
// PyTorch TorchScript module run by serve_torchscript.py (embedded in the
// binary and run with `python3 -I -c`, so the code that sees the model is
// covered by the binary's measurement) under Debian's python3-torch, or any
// program that speaks the same pipe protocol. The model's bytes (already unsealed in memory) go to the
// process over its stdin, never to disk; requests and answers are raw
// little-endian float32 frames on stdin/stdout; stderr goes to the log.
//
// Protocol (all integers little-endian):
//
//	start:    teeml → runner  u64 model length, model bytes, u32 input width
//	          runner → teeml  one line "READY <output width>" or "ERROR <reason>"
//	request:  teeml → runner  u32 rows, rows×width float32
//	answer:   runner → teeml  u8 0, u32 rows, u32 outputs, rows×outputs float32
//	          or              u8 1, u32 length, a one-line UTF-8 reason
//
// A process that dies, answers out of protocol or misses a deadline is
// killed; the next request starts a new one (the model bytes stay in
// memory). Pool runs Size processes for concurrent requests.
package pyrunner

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/teeml/teeml/internal/childlog"
)

// Config describes the runner processes of one model.
type Config struct {
	// Command is the program and its arguments; Command[0] must be an
	// absolute path (it is never looked up in PATH). Empty: TorchScript's
	// embedded runner under DefaultPython.
	Command []string
	// Dir is the working directory.
	Dir string
	// Env is added to a minimal environment (nothing of teeml's own,
	// which may hold credentials, is inherited).
	Env map[string]string
	// Model is the model's bytes, handed to each process at start.
	Model []byte
	// InputWidth is the number of features per row.
	InputWidth int
	// StartTimeout bounds loading the model (default 2 min).
	StartTimeout time.Duration
	// Log receives the runners' stderr lines and restarts.
	Log *slog.Logger
}

// TorchScriptRunner is the embedded runner for TorchScript modules.
//
//go:embed serve_torchscript.py
var TorchScriptRunner string

// DefaultPython runs TorchScriptRunner when Config.Command is empty.
const DefaultPython = "/usr/bin/python3"

// ErrRunner marks a runner failure (crash, protocol violation, timeout, or
// the runner's own error answer).
var ErrRunner = errors.New("runner")

const (
	maxReason = 1 << 12
	maxRows   = 1 << 20
)

// proc is one running process.
type proc struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	outDim int
	tail   *tail
	exited chan struct{}
}

// Pool is Size runner processes of one model; Predict is safe for
// concurrent use (one request per process at a time).
type Pool struct {
	cfg    Config
	outDim int
	free   chan *proc // nil entries: a process to (re)start
	mu     sync.Mutex
	closed bool
	all    []*proc
}

// Start starts size processes and waits for each to load the model.
func Start(ctx context.Context, cfg Config, size int) (*Pool, error) {
	if len(cfg.Command) == 0 {
		cfg.Command = []string{DefaultPython, "-I", "-c", TorchScriptRunner}
	}
	if !filepath.IsAbs(cfg.Command[0]) {
		return nil, fmt.Errorf("%w: command %q: want an absolute program path", ErrRunner, cfg.Command)
	}
	if cfg.InputWidth <= 0 {
		return nil, fmt.Errorf("%w: input width %d: want a positive number of features", ErrRunner, cfg.InputWidth)
	}
	if size <= 0 {
		size = 1
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	p := &Pool{cfg: cfg, free: make(chan *proc, size)}
	for range size {
		pr, err := p.start(ctx)
		if err != nil {
			p.Close()
			return nil, err
		}
		if p.outDim == 0 {
			p.outDim = pr.outDim
		} else if pr.outDim != p.outDim {
			p.Close()
			return nil, fmt.Errorf("%w: processes disagree on the output width (%d, %d)", ErrRunner, p.outDim, pr.outDim)
		}
		p.free <- pr
	}
	return p, nil
}

// OutputWidth is what the model answers per row.
func (p *Pool) OutputWidth() int { return p.outDim }

func (p *Pool) env() []string {
	m := map[string]string{"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": p.cfg.Dir, "PYTHONDONTWRITEBYTECODE": "1"}
	for k, v := range p.cfg.Env {
		m[k] = v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, 0, len(m))
	for _, k := range keys {
		out = append(out, k+"="+m[k])
	}
	return out
}

func (p *Pool) start(ctx context.Context) (*proc, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: pool closed", ErrRunner)
	}
	p.mu.Unlock()
	cmd := exec.Command(p.cfg.Command[0], p.cfg.Command[1:]...)
	cmd.Dir, cmd.Env = p.cfg.Dir, p.env()
	childlog.OrphanProof(cmd)
	t := &tail{log: p.cfg.Log}
	cmd.Stderr = t
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start %s: %w", ErrRunner, p.cfg.Command[0], err)
	}
	pr := &proc{cmd: cmd, in: in, out: bufio.NewReaderSize(outPipe, 1<<16), tail: t, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(pr.exited) }()
	p.mu.Lock()
	p.all = append(p.all, pr)
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, p.cfg.StartTimeout)
	defer cancel()
	type ready struct {
		k   int
		err error
	}
	done := make(chan ready, 1)
	go func() {
		var hdr [8]byte
		binary.LittleEndian.PutUint64(hdr[:], uint64(len(p.cfg.Model)))
		var w [4]byte
		binary.LittleEndian.PutUint32(w[:], uint32(p.cfg.InputWidth))
		for _, b := range [][]byte{hdr[:], p.cfg.Model, w[:]} {
			if _, err := in.Write(b); err != nil {
				done <- ready{err: fmt.Errorf("sending the model: %w", err)}
				return
			}
		}
		line, err := pr.out.ReadString('\n')
		if err != nil {
			done <- ready{err: fmt.Errorf("no READY line: %w", err)}
			return
		}
		line = strings.TrimSpace(line)
		if reason, ok := strings.CutPrefix(line, "ERROR "); ok {
			done <- ready{err: errors.New(oneLine(reason))}
			return
		}
		rest, ok := strings.CutPrefix(line, "READY ")
		k, err := strconv.Atoi(rest)
		if !ok || err != nil || k <= 0 || k > 1<<16 {
			done <- ready{err: fmt.Errorf("start line %q: want READY <output width>", cut(line))}
			return
		}
		done <- ready{k: k}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			pr.kill()
			return nil, fmt.Errorf("%w: loading the model: %w%s", ErrRunner, r.err, t.suffix())
		}
		pr.outDim = r.k
		return pr, nil
	case <-ctx.Done():
		pr.kill()
		return nil, fmt.Errorf("%w: loading the model: %w%s", ErrRunner, ctx.Err(), t.suffix())
	}
}

func (pr *proc) kill() {
	if pr.cmd.Process != nil {
		pr.cmd.Process.Kill()
	}
	pr.in.Close()
	<-pr.exited
}

// Predict sends rows rows of x to a free process and returns its answer.
// A process that fails is killed and replaced at the next request.
func (p *Pool) Predict(ctx context.Context, x []float32, rows int) ([]float32, error) {
	if rows <= 0 || rows > maxRows || len(x) != rows*p.cfg.InputWidth {
		return nil, fmt.Errorf("%w: %d values for %d rows of %d", ErrRunner, len(x), rows, p.cfg.InputWidth)
	}
	var pr *proc
	select {
	case pr = <-p.free:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if pr == nil {
		var err error
		if pr, err = p.start(ctx); err != nil {
			p.free <- nil
			return nil, err
		}
		p.cfg.Log.Warn("pyrunner: runner restarted", "command", p.cfg.Command[0])
	}
	y, err := p.call(ctx, pr, x, rows)
	var answered *answerError
	switch {
	case err == nil, errors.As(err, &answered):
		p.free <- pr // in protocol: the process goes on
	default:
		pr.kill()
		p.free <- nil
	}
	return y, err
}

// answerError is the runner's own error answer (it stays in protocol).
type answerError struct{ msg string }

func (e *answerError) Error() string { return e.msg }

func (p *Pool) call(ctx context.Context, pr *proc, x []float32, rows int) ([]float32, error) {
	type res struct {
		y   []float32
		err error
	}
	done := make(chan res, 1)
	go func() {
		y, err := p.roundTrip(pr, x, rows)
		done <- res{y, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			var a *answerError
			if errors.As(r.err, &a) {
				return nil, fmt.Errorf("%w: %w", ErrRunner, r.err)
			}
			select {
			case <-pr.exited:
				return nil, fmt.Errorf("%w: process exited (%s)%s", ErrRunner, pr.cmd.ProcessState, pr.tail.suffix())
			case <-time.After(100 * time.Millisecond):
			}
			return nil, fmt.Errorf("%w: %w%s", ErrRunner, r.err, pr.tail.suffix())
		}
		return r.y, nil
	case <-ctx.Done():
		pr.kill() // the frame is half-sent or half-read: the process cannot go on
		<-done
		return nil, fmt.Errorf("%w: no answer: %w", ErrRunner, ctx.Err())
	}
}

func (p *Pool) roundTrip(pr *proc, x []float32, rows int) ([]float32, error) {
	buf := make([]byte, 4+4*len(x))
	binary.LittleEndian.PutUint32(buf, uint32(rows))
	for i, v := range x {
		binary.LittleEndian.PutUint32(buf[4+4*i:], math.Float32bits(v))
	}
	if _, err := pr.in.Write(buf); err != nil {
		return nil, fmt.Errorf("sending the request: %w", err)
	}
	return readAnswer(pr.out, rows, pr.outDim)
}

// readAnswer reads one answer frame for rows rows of k outputs.
func readAnswer(out io.Reader, rows, k int) ([]float32, error) {
	var st [1]byte
	if _, err := io.ReadFull(out, st[:]); err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	switch st[0] {
	case 0:
	case 1:
		var n [4]byte
		if _, err := io.ReadFull(out, n[:]); err != nil {
			return nil, fmt.Errorf("reading the error answer: %w", err)
		}
		l := binary.LittleEndian.Uint32(n[:])
		if l > maxReason {
			return nil, fmt.Errorf("error answer of %d bytes (at most %d)", l, maxReason)
		}
		msg := make([]byte, l)
		if _, err := io.ReadFull(out, msg); err != nil {
			return nil, fmt.Errorf("reading the error answer: %w", err)
		}
		return nil, &answerError{msg: "model: " + oneLine(string(msg))}
	default:
		return nil, fmt.Errorf("answer status %d (want 0 or 1)", st[0])
	}
	var hd [8]byte
	if _, err := io.ReadFull(out, hd[:]); err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	gotRows, gotK := int(binary.LittleEndian.Uint32(hd[:4])), int(binary.LittleEndian.Uint32(hd[4:]))
	if gotRows != rows || gotK != k {
		return nil, fmt.Errorf("answer of %d×%d for a request of %d rows (want %d×%d)", gotRows, gotK, rows, rows, k)
	}
	raw := make([]byte, 4*rows*k)
	if _, err := io.ReadFull(out, raw); err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	y := make([]float32, rows*k)
	for i := range y {
		y[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return y, nil
}

// Close stops every process (closing its stdin, then killing it after 5 s).
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	all := p.all
	p.mu.Unlock()
	for _, pr := range all {
		pr.in.Close()
		select {
		case <-pr.exited:
		case <-time.After(5 * time.Second):
			pr.cmd.Process.Kill()
			<-pr.exited
		}
	}
}

// tail logs a runner's stderr line by line and keeps the last lines for
// error messages.
type tail struct {
	log     *slog.Logger
	mu      sync.Mutex
	partial []byte
	last    []string
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, b...)
	for {
		i := slices.Index(t.partial, '\n')
		if i < 0 {
			if len(t.partial) > 4096 {
				t.partial = t.partial[:0]
			}
			return len(b), nil
		}
		line := cut(strings.TrimRight(string(t.partial[:i]), "\r"))
		t.partial = t.partial[i+1:]
		t.log.Info("pyrunner: runner stderr", "line", line)
		t.last = append(t.last, line)
		if len(t.last) > 3 {
			t.last = t.last[1:]
		}
	}
}

// suffix is ": runner stderr: <last lines>" or "".
func (t *tail) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.last) == 0 {
		return ""
	}
	return "; runner stderr: " + strings.Join(t.last, " | ")
}

func cut(s string) string {
	if len(s) > 240 {
		return s[:240] + "…"
	}
	return s
}

func oneLine(s string) string { return cut(strings.Join(strings.Fields(s), " ")) }
