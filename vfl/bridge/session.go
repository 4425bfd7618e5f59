// Package bridge is the message channel between the two parties of teeml
// vertical federated learning, with Fedlearner's bridge semantics over a
// gRPC bidirectional stream (vfl/v1 Bridge.Stream) on mutual RA-TLS:
//
//   - each side frames its part of iteration i as Start{i}, Data{i, name,
//     tensor}..., Commit{i}, and may start i+1 only after committing i;
//   - Recv blocks for a named tensor of the current iteration, with a
//     timeout and a warning every WarnEvery while it waits;
//   - duplicated Start, Data or Commit frames (resends) are ignored with a
//     log line;
//   - a peer that commits an iteration without sending a tensor this side is
//     waiting for is a protocol error;
//   - heartbeats flow both ways; a peer silent for longer than PeerTimeout,
//     or a broken stream, ends the Session with ErrPeerLost.
//
// Unlike Fedlearner, which kills the process (exit 138) when the channel
// breaks, a lost peer is an ordinary error: the caller (vfl/run) reconnects
// and both sides resume from their last common checkpoint, agreed in the
// Hello exchange (see Handshake).
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	vflv1 "github.com/teeml/teeml/api/proto/teeml/vfl/v1"
	"google.golang.org/protobuf/proto"
)

// Stream is one bidirectional frame stream: a gRPC client or server stream
// of the Bridge service, or an in-process pipe.
type Stream interface {
	Send(*vflv1.Frame) error
	Recv() (*vflv1.Frame, error)
}

// ErrPeerLost reports a broken stream or a silent peer: reconnect and
// resume from the last common checkpoint.
var ErrPeerLost = errors.New("bridge: peer lost")

// ProtocolError is a violation of the bridge protocol by the peer (or by
// this side's caller); reconnecting does not help.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "bridge: protocol error: " + e.Msg }

