package childlog

import (
	"os/exec"
	"syscall"
)

// setPdeathsig kills the child if this process dies without stopping it.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
