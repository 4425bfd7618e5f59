package encrypted

import (
	"os/exec"
	"syscall"
)

// setPdeathsig kills the key broker if the quickstart dies without stopping it.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
