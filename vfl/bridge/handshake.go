package bridge

import (
	"context"
	"fmt"
	"slices"

	vflv1 "github.com/teeml/teeml/api/proto/teeml/vfl/v1"
)

// ProtocolVersion is sent in Hello; peers with another version are refused.
const ProtocolVersion = 1

// Roles and session kinds in Hello.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"

	SessionTrain   = "train"
	SessionPredict = "predict"
)

// maxHelloCheckpoints bounds the checkpoint list of a Hello.
const maxHelloCheckpoints = 64

// RefusedError is a peer refused in the handshake (different plan, wrong
// role, no common checkpoint), with a one-line reason.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "bridge: peer refused: " + e.Reason }

// Handshake sends this side's Hello, receives the peer's and checks it:
// same protocol version, same plan hash, the other role, the same session
// kind. On a mismatch it sends an Abort with the reason (so the peer logs
// the same one line) and returns a *RefusedError. ctx bounds the wait.
func Handshake(ctx context.Context, s Stream, mine *vflv1.Hello) (*vflv1.Hello, error) {
	mine.ProtocolVersion = ProtocolVersion
	if err := s.Send(&vflv1.Frame{Kind: &vflv1.Frame_Hello{Hello: mine}}); err != nil {
		return nil, fmt.Errorf("%w: send hello: %w", ErrPeerLost, err)
	}
	type res struct {
		f   *vflv1.Frame
		err error
	}
	ch := make(chan res, 1)
	go func() {
		f, err := s.Recv()
		ch <- res{f, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-ctx.Done():
		// The caller ends the stream, which ends the Recv above.
		return nil, fmt.Errorf("%w: waiting for hello: %w", ErrPeerLost, context.Cause(ctx))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: receive hello: %w", ErrPeerLost, r.err)
	}
	if a := r.f.GetAbort(); a != nil {
		return nil, &RefusedError{Reason: "the peer refused us: " + a.GetReason()}
	}
	peer := r.f.GetHello()
	if peer == nil {
		return nil, refuse(s, "the peer's first frame is not a hello")
	}
	if err := CheckHello(mine, peer); err != nil {
		return nil, refuse(s, err.Error())
	}
	return peer, nil
}

func refuse(s Stream, reason string) error {
	_ = s.Send(&vflv1.Frame{Kind: &vflv1.Frame_Abort{Abort: &vflv1.Abort{Reason: reason}}})
	return &RefusedError{Reason: reason}
}

// CheckHello compares the peer's Hello with ours.
func CheckHello(mine, peer *vflv1.Hello) error {
	if peer.GetProtocolVersion() != ProtocolVersion {
		return fmt.Errorf("bridge protocol version %d, this side speaks %d", peer.GetProtocolVersion(), ProtocolVersion)
	}
	if peer.GetPlanHash() != mine.GetPlanHash() {
		return fmt.Errorf("plan hash mismatch: this side has plan %s, the peer has plan %s", short(mine.GetPlanHash()), short(peer.GetPlanHash()))
	}
	want := RoleLeader
	if mine.GetRole() == RoleLeader {
		want = RoleFollower
	}
	if peer.GetRole() != want {
		return fmt.Errorf("the peer's role is %q, want %q", peer.GetRole(), want)
	}
	if peer.GetSession() != mine.GetSession() {
		return fmt.Errorf("the peer opened a %q session, this side a %q one", peer.GetSession(), mine.GetSession())
	}
	if len(peer.GetCheckpoints()) > maxHelloCheckpoints {
		return fmt.Errorf("the peer lists %d checkpoints, at most %d", len(peer.GetCheckpoints()), maxHelloCheckpoints)
	}
	return nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	if h == "" {
		return "(none)"
	}
	return h
}

// ResumePoint is the highest iteration both sides hold a checkpoint of; 0
// (a fresh start, which needs no checkpoint) when there is none in common.
func ResumePoint(mine, peer []int64) int64 {
	best := int64(0)
	for _, it := range mine {
		if it > best && slices.Contains(peer, it) {
			best = it
		}
	}
	return best
}
