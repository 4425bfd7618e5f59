package bridge

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	vflv1 "github.com/teeml/teeml/api/proto/teeml/vfl/v1"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/internal/testlog"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func start(it int64) *vflv1.Frame {
	return &vflv1.Frame{Kind: &vflv1.Frame_Start{Start: &vflv1.Start{IterId: it}}}
}

func commit(it int64) *vflv1.Frame {
	return &vflv1.Frame{Kind: &vflv1.Frame_Commit{Commit: &vflv1.Commit{IterId: it}}}
}

func data(t *testing.T, it int64, name string, v ...float32) *vflv1.Frame {
	t.Helper()
	ten, err := EncodeTensor([]int{len(v)}, v)
	if err != nil {
		t.Fatal(err)
	}
	return &vflv1.Frame{Kind: &vflv1.Frame_Data{Data: &vflv1.Data{IterId: it, Name: name, Tensor: ten}}}
}

// rawPeer is a session under test plus the raw other end of its pipe.
func newRaw(t *testing.T, cfg Config) (*Session, *Conn, *lockedBuf) {
	t.Helper()
	a, b := Pipe()
	logs := &lockedBuf{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := NewSession(a, 0, cfg)
	// Drain what the session sends (heartbeats, frames) so it never blocks.
	go func() {
		for {
			if _, err := b.Recv(); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { s.Close(); a.Close(); s.Wait() })
	return s, b, logs
}

func send(t *testing.T, c *Conn, fs ...*vflv1.Frame) {
	t.Helper()
	for _, f := range fs {
		if err := c.Send(f); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDuplicatesAreIgnoredWithALogLine(t *testing.T) {
	s, raw, logs := newRaw(t, Config{})
	send(t, raw, start(1), start(1), data(t, 1, "act", 1, 2), data(t, 1, "act", 9, 9), commit(1), commit(1), data(t, 1, "act", 7), start(2), data(t, 2, "act", 3))
	ctx := context.Background()
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	_, v, err := s.Recv(ctx, "act")
	if err != nil {
		t.Fatal(err)
	}
	if v[0] != 1 || v[1] != 2 {
		t.Fatalf("got %v, want the first copy [1 2]", v)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(2); err != nil {
		t.Fatal(err)
	}
	_, v, err = s.Recv(ctx, "act")
	if err != nil || v[0] != 3 {
		t.Fatalf("iteration 2: %v %v", v, err)
	}
	if d := s.Stats().Duplicates; d != 4 {
		t.Fatalf("%d duplicates counted, want 4", d)
	}
	if !strings.Contains(logs.String(), "ignoring duplicate start") || !strings.Contains(logs.String(), "ignoring duplicate data") {
		t.Fatalf("no duplicate log lines:\n%s", logs)
	}
}

func TestCommitWithoutExpectedNameIsAnError(t *testing.T) {
	s, raw, _ := newRaw(t, Config{})
	send(t, raw, start(1), data(t, 1, "other", 1), commit(1))
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Recv(context.Background(), "act")
	var pe *ProtocolError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), `committed iteration 1 without sending "act"`) {
		t.Fatalf("err %v", err)
	}
}

func TestPeerStartBeforeCommitEndsSession(t *testing.T) {
	s, raw, _ := newRaw(t, Config{})
	send(t, raw, start(1), start(2))
	// The session's reader may see the peer's second Start before or after
	// the local Start(1): the protocol error surfaces at the next call
	// either way, and nothing of iteration 1 may be delivered.
	err := s.Start(1)
	if err == nil {
		_, _, err = s.Recv(context.Background(), "act")
	}
	if err == nil || !strings.Contains(err.Error(), "started iteration 2 before committing iteration 1") {
		t.Fatalf("err %v", err)
	}
}

func TestLocalOrderIsEnforced(t *testing.T) {
	s, _, _ := newRaw(t, Config{})
	if err := s.Start(2); err == nil {
		t.Fatal("start of 2 before 1 accepted")
	}
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(2); err == nil {
		t.Fatal("start of 2 before committing 1 accepted")
	}
}

func TestRecvTimesOutAndWarnsWhileWaiting(t *testing.T) {
	s, _, logs := newRaw(t, Config{RecvTimeout: 300 * time.Millisecond, WarnEvery: 50 * time.Millisecond})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Recv(context.Background(), "act")
	if err == nil || !strings.Contains(err.Error(), `timed out after 300ms waiting for "act" of iteration 1`) {
		t.Fatalf("err %v", err)
	}
	if n := strings.Count(logs.String(), "still waiting for peer data"); n < 2 {
		t.Fatalf("%d waiting warnings, want several:\n%s", n, logs)
	}
}

func TestSilentPeerIsLost(t *testing.T) {
	s, _, _ := newRaw(t, Config{Heartbeat: 20 * time.Millisecond, PeerTimeout: 150 * time.Millisecond})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Recv(context.Background(), "act")
	if !errors.Is(err, ErrPeerLost) {
		t.Fatalf("err %v, want ErrPeerLost", err)
	}
}

func TestHeartbeatsKeepAQuietPeerAlive(t *testing.T) {
	a, b := Pipe()
	cfg := Config{Heartbeat: 20 * time.Millisecond, PeerTimeout: 120 * time.Millisecond, Logger: testlog.Discard()}
	sa, sb := NewSession(a, 0, cfg), NewSession(b, 0, cfg)
	defer func() { sa.Close(); sb.Close(); a.Close(); sa.Wait(); sb.Wait() }()
	// Quiet for well over PeerTimeout: until each side has received 15
	// heartbeats (≥ 280 ms of 20 ms ticks; nothing else is sent), or a
	// session ended.
	testenv.Eventually(t, time.Minute, "15 heartbeats each way", func() bool {
		return sa.Err() != nil || sb.Err() != nil ||
			(sa.stats.framesRecv.Load() >= 15 && sb.stats.framesRecv.Load() >= 15)
	})
	if sa.Err() != nil || sb.Err() != nil {
		t.Fatalf("sessions ended: %v / %v", sa.Err(), sb.Err())
	}
}

func TestBrokenStreamIsPeerLost(t *testing.T) {
	s, raw, _ := newRaw(t, Config{})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	_, _, err := s.Recv(context.Background(), "act")
	if !errors.Is(err, ErrPeerLost) {
		t.Fatalf("err %v", err)
	}
}

func TestAbortCarriesTheReason(t *testing.T) {
	s, raw, _ := newRaw(t, Config{})
	send(t, raw, &vflv1.Frame{Kind: &vflv1.Frame_Abort{Abort: &vflv1.Abort{Reason: "disk full"}}})
	_ = s.Start(1)
	_, _, err := s.Recv(context.Background(), "act")
	var ae *AbortError
	if !errors.As(err, &ae) || ae.Reason != "disk full" {
		t.Fatalf("err %v", err)
	}
}

func TestHandshake(t *testing.T) {
	hello := func(hash, role string, ckpts ...int64) *vflv1.Hello {
		return &vflv1.Hello{PlanHash: hash, Role: role, Session: SessionTrain, Checkpoints: ckpts}
	}
	run := func(mine, theirs *vflv1.Hello) (error, error) {
		a, b := Pipe()
		defer a.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var errB error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _, errB = Handshake(ctx, b, theirs) }()
		_, errA := Handshake(ctx, a, mine)
		wg.Wait()
		return errA, errB
	}
	h1 := strings.Repeat("a", 64)
	h2 := strings.Repeat("b", 64)
	if ea, eb := run(hello(h1, RoleLeader, 20, 10), hello(h1, RoleFollower, 10)); ea != nil || eb != nil {
		t.Fatalf("good handshake: %v / %v", ea, eb)
	}
	ea, eb := run(hello(h1, RoleLeader), hello(h2, RoleFollower))
	var re *RefusedError
	if !errors.As(ea, &re) || !strings.Contains(ea.Error(), "plan hash mismatch: this side has plan aaaaaaaaaaaaaaaa…, the peer has plan bbbbbbbbbbbbbbbb…") {
		t.Fatalf("leader: %v", ea)
	}
	if eb == nil || strings.Contains(eb.Error(), "\n") {
		t.Fatalf("follower: %v", eb)
	}
	ea, _ = run(hello(h1, RoleLeader), hello(h1, RoleLeader))
	if ea == nil || !strings.Contains(ea.Error(), `the peer's role is "leader", want "follower"`) {
		t.Fatalf("two leaders: %v", ea)
	}
}

func TestResumePoint(t *testing.T) {
	for _, c := range []struct {
		a, b []int64
		want int64
	}{
		{nil, nil, 0},
		{[]int64{30, 20, 10}, []int64{20, 10}, 20},
		{[]int64{20}, []int64{30}, 0},
		{[]int64{40, 30}, []int64{40, 30, 20}, 40},
	} {
		if got := ResumePoint(c.a, c.b); got != c.want {
			t.Errorf("ResumePoint(%v, %v) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestTensorRoundTripAndLimits(t *testing.T) {
	ten, err := EncodeTensor([]int{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	if err != nil {
		t.Fatal(err)
	}
	shape, v, err := DecodeTensor(ten)
	if err != nil || len(shape) != 2 || shape[1] != 3 || v[5] != 6 {
		t.Fatalf("%v %v %v", shape, v, err)
	}
	for _, bad := range []*vflv1.Tensor{
		nil,
		{Dtype: "float64", Shape: []int64{1}, Data: make([]byte, 8)},
		{Dtype: "float32", Shape: []int64{2}, Data: make([]byte, 4)},
		{Dtype: "float32", Shape: []int64{-1}, Data: nil},
		{Dtype: "float32", Shape: []int64{1 << 40, 1 << 40}, Data: nil},
		{Dtype: "float32", Shape: []int64{1, 1, 1, 1, 1, 1, 1, 1, 1}, Data: make([]byte, 4)},
	} {
		if _, _, err := DecodeTensor(bad); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
	if _, err := EncodeTensor([]int{MaxTensorBytes}, make([]float32, MaxTensorBytes)); err == nil {
		t.Error("oversized tensor encoded")
	}
}

// doneCalled is a context that closes called the first time Done is asked
// for, which tells a test that a select on it is about to block.
type doneCalled struct {
	context.Context
	once   sync.Once
	called chan struct{}
}

func (c *doneCalled) Done() <-chan struct{} {
	c.once.Do(func() { close(c.called) })
	return c.Context.Done()
}

// TestWaitPeerEnd: it returns true once the peer ends the stream, and false
// when the wait runs out while the peer keeps the stream open.
func TestWaitPeerEnd(t *testing.T) {
	s, raw, _ := newRaw(t, Config{Heartbeat: 20 * time.Millisecond, PeerTimeout: time.Minute})
	ctx := context.Background()
	if s.WaitPeerEnd(ctx, 100*time.Millisecond) {
		t.Fatal("WaitPeerEnd reported an end while the peer's stream is open")
	}
	// Close the peer's stream only once WaitPeerEnd is waiting: it asks
	// the context for Done() after finding the session still open.
	waiting := &doneCalled{Context: ctx, called: make(chan struct{})}
	go func() { <-waiting.called; raw.Close() }()
	if !s.WaitPeerEnd(waiting, time.Minute) {
		t.Fatal("WaitPeerEnd missed the peer's close")
	}
	if err := s.Err(); !errors.Is(err, ErrPeerLost) {
		t.Fatalf("session error %v, want ErrPeerLost", err)
	}
}

// sendFails is a stream whose sends fail (the peer hung up) while frames
// it sent before hanging up are still to be read.
type sendFails struct{ Stream }

func (sendFails) Send(*vflv1.Frame) error { return errors.New("transport is closing") }

// TestAbortAfterSendFailureIsKept: a peer that aborts and hangs up can make
// this side's send fail before the reader reaches its Abort frame; the
// session still records the peer's reason (behind a heartbeat), so the run
// reports it instead of reconnecting to a peer that gave up.
func TestAbortAfterSendFailureIsKept(t *testing.T) {
	a, b := Pipe()
	s := NewSession(sendFails{a}, 0, Config{Logger: slog.New(slog.NewTextHandler(&lockedBuf{}, nil))})
	t.Cleanup(func() { s.Close(); a.Close(); s.Wait() })
	if err := s.Start(1); !errors.Is(err, ErrPeerLost) {
		t.Fatalf("start on a hung-up stream: %v", err)
	}
	send(t, b, &vflv1.Frame{Kind: &vflv1.Frame_Heartbeat{Heartbeat: &vflv1.Heartbeat{}}},
		&vflv1.Frame{Kind: &vflv1.Frame_Abort{Abort: &vflv1.Abort{Reason: "act1_f[0] is NaN"}}})
	b.Close()
	ae := s.AwaitPeerAbort(time.Minute)
	if ae == nil || ae.Reason != "act1_f[0] is NaN" {
		t.Fatalf("peer abort after a failed send: %v", ae)
	}
}
