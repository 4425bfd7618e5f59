package ratls

import (
	"crypto/x509"
	"time"
)

// Identity is a peer's long-lived federation identity, proven by a
// certificate chain to the federation CA (package pki). It answers "which
// organisation is this"; the RA-TLS evidence answers "what code is it
// running". A connection is accepted only when both hold.
type Identity struct {
	Name string // member name, e.g. "col-2"
	Role string // aggregator, collaborator, leader, follower, kms
	// Serial is the identity certificate's serial number (hex), for logs and
	// revocation.
	Serial string
	// NotAfter is the identity certificate's expiry.
	NotAfter time.Time
	// KeyHash is SHA-256 of the identity certificate's DER
	// SubjectPublicKeyInfo: the report data binding of the evidence the
	// member enrolled with (pki.KeyHash), zero when not known.
	KeyHash [32]byte
}

// IdentityVerifier checks the identity part of a peer's certificate chain.
//
// chain[0] is the peer's RA-TLS leaf (fresh key, carries the evidence) and
// chain[1:] is what the peer presented above it: under teeml's binding the
// leaf is signed by the peer's identity key and chain[1] is the identity
// certificate issued by the federation CA. The verifier must check the chain
// to its pinned federation root at time now, revocation, and membership of
// the name in the member list for the role, and return the identity. It must
// never return an Identity together with an error.
//
// Package pki implements it; ratls only calls it.
type IdentityVerifier interface {
	VerifyIdentity(chain []*x509.Certificate, now time.Time) (*Identity, error)
}
