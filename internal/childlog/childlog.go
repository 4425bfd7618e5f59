// Package childlog holds what the quickstart orchestrators (fl/run,
// vfl/run) need to run parties as child processes and report on them: a
// writer several goroutines relay child output into, and the last line of a
// child's log file for a one-line failure message.
package childlog

import (
	"io"
	"os"
	"strings"
	"sync"
)

// SyncWriter serialises writes to W, so lines relayed from several children
// do not interleave mid-line.
type SyncWriter struct {
	mu sync.Mutex
	W  io.Writer
}

func (s *SyncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.W.Write(p)
}

// LastLine returns ": <last non-empty line of the file>", or "" if the file
// cannot be read or is empty — a suffix for "party failed: exit status 1".
func LastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return ": " + l
		}
	}
	return ""
}
