package childlog

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Proc is a party child process: its stderr goes to a log file, each
// stdout line is copied to an output with a prefix (simulation banners,
// starting with "***", are left out) and offered on Lines.
type Proc struct {
	cmd    *exec.Cmd
	Lines  chan string // closed when stdout ends; lines are dropped when nobody reads
	exited chan struct{}
	err    error
}

// Start runs exe with args, stderr to logPath, stdout lines to out as
// "  [prefix] line". The child is killed if this process dies.
func Start(exe, logPath, prefix string, out io.Writer, args ...string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = logf
	setPdeathsig(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", prefix, err)
	}
	p := &Proc{cmd: cmd, Lines: make(chan string, 64), exited: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(p.Lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "***") {
				fmt.Fprintf(out, "  [%s] %s\n", prefix, line)
			}
			select {
			case p.Lines <- line:
			default:
			}
		}
	}()
	go func() { wg.Wait(); p.err = cmd.Wait(); logf.Close(); close(p.exited) }()
	return p, nil
}

// Stop interrupts the process and waits (killing it after 15 s).
func (p *Proc) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// Wait waits for the process to end (stopping it if ctx ends first) and
// returns its exit error.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return p.err
	case <-ctx.Done():
		p.Stop()
		return ctx.Err()
	}
}

// WaitLine waits up to timeout for a stdout line starting with prefix and
// returns the rest of it; an error if the process exits first.
func (p *Proc) WaitLine(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-p.Lines:
			if !ok {
				<-p.exited
				return "", fmt.Errorf("exited before printing %q", prefix)
			}
			if rest, found := strings.CutPrefix(line, prefix); found {
				return rest, nil
			}
		case <-t.C:
			p.Stop()
			return "", fmt.Errorf("did not print %q within %s", prefix, timeout)
		case <-ctx.Done():
			p.Stop()
			return "", ctx.Err()
		}
	}
}
