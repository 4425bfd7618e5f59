package psi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	psiv1 "github.com/teeml/teeml/api/proto/teeml/psi/v1"
	"github.com/teeml/teeml/ratls"
)

// peerRoleName is the federation role (pki.Roles) a peer of role r must
// hold in its identity certificate.
func peerRoleName(r Role) string {
	if r == Leader {
		return "follower"
	}
	return "leader"
}

// checkPeer returns the attested peer's name and refuses a peer whose
// federation identity is not certified for the complementary role.
func checkPeer(p *ratls.Peer, ok bool, self Role) (string, error) {
	if !ok || p == nil {
		return "", errors.New("psi: connection is not RA-TLS with a verified peer")
	}
	if p.Identity != nil && p.Identity.Role != peerRoleName(self) {
		return "", fmt.Errorf("psi: peer %q is certified as %s, want %s", p.Name(), p.Identity.Role, peerRoleName(self))
	}
	return p.Name(), nil
}

type outcome struct {
	res *Result
	err error
}

// Serve accepts exactly one PSI session on lis, over creds (RA-TLS server
// credentials that verify the client), and returns its result. Connections
// whose RA-TLS handshake fails are logged by ratls and do not end Serve; a
// peer that does not start a session within cfg.ConnectTimeout does. ctx
// cancels everything.
func Serve(ctx context.Context, lis net.Listener, creds credentials.TransportCredentials, cfg Config, set *Set, out string) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	svc := NewService(cfg.Logger)
	srv := grpc.NewServer(grpc.Creds(creds),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}))
	svc.Register(srv)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		if err := srv.Serve(lis); err != nil {
			cancel(fmt.Errorf("psi: serve: %w", err))
		}
	}()
	// Graceful, so that the handler's final status reaches the dialer; a
	// bounded wait, so that a stuck peer cannot hold Serve open.
	defer func() {
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			srv.Stop()
		}
	}()
	return svc.Accept(ctx, cfg, set, out)
}

// Service is the listening side of PSI as a gRPC service on a server the
// caller owns: vfl/run registers it next to the VFL bridge on the same
// RA-TLS listener, so the PSI peer passes exactly the attestation and
// policy checks the bridge peer does. It runs at most one session at a
// time, and only while Accept has armed it: a peer that opens a session
// otherwise waits up to armWait and is then told to retry.
type Service struct {
	psiv1.UnimplementedPSIServer
	log   *slog.Logger
	armed chan *job
}

// armWait bounds how long an unexpected session waits for Accept.
const armWait = 5 * time.Second

type job struct {
	ctx  context.Context
	cfg  Config
	set  *Set
	out  string
	done chan outcome
}

// NewService returns an unarmed service.
func NewService(log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{log: log, armed: make(chan *job, 1)}
}

// Register adds the service to srv.
func (s *Service) Register(srv *grpc.Server) { psiv1.RegisterPSIServer(srv, s) }

// Accept arms the service for one session with cfg, set and out, waits for
// a peer to run it and returns its result. A peer that does not start
// within cfg.ConnectTimeout ends Accept; ctx cancels the session.
func (s *Service) Accept(ctx context.Context, cfg Config, set *Set, out string) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	j := &job{ctx: ctx, cfg: cfg, set: set, out: out, done: make(chan outcome, 1)}
	select {
	case s.armed <- j:
	default:
		return nil, errors.New("psi: another session is already waiting for a peer")
	}
	// ConnectTimeout bounds the wait for the peer, not the session.
	wait := time.NewTimer(cfg.ConnectTimeout)
	defer wait.Stop()
	for {
		select {
		case o := <-j.done:
			return o.res, o.err
		case <-wait.C:
			if s.disarm(j) {
				return nil, fmt.Errorf("psi: no peer started a session within %v", cfg.ConnectTimeout)
			}
		case <-ctx.Done():
			if s.disarm(j) {
				return nil, fmt.Errorf("psi: no peer started a session: %w", context.Cause(ctx))
			}
			// The running handler watches ctx and reports.
			select {
			case o := <-j.done:
				if o.err == nil {
					return o.res, nil
				}
				return nil, fmt.Errorf("psi: session aborted (%w): %w", context.Cause(ctx), o.err)
			case <-time.After(5 * time.Second):
				return nil, fmt.Errorf("psi: session aborted: %w", context.Cause(ctx))
			}
		}
	}
}

// disarm takes j back unless a peer's session has already taken it.
func (s *Service) disarm(j *job) bool {
	select {
	case got := <-s.armed:
		if got != j {
			s.armed <- got
			return false
		}
		return true
	default:
		return false
	}
}

