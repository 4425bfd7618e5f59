// Package psi is teeml's two-party private set intersection: the vertical-FL
// leader and follower find the user IDs they have in common, and put them
// in an order both share, without showing each other the rest.
//
// # Protocol
//
// ECDH-PSI (Meadows; Huberman–Franklin–Hogg; the protocol of FATE's
// ECDH-PSI) over the prime-order group ristretto255. IDs are mapped into
// the group with the RFC 9380 hash-to-group suite
// ristretto255_XMD:SHA-512_R255MAP_RO_, its domain-separation tag bound to
// the session id, so blinded values of one session are useless in any
// other. Each party draws a fresh secret scalar per session (leader a,
// follower b), never stored.
//
//  1. Handshake: the dialer sends Hello with a commitment to its nonce, the
//     listener answers Hello with its nonce, the dialer reveals its own.
//     The session id is SHA-256 over the version, both attested names,
//     the mode, the configuration hash and both nonces; both sides
//     exchange Confirm{session id} and stop if they disagree. The shuffle
//     seed for the data join is derived from the session id, so neither
//     party chose it alone.
//  2. Step 1: the leader streams H(x)^a for its distinct IDs; the follower
//     raises each point to b and answers, in order, digest(H(x)^ab).
//  3. Step 2: the follower streams H(y)^b; in mode Both the leader answers
//     with digest(H(y)^ab), in mode LeaderLearns it keeps them and answers
//     nothing.
//  4. Step 3 (mode Both): the leader streams its digests sorted; the
//     follower answers each batch with the digests it holds too. In mode
//     LeaderLearns the leader intersects locally.
//  5. Done{intersection size} both ways (sizes must agree in mode Both).
//
// Points travel as the canonical compressed Edwards encoding of 8·P, the
// ristretto255 element's unique prime-order representative; digest
// truncates SHA-256 of the encoding of 8·(k·P) to DigestLen (16) bytes.
// The affine coordinates of a batch share one field inversion, so no point
// needs the inverse square root of a ristretto255 encoding. Non-canonical
// encodings and points of small order are refused. Every scalar
// multiplication is constant time. The common IDs are written ordered by
// their doubly blinded digest: the same order on both sides, independent
// of either input's order and unpredictable without both secrets.
//
// # Transport
//
// One bidirectional gRPC stream (teeml.psi.v1.PSI/Session, messages in
// api/proto/teeml/psi/v1) over RA-TLS: Serve listens for one session, Dial
// connects and retries until ConnectTimeout, Service lets a party accept
// the session on a gRPC server it already runs (the VFL bridge listener).
// The peer's name comes from its attested identity certificate, which must
// be certified for the complementary role (leader or follower). Every
// receive and send has a deadline (MessageTimeout); the side that fails
// sends Abort{reason} so the peer's error names it. Pipe is an in-memory
// stream with the same protocol and no attestation, for two parties in
// one process.
//
// # What it reveals
//
// In the semi-honest model (RA-TLS attestation makes "semi-honest" a
// checked property of the code both sides run): in mode Both each party
// learns the intersection and the number of distinct IDs of the other; in
// mode LeaderLearns the leader learns the intersection and the follower's
// set size, and the follower learns the leader's set size and nothing
// else (not the intersection, not its size). Both learn the peer's attested
// identity and the session parameters. Set sizes are inherent to ECDH-PSI;
// pad the ID file with random dummy IDs to hide them. Input order is not
// revealed: a Set is stored and sent in an order keyed by a fresh secret
// HMAC key. A false match needs two 128-bit digests to collide
// (probability at most n_L·n_F/2^128). ECDH-PSI by itself does not stop a
// party running modified code from using another ID set or claiming extra
// matches; attestation of both sides is what rules that out.
//
// IDs are read from a UTF-8 file, one per line, NFC-normalised and
// deduplicated with an external sort (PrepareFile), so memory stays bounded
// by MemoryBudget. See docs/vfl-psi.md for the full description and
// measurements.
package psi
