package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/teeml/teeml/internal/atomicfile"
)

// A federation bundle is what every party needs to check identities: a text
// file of five PEM blocks, in this order and with nothing else in it:
//
//	CERTIFICATE                        the federation root CA
//	CERTIFICATE                        the signing CA (signed by the root)
//	X509 CRL                           the current CRL (signed by the signing CA)
//	TEEML FEDERATION MEMBERS           members.yaml, verbatim
//	TEEML FEDERATION BUNDLE SIGNATURE  ECDSA (ASN.1) by the signing CA key
//
// The signature covers bundleDomain followed by, for each of the first four
// blocks, the block type and bytes, each preceded by its length (4-byte and
// 8-byte big endian), hashed with SHA-256 (P-256 signing CA) or SHA-384
// (P-384). A party accepts a bundle only if its root is byte-for-byte the
// root it pinned (a trusted file in its enclave manifest), the signing CA
// chains to it, the CRL and the signature verify with the signing CA, and
// the members list agrees with the CRL.
const (
	bundleDomain       = "teeml federation bundle v1\x00"
	blockMembers       = "TEEML FEDERATION MEMBERS"
	blockSignature     = "TEEML FEDERATION BUNDLE SIGNATURE"
	blockCertificate   = "CERTIFICATE"
	blockCRL           = "X509 CRL"
	maxBundleBlockSize = 16 << 20
)

var bundleBlocks = []string{blockCertificate, blockCertificate, blockCRL, blockMembers, blockSignature}

// Bundle is a parsed, self-consistent federation bundle.
type Bundle struct {
	Root      *x509.Certificate
	SigningCA *x509.Certificate
	CRL       *x509.RevocationList
	Members   *Members
}

func bundleMessage(blocks []*pem.Block) []byte {
	var b bytes.Buffer
	b.WriteString(bundleDomain)
	for _, blk := range blocks {
		var n [8]byte
		binary.BigEndian.PutUint32(n[:4], uint32(len(blk.Type)))
		b.Write(n[:4])
		b.WriteString(blk.Type)
		binary.BigEndian.PutUint64(n[:], uint64(len(blk.Bytes)))
		b.Write(n[:])
		b.Write(blk.Bytes)
	}
	return b.Bytes()
}

func bundleDigest(curve elliptic.Curve, msg []byte) ([]byte, x509.SignatureAlgorithm) {
	if curve == elliptic.P384() {
		h := sha512.Sum384(msg)
		return h[:], x509.ECDSAWithSHA384
	}
	h := sha256.Sum256(msg)
	return h[:], x509.ECDSAWithSHA256
}

// Bundle writes a fresh CRL (valid from now) and returns the federation
// bundle: root, signing CA, that CRL and the member list, signed by the
// signing CA.
func (ca *CA) Bundle(now time.Time) ([]byte, error) {
	unlock, err := ca.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	members, err := ca.loadMembers()
	if err != nil {
		return nil, err
	}
	membersYAML, err := os.ReadFile(filepath.Join(ca.dir, MembersFile))
	if err != nil {
		return nil, fmt.Errorf("pki: members: %w", err)
	}
	crlDER, err := ca.writeCRL(members, now)
	if err != nil {
		return nil, err
	}
	blocks := []*pem.Block{
		{Type: blockCertificate, Bytes: ca.root.Raw},
		{Type: blockCertificate, Bytes: ca.signing.Raw},
		{Type: blockCRL, Bytes: crlDER},
		{Type: blockMembers, Bytes: membersYAML},
	}
	digest, _ := bundleDigest(ca.signingKey.Curve, bundleMessage(blocks))
	sig, err := ecdsa.SignASN1(rand.Reader, ca.signingKey, digest)
	if err != nil {
		return nil, fmt.Errorf("pki: bundle: signing: %w", err)
	}
	blocks = append(blocks, &pem.Block{Type: blockSignature, Bytes: sig})
	var out bytes.Buffer
	for _, b := range blocks {
		if err := pem.Encode(&out, b); err != nil {
			return nil, fmt.Errorf("pki: bundle: %w", err)
		}
	}
	if _, err := ParseBundle(out.Bytes()); err != nil {
		return nil, fmt.Errorf("pki: bundle: self-check failed: %w", err)
	}
	return out.Bytes(), nil
}

