// Package dcaptest holds test helpers for DCAP, in the spirit of
// net/http/httptest. It locates the shared real-hardware samples (see
// Read), and it builds synthetic hierarchies: a fake Intel-shaped PKI (root,
// PCK Processor CA, TCB Signing), PCK certificates with the SGX extension,
// CRLs, signed TCB Info / QE Identity and signed SGX (v3) and TDX (v4)
// quotes. Verifiers accept synthetic quotes only when configured with the
// fake root.
package dcaptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/dcap/collateral"
	"github.com/teeml/teeml/attest/dcap/internal/rawsig"
	"github.com/teeml/teeml/attest/dcap/pckcert"
)

// PKI is a fake Intel SGX PKI.
type PKI struct {
	Root, CA, TCBSigning          *x509.Certificate
	RootKey, CAKey, TCBSigningKey *ecdsa.PrivateKey
	NotBefore, NotAfter           time.Time
	serial                        int64
}

func name(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{"Intel Corporation"}, Locality: []string{"Santa Clara"},
		Province: []string{"CA"}, Country: []string{"US"}}
}

func key(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func (p *PKI) nextSerial() *big.Int { p.serial++; return big.NewInt(p.serial) }

func create(tb testing.TB, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, priv *ecdsa.PrivateKey) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// NewPKI creates a root, a "PCK Processor CA" and a "TCB Signing"
// certificate valid from notBefore to notAfter.
func NewPKI(tb testing.TB, notBefore, notAfter time.Time) *PKI {
	tb.Helper()
	p := &PKI{NotBefore: notBefore, NotAfter: notAfter, RootKey: key(tb), CAKey: key(tb), TCBSigningKey: key(tb)}
	rootT := &x509.Certificate{SerialNumber: p.nextSerial(), Subject: name("Intel SGX Root CA"),
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	p.Root = create(tb, rootT, rootT, &p.RootKey.PublicKey, p.RootKey)
	caT := &x509.Certificate{SerialNumber: p.nextSerial(), Subject: name("Intel SGX PCK Processor CA"),
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	p.CA = create(tb, caT, p.Root, &p.CAKey.PublicKey, p.RootKey)
	tcbT := &x509.Certificate{SerialNumber: p.nextSerial(), Subject: name("Intel SGX TCB Signing"),
		NotBefore: notBefore, NotAfter: notAfter, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment}
	p.TCBSigning = create(tb, tcbT, p.Root, &p.TCBSigningKey.PublicKey, p.RootKey)
	return p
}

// PCKParams are the SGX extension values of a PCK certificate.
type PCKParams struct {
	FMSPC   [6]byte
	PCEID   [2]byte
	CompSVN [16]uint8
	PCESVN  uint16
	CPUSVN  [16]byte
}

type member struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue
}

func raw(tb testing.TB, v any) asn1.RawValue {
	tb.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return asn1.RawValue{FullBytes: b}
}

func sub(parent asn1.ObjectIdentifier, n int) asn1.ObjectIdentifier {
	return append(append(asn1.ObjectIdentifier{}, parent...), n)
}

// SGXExtension encodes the SGX extension value for p.
func SGXExtension(tb testing.TB, p PCKParams) []byte {
	tb.Helper()
	var tcb []member
	for i := 0; i < 16; i++ {
		tcb = append(tcb, member{sub(pckcert.OIDTCB, i+1), raw(tb, int(p.CompSVN[i]))})
	}
	tcb = append(tcb, member{sub(pckcert.OIDTCB, 17), raw(tb, int(p.PCESVN))})
	tcb = append(tcb, member{sub(pckcert.OIDTCB, 18), raw(tb, p.CPUSVN[:])})
	ms := []member{
		{pckcert.OIDPPID, raw(tb, make([]byte, 16))},
		{pckcert.OIDTCB, raw(tb, tcb)},
		{pckcert.OIDPCEID, raw(tb, p.PCEID[:])},
		{pckcert.OIDFMSPC, raw(tb, p.FMSPC[:])},
		{pckcert.OIDSGXType, raw(tb, asn1.Enumerated(0))},
	}
	b, err := asn1.Marshal(ms)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// NewPCK issues a PCK certificate from the CA.
func (p *PKI) NewPCK(tb testing.TB, params PCKParams) (*x509.Certificate, *ecdsa.PrivateKey) {
	tb.Helper()
	k := key(tb)
	t := &x509.Certificate{SerialNumber: p.nextSerial(), Subject: name("Intel SGX PCK Certificate"),
		NotBefore: p.NotBefore, NotAfter: p.NotAfter, BasicConstraintsValid: true,
		KeyUsage:        x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		ExtraExtensions: []pkix.Extension{{Id: pckcert.OIDSGXExtension, Value: SGXExtension(tb, params)}}}
	return create(tb, t, p.CA, &k.PublicKey, p.CAKey), k
}

// CRL creates a CRL by issuer listing the revoked certificates.
func CRL(tb testing.TB, issuer *x509.Certificate, issuerKey *ecdsa.PrivateKey, this, next time.Time, revoked ...*x509.Certificate) []byte {
	tb.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: this})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: this, NextUpdate: next, RevokedCertificateEntries: entries,
	}, issuer, issuerKey)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// PEM encodes certificates as a PEM chain.
