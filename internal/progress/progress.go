// Package progress draws a one-line progress bar for long work (training
// epochs, streaming bytes). On a terminal it redraws in place; elsewhere (CI
// logs, pipes) it stays silent so logs keep only the per-epoch summary lines
// the caller prints.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Bar is a progress bar for one unit of work (one epoch, one file).
type Bar struct {
	mu      sync.Mutex
	w       io.Writer
	label   string
	total   int
	done    int
	start   time.Time
	last    time.Time
	enabled bool
}

// IsTerminal reports whether f is a character device (a terminal).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// New returns a bar that draws on w only when enabled is true.
func New(w io.Writer, label string, total int, enabled bool) *Bar {
	now := time.Now()
	return &Bar{w: w, label: label, total: total, start: now, enabled: enabled}
}

// Set records that done of total units are finished and redraws at most
// every 100 ms (and always at the end).
func (b *Bar) Set(done int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = done
	if !b.enabled {
		return
	}
	now := time.Now()
	if done < b.total && now.Sub(b.last) < 100*time.Millisecond {
		return
	}
	b.last = now
	fmt.Fprint(b.w, "\r"+b.render(now))
}

// Finish clears the bar line so the caller's summary line replaces it.
func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.enabled {
		fmt.Fprint(b.w, "\r\033[K")
	}
}

func (b *Bar) render(now time.Time) string {
	const width = 30
	frac := 0.0
	if b.total > 0 {
		frac = float64(b.done) / float64(b.total)
	}
	if frac > 1 {
		frac = 1
	}
	filled := int(frac * width)
	elapsed := now.Sub(b.start).Seconds()
	return fmt.Sprintf("%s [%s%s] %3.0f%% %d/%d %.1fs", b.label,
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), frac*100, b.done, b.total, elapsed)
}

// String renders the bar as it would be drawn now (used by tests).
func (b *Bar) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.render(time.Now())
}
