//go:build unix && !linux

package runner

import "syscall"

func setParentDeath(*syscall.SysProcAttr) {}
