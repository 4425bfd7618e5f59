package runner

import "syscall"

// setParentDeath kills the runner if teeml itself dies (Linux only): a
// crashed collaborator leaves no orphaned training process behind.
func setParentDeath(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
