// Package ratls implements attested TLS channels (RA-TLS) for teeml,
// compatible with Gramine's RA-TLS certificates, and gRPC transport
// credentials on top of them.
//
// # Certificates
//
// NewCertificate generates a fresh ECDSA P-256 key in the process (inside
// the TEE), obtains evidence from an attest.Issuer binding that key, and
// puts the evidence in X.509 extensions exactly as Gramine does
// (tools/sgx/ra-tls/ra_tls_attest.c):
//
//   - TCG DICE tagged evidence, OID 2.23.133.5.4.9: the extension value is
//     the CBOR item #6.60000([quote: bstr, claims: bstr]) where claims is the
//     serialized map {"pubkey-hash": bstr(serialized [1, bstr(SHA-256(DER
//     SubjectPublicKeyInfo))])} — 1 being sha-256 in the IANA named
//     information hash algorithm registry — and the quote's report data is
//     SHA-256(claims), zero padded to 64 bytes;
//   - Gramine's legacy extension, OID 1.2.840.113741.1337.6: the raw quote,
//     with report data SHA-256(DER SubjectPublicKeyInfo), zero padded.
//
// By default both are written, each with its own quote, as Gramine does.
// The certificate is self-signed (attestation-only mode, as Gramine and
// CCZoo) or signed by the holder's long-lived federation identity key
// (CertOptions.Parent/ParentKey), giving the TLS chain [RA-TLS leaf,
// identity certificate]: teeml's binding of a long-lived identity to fresh
// evidence. A CertSource re-issues the certificate at 2/3 of its validity.
//
// # Verification
//
// Verifier.VerifyPeer runs, in this order, and stops at the first failure:
//
//	parse → bind → identity → verify evidence → policy
//
// Step by step:
//
//  1. parse: the leaf's evidence extension(s), decoded strictly (definite
//     lengths, bounded sizes, exact shapes);
//  2. bind: the report data of every quote present binds the leaf's public
//     key — checked on the unverified quote, before any time is spent on
//     evidence verification; then the leaf's signature (self, or by the
//     identity certificate's key) and its validity at now;
//  3. identity (PKI mode): the IdentityVerifier (package pki) checks the
//     identity certificate's chain to the federation root, revocation and
//     membership, and names the peer and its role; when configured it is
//     required, and it runs at every handshake;
//  4. verify evidence: the attest.Verifier checks the quote; the result is
//     cached by SHA-256 of the leaf's DER until the leaf expires (or the
//     claims' ValidUntil, or Config.CacheTTL), so repeated handshakes with
//     the same RA-TLS certificate skip only this step;
//  5. policy: attest/policy for the identity's role (or Config.Role in
//     attestation-only mode), including that the verified report data is
//     the binding of step 2; evaluated at every handshake.
//
// Refusals are *Error values: one line naming the peer and the check, e.g.
//
//	peer "col-1": evidence binds key 3fa2c4d1…, not the certificate's key 91bc0e77… (key-binding)
//
// Proof that the peer holds the leaf's private key is the TLS handshake's
// CertificateVerify, which crypto/tls always checks; the verifier never
// replaces it. (crypto/tls calls VerifyConnection before it checks a TLS
// 1.3 CertificateVerify: a replayed certificate gets verified, then the
// handshake fails; no Peer is ever returned from a failed handshake.)
//
// # gRPC
//
// NewServerCredentials and NewClientCredentials return
// credentials.TransportCredentials doing RA-TLS over TLS 1.3 only, with
// CCZoo's verify options (VerifyTwoWay, VerifyServer, VerifyClient).
// Handlers get the verified peer with PeerFromContext.
package ratls
