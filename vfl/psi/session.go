package psi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/gtank/ristretto255"
	"google.golang.org/protobuf/proto"

	psiv1 "github.com/teeml/teeml/api/proto/teeml/psi/v1"
)

// Role is a party's role in vertical FL.
type Role int

// Roles. The values match the wire enum.
const (
	Leader   Role = Role(psiv1.PSIRole_PSI_ROLE_LEADER)
	Follower Role = Role(psiv1.PSIRole_PSI_ROLE_FOLLOWER)
)

func (r Role) String() string {
	switch r {
	case Leader:
		return "leader"
	case Follower:
		return "follower"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole parses "leader" or "follower".
func ParseRole(s string) (Role, error) {
	switch s {
	case "leader":
		return Leader, nil
	case "follower":
		return Follower, nil
	}
	return 0, fmt.Errorf("psi: role %q: want leader or follower", s)
}

// Mode says who learns the intersection.
type Mode int

// Modes. The values match the wire enum.
const (
	// Both: both parties learn the intersection.
	Both Mode = Mode(psiv1.PSIMode_PSI_MODE_BOTH)
	// LeaderLearns: only the leader learns it; the follower learns the
	// leader's set size and nothing else.
	LeaderLearns Mode = Mode(psiv1.PSIMode_PSI_MODE_LEADER_LEARNS)
)

func (m Mode) String() string {
	switch m {
	case Both:
		return "both"
	case LeaderLearns:
		return "leader-learns"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode parses "both" or "leader-learns".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "both":
		return Both, nil
	case "leader-learns":
		return LeaderLearns, nil
	}
	return 0, fmt.Errorf("psi: mode %q: want both or leader-learns", s)
}

// Defaults of Config.
const (
	DefaultBatchSize      = 4096
	DefaultWindow         = 8
	DefaultMessageTimeout = 2 * time.Minute
	DefaultConnectTimeout = 2 * time.Minute
	// MaxBatch is the most points a peer may put in one message (2 MiB).
	MaxBatch = 65536
)

// Config configures one side of a session.
type Config struct {
	Role Role
	Mode Mode
	// ConfigHash identifies what the parties agreed to run (hex SHA-256 of
	// the plan or configuration); both must give the same.
	ConfigHash string
	// Self is this party's attested name; the peer's comes from the RA-TLS
	// connection. Both are bound into the session id.
	Self string
	// BatchSize is the number of IDs per message (default DefaultBatchSize).
	BatchSize int
	// Window is the number of batches sent ahead of the peer's answers
	// (default DefaultWindow).
	Window int
	// Workers is the number of goroutines doing group operations (default
	// GOMAXPROCS).
	Workers int
	// MessageTimeout bounds the wait for each message from the peer and
	// each send (default DefaultMessageTimeout).
	MessageTimeout time.Duration
	// ConnectTimeout bounds how long Dial retries a peer that is not
	// listening yet (default DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// TempDir and MemoryBudget are used for the output's external sort.
	TempDir      string
	MemoryBudget int
	Logger       *slog.Logger
	// Rand is the source of nonces and the secret scalar (default
	// crypto/rand).
	Rand io.Reader
}

func (c *Config) defaults() error {
	if c.Role != Leader && c.Role != Follower {
		return fmt.Errorf("psi: config: role %v", c.Role)
	}
	if c.Mode != Both && c.Mode != LeaderLearns {
		return fmt.Errorf("psi: config: mode %v", c.Mode)
	}
	if c.ConfigHash == "" {
		return errors.New("psi: config: empty config hash")
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchSize > MaxBatch {
		return fmt.Errorf("psi: config: batch size %d above %d", c.BatchSize, MaxBatch)
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.MessageTimeout <= 0 {
		c.MessageTimeout = DefaultMessageTimeout
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MemoryBudget <= 0 {
		c.MemoryBudget = 64 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	return nil
}

// Result is what one side of a session learned and did.
type Result struct {
	Role Role
	Mode Mode
	Peer string
	// SessionID binds names, mode, configuration and both parties' nonces.
	SessionID [32]byte
	// ShuffleSeed is derived from SessionID, so from both parties' nonces:
	// neither chose it alone. The data join draws batch orders from it.
	ShuffleSeed [32]byte
	// Distinct is the size of this party's deduplicated set, PeerDistinct
	// the peer's (ECDH-PSI reveals both set sizes to both sides).
	Distinct, PeerDistinct int
	// Learned says whether this side learned the intersection; then
	// Intersection is its size and the aligned IDs were written to Out.
	Learned      bool
	Intersection int
	Out          string
	// BytesSent and BytesReceived count protobuf message bytes.
	BytesSent, BytesReceived int64
	Seconds                  float64
}

// Stream is one side of the PSI session stream (the gRPC client stream or
// the server's stream).
type Stream interface {
	Send(*psiv1.PSIMessage) error
	Recv() (*psiv1.PSIMessage, error)
}

// record is one own doubly blinded value and the index of its ID in the Set.
type record struct {
	d   [DigestLen]byte
	idx uint32
}

func compareRecords(a, b record) int { return bytes.Compare(a.d[:], b.d[:]) }

type recvResult struct {
	m   *psiv1.PSIMessage
	err error
}

// session is one side of a running session.
type session struct {
	cfg     Config
	ctx     context.Context
	abort   context.CancelCauseFunc
	st      Stream
	dialer  bool
	peer    string
	log     *slog.Logger
	in      chan recvResult
	secret  *ristretto255.Scalar
	dst     []byte
	res     *Result
	sentMu  sync.Mutex // guards res's byte counters
	sendMu  sync.Mutex // gRPC streams allow one Send at a time
	set     *Set
	outPath string
}

// run executes the session over st. Cancelling ctx (abort) must tear st
// down, so that blocked Send and Recv calls return: the transport code
// (Dial, Serve) guarantees it.
func run(ctx context.Context, abort context.CancelCauseFunc, st Stream, dialer bool, peer string, cfg Config, set *Set, out string) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	start := time.Now()
	s := &session{cfg: cfg, ctx: ctx, abort: abort, st: st, dialer: dialer, peer: peer, set: set, outPath: out,
		log: cfg.Logger.With("role", cfg.Role.String(), "peer", peer),
		in:  make(chan recvResult, 4),
		res: &Result{Role: cfg.Role, Mode: cfg.Mode, Peer: peer, Distinct: set.N, Intersection: -1}}
	go s.pump()
	err := s.protocol()
	if err != nil {
		// Best effort: tell the peer why, briefly, then tear down.
		if !errors.Is(err, errPeerAborted) && ctx.Err() == nil {
			done := make(chan struct{})
			go func() {
				_ = s.send(&psiv1.PSIMessage{Body: &psiv1.PSIMessage_Abort{Abort: &psiv1.Abort{Reason: oneLine(err.Error())}}})
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
			}
		}
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
		abort(err)
		return nil, err
	}
	s.res.Seconds = time.Since(start).Seconds()
	if s.res.Learned {
		s.res.Out = out
	}
	return s.res, nil
}

var errPeerAborted = errors.New("peer aborted")

func oneLine(s string) string {
	s = string(bytes.ReplaceAll([]byte(s), []byte("\n"), []byte(" ")))
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// pump is the only caller of st.Recv.
func (s *session) pump() {
	for {
		m, err := s.st.Recv()
		select {
		case s.in <- recvResult{m, err}:
		case <-s.ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// recv waits at most MessageTimeout for the next message; an Abort from the
// peer becomes an error.
func (s *session) recv(what string) (*psiv1.PSIMessage, error) {
	t := time.NewTimer(s.cfg.MessageTimeout)
	defer t.Stop()
	select {
	case r := <-s.in:
		if r.err != nil {
			if errors.Is(r.err, io.EOF) {
				return nil, fmt.Errorf("psi: peer %q closed the session while this side waited for %s", s.peer, what)
			}
			return nil, fmt.Errorf("psi: waiting for %s from %q: %w", what, s.peer, r.err)
		}
		s.sentMu.Lock()
		s.res.BytesReceived += int64(proto.Size(r.m))
		s.sentMu.Unlock()
		if a := r.m.GetAbort(); a != nil {
			return nil, fmt.Errorf("psi: peer %q aborted: %s: %w", s.peer, oneLine(a.GetReason()), errPeerAborted)
		}
		return r.m, nil
	case <-t.C:
		return nil, fmt.Errorf("psi: no %s from %q within %v", what, s.peer, s.cfg.MessageTimeout)
	case <-s.ctx.Done():
		return nil, fmt.Errorf("psi: waiting for %s: %w", what, context.Cause(s.ctx))
	}
}

// send sends m, aborting the session if the peer does not take it within
// MessageTimeout (flow control blocks Send when the peer stops reading).
func (s *session) send(m *psiv1.PSIMessage) error {
	t := time.AfterFunc(s.cfg.MessageTimeout, func() {
		s.abort(fmt.Errorf("psi: peer %q took no message for %v", s.peer, s.cfg.MessageTimeout))
	})
	s.sendMu.Lock()
	err := s.st.Send(m)
	s.sendMu.Unlock()
	t.Stop()
	if err != nil {
		if c := context.Cause(s.ctx); c != nil {
			return c
		}
		return fmt.Errorf("psi: send to %q: %w", s.peer, err)
	}
	s.sentMu.Lock()
	s.res.BytesSent += int64(proto.Size(m))
	s.sentMu.Unlock()
	return nil
}

func (s *session) byteCounts() (sent, received int64) {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	return s.res.BytesSent, s.res.BytesReceived
}

func (s *session) protocol() error {
	if err := s.handshake(); err != nil {
		return err
	}
	var err error
	if s.secret, err = newSecret(s.cfg.Rand); err != nil {
		return err
	}
	s.dst = hashDST(s.res.SessionID)
	s.log.Info("psi: session bound", "session", fmt.Sprintf("%x", s.res.SessionID[:8]), "mode", s.cfg.Mode.String(), "distinct_ids", s.set.N)

	var own []record
	var peerDigests [][DigestLen]byte
	leader := s.cfg.Role == Leader
	both := s.cfg.Mode == Both
	// Step 1: the leader's set; step 2: the follower's.
	for step, owner := range []Role{Leader, Follower} {
		answered := owner == Leader || both
		if owner == s.cfg.Role {
			if own, err = s.ownSet(step+1, answered); err != nil {
				return err
			}
		} else if peerDigests, err = s.helpPeer(step+1, answered); err != nil {
			return err
		}
	}
	if !leader && !both {
		// Leader-learns follower: nothing more to learn.
		return s.finish(0)
	}
	slices.SortFunc(own, compareRecords)
	var ranks []uint32
	switch {
	case !both:
		ranks = s.intersectLocal(own, peerDigests)
	case leader:
		if ranks, err = s.leaderMatch(own); err != nil {
			return err
		}
	default:
		if ranks, err = s.followerMatch(own); err != nil {
			return err
		}
	}
	own = nil
	n := 0
	for _, r := range ranks {
		if r > 0 {
			n++
		}
	}
	s.res.Learned, s.res.Intersection = true, n
	if err := s.writeAligned(ranks); err != nil {
		return err
	}
	s.log.Info("psi: intersection", "size", n, "out", s.outPath)
	if both {
		return s.finish(n)
	}
	return s.finish(0)
}

// finish exchanges Done (leader first) and, on the dialing side, waits for
// the listener to end the stream so that no message is lost to an early
// cancel.
func (s *session) finish(n int) error {
	done := func(n int) *psiv1.PSIMessage {
		return &psiv1.PSIMessage{Body: &psiv1.PSIMessage_Done{Done: &psiv1.Done{Intersection: uint64(n)}}}
	}
	check := func(m *psiv1.PSIMessage) error {
		d := m.GetDone()
		if d == nil {
			return fmt.Errorf("psi: protocol: expected Done from %q, got %T", s.peer, m.GetBody())
		}
		if s.cfg.Mode == Both && d.GetIntersection() != uint64(n) {
			return fmt.Errorf("psi: peer %q found %d common IDs, this side %d", s.peer, d.GetIntersection(), n)
		}
		return nil
	}
	if s.cfg.Role == Leader {
		if err := s.send(done(n)); err != nil {
			return err
		}
		m, err := s.recv("Done")
		if err != nil {
			return err
		}
		if err := check(m); err != nil {
			return err
		}
	} else {
		m, err := s.recv("Done")
		if err != nil {
			return err
		}
		if err := check(m); err != nil {
			return err
		}
		if err := s.send(done(n)); err != nil {
			return err
		}
	}
	if s.dialer {
		if cs, ok := s.st.(interface{ CloseSend() error }); ok {
			_ = cs.CloseSend()
		}
		t := time.NewTimer(s.cfg.MessageTimeout)
		defer t.Stop()
		select {
		case r := <-s.in:
			if r.err == nil {
				return fmt.Errorf("psi: protocol: message %T from %q after Done", r.m.GetBody(), s.peer)
			}
			if !errors.Is(r.err, io.EOF) {
				return fmt.Errorf("psi: closing the session with %q: %w", s.peer, r.err)
			}
		case <-t.C:
			return fmt.Errorf("psi: peer %q did not close the session within %v", s.peer, s.cfg.MessageTimeout)
		}
	}
	return nil
}

// parallel runs fn over [0,n) split into at most Workers contiguous parts.
func (s *session) parallel(n int, fn func(lo, hi int) error) error {
	w := min(s.cfg.Workers, max(1, n/64))
	if w <= 1 {
		return fn(0, n)
	}
	var wg sync.WaitGroup
	errs := make([]error, w)
	for k := range w {
		lo, hi := k*n/w, (k+1)*n/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = fn(lo, hi)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *session) blind(ids []string) []byte {
	out := make([]byte, len(ids)*pointLen)
	_ = s.parallel(len(ids), func(lo, hi int) error {
		blindIDs(out[lo*pointLen:hi*pointLen], s.dst, s.secret, ids[lo:hi])
		return nil
	})
	return out
}

func (s *session) reblind(in []byte) ([]byte, error) {
	n := len(in) / pointLen
	out := make([]byte, n*DigestLen)
	err := s.parallel(n, func(lo, hi int) error {
		if err := reblind(out[lo*DigestLen:hi*DigestLen], s.secret, in[lo*pointLen:hi*pointLen]); err != nil {
			return fmt.Errorf("%d: %w", lo, err)
		}
		return nil
	})
	return out, err
}

func beUint32(v uint32) (k [16]byte) {
	binary.BigEndian.PutUint32(k[:4], v)
	return k
}