func protoErr(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// AbortError is the peer's Abort frame: it gave up, with this reason.
type AbortError struct{ Reason string }

func (e *AbortError) Error() string { return "bridge: peer aborted: " + e.Reason }

// Defaults of Config.
const (
	DefaultRecvTimeout = 5 * time.Minute
	DefaultWarnEvery   = 10 * time.Second
	DefaultHeartbeat   = 2 * time.Second
	DefaultPeerTimeout = 15 * time.Second
	// maxAhead bounds how many iterations the peer may run ahead of this
	// side; the split training loop never runs more than one ahead.
	maxAhead = 4
)

// Config configures a Session.
type Config struct {
	// RecvTimeout bounds one Recv.
	RecvTimeout time.Duration
	// WarnEvery spaces the "still waiting" warnings of a blocked Recv.
	WarnEvery time.Duration
	// Heartbeat is the interval between this side's heartbeats.
	Heartbeat time.Duration
	// PeerTimeout ends the session when nothing arrives for this long.
	PeerTimeout time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Peer names the other side in log lines and errors.
	Peer string
}

func (c *Config) defaults() {
	if c.RecvTimeout <= 0 {
		c.RecvTimeout = DefaultRecvTimeout
	}
	if c.WarnEvery <= 0 {
		c.WarnEvery = DefaultWarnEvery
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = DefaultPeerTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Peer == "" {
		c.Peer = "peer"
	}
}

// Stats counts a session's traffic (frames and serialized bytes).
type Stats struct {
	FramesSent, FramesRecv int64
	BytesSent, BytesRecv   int64
	Duplicates             int64
}

// Session runs the bridge protocol on one established stream (after
// Handshake). Its methods are for one goroutine (the training loop); the
// session's own goroutines read frames and send heartbeats.
type Session struct {
	cfg    Config
	stream Stream
	log    *slog.Logger

	sendMu sync.Mutex

	mu   sync.Mutex
	wake chan struct{} // closed and replaced on every state change
	err  error         // set once: the session is over
	// Local (this side's) iteration state.
	cur       int64 // iteration started and not yet committed, or 0
	committed int64
	started   time.Time
	// The peer's iteration state.
	peerStarted, peerCommitted int64
	pending                    map[int64]map[string]*vflv1.Tensor
	lastSeen                   time.Time

	stats struct {
		framesSent, framesRecv, bytesSent, bytesRecv, dups atomic.Int64
	}

	// peerAbort is the peer's Abort frame, kept even when it arrives after
	// the session failed (see AwaitPeerAbort).
	peerAbort *AbortError

	cancel context.CancelFunc
	done   chan struct{}
}

// NewSession starts the protocol on stream, after a successful Handshake.
// resume is the last iteration both sides have committed (the agreed
// checkpoint): the next Start must be resume+1 on both sides. Close the
// session when done with it; closing does not close the stream.
func NewSession(stream Stream, resume int64, cfg Config) *Session {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Session{
		cfg: cfg, stream: stream, log: cfg.Logger.With("peer", cfg.Peer),
		wake: make(chan struct{}), committed: resume, peerStarted: resume, peerCommitted: resume,
		pending: map[int64]map[string]*vflv1.Tensor{}, lastSeen: time.Now(),
		cancel: cancel, done: make(chan struct{}),
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.readLoop() }()
	go func() { defer wg.Done(); s.heartbeatLoop(ctx) }()
	go func() { wg.Wait(); close(s.done) }()
	return s
}

// fail ends the session with err (the first error wins).
func (s *Session) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(err)
}

func (s *Session) failLocked(err error) {
	if s.err != nil {
		return
	}
	s.err = err
	close(s.wake)
	s.wake = make(chan struct{})
	s.cancel()
}

func (s *Session) changedLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// Err returns why the session ended, or nil while it runs.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the session's goroutines once the stream's Recv returns (the
// caller ends the stream: cancel the client stream's context or return from
// the server handler) and returns the session's error, if any other than
// being closed.
func (s *Session) Close() {
	s.fail(errClosed)
}

// AwaitPeerAbort waits at most grace for the session's goroutines to end
// and returns the peer's Abort if its frame arrived, also after the session
// had already failed: a peer that aborts and hangs up can make this side's
// send fail (ErrPeerLost) before the reader reaches the Abort frame, and
// the peer's reason is the one to report.
func (s *Session) AwaitPeerAbort(grace time.Duration) *AbortError {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peerAbort
}

// Wait blocks until the session's goroutines have exited.
func (s *Session) Wait() { <-s.done }

var errClosed = errors.New("bridge: session closed")

// Stats returns the traffic counters.
func (s *Session) Stats() Stats {
	return Stats{
		FramesSent: s.stats.framesSent.Load(), FramesRecv: s.stats.framesRecv.Load(),
		BytesSent: s.stats.bytesSent.Load(), BytesRecv: s.stats.bytesRecv.Load(),
		Duplicates: s.stats.dups.Load(),
	}
}

func (s *Session) send(f *vflv1.Frame) error {
	if err := s.Err(); err != nil {
		return err
	}
	s.sendMu.Lock()
	err := s.stream.Send(f)
	s.sendMu.Unlock()
	if err != nil {
		err = fmt.Errorf("%w: send to %s: %w", ErrPeerLost, s.cfg.Peer, err)
		s.fail(err)
		return err
	}
	s.stats.framesSent.Add(1)
	s.stats.bytesSent.Add(int64(proto.Size(f)))
	return nil
}

func (s *Session) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			silent := now.Sub(s.lastSeen)
			s.mu.Unlock()
			if silent > s.cfg.PeerTimeout {
				s.fail(fmt.Errorf("%w: nothing from %s for %s (heartbeat deadline %s)", ErrPeerLost, s.cfg.Peer, silent.Round(time.Millisecond), s.cfg.PeerTimeout))
				return
			}
			_ = s.send(&vflv1.Frame{Kind: &vflv1.Frame_Heartbeat{Heartbeat: &vflv1.Heartbeat{UnixNanos: now.UnixNano()}}})
		}
	}
}

func (s *Session) readLoop() {
	for {
		f, err := s.stream.Recv()
		if err != nil {
			s.fail(fmt.Errorf("%w: receive from %s: %w", ErrPeerLost, s.cfg.Peer, err))
			return
		}
		s.stats.framesRecv.Add(1)
		s.stats.bytesRecv.Add(int64(proto.Size(f)))
		if s.Err() != nil {
			// Failed already (a send error, a deadline, Close): only the
			// peer's reason still matters; drain until it or the stream's end.
			if a := f.GetAbort(); a != nil {
				s.mu.Lock()
				s.peerAbort = &AbortError{Reason: a.GetReason()}
				s.mu.Unlock()
				return
			}
			continue
		}
		if err := s.handle(f); err != nil {
			s.fail(err)
			return
		}
	}
}

