package psi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
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
	h := &handler{cfg: cfg, set: set, out: out, done: make(chan outcome, 1), busy: make(chan struct{}, 1)}
	srv := grpc.NewServer(grpc.Creds(creds),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}))
	psiv1.RegisterPSIServer(srv, h)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
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
	// ConnectTimeout bounds the wait for the peer, not the session.
	wait := time.NewTimer(cfg.ConnectTimeout)
	defer wait.Stop()
	for {
		select {
		case o := <-h.done:
			return o.res, o.err
		case err := <-serveErr:
			return nil, fmt.Errorf("psi: serve: %v", err)
		case <-wait.C:
			if len(h.busy) == 0 {
				return nil, fmt.Errorf("psi: no peer started a session within %v", cfg.ConnectTimeout)
			}
		case <-ctx.Done():
			if len(h.busy) == 0 {
				return nil, fmt.Errorf("psi: no peer started a session: %w", context.Cause(ctx))
			}
			// Stop ends the running session's stream; its handler reports.
			srv.Stop()
			select {
			case o := <-h.done:
				return nil, fmt.Errorf("psi: session aborted (%v): %w", context.Cause(ctx), o.err)
			case <-time.After(5 * time.Second):
				return nil, fmt.Errorf("psi: session aborted: %w", context.Cause(ctx))
			}
		}
	}
}

type handler struct {
	psiv1.UnimplementedPSIServer
	cfg  Config
	set  *Set
	out  string
	done chan outcome
	busy chan struct{}
}

func (h *handler) Session(st grpc.BidiStreamingServer[psiv1.PSIMessage, psiv1.PSIMessage]) error {
	select {
	case h.busy <- struct{}{}:
	default:
		return status.Error(codes.ResourceExhausted, "psi: a session is already running")
	}
	p, ok := ratls.PeerFromContext(st.Context())
	name, err := checkPeer(p, ok, h.cfg.Role)
	if err != nil {
		h.cfg.Logger.Warn("psi: refused peer", "err", err)
		h.done <- outcome{nil, err}
		return status.Error(codes.PermissionDenied, err.Error())
	}
	// The dialer waits for the header before it sends Hello.
	if err := st.SendHeader(nil); err != nil {
		h.done <- outcome{nil, fmt.Errorf("psi: peer %q: %v", name, err)}
		return err
	}
	ctx, cancel := context.WithCancelCause(st.Context())
	defer cancel(nil)
	fin := make(chan outcome, 1)
	go func() {
		res, err := run(ctx, cancel, st, false, name, h.cfg, h.set, h.out)
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
	h.done <- o
	if o.err != nil {
		return status.Error(codes.Aborted, o.err.Error())
	}
	return nil
}

// refused reports whether a stream-open error is the RA-TLS layer refusing
// one side (final) rather than a peer that is not up yet (retried).
func refused(err error) bool {
	msg := status.Convert(err).Message()
	return status.Code(err) != codes.Unavailable ||
		strings.Contains(msg, "remote error: tls:") || strings.Contains(msg, "ratls:")
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
		return nil, fmt.Errorf("psi: peer %s: %v", addr, err)
	}
	defer conn.Close()
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
