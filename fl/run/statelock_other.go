//go:build !unix

package run

// lockState is a no-op where flock is unavailable.
func lockState(string) (func(), error) { return func() {}, nil }
