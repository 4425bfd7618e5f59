//go:build !linux

package encrypted

import "os/exec"

func setPdeathsig(*exec.Cmd) {}
