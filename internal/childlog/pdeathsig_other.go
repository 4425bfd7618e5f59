//go:build !linux

package childlog

import "os/exec"

func setPdeathsig(*exec.Cmd) {}
