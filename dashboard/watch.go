package dashboard

import (
	"context"
	"os"
	"time"
)

// WatchFiles polls the size and modification time of files() every
// interval until ctx ends and calls notify when any changed (a file
// appearing or disappearing counts). It is how a dashboard over files
// (a growing metrics.jsonl) shows a round within a poll interval plus one
// page fetch. It returns when ctx ends.
func WatchFiles(ctx context.Context, interval time.Duration, files func() []string, notify func()) {
	type stamp struct {
		size int64
		mod  time.Time
		ok   bool
	}
	snap := func() map[string]stamp {
		m := map[string]stamp{}
		for _, f := range files() {
			fi, err := os.Stat(f)
			if err != nil {
				m[f] = stamp{}
				continue
			}
			m[f] = stamp{size: fi.Size(), mod: fi.ModTime(), ok: true}
		}
		return m
	}
	last := snap()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := snap()
		changed := len(cur) != len(last)
		for f, s := range cur {
			if last[f] != s {
				changed = true
			}
		}
		last = cur
		if changed {
			notify()
		}
	}
}
