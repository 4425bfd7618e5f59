// Package kmskeys is the attested key broker as a sealed.KeySource: data
// keys for sealed files and encrypted Parquet come from the broker
// (kms.Broker) over the caller's RA-TLS connection, so a key is released
// only when the caller's federation identity and attestation evidence, as
// verified at the handshake, satisfy the key's release policy. Every
// release and refusal is in the broker's audit log.
//
// It depends only on the broker's gRPC API, not on package kms, so the
// federation runtime (fl/run) can use it with the RA-TLS credentials it
// already builds for its own channels.
package kmskeys

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/sealed"
)

// Context is the authenticated context bound to every data key this
// package asks for: a wrapped key made for sealed files does not unwrap
// for another use of the same primary key (kms datakey --context …).
const Context = "teeml sealed v1"

// DefaultTimeout bounds one broker call when the caller's context has no
// deadline.
const DefaultTimeout = 30 * time.Second

// Source is a sealed.KeySource backed by the broker.
type Source struct {
	c       kmsv1.KeyBrokerClient
	broker  string
	timeout time.Duration
	room    *kmsv1.CleanRoomQuery
	result  func() (string, error)
}

// WithAttestationResult returns a Source that sends, with every data key
// request, the attestation result (an EAR token, attest/ear) that result
// returns — called per request, so a token refreshed on disk is picked up.
// The broker then judges keys whose release policy says accept_ear on the
// result instead of the connection's evidence (docs/kms.md). Clean-room
// requests never carry it.
func (s *Source) WithAttestationResult(result func() (string, error)) *Source {
	c := *s
	c.result = result
	return &c
}

func (s *Source) attestationResult(keyID string) (string, error) {
	if s.result == nil || s.room != nil {
		return "", nil
	}
	tok, err := s.result()
	if err != nil {
		return "", &sealed.KeyError{KeyID: keyID, Reason: fmt.Sprintf("attestation result for key broker %s: %v", s.broker, err)}
	}
	return tok, nil
}

// ForQuery returns a Source whose unwrap requests name the clean-room
// query q (docs/cleanroom.md): the broker releases a contract-bound key
// only for it. It creates no data keys (NewDataKey is refused).
func (s *Source) ForQuery(q *kmsv1.CleanRoomQuery) *Source {
	c := *s
	c.room = q
	return &c
}

// New returns a Source calling c; broker names it in errors (its address).
func New(c kmsv1.KeyBrokerClient, broker string) *Source {
	return &Source{c: c, broker: broker, timeout: DefaultTimeout}
}

// Describe names the source for logs.
func (s *Source) Describe() string {
	return "key broker " + s.broker + " (attested key release over RA-TLS)"
}

func (s *Source) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.timeout)
}

// NewDataKey implements sealed.KeySource: GenerateDataKey with the
// plaintext.
func (s *Source) NewDataKey(ctx context.Context, keyID string) ([]byte, []byte, error) {
	if s.room != nil {
		return nil, nil, &sealed.KeyError{KeyID: keyID, Reason: "a clean-room key source only unwraps"}
	}
	tok, err := s.attestationResult(keyID)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	r, err := s.c.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: keyID, Context: []byte(Context), WithPlaintext: true, AttestationResult: tok})
	if err != nil {
		return nil, nil, s.refusal(keyID, "new data key", err)
	}
	if r.GetKeyId() != keyID {
		return nil, nil, &sealed.KeyError{KeyID: keyID, Reason: fmt.Sprintf("key broker %s answered for key %q", s.broker, r.GetKeyId())}
	}
	if len(r.GetPlaintext()) != sealed.DataKeySize {
		return nil, nil, &sealed.KeyError{KeyID: keyID, Reason: fmt.Sprintf("key broker %s sent a %d-byte data key, want %d", s.broker, len(r.GetPlaintext()), sealed.DataKeySize)}
	}
	return r.GetPlaintext(), r.GetWrapped(), nil
}

// Unwrap implements sealed.KeySource.
func (s *Source) Unwrap(ctx context.Context, keyID string, wrapped []byte) ([]byte, error) {
	tok, err := s.attestationResult(keyID)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	r, err := s.c.Unwrap(ctx, &kmsv1.UnwrapRequest{Wrapped: wrapped, Context: []byte(Context), Cleanroom: s.room, AttestationResult: tok})
	if err != nil {
		return nil, s.refusal(keyID, "unwrap", err)
	}
	// The sealed header names keyID and binds it as associated data; the
	// wrapped blob names its own key, which the broker judged. They must
	// agree, or a header could borrow another key's wrapped data key.
	if r.GetKeyId() != keyID {
		return nil, &sealed.KeyError{KeyID: keyID, Reason: fmt.Sprintf("the wrapped data key belongs to key %q, not %q", r.GetKeyId(), keyID)}
	}
	if len(r.GetPlaintext()) != sealed.DataKeySize {
		return nil, &sealed.KeyError{KeyID: keyID, Reason: fmt.Sprintf("key broker %s sent a %d-byte data key, want %d", s.broker, len(r.GetPlaintext()), sealed.DataKeySize)}
	}
	return r.GetPlaintext(), nil
}

// refusal turns a broker error into one line naming the broker and its
// reason (the gRPC status message is the broker's audited reason).
func (s *Source) refusal(keyID, op string, err error) error {
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Message()
	}
	msg = strings.Join(strings.Fields(msg), " ")
	return &sealed.KeyError{KeyID: keyID, Reason: fmt.Sprintf("%s: key broker %s refused: %s", op, s.broker, msg)}
}

var _ sealed.KeySource = (*Source)(nil)
