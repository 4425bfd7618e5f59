//go:build !unix

package workspace

// lock is a no-op where flock is unavailable: concurrent AddCollaborator
// calls may then lose an entry (each write is still atomic).
func lock(string) (func(), error) { return func() {}, nil }
