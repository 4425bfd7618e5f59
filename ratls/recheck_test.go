package ratls

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// revocable refuses the identity named in revoked (pki.LiveFederation is
// the real one: ratls cannot import pki, which imports ratls; it is tested
// against real bundles in pki and with processes in fl/run).
type revocable struct{ revoked atomic.Value }

func (r *revocable) RecheckIdentity(id *Identity, _ time.Time) error {
	if n, _ := r.revoked.Load().(string); n == id.Name {
		return errors.New(`peer "` + id.Name + `": certificate revoked`)
	}
	return nil
}

// echoService is a unary service whose handler goes through the server's
// interceptors, as generated gRPC code does (whoService skips them).
var echoService = grpc.ServiceDesc{
	ServiceName: "teeml.ratls.test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Echo", Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		var in []byte
		if err := dec(&in); err != nil {
			return nil, err
		}
		h := func(_ context.Context, req any) (any, error) { return req, nil }
		if icpt == nil {
			return h(ctx, &in)
		}
		return icpt(ctx, &in, &grpc.UnaryServerInfo{FullMethod: "/teeml.ratls.test.Echo/Echo"}, h)
	}}},
}

// TestRecheckRefusesCallsOnAnOpenConnection (issue 23, defect 8): a call
// on a connection whose identity the rechecker no longer accepts is
// refused — on the same connection, without a new handshake — with
// PermissionDenied and the one-line ratls refusal that RefusalOf reads.
func TestRecheckRefusesCallsOnAnOpenConnection(t *testing.T) {
	l := newLink(t)
	r := &revocable{}
	creds, err := NewServerCredentials(l.serverCfg(l.server, l.verifier))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var log logBuf
	srv := grpc.NewServer(append(RecheckServerOptions(r, nil, rawLogger(&log)), grpc.Creds(creds), grpc.ForceServerCodec(rawCodec{}))...)
	srv.RegisterService(&echoService, struct{}{})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })

	cc, err := NewClientCredentials(l.clientCfg(l.client, l.verifier))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(cc))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		in, out := []byte("who"), []byte(nil)
		return conn.Invoke(ctx, "/teeml.ratls.test.Echo/Echo", &in, &out, grpc.ForceCodec(rawCodec{}))
	}
	if err := call(); err != nil {
		t.Fatalf("call before the revocation: %v", err)
	}
	r.revoked.Store("col-1")
	err = call()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("call after the revocation: %v, want PermissionDenied", err)
	}
	want := `ratls: peer "col-1": certificate revoked (identity)`
	if msg := status.Convert(err).Message(); msg != want {
		t.Errorf("refusal %q, want %q", msg, want)
	}
	if ref, ok := RefusalOf(err); !ok || ref.Check != CheckIdentity {
		t.Errorf("RefusalOf(%v) = %+v, %v; want an identity refusal", err, ref, ok)
	}
	if s := log.String(); !strings.Contains(s, "ratls: refused call: "+want[len("ratls: "):]) {
		t.Errorf("server log lacks the refusal: %q", s)
	}
	r.revoked.Store("")
	if err := call(); err != nil {
		t.Fatalf("call after the rechecker accepts again: %v", err)
	}
}