// WriteBundle writes Bundle(now) to path atomically (mode 0644); if path is
// an existing directory the file is path/federation.bundle. It returns the
// file written.
func (ca *CA) WriteBundle(path string, now time.Time) (string, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "federation.bundle")
	}
	b, err := ca.Bundle(now)
	if err != nil {
		return "", err
	}
	if err := atomicfile.WriteBytes(path, b, 0o644); err != nil {
		return "", fmt.Errorf("pki: bundle: %w", err)
	}
	return path, nil
}

// ParseBundle decodes a federation bundle and checks that it is internally
// consistent and signed: the root is a self-signed CA, the signing CA is a CA
// signed by it, the CRL and the bundle signature verify with the signing CA,
// members.yaml is valid, names the root's federation, and agrees with the
// CRL. It does NOT decide whether the root is trusted: NewFederation compares
// it with the pinned root.
func ParseBundle(data []byte) (*Bundle, error) {
	var blocks []*pem.Block
	rest := data
	for i := 0; ; i++ {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			break
		}
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("pki: bundle: unexpected data after block %d", i)
		}
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("pki: bundle: block %d is not valid PEM", i+1)
		}
		if i >= len(bundleBlocks) {
			return nil, fmt.Errorf("pki: bundle: more than %d blocks", len(bundleBlocks))
		}
		if b.Type != bundleBlocks[i] || len(b.Headers) != 0 {
			return nil, fmt.Errorf("pki: bundle: block %d is %q, want %q without headers", i+1, b.Type, bundleBlocks[i])
		}
		if len(b.Bytes) > maxBundleBlockSize {
			return nil, fmt.Errorf("pki: bundle: block %d is %d bytes", i+1, len(b.Bytes))
		}
		blocks = append(blocks, b)
	}
	if len(blocks) != len(bundleBlocks) {
		return nil, fmt.Errorf("pki: bundle: %d PEM blocks, want %d (root, signing CA, CRL, members, signature)", len(blocks), len(bundleBlocks))
	}
	root, err := x509.ParseCertificate(blocks[0].Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: bundle: root certificate: %w", err)
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		return nil, errors.New("pki: bundle: root certificate is not a self-signed CA")
	}
	signing, err := x509.ParseCertificate(blocks[1].Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: bundle: signing CA certificate: %w", err)
	}
	if !signing.IsCA {
		return nil, errors.New("pki: bundle: signing CA certificate is not a CA")
	}
	if err := signing.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("pki: bundle: signing CA is not signed by the root: %w", err)
	}
	sigKey, ok := signing.PublicKey.(*ecdsa.PublicKey)
	if !ok || checkCurve(sigKey) != nil {
		return nil, errors.New("pki: bundle: signing CA key is not ECDSA P-256 or P-384")
	}
	_, alg := bundleDigest(sigKey.Curve, nil)
	if err := signing.CheckSignature(alg, bundleMessage(blocks[:4]), blocks[4].Bytes); err != nil {
		return nil, fmt.Errorf("pki: bundle: bad signature by the signing CA: %w", err)
	}
	crl, err := x509.ParseRevocationList(blocks[2].Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: bundle: CRL: %w", err)
	}
	if err := crl.CheckSignatureFrom(signing); err != nil {
		return nil, fmt.Errorf("pki: bundle: CRL is not signed by the signing CA: %w", err)
	}
	if crl.NextUpdate.IsZero() {
		return nil, errors.New("pki: bundle: CRL has no nextUpdate")
	}
	members, err := ParseMembers(blocks[3].Bytes, "bundle members")
	if err != nil {
		return nil, err
	}
	if len(root.Subject.Organization) != 1 || root.Subject.Organization[0] != members.Federation {
		return nil, fmt.Errorf("pki: bundle: members list is for federation %q, root for %q", members.Federation, root.Subject.Organization)
	}
	inCRL := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		inCRL[formatSerial(e.SerialNumber)] = true
	}
	for _, m := range members.Members {
		if (m.Status == Revoked) != inCRL[m.Serial] {
			return nil, fmt.Errorf("pki: bundle: member %q serial %s is %s in the members list but %s the CRL",
				m.Name, m.Serial, m.Status, map[bool]string{true: "in", false: "not in"}[inCRL[m.Serial]])
		}
	}
	return &Bundle{Root: root, SigningCA: signing, CRL: crl, Members: members}, nil
}
