package dcap

import (
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
)

// intelRootPEM is the Intel SGX Root CA certificate (CN=Intel SGX Root CA,
// valid 2018-05-21 .. 2049-12-31), the trust anchor of every DCAP chain.
//
//go:embed intel_sgx_root_ca.pem
var intelRootPEM []byte

// IntelRootCAFingerprint is the SHA-256 of the DER of the pinned Intel SGX
// Root CA certificate, as published by Intel.
const IntelRootCAFingerprint = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

var (
	intelRootOnce sync.Once
	intelRoot     *x509.Certificate
	intelRootErr  error
)

// IntelRootCA returns the pinned Intel SGX Root CA certificate.
func IntelRootCA() (*x509.Certificate, error) {
	intelRootOnce.Do(func() {
		blk, _ := pem.Decode(intelRootPEM)
		if blk == nil {
			intelRootErr = errors.New("dcap: embedded Intel SGX Root CA is not PEM")
			return
		}
		if fp := sha256.Sum256(blk.Bytes); hex.EncodeToString(fp[:]) != IntelRootCAFingerprint {
			intelRootErr = fmt.Errorf("dcap: embedded Intel SGX Root CA has fingerprint %x, want %s", fp, IntelRootCAFingerprint)
			return
		}
		intelRoot, intelRootErr = x509.ParseCertificate(blk.Bytes)
	})
	return intelRoot, intelRootErr
}

// IntelRootCAPEM returns the PEM of the pinned Intel SGX Root CA.
func IntelRootCAPEM() []byte { return append([]byte(nil), intelRootPEM...) }
