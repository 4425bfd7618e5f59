package ratls

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// IdentityRechecker checks again, at a later call, an identity that an
// IdentityVerifier accepted when the connection was opened: a long-lived
// connection must not outlive a revocation (pki.LiveFederation rechecks
// against the bundle currently in force).
type IdentityRechecker interface {
	RecheckIdentity(id *Identity, now time.Time) error
}

// RecheckServerOptions returns the gRPC server options that recheck the
// connection's verified identity (PeerFromContext) with r before every
// unary call and every stream: a call on a connection whose identity r no
// longer accepts is refused with PermissionDenied and the one-line
// refusal (`peer "col-3": certificate revoked (identity)`), logged at
// WARN. Connections without a federation identity (attestation only) are
// not affected. now is time.Now when nil.
func RecheckServerOptions(r IdentityRechecker, now func() time.Time, log *slog.Logger) []grpc.ServerOption {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	check := func(ctx context.Context, method string) error {
		p, ok := PeerFromContext(ctx)
		if !ok || p.Identity == nil {
			return nil
		}
		err := r.RecheckIdentity(p.Identity, now())
		if err == nil {
			return nil
		}
		msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("peer %q: ", p.Identity.Name))
		e := &Error{Peer: p.Identity.Name, Check: CheckIdentity, Msg: msg, Err: err}
		log.Warn("ratls: refused call: "+e.Error(), "peer", p.Identity.Name, "method", method, "check", string(CheckIdentity))
		return status.Error(codes.PermissionDenied, "ratls: "+e.Error())
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}
