package runner

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
)

// Bounds on what a runner's output costs teeml.
const (
	maxLineLen    = 1024   // longer lines are cut
	maxLoggedLine = 10_000 // lines per stream and task sent to slog; the rest are counted
	tailLineLen   = 240    // stderr lines quoted in errors are cut to this
)

// lineLog is an io.Writer that splits a runner's output into lines, logs
// each with the stream name (and the logger's task and round), and keeps
// the last keep lines for error messages.
type lineLog struct {
	log    *slog.Logger
	stream string
	keep   int

	mu      sync.Mutex
	partial []byte
	last    []string
	logged  int
	dropped int
}

func newLineLog(log *slog.Logger, stream string, keep int) *lineLog {
	return &lineLog{log: log, stream: stream, keep: keep}
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLineLen - len(l.partial)
			if room > 0 {
				l.partial = append(l.partial, p[:min(room, len(p))]...)
			}
			break
		}
		room := maxLineLen - len(l.partial)
		if room > 0 {
			l.partial = append(l.partial, p[:min(room, i)]...)
		}
		l.line(string(l.partial))
		l.partial = l.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (l *lineLog) line(s string) {
	s = strings.TrimRight(s, "\r")
	if strings.TrimSpace(s) == "" {
		return
	}
	s = strings.ToValidUTF8(s, "�")
	if l.keep > 0 {
		t := s
		if len(t) > tailLineLen {
			t = t[:tailLineLen] + "…"
		}
		l.last = append(l.last, t)
		if len(l.last) > l.keep {
			l.last = l.last[1:]
		}
	}
	if l.logged >= maxLoggedLine {
		l.dropped++
		return
	}
	l.logged++
	l.log.Info("runner "+l.stream, "line", s)
}

// flush logs a final line without newline and the count of dropped lines.
func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.line(string(l.partial))
		l.partial = l.partial[:0]
	}
	if l.dropped > 0 {
		l.log.Warn("runner output lines not logged", "stream", l.stream, "dropped", l.dropped)
		l.dropped = 0
	}
}

// retarget sends further lines to log (a persistent runner's next task)
// and forgets the kept lines.
func (l *lineLog) retarget(log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log, l.last, l.logged = log, nil, 0
}

// tail is the kept lines joined on one line.
func (l *lineLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.last, " | ")
}