func PEM(certs ...*x509.Certificate) string {
	var sb strings.Builder
	for _, c := range certs {
		_ = pem.Encode(&sb, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return sb.String()
}

// Sign signs msg with k (raw r‖s).
func Sign(tb testing.TB, k *ecdsa.PrivateKey, msg []byte) []byte {
	tb.Helper()
	s, err := rawsig.Sign(k, msg)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Collateral assembles signed collateral around the given TCB Info and QE
// Identity bodies and CRLs.
func (p *PKI) Collateral(tb testing.TB, tcbInfo, qeIdentity, rootCRL, pckCRL []byte) *collateral.Collateral {
	tb.Helper()
	return &collateral.Collateral{
		PCKCRLIssuerChain:     PEM(p.CA, p.Root),
		RootCACRL:             rootCRL,
		PCKCRL:                pckCRL,
		TCBInfoIssuerChain:    PEM(p.TCBSigning, p.Root),
		TCBInfo:               tcbInfo,
		TCBInfoSignature:      Sign(tb, p.TCBSigningKey, tcbInfo),
		QEIdentityIssuerChain: PEM(p.TCBSigning, p.Root),
		QEIdentity:            qeIdentity,
		QEIdentitySignature:   Sign(tb, p.TCBSigningKey, qeIdentity),
	}
}

// QuoteParams describe a synthetic quote.
type QuoteParams struct {
	// Exactly one of SGX and TD is set.
	SGX *abi.EnclaveReport
	TD  *abi.TDReport10
	// QEReport is the QE report; its report data is filled in.
	QEReport   abi.EnclaveReport
	QEAuthData []byte
	// QEReportDataTail is copied into QE report data bytes 32..63 (which a
	// genuine QE leaves zero).
	QEReportDataTail []byte
	PCK              *x509.Certificate
	PCKKey           *ecdsa.PrivateKey
	Chain            []*x509.Certificate // PCK chain to embed; default PCK, CA, root
	PKI              *PKI
	// TD15, when set with TD, makes a v5 quote with a TDX 1.5 body
	// (TD15's 1.0 part is taken from TD).
	TD15 *abi.TDReport15
	// CertData, when set, replaces the certification data (type 5 with
	// Chain) inside the QE report certification data.
	CertData *abi.CertificationData
}

// Quote builds and signs a quote (v3 for SGX, v4 for TDX).
func Quote(tb testing.TB, qp QuoteParams) []byte {
	tb.Helper()
	attKey := key(tb)
	var att [64]byte
	attKey.PublicKey.X.FillBytes(att[:32])
	attKey.PublicKey.Y.FillBytes(att[32:])
	qe := qp.QEReport
	h := sha256.New()
	h.Write(att[:])
	h.Write(qp.QEAuthData)
	qe.ReportData = [64]byte{}
	copy(qe.ReportData[:32], h.Sum(nil))
	copy(qe.ReportData[32:], qp.QEReportDataTail)
	chain := qp.Chain
	if chain == nil {
		chain = []*x509.Certificate{qp.PCK, qp.PKI.CA, qp.PKI.Root}
	}
	qeBytes := qe.Marshal()
	qeCert := &abi.QEReportCertificationData{
		QEReport: &qe, RawQEReport: qeBytes, QEAuthData: qp.QEAuthData,
		CertificationData: &abi.CertificationData{Type: abi.CertDataPCKChain, Data: []byte(PEM(chain...))},
	}
	if qp.CertData != nil {
		qeCert.CertificationData = qp.CertData
	}
	copy(qeCert.QEReportSignature[:], Sign(tb, qp.PCKKey, qeBytes))
	q := &abi.Quote{
		Header: &abi.Header{AttestationKeyType: abi.AttestationKeyTypeECDSAP256, QEVendorID: abi.IntelQEVendorID},
		SignatureData: &abi.SignatureData{
			AttestationKey: att, QEReportCertificationData: qeCert,
		},
	}
	if qp.SGX != nil {
		q.Header.Version, q.Header.TEEType, q.BodyType, q.SGXReport = abi.QuoteVersion3, abi.TEETypeSGX, abi.BodyTypeSGX, qp.SGX
	} else if qp.TD15 != nil {
		td := *qp.TD15
		td.TDReport10 = *qp.TD
		q.Header.Version, q.Header.TEEType, q.BodyType, q.TDReport15 = abi.QuoteVersion5, abi.TEETypeTDX, abi.BodyTypeTD15, &td
		q.TDReport = &q.TDReport15.TDReport10
	} else {
		q.Header.Version, q.Header.TEEType, q.BodyType, q.TDReport = abi.QuoteVersion4, abi.TEETypeTDX, abi.BodyTypeTD10, qp.TD
	}
	signed, err := q.MarshalSigned()
	if err != nil {
		tb.Fatal(err)
	}
	copy(q.SignatureData.Signature[:], Sign(tb, attKey, signed))
	b, err := q.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
