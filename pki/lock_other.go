//go:build !unix

package pki

// lockDir is a no-op where flock is unavailable; the CA's mutex still
// serialises changes within one process.
func lockDir(dir string) (unlock func(), err error) { return func() {}, nil }
