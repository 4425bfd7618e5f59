// Package pki is teeml's federation PKI: OpenFL's certify flow (a CA signs
// each party's identity after checking who it is) without shuffling zip files
// around, and with attestation as the admission check.
//
// Each party holds a long-lived identity key inside its TEE. It sends the CA
// a certificate signing request (NewCSR) that carries evidence of that TEE,
// bound to the identity key: the evidence's report data is SHA-256 of the
// CSR's DER SubjectPublicKeyInfo, zero padded to 64 bytes. The CA
// (CA.Certify) checks the CSR signature, verifies the evidence, checks the
// binding, judges the claims with an attestation policy for the requested
// role, and issues an identity certificate:
//
//	Subject: CN=<member name>, OU=<role>, O=<federation>
//	BasicConstraints: CA=true, pathLen=0 (critical)
//	KeyUsage: DigitalSignature, CertSign (critical)
//	ExtKeyUsage: serverAuth, clientAuth
//
// so that the identity key can sign exactly one level below it: the party's
// short-lived RA-TLS leaf certificates (package ratls). The role is the
// certificate's single OU; no private OID is needed for it.
//
// A connection presents [RA-TLS leaf, identity certificate]. ratls checks the
// leaf's evidence and policy; Federation (loaded from a federation bundle the
// CA exports) checks the identity part and implements ratls.IdentityVerifier.
//
// The CA workspace is a directory (see InitCA) holding the root and signing
// CA keys (mode 0600), members.yaml (the member list), crl.pem and ca.yaml.
// The trust model, the bundle format and what is and is not defended against
// are described in docs/trust-model.md.
package pki
