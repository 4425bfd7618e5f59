//go:build !unix

package runner

import (
	"errors"
	"os/exec"
)

func supported() error {
	return errors.New("runner: external training runners need a Unix system (process groups)")
}

func setProcessGroup(*exec.Cmd) {}

func killGroup(int) error { return nil }