// handle applies one received frame to the peer state.
func (s *Session) handle(f *vflv1.Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastSeen = time.Now()
	switch k := f.Kind.(type) {
	case *vflv1.Frame_Heartbeat:
		return nil
	case *vflv1.Frame_Abort:
		s.peerAbort = &AbortError{Reason: k.Abort.GetReason()}
		return s.peerAbort
	case *vflv1.Frame_Hello:
		return protoErr("%s sent a second hello", s.cfg.Peer)
	case *vflv1.Frame_Start:
		it := k.Start.GetIterId()
		switch {
		case it <= s.peerStarted:
			s.duplicateLocked("start", it, "")
			return nil
		case it != s.peerCommitted+1:
			return protoErr("%s started iteration %d before committing iteration %d", s.cfg.Peer, it, s.peerCommitted+1)
		case it > s.committed+maxAhead:
			return protoErr("%s started iteration %d, more than %d ahead of this side's %d", s.cfg.Peer, it, maxAhead, s.committed)
		}
		s.peerStarted = it
		s.log.Debug("bridge: peer started iteration", "iter_id", it)
	case *vflv1.Frame_Data:
		d := k.Data
		it, name := d.GetIterId(), d.GetName()
		// Data of an iteration either side has committed is never read
		// again: a resend (this side may commit before a resend of the
		// peer's data arrives; storing it would also leak).
		if it <= s.peerCommitted || it <= s.committed {
			s.duplicateLocked("data", it, name)
			return nil
		}
		if it != s.peerStarted {
			return protoErr("%s sent data %q for iteration %d, but its current iteration is %d", s.cfg.Peer, name, it, s.peerStarted)
		}
		if name == "" {
			return protoErr("%s sent data without a name in iteration %d", s.cfg.Peer, it)
		}
		if _, _, err := DecodeTensor(d.GetTensor()); err != nil {
			return protoErr("%s: data %q of iteration %d: %v", s.cfg.Peer, name, it, err)
		}
		m := s.pending[it]
		if m == nil {
			m = map[string]*vflv1.Tensor{}
			s.pending[it] = m
		}
		if _, dup := m[name]; dup {
			s.duplicateLocked("data", it, name)
			return nil
		}
		m[name] = d.GetTensor()
	case *vflv1.Frame_Commit:
		it := k.Commit.GetIterId()
		switch {
		case it <= s.peerCommitted:
			s.duplicateLocked("commit", it, "")
			return nil
		case it != s.peerStarted:
			return protoErr("%s committed iteration %d, but its current iteration is %d", s.cfg.Peer, it, s.peerStarted)
		}
		s.peerCommitted = it
		s.log.Debug("bridge: peer committed iteration", "iter_id", it)
	default:
		return protoErr("%s sent an empty or unknown frame", s.cfg.Peer)
	}
	s.changedLocked()
	return nil
}

func (s *Session) duplicateLocked(kind string, it int64, name string) {
	s.stats.dups.Add(1)
	if name != "" {
		s.log.Info("bridge: ignoring duplicate "+kind+" (resend)", "iter_id", it, "name", name)
	} else {
		s.log.Info("bridge: ignoring duplicate "+kind+" (resend)", "iter_id", it)
	}
}

// Start begins local iteration it, which must follow the last committed one.
func (s *Session) Start(it int64) error {
	s.mu.Lock()
	if s.cur != 0 {
		s.mu.Unlock()
		return protoErr("start of iteration %d while iteration %d is not committed", it, s.cur)
	}
	if it != s.committed+1 {
		s.mu.Unlock()
		return protoErr("start of iteration %d after committing %d", it, s.committed)
	}
	s.cur, s.started = it, time.Now()
	s.mu.Unlock()
	s.log.Debug("bridge: send start", "iter_id", it)
	return s.send(&vflv1.Frame{Kind: &vflv1.Frame_Start{Start: &vflv1.Start{IterId: it}}})
}

// Send sends a named tensor in the current iteration.
func (s *Session) Send(name string, shape []int, data []float32) error {
	s.mu.Lock()
	it := s.cur
	s.mu.Unlock()
	if it == 0 {
		return protoErr("send of %q outside an iteration", name)
	}
	t, err := EncodeTensor(shape, data)
	if err != nil {
		return err
	}
	s.log.Debug("bridge: send data", "iter_id", it, "name", name, "bytes", len(t.Data))
	return s.send(&vflv1.Frame{Kind: &vflv1.Frame_Data{Data: &vflv1.Data{IterId: it, Name: name, Tensor: t}}})
}

