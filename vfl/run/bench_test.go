package run

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/vfl/split"
)

// BenchmarkSplitIteration measures one split-training iteration (follower
// forward, act1_f to the leader, leader step, act1_f_grad back, follower
// step, commits) at batch 32 on breast_cancer: over RA-TLS gRPC on loopback
// (two parties in one process, separate sockets) and over the in-process
// pipe. It reports ms/iter and bytes/iter (both directions, serialized
// frames including heartbeats) of the training session, not the
// attestation handshake.
//
//	go test ./vfl/run -run '^$' -bench SplitIteration -benchtime 3x
func BenchmarkSplitIteration(b *testing.B) {
	for _, kind := range []split.Kind{split.KindWideDeep, split.KindLR} {
		plan, err := SetupSimulated(SetupOptions{Dir: b.TempDir(), Dataset: "breast_cancer", Kind: kind, Epochs: 20, CheckpointEvery: 1000})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(kind)+"/ratls", func(b *testing.B) {
			var ms, bytes float64
			for range b.N {
				l := benchRATLS(b, plan)
				ms += l.MsPerIter
				bytes += l.BytesPerIter
			}
			b.ReportMetric(ms/float64(b.N), "ms/iter")
			b.ReportMetric(bytes/float64(b.N), "bytes/iter")
		})
		b.Run(string(kind)+"/pipe", func(b *testing.B) {
			var ms, bytes float64
			for range b.N {
				l, _, err := RunInProcess(context.Background(), plan, b.TempDir(), testlog.Discard())
				if err != nil {
					b.Fatal(err)
				}
				ms += l.MsPerIter
				bytes += l.BytesPerIter
			}
			b.ReportMetric(ms/float64(b.N), "ms/iter")
			b.ReportMetric(bytes/float64(b.N), "bytes/iter")
		})
	}
}

func benchRATLS(b *testing.B, plan string) *Result {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	state := b.TempDir()
	addr := make(chan string, 1)
	var ferr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, ferr = Run(ctx, Options{Plan: plan, Role: RoleFollower, Listen: "127.0.0.1:0", StateDir: filepath.Join(state, "f"),
			Logger: testlog.Discard(), Ready: func(a string) { addr <- a }})
		if ferr != nil {
			addr <- ""
		}
	}()
	a := <-addr
	if a == "" {
		wg.Wait()
		b.Fatal(ferr)
	}
	l, err := Run(ctx, Options{Plan: plan, Role: RoleLeader, Peer: a, StateDir: filepath.Join(state, "l"), Logger: testlog.Discard()})
	if err != nil {
		cancel()
		wg.Wait()
		b.Fatal(err)
	}
	wg.Wait()
	if ferr != nil {
		b.Fatal(ferr)
	}
	return l
}
