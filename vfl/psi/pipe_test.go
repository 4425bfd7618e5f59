package psi

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/testlog"
)

// runPipe runs a over b through Pipe (a listens, b dials) as runPair does
// over RA-TLS.
func runPipe(t *testing.T, mode Mode, a, b *party) pairResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	var sets [2]*Set
	for i, p := range []*party{a, b} {
		s, err := Prepare(strings.NewReader(joinLines(p.ids)), p.name, PrepareOptions{TempDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		sets[i] = s
		p.out = filepath.Join(dir, p.name+".aligned")
		p.cfg.Role, p.cfg.Self, p.cfg.Mode, p.cfg.Logger, p.cfg.TempDir = p.role, p.name, mode, testlog.Discard(), dir
		p.cfg.BatchSize = 64
		if p.cfg.ConfigHash == "" {
			p.cfg.ConfigHash = testConfigHash
		}
	}
	sa, sb := Pipe()
	var r pairResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.res[0], r.errs[0] = RunStream(ctx, sa, false, b.name, a.cfg, sets[0], a.out)
	}()
	r.res[1], r.errs[1] = RunStream(ctx, sb, true, a.name, b.cfg, sets[1], b.out)
	<-done
	for i, p := range []*party{a, b} {
		if r.errs[i] == nil && r.res[i].Learned {
			r.outs[i] = readLines(t, p.out)
		}
	}
	return r
}

// TestPipeSessions: the in-memory stream gives the plain intersection in
// both modes, like the RA-TLS transport.
func TestPipeSessions(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, mode := range []Mode{Both, LeaderLearns} {
		f, l := leaderFollower(genIDs(rng, "l", 700, 300), genIDs(rng, "f", 500, 300))
		f.role, l.role = Follower, Leader // a listens: the follower
		r := runPipe(t, mode, f, l)
		check(t, mode, r, f, l)
	}
}

// TestPipeMismatchFailsBothSides: a refusal on one side ends the other at
// once (the pipe breaks) rather than after MessageTimeout.
func TestPipeMismatchFailsBothSides(t *testing.T) {
	f, l := leaderFollower([]string{"a", "b"}, []string{"b", "c"})
	f.role, l.role = Follower, Leader
	l.cfg.ConfigHash = "another plan"
	start := time.Now()
	r := runPipe(t, Both, f, l)
	if r.errs[0] == nil || r.errs[1] == nil {
		t.Fatalf("want both sides to fail, got %v / %v", r.errs[0], r.errs[1])
	}
	if !strings.Contains(r.errs[0].Error(), "config hash") && !strings.Contains(r.errs[1].Error(), "config hash") {
		t.Fatalf("no side names the config hash: %v / %v", r.errs[0], r.errs[1])
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("took %v", d)
	}
}