// Session is the gRPC handler: it takes the armed job and runs it.
func (s *Service) Session(st grpc.BidiStreamingServer[psiv1.PSIMessage, psiv1.PSIMessage]) error {
	var j *job
	t := time.NewTimer(armWait)
	defer t.Stop()
	select {
	case j = <-s.armed:
	case <-t.C:
		return status.Error(codes.Unavailable, "psi: no session expected here now")
	case <-st.Context().Done():
		return status.FromContextError(st.Context().Err()).Err()
	}
	p, ok := ratls.PeerFromContext(st.Context())
	name, err := checkPeer(p, ok, j.cfg.Role)
	if err != nil {
		s.log.Warn("psi: refused peer", "err", err)
		j.done <- outcome{nil, err}
		return status.Error(codes.PermissionDenied, err.Error())
	}
	// The dialer waits for the header before it sends Hello.
	if err := st.SendHeader(nil); err != nil {
		j.done <- outcome{nil, fmt.Errorf("psi: peer %q: %w", name, err)}
		return err
	}
	ctx, cancel := context.WithCancelCause(st.Context())
	defer cancel(nil)
	stop := context.AfterFunc(j.ctx, func() { cancel(context.Cause(j.ctx)) })
	defer stop()
	fin := make(chan outcome, 1)
	go func() {
		res, err := run(ctx, cancel, st, false, name, j.cfg, j.set, j.out)
		fin <- outcome{res, err}
	}()
	var o outcome
	select {
	case o = <-fin:
	case <-ctx.Done():
		// Returning ends the stream, which unblocks run's Send and Recv;
		// give run a moment to report its own, better, error.
		o = outcome{nil, context.Cause(ctx)}
		select {
		case o = <-fin:
		case <-time.After(2 * time.Second):
		}
	}
	j.done <- o
	if o.err != nil {
		return status.Error(codes.Aborted, o.err.Error())
	}
	return nil
}

// refused reports whether a stream-open error is the RA-TLS layer refusing
// one side (final) rather than a peer that is not up yet (retried).
func refused(err error) bool {
	if status.Code(err) != codes.Unavailable {
		return true
	}
	_, ok := ratls.RefusalOf(err)
	return ok
}

// Dial connects to the listening party at addr over creds (RA-TLS client
// credentials that verify the server) and runs the session. A peer that is
// not listening yet is retried for ConnectTimeout; an RA-TLS refusal ends
// Dial at once with its reason.
func Dial(ctx context.Context, addr string, creds credentials.TransportCredentials, cfg Config, set *Set, out string) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}))
	if err != nil {
		return nil, fmt.Errorf("psi: peer %s: %w", addr, err)
	}
	defer conn.Close()
	return DialConn(ctx, conn, addr, cfg, set, out)
}

// DialConn runs the session over an existing client connection (vfl/run
// uses the RA-TLS connection of the bridge); addr only names the peer in
// errors. Retries and refusals are as for Dial.
func DialConn(ctx context.Context, conn grpc.ClientConnInterface, addr string, cfg Config, set *Set, out string) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cl := psiv1.NewPSIClient(conn)
	giveUp := time.Now().Add(cfg.ConnectTimeout)
	backoff := 100 * time.Millisecond
	for {
		st, err := cl.Session(ctx)
		if err == nil {
			// Header arrival proves the server accepted the stream; before it
			// a refused handshake can still surface on the first Recv.
			if _, err = st.Header(); err == nil {
				p, ok := ratls.PeerFromContext(st.Context())
				name, err := checkPeer(p, ok, cfg.Role)
				if err != nil {
					// Tell the listener why before hanging up.
					_ = st.Send(&psiv1.PSIMessage{Body: &psiv1.PSIMessage_Abort{Abort: &psiv1.Abort{Reason: err.Error()}}})
					_ = st.CloseSend()
					return nil, err
				}
				return run(ctx, cancel, st, true, name, cfg, set, out)
			}
		}
		if refused(err) {
			return nil, fmt.Errorf("psi: peer %s: %s", addr, status.Convert(err).Message())
		}
		if time.Now().After(giveUp) {
			return nil, fmt.Errorf("psi: peer %s unreachable for %v: %s", addr, cfg.ConnectTimeout, status.Convert(err).Message())
		}
		cfg.Logger.Warn("psi: peer not reachable yet; retrying", "peer", addr, "in", backoff, "err", status.Convert(err).Message())
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