// Recv blocks until the peer's tensor name of the current iteration
// arrives, the peer commits the iteration without it (a protocol error),
// RecvTimeout passes, ctx ends or the session ends. It logs a warning every
// WarnEvery while it waits.
func (s *Session) Recv(ctx context.Context, name string) ([]int, []float32, error) {
	start := time.Now()
	deadline := time.NewTimer(s.cfg.RecvTimeout)
	defer deadline.Stop()
	warn := time.NewTicker(s.cfg.WarnEvery)
	defer warn.Stop()
	for {
		s.mu.Lock()
		it := s.cur
		if it == 0 {
			s.mu.Unlock()
			return nil, nil, protoErr("receive of %q outside an iteration", name)
		}
		if t, ok := s.pending[it][name]; ok {
			s.mu.Unlock()
			shape, data, err := DecodeTensor(t)
			if err == nil {
				s.log.Debug("bridge: received data", "iter_id", it, "name", name, "after", time.Since(start).Round(time.Microsecond).String())
			}
			return shape, data, err
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return nil, nil, err
		}
		if s.peerCommitted >= it {
			s.mu.Unlock()
			return nil, nil, protoErr("%s committed iteration %d without sending %q", s.cfg.Peer, it, name)
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-deadline.C:
			return nil, nil, fmt.Errorf("bridge: timed out after %s waiting for %q of iteration %d from %s", s.cfg.RecvTimeout, name, it, s.cfg.Peer)
		case <-warn.C:
			s.log.Warn("bridge: still waiting for peer data", "iter_id", it, "name", name, "waited", time.Since(start).Round(time.Second).String())
		}
	}
}

// Commit ends the current iteration.
func (s *Session) Commit() error {
	s.mu.Lock()
	it := s.cur
	if it == 0 {
		s.mu.Unlock()
		return protoErr("commit outside an iteration")
	}
	s.cur, s.committed = 0, it
	took := time.Since(s.started)
	// Tensors of iterations this side has finished are never read again.
	for k := range s.pending {
		if k <= it {
			delete(s.pending, k)
		}
	}
	s.mu.Unlock()
	s.log.Debug("bridge: commit", "iter_id", it, "took", took.Round(time.Microsecond).String())
	return s.send(&vflv1.Frame{Kind: &vflv1.Frame_Commit{Commit: &vflv1.Commit{IterId: it}}})
}

// WaitPeerCommit blocks until the peer has committed iteration it (used at
// the end of a run so neither side closes the stream under the other).
func (s *Session) WaitPeerCommit(ctx context.Context, it int64) error {
	deadline := time.NewTimer(s.cfg.RecvTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if s.peerCommitted >= it {
			s.mu.Unlock()
			return nil
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return err
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("bridge: timed out after %s waiting for %s to commit iteration %d", s.cfg.RecvTimeout, s.cfg.Peer, it)
		}
	}
}

// WaitPeerEnd blocks until the peer ends the stream (the session fails,
// normally with ErrPeerLost: end of stream), ctx ends or d passes, and
// reports whether the peer ended it. It is the last step of the side that
// closes second: a stream's close is not ordered after the frames sent
// before it (cancelling a gRPC client stream discards the data still queued
// in the transport, and an in-process pipe may report the close first), so
// the side whose final Commit the peer may not have read yet must not close
// under it. The peer has all this side's frames once it closes its end.
func (s *Session) WaitPeerEnd(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		s.mu.Lock()
		ended, wake := s.err != nil, s.wake
		s.mu.Unlock()
		if ended {
			return true
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		}
	}
}

// Abort tells the peer why this side gives up (best effort) and ends the
// session.
func (s *Session) Abort(reason string) {
	// Sent even when the session has already failed (a protocol error found
	// by the reader): the peer should learn why.
	s.sendMu.Lock()
	_ = s.stream.Send(&vflv1.Frame{Kind: &vflv1.Frame_Abort{Abort: &vflv1.Abort{Reason: reason}}})
	s.sendMu.Unlock()
	s.fail(errors.New("bridge: aborted: " + reason))
}
