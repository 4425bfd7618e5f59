package kms

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/teeml/teeml/attest/ear"
	"github.com/teeml/teeml/ratls"
)

// AcceptEAR is a release policy's accept_ear section: the key may be
// released on an attestation result (an EAR token, attest/ear) from a
// verifier the broker trusts (kms config ear_verifiers) instead of the
// caller's RA-TLS evidence. YAML:
//
//	accept_ear:
//	  max_age: 10m    # the result must have been issued at most this long ago
//
// The broker checks, in order: the token's ES256 signature by a trusted
// verifier key, its profile, iat within max_age (and exp, when present),
// exactly one submod with ear.status affirming, that the result binds the
// caller — its teeml.report-data is SHA-256 of the DER SubjectPublicKeyInfo
// of the caller's RA-TLS leaf key or of its federation identity key,
// followed by 32 zero bytes (the binding of the RA-TLS legacy extension and
// of enrolment CSRs), so only the holder of that key, authenticated by the
// handshake, can use the result — and then the key's
// members, roles and attestation section against the result's claims
// (teeml.measurements, teeml.tcb-status, teeml.simulated), exactly as it
// would judge verified evidence. The caller's federation identity still
// comes from the mutual RA-TLS handshake.
type AcceptEAR struct {
	MaxAge time.Duration
}

// MaxEARAge bounds accept_ear.max_age: a result is a point-in-time
// appraisal, not a credential.
const MaxEARAge = 24 * time.Hour

// earPeer verifies the call's attestation result for key id under rp and
// returns the caller as the result describes it: the RA-TLS identity with
// the result's claims.
func (c *call) earPeer(id string, rp *ReleasePolicy) (*ratls.Peer, error) {
	if rp.AcceptEAR == nil {
		return nil, c.refuse(codes.PermissionDenied, "key %q: its release policy does not accept attestation results (no accept_ear)", id)
	}
	if len(c.b.cfg.EARVerifiers) == 0 {
		return nil, c.refuse(codes.FailedPrecondition, "key %q: the broker trusts no attestation result verifier (kms config ear_verifiers)", id)
	}
	sum := sha256.Sum256([]byte(c.ear))
	r, err := ear.Verify(c.ear, ear.VerifyOptions{Keys: c.b.cfg.EARVerifiers, Now: c.b.cfg.Now(), MaxAge: rp.AcceptEAR.MaxAge})
	if err != nil {
		return nil, c.refuse(codes.PermissionDenied, "key %q: attestation result: %v", id, err)
	}
	name, a, err := r.Only()
	if err != nil {
		return nil, c.refuse(codes.PermissionDenied, "key %q: attestation result: %v", id, err)
	}
	if a.Status != ear.Affirming {
		return nil, c.refuse(codes.PermissionDenied, "key %q: attestation result: submod %q ear.status %s, want affirming", id, name, a.Status)
	}
	claims, err := a.Claims()
	if err != nil {
		return nil, c.refuse(codes.PermissionDenied, "key %q: attestation result: %v", id, err)
	}
	leafBinding := make([]byte, 64)
	copy(leafBinding, c.peer.LeafKeyHash[:])
	idBinding := make([]byte, 64)
	copy(idBinding, c.peer.Identity.KeyHash[:])
	var zero [32]byte
	bound := bytes.Equal(claims.ReportData, leafBinding) ||
		(c.peer.Identity.KeyHash != zero && bytes.Equal(claims.ReportData, idBinding))
	if !bound {
		got := claims.ReportData
		if len(got) > 8 {
			got = got[:8]
		}
		return nil, c.refuse(codes.PermissionDenied, "key %q: attestation result binds report data %s…, neither the caller's RA-TLS key %s… nor its identity key %s… (SHA-256 of the public key, zero padded)", id, hex.EncodeToString(got), hex.EncodeToString(leafBinding[:8]), hex.EncodeToString(idBinding[:8]))
	}
	p := *c.peer
	p.Claims, p.Simulated, p.Cached = claims, claims.Simulated, false
	c.rec.Evidence = summarize(&p)
	c.rec.Evidence.Result = fmt.Sprintf("ear sha256:%s iat %s verifier %s (%s)", hex.EncodeToString(sum[:8]),
		time.Unix(r.IssuedAt, 0).UTC().Format(time.RFC3339), r.VerifierID.Developer, r.VerifierID.Build)
	return &p, nil
}
