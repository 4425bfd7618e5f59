//go:build unix

package run

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockState takes an exclusive, non-blocking advisory lock on path, so
// that two aggregators of one plan never write the same checkpoint. The
// kernel drops the lock when the process dies, so a crash leaves no stale
// lock behind.
func lockState(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("checkpoint lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another aggregator of this plan is running on this workspace (%s is locked)", path)
		}
		return nil, fmt.Errorf("checkpoint lock %s: %w", path, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
