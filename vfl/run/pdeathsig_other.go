//go:build !linux

package run

import "os/exec"

func setPdeathsig(*exec.Cmd) {}
