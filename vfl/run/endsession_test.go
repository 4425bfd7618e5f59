package run

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vflv1 "github.com/teeml/teeml/api/proto/teeml/vfl/v1"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/vfl/bridge"
	"github.com/teeml/teeml/vfl/split"
)

// lateCommitConnector wraps the follower's streams so that a Commit is
// handed to the follower only once the leader has visibly gone on (a later
// Start or Data frame) or the stream has stayed open for hold after it; a
// Commit followed within hold by the end of the stream is lost, as a
// cancelled gRPC client stream loses the frames its transport still queues.
// This is, made deterministic, the interleaving behind the CI hangs: a busy
// follower had not read the leader's last Commit when the leader, done,
// closed the stream.
type lateCommitConnector struct {
	Connector
	hold time.Duration
}

func (l *lateCommitConnector) unwrap() Connector { return l.Connector }

func (l *lateCommitConnector) Connect(ctx context.Context) (*bridge.Conn, error) {
	c, err := l.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	h := &lateCommitStream{Stream: c.Stream, hold: l.hold, changed: make(chan struct{})}
	go h.pump()
	return bridge.WrapConn(c, h), nil
}

type lateCommitStream struct {
	bridge.Stream
	hold time.Duration

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when q or err change
	q       []*vflv1.Frame
	err     error
}

// pump reads the inner stream until it ends (both parties close their
// stream at the end of a session, so it exits).
func (h *lateCommitStream) pump() {
	for {
		f, err := h.Stream.Recv()
		h.mu.Lock()
		if err != nil {
			h.err = err
		} else {
			h.q = append(h.q, f)
		}
		close(h.changed)
		h.changed = make(chan struct{})
		h.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (h *lateCommitStream) Recv() (*vflv1.Frame, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var deadline time.Time
	for {
		if len(h.q) > 0 && h.q[0].GetCommit() == nil {
			f := h.q[0]
			h.q = h.q[1:]
			return f, nil
		}
		if len(h.q) > 0 {
			if deadline.IsZero() {
				deadline = time.Now().Add(h.hold)
			}
			for _, g := range h.q[1:] {
				if g.GetHeartbeat() == nil {
					deadline = time.Now()
				}
			}
			if h.err != nil && time.Now().Before(deadline) {
				h.q = nil // the close overtook the Commit
				return nil, h.err
			}
			if !time.Now().Before(deadline) {
				f := h.q[0]
				h.q = h.q[1:]
				return f, nil
			}
		} else if h.err != nil {
			return nil, h.err
		}
		c := h.changed
		h.mu.Unlock()
		if deadline.IsZero() {
			<-c
		} else {
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-c:
			case <-t.C:
			}
			t.Stop()
		}
		h.mu.Lock()
	}
}

// TestFollowerLearnsTheLeaderFinished: the leader finishes first (the
// follower's evaluation runs ahead); its last Commit must reach the
// follower even when the follower reads it late, for training and for
// prediction. Before the leader waited for the follower to close first,
// the follower lost that Commit, took the end of the stream for a broken
// channel and waited reconnect_timeout (60 s) for a leader that had
// exited — the CI failures of TestBrokenStreamResumesFromCheckpointExactly
// and TestPredictReproducesTheLeadersEvaluation.
func TestFollowerLearnsTheLeaderFinished(t *testing.T) {
	plan := setup(t, "breast_cancer", split.KindLR, 1)
	state := t.TempDir()
	// Far below reconnect_timeout: a follower that missed the end fails.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs testlog.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	two := func(what string, follower, leader func(Connector) error) {
		t.Helper()
		lc, fc := PipeConnectors()
		fc = &lateCommitConnector{Connector: fc, hold: 500 * time.Millisecond}
		ferr := make(chan error, 1)
		go func() { ferr <- follower(fc) }()
		lerr := leader(lc)
		if err := <-ferr; lerr != nil || err != nil {
			t.Fatalf("%s: leader: %v; follower: %v\nlog:\n%s", what, lerr, err, logs.String())
		}
	}
	opts := func(role string, c Connector) Options {
		return Options{Plan: plan, Role: role, StateDir: filepath.Join(state, role), Connector: c, Logger: log}
	}
	var lres *Result
	two("train", func(c Connector) error {
		_, err := Run(ctx, opts(RoleFollower, c))
		return err
	}, func(c Connector) (err error) {
		lres, err = Run(ctx, opts(RoleLeader, c))
		return err
	})
	ids := filepath.Join(t.TempDir(), "ids.txt")
	if err := os.WriteFile(ids, []byte(strings.Join(lres.TestIDs, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	two("predict", func(c Connector) error {
		_, err := Predict(ctx, PredictOptions{Options: opts(RoleFollower, c)})
		return err
	}, func(c Connector) error {
		res, err := Predict(ctx, PredictOptions{Options: opts(RoleLeader, c), IDs: ids, Output: filepath.Join(t.TempDir(), "p.csv")})
		if err == nil && res.Rows != len(lres.TestIDs) {
			t.Errorf("predict: %d rows, want %d", res.Rows, len(lres.TestIDs))
		}
		return err
	})
}
