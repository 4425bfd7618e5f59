package kmskeys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/sealed"
)

// fakeBroker answers GenerateDataKey and Unwrap like the broker would, or
// with the configured deviation.
type fakeBroker struct {
	kmsv1.KeyBrokerClient
	key      []byte
	answerID string // key ID to answer with ("" = the asked one)
	refuse   error
	sawCtx   []byte
	sawEAR   string
	deadline bool
}

func (f *fakeBroker) GenerateDataKey(ctx context.Context, r *kmsv1.GenerateDataKeyRequest, _ ...grpc.CallOption) (*kmsv1.GenerateDataKeyResponse, error) {
	_, f.deadline = ctx.Deadline()
	f.sawCtx, f.sawEAR = r.GetContext(), r.GetAttestationResult()
	if f.refuse != nil {
		return nil, f.refuse
	}
	id := r.GetKeyId()
	if f.answerID != "" {
		id = f.answerID
	}
	return &kmsv1.GenerateDataKeyResponse{KeyId: id, Wrapped: append([]byte("w:"), id...), Plaintext: bytes.Clone(f.key)}, nil
}

func (f *fakeBroker) Unwrap(ctx context.Context, r *kmsv1.UnwrapRequest, _ ...grpc.CallOption) (*kmsv1.UnwrapResponse, error) {
	_, f.deadline = ctx.Deadline()
	f.sawCtx, f.sawEAR = r.GetContext(), r.GetAttestationResult()
	if f.refuse != nil {
		return nil, f.refuse
	}
	id, _ := strings.CutPrefix(string(r.GetWrapped()), "w:")
	if f.answerID != "" {
		id = f.answerID
	}
	return &kmsv1.UnwrapResponse{KeyId: id, Plaintext: bytes.Clone(f.key)}, nil
}

func TestSourceSealsAndOpens(t *testing.T) {
	ctx := context.Background()
	fb := &fakeBroker{key: bytes.Repeat([]byte{7}, sealed.DataKeySize)}
	s := New(fb, "broker:1")
	var buf bytes.Buffer
	w, err := sealed.NewWriter(ctx, &buf, s, "k1", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("secret rows"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !fb.deadline || string(fb.sawCtx) != Context {
		t.Errorf("call without deadline (%v) or context %q", fb.deadline, fb.sawCtx)
	}
	r, err := sealed.Open(ctx, bytes.NewReader(buf.Bytes()), s)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(r); err != nil || out.String() != "secret rows" {
		t.Fatalf("read back %q, %v", out.String(), err)
	}
}

func TestSourceRefusals(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, sealed.DataKeySize)
	refusal := status.Error(codes.PermissionDenied, "key \"k1\": member \"col-2\" (role collaborator) is not allowed\n(extra line)")
	cases := []struct {
		name string
		fb   *fakeBroker
		want string
	}{
		{"refused", &fakeBroker{key: key, refuse: refusal}, `key "k1": unwrap: key broker broker:1 refused: key "k1": member "col-2" (role collaborator) is not allowed (extra line)`},
		{"other key", &fakeBroker{key: key, answerID: "k2"}, `the wrapped data key belongs to key "k2", not "k1"`},
		{"short key", &fakeBroker{key: key[:16]}, "sent a 16-byte data key, want 32"},
	}
	for _, c := range cases {
		_, err := New(c.fb, "broker:1").Unwrap(ctx, "k1", []byte("w:k1"))
		if err == nil || err.Error() != c.want && !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: unwrap error %v, want one line with %q", c.name, err, c.want)
		}
		var ke *sealed.KeyError
		if err != nil && !asKeyError(err, &ke) {
			t.Errorf("%s: error %T is not a *sealed.KeyError", c.name, err)
		}
	}
	if _, _, err := New(&fakeBroker{key: key, answerID: "k2"}, "b").NewDataKey(ctx, "k1"); err == nil || !strings.Contains(err.Error(), `answered for key "k2"`) {
		t.Errorf("new data key for another key: %v", err)
	}
	if _, _, err := New(&fakeBroker{key: key, refuse: refusal}, "b").NewDataKey(ctx, "k1"); err == nil || !strings.Contains(err.Error(), "new data key: key broker b refused") {
		t.Errorf("new data key refused: %v", err)
	}
}

func asKeyError(err error, ke **sealed.KeyError) bool {
	e, ok := err.(*sealed.KeyError)
	*ke = e
	return ok
}

func TestSourceSendsAttestationResult(t *testing.T) {
	ctx := context.Background()
	fb := &fakeBroker{key: bytes.Repeat([]byte{7}, sealed.DataKeySize)}
	n := 0
	s := New(fb, "broker:1").WithAttestationResult(func() (string, error) {
		n++
		return fmt.Sprintf("h.p%d.s", n), nil
	})
	if _, w, err := s.NewDataKey(ctx, "k1"); err != nil || fb.sawEAR != "h.p1.s" {
		t.Fatalf("new data key sent %q (%v)", fb.sawEAR, err)
	} else if _, err := s.Unwrap(ctx, "k1", w); err != nil || fb.sawEAR != "h.p2.s" {
		t.Fatalf("unwrap sent %q (%v): the result is read per request", fb.sawEAR, err)
	}
	// Clean-room requests never carry it.
	if _, err := s.ForQuery(&kmsv1.CleanRoomQuery{QueryId: "q"}).Unwrap(ctx, "k1", []byte("w:k1")); err != nil || fb.sawEAR != "" {
		t.Fatalf("clean-room unwrap sent %q (%v)", fb.sawEAR, err)
	}
	// No source: nothing sent; a failing source: nothing asked, a key error.
	if _, _, err := New(fb, "b").NewDataKey(ctx, "k1"); err != nil || fb.sawEAR != "" {
		t.Fatalf("plain source sent %q", fb.sawEAR)
	}
	fb.sawCtx = nil
	bad := New(fb, "b").WithAttestationResult(func() (string, error) { return "", errors.New("result.jwt: no such file") })
	_, _, err := bad.NewDataKey(ctx, "k1")
	var ke *sealed.KeyError
	if !errors.As(err, &ke) || !strings.Contains(err.Error(), "attestation result for key broker b: result.jwt: no such file") || fb.sawCtx != nil {
		t.Fatalf("failing result source: %v (broker asked: %v)", err, fb.sawCtx != nil)
	}
}
