package childlog

import (
	"context"
	"os"
	"os/exec"
	"time"
)

// Command is exec.CommandContext for a party process: when ctx ends the
// child is interrupted (SIGINT, so it shuts down cleanly) and killed 5 s
// later if it has not exited, and on Linux it is killed if this process
// dies without stopping it.
func Command(ctx context.Context, exe string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	setPdeathsig(cmd)
	return cmd
}

// OrphanProof sets, on Linux, that cmd is killed if this process dies
// without stopping it (for children whose lifetime is not a context's).
func OrphanProof(cmd *exec.Cmd) { setPdeathsig(cmd) }
