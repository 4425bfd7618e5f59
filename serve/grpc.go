package serve

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	inferencev2 "github.com/teeml/teeml/api/proto/teeml/inference/v2"
	"github.com/teeml/teeml/ratls"
	"github.com/teeml/teeml/serve/oip"
)

var grpcCodes = map[Status]codes.Code{
	StatusOK: codes.OK, StatusBadRequest: codes.InvalidArgument, StatusUnauthenticated: codes.Unauthenticated,
	StatusForbidden: codes.PermissionDenied, StatusNotFound: codes.NotFound, StatusBusy: codes.ResourceExhausted,
	StatusUnavailable: codes.Unavailable, StatusTimeout: codes.DeadlineExceeded, StatusInternal: codes.Internal,
}

func grpcErr(err error) error {
	st := StatusOf(err)
	msg := err.Error()
	if st == StatusInternal {
		msg = "internal error"
	}
	return status.Error(grpcCodes[st], msg)
}

type grpcService struct {
	inferencev2.UnimplementedGRPCInferenceServiceServer
	s *Server
}

// RegisterGRPC registers the protocol's gRPC service on g.
func (s *Server) RegisterGRPC(g *grpc.Server) {
	inferencev2.RegisterGRPCInferenceServiceServer(g, &grpcService{s: s})
}

func (g *grpcService) ServerLive(context.Context, *inferencev2.ServerLiveRequest) (*inferencev2.ServerLiveResponse, error) {
	return &inferencev2.ServerLiveResponse{Live: true}, nil
}

func (g *grpcService) ServerReady(context.Context, *inferencev2.ServerReadyRequest) (*inferencev2.ServerReadyResponse, error) {
	return &inferencev2.ServerReadyResponse{Ready: g.s.Ready()}, nil
}

func (g *grpcService) ModelReady(_ context.Context, r *inferencev2.ModelReadyRequest) (*inferencev2.ModelReadyResponse, error) {
	if _, err := g.s.find(r.GetName(), r.GetVersion()); err != nil {
		return nil, grpcErr(err)
	}
	return &inferencev2.ModelReadyResponse{Ready: g.s.ModelReady(r.GetName(), r.GetVersion())}, nil
}

func (g *grpcService) ServerMetadata(context.Context, *inferencev2.ServerMetadataRequest) (*inferencev2.ServerMetadataResponse, error) {
	name, ver, ext := ServerMeta()
	return &inferencev2.ServerMetadataResponse{Name: name, Version: ver, Extensions: ext}, nil
}

func (g *grpcService) ModelMetadata(_ context.Context, r *inferencev2.ModelMetadataRequest) (*inferencev2.ModelMetadataResponse, error) {
	mm, err := g.s.Metadata(r.GetName(), r.GetVersion())
	if err != nil {
		return nil, grpcErr(err)
	}
	out := &inferencev2.ModelMetadataResponse{Name: mm.Name, Versions: mm.Versions, Platform: mm.Platform}
	for _, t := range mm.Inputs {
		out.Inputs = append(out.Inputs, &inferencev2.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	for _, t := range mm.Outputs {
		out.Outputs = append(out.Outputs, &inferencev2.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	return out, nil
}

func (g *grpcService) ModelInfer(ctx context.Context, r *inferencev2.ModelInferRequest) (*inferencev2.ModelInferResponse, error) {
	token := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			token = bearerValue(v[0])
		}
	}
	// The party's interceptors recheck the identity on every call.
	peer, _ := ratls.PeerFromContext(ctx)
	caller, err := g.s.Caller(peer, token)
	if err != nil {
		return nil, grpcErr(err)
	}
	req, err := oip.FromProto(r, g.s.o.Limits)
	if err != nil {
		g.s.m.requests.WithLabelValues(r.GetModelName(), "grpc", statusNames[StatusBadRequest]).Inc()
		return nil, grpcErr(err)
	}
	resp, err := g.s.Infer(ctx, "grpc", caller, r.GetModelName(), r.GetModelVersion(), req)
	if err != nil {
		if StatusOf(err) == StatusInternal {
			g.s.o.Log.Error("serve: inference failed", "model", r.GetModelName(), "err", err)
		}
		return nil, grpcErr(err)
	}
	return oip.ToProto(resp), nil
}

func bearerValue(h string) string {
	const p = "Bearer "
	if len(h) > len(p) && h[:len(p)] == p {
		return h[len(p):]
	}
	return ""
}
