//go:build unix

package runner

import (
	"errors"
	"os/exec"
	"syscall"
)

func supported() error { return nil }

// setProcessGroup starts the runner as the leader of a new process group,
// so a timeout kills it together with everything it started (data loader
// workers, shells).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeath(cmd.SysProcAttr)
}

// killGroup sends SIGKILL to process group pgid; a group that no longer
// exists is not an error.
func killGroup(pgid int) error {
	if pgid <= 0 {
		return nil
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
