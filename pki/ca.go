package pki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/explain"
	"github.com/teeml/teeml/internal/yamlx"
)

// Files of a CA workspace.
const (
	ConfigFile     = "ca.yaml"
	RootCertFile   = "root.pem"
	RootKeyFile    = "root-key.pem"
	SigningCAFile  = "signing-ca.pem"
	SigningKeyFile = "signing-ca-key.pem"
	MembersFile    = "members.yaml"
	CRLFile        = "crl.pem"
	IssuedDir      = "issued"
	lockFile       = ".lock"
)

// Defaults for InitOptions.
const (
	DefaultFederation       = "teeml"
	DefaultRootValidity     = 10 * 365 * 24 * time.Hour
	DefaultSigningValidity  = 5 * 365 * 24 * time.Hour
	DefaultIdentityValidity = 30 * 24 * time.Hour
	DefaultCRLValidity      = 7 * 24 * time.Hour
)

// clockSkew is how far before "now" certificates and CRLs start to be valid,
// so that a party whose clock lags the CA's a little accepts them at once.
const clockSkew = 5 * time.Minute

// InitOptions configures a new CA workspace; zero fields take defaults.
type InitOptions struct {
	Federation       string        // federation name: O= of every certificate; default "teeml"
	Curve            string        // P256 (default) or P384, for both CA keys
	RootValidity     time.Duration // default 10 years
	SigningValidity  time.Duration // default 5 years (capped at the root's)
	IdentityValidity time.Duration // identity certificates; default 30 days
	CRLValidity      time.Duration // CRL nextUpdate - thisUpdate; default 7 days
	Now              time.Time     // default time.Now()
}

// Config is ca.yaml: the workspace's settings.
type Config struct {
	Federation       string
	Curve            string
	IdentityValidity time.Duration
	CRLValidity      time.Duration
}

type configYAML struct {
	Federation       string `yaml:"federation"`
	Curve            string `yaml:"curve"`
	IdentityValidity string `yaml:"identity_validity"`
	CRLValidity      string `yaml:"crl_validity"`
}

func (c Config) marshal() ([]byte, error) {
	b, err := yaml.Marshal(configYAML{c.Federation, c.Curve, c.IdentityValidity.String(), c.CRLValidity.String()})
	if err != nil {
		return nil, err
	}
	return append([]byte("# teeml federation CA settings (teeml pki init)\n"), b...), nil
}

func parseConfig(data []byte, name string) (Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var y configYAML
	if err := dec.Decode(&y); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("pki: %s: empty", name)
		}
		return Config{}, fmt.Errorf("pki: %s: %s", name, oneLine(err.Error()))
	}
	c := Config{Federation: y.Federation, Curve: y.Curve}
	var err error
	if err = checkFederationName(c.Federation); err != nil {
		return c, fmt.Errorf("pki: %s: %w", name, err)
	}
	if _, err = curveByName(c.Curve); err != nil || c.Curve == "" {
		return c, fmt.Errorf("pki: %s: curve %q: want P-256 or P-384", name, c.Curve)
	}
	if c.IdentityValidity, err = positiveDuration(y.IdentityValidity); err != nil {
		return c, fmt.Errorf("pki: %s: identity_validity: %w", name, err)
	}
	if c.CRLValidity, err = positiveDuration(y.CRLValidity); err != nil {
		return c, fmt.Errorf("pki: %s: crl_validity: %w", name, err)
	}
	return c, nil
}

func positiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 720h", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s is not positive", s)
	}
	return d, nil
}

// CA is an open CA workspace. Its methods are safe for concurrent use, and
// a file lock serialises changes between processes.
type CA struct {
	dir        string
	cfg        Config
	root       *x509.Certificate
	signing    *x509.Certificate
	signingKey *ecdsa.PrivateKey
	mu         sync.Mutex
}

// InitCA creates a CA workspace in dir, which must not exist or be empty: a
// self-signed root CA, a signing CA certified by it (both keys mode 0600,
// directory mode 0700), an empty members.yaml, an empty CRL and ca.yaml. The
// workspace appears complete or not at all.
func InitCA(dir string, opts InitOptions) (*CA, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	now := opts.Now.UTC().Truncate(time.Second)

	tmp, err := initTempDir(dir)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // a no-op after the rename

	rootKey, root, err := newRootCA(opts, now)
	if err != nil {
		return nil, err
	}
	signingKey, signing, err := newSigningCA(opts, now, root, rootKey)
	if err != nil {
		return nil, err
	}

	cfg := Config{Federation: opts.Federation, Curve: opts.Curve, IdentityValidity: opts.IdentityValidity, CRLValidity: opts.CRLValidity}
	ca := &CA{dir: tmp, cfg: cfg, root: root, signing: signing, signingKey: signingKey}
	if err := ca.writeInitial(rootKey, now); err != nil {
		return nil, err
	}
	// An existing empty directory is removed first (os.Remove refuses a
	// non-empty one, e.g. a concurrent init); os.Rename then refuses to
	// replace anything that appeared meanwhile.
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	ca.dir = dir
	return ca, nil
}

// setDefaults fills in InitCA's defaults and checks the options.
func (opts *InitOptions) setDefaults() error {
	if opts.Federation == "" {
		opts.Federation = DefaultFederation
	}
	if err := checkFederationName(opts.Federation); err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	if opts.Curve == "" {
		opts.Curve = P256
	}
	if _, err := curveByName(opts.Curve); err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	def := func(d *time.Duration, v time.Duration, what string) error {
		if *d == 0 {
			*d = v
		}
		if *d < 0 {
			return fmt.Errorf("pki: init: %s %s is negative", what, *d)
		}
		return nil
	}
	for _, e := range []error{
		def(&opts.RootValidity, DefaultRootValidity, "root validity"),
		def(&opts.SigningValidity, DefaultSigningValidity, "signing CA validity"),
		def(&opts.IdentityValidity, DefaultIdentityValidity, "identity validity"),
		def(&opts.CRLValidity, DefaultCRLValidity, "CRL validity"),
	} {
		if e != nil {
			return e
		}
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	return nil
}

// initTempDir checks dir does not exist or is empty and makes the private
// (mode 0700) directory next to it that InitCA fills and renames to dir.
func initTempDir(dir string) (string, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return "", fmt.Errorf("pki: init: %s exists and is not empty; refusing to overwrite a CA workspace", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("pki: init: %w", err)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("pki: init: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".init-*")
	if err != nil {
		return "", fmt.Errorf("pki: init: %w", err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("pki: init: %w", err)
	}
	return tmp, nil
}

// newRootCA makes the federation's self-signed root CA and its key.
func newRootCA(opts InitOptions, now time.Time) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	rootKey, err := GenerateKey(opts.Curve)
	if err != nil {
		return nil, nil, err
	}
	rootSerial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          rootSerial,
		Subject:               pkix.Name{CommonName: opts.Federation + " federation root CA", Organization: []string{opts.Federation}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(opts.RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            2, // signing CA, identity certificate
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: init: root certificate: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: init: root certificate: %w", err)
	}
	return rootKey, root, nil
}

// newSigningCA makes the signing CA, certified by root, and its key; it
// expires no later than root.
func newSigningCA(opts InitOptions, now time.Time, root *x509.Certificate, rootKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	signingKey, err := GenerateKey(opts.Curve)
	if err != nil {
		return nil, nil, err
	}
	sigSerial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	sigNotAfter := now.Add(opts.SigningValidity)
	if sigNotAfter.After(root.NotAfter) {
		sigNotAfter = root.NotAfter
	}
	sigTmpl := &x509.Certificate{
		SerialNumber:          sigSerial,
		Subject:               pkix.Name{CommonName: opts.Federation + " federation signing CA", Organization: []string{opts.Federation}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              sigNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1, // identity certificate
	}
	sigDER, err := x509.CreateCertificate(rand.Reader, sigTmpl, root, &signingKey.PublicKey, rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: init: signing CA certificate: %w", err)
	}
	signing, err := x509.ParseCertificate(sigDER)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: init: signing CA certificate: %w", err)
	}
	return signingKey, signing, nil
}

// writeInitial writes a new workspace's files into ca.dir: both keys, the
// issued directory, an empty members.yaml and CRL, the CA certificates and
// ca.yaml.
func (ca *CA) writeInitial(rootKey *ecdsa.PrivateKey, now time.Time) error {
	if err := SaveKey(filepath.Join(ca.dir, RootKeyFile), rootKey); err != nil {
		return err
	}
	if err := SaveKey(filepath.Join(ca.dir, SigningKeyFile), ca.signingKey); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(ca.dir, IssuedDir), 0o700); err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	members := &Members{Federation: ca.cfg.Federation, Members: []Member{}}
	if err := members.save(filepath.Join(ca.dir, MembersFile)); err != nil {
		return err
	}
	if _, err := ca.writeCRL(members, now); err != nil {
		return err
	}
	cfgBytes, err := ca.cfg.marshal()
	if err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{RootCertFile, encodeCert(ca.root)}, {SigningCAFile, encodeCert(ca.signing)}, {ConfigFile, cfgBytes}} {
		if err := atomicfile.WriteBytes(filepath.Join(ca.dir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("pki: init: %w", err)
		}
	}
	return nil
}

// OpenCA opens an existing CA workspace, checking that the key files are
// private (mode 0600) and that the signing key matches its certificate and
// the certificate the root.
func OpenCA(dir string) (*CA, error) {
	cfgBytes, err := yamlx.ReadFile(filepath.Join(dir, ConfigFile), "CA settings", 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, explain.Errorf(err, "pki: %s is not a CA workspace (no %s; create one with teeml pki init)", dir, ConfigFile)
		}
		return nil, fmt.Errorf("pki: %w", err)
	}
	cfg, err := parseConfig(cfgBytes, filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	root, err := LoadCertificate(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, err
	}
	signing, err := LoadCertificate(filepath.Join(dir, SigningCAFile))
	if err != nil {
		return nil, err
	}
	if _, err := LoadKey(filepath.Join(dir, RootKeyFile)); err != nil {
		return nil, err
	}
	key, err := LoadKey(filepath.Join(dir, SigningKeyFile))
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(signing.PublicKey) {
		return nil, fmt.Errorf("pki: %s does not match %s", filepath.Join(dir, SigningKeyFile), filepath.Join(dir, SigningCAFile))
	}
	if err := signing.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("pki: %s is not signed by %s: %w", SigningCAFile, RootCertFile, err)
	}
	return &CA{dir: dir, cfg: cfg, root: root, signing: signing, signingKey: key}, nil
}

// Dir is the workspace directory.
func (ca *CA) Dir() string { return ca.dir }

// Config returns the workspace settings.
func (ca *CA) Config() Config { return ca.cfg }

// Root is the federation root certificate (what parties pin).
func (ca *CA) Root() *x509.Certificate { return ca.root }

// SigningCA is the intermediate that signs identity certificates and CRLs.
func (ca *CA) SigningCA() *x509.Certificate { return ca.signing }

// lock serialises changes to the workspace within and between processes.
func (ca *CA) lock() (func(), error) {
	ca.mu.Lock()
	unlock, err := lockDir(ca.dir)
	if err != nil {
		ca.mu.Unlock()
		return nil, err
	}
	return func() { unlock(); ca.mu.Unlock() }, nil
}

func (ca *CA) loadMembers() (*Members, error) {
	m, err := LoadMembers(filepath.Join(ca.dir, MembersFile))
	if err != nil {
		return nil, err
	}
	if m.Federation != ca.cfg.Federation {
		return nil, fmt.Errorf("pki: %s: federation %q, but the CA is %q", filepath.Join(ca.dir, MembersFile), m.Federation, ca.cfg.Federation)
	}
	return m, nil
}

// List returns the members, in the order they were certified.
func (ca *CA) List() ([]Member, error) {
	m, err := ca.loadMembers()
	if err != nil {
		return nil, err
	}
	return m.Members, nil
}

func newSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // positive, always 16 bytes, never zero
	return new(big.Int).SetBytes(b), nil
}

// CertifyOption adjusts one Certify call.
type CertifyOption func(*certifyOptions)

type certifyOptions struct {
	noPolicy   bool
	validity   time.Duration
	collateral []byte
}

// WithoutPolicy allows Certify with a nil policy: the evidence is verified
// cryptographically and bound to the key, but no measurement, debug, TCB or
// simulation rule is applied. The member's evidence summary says so.
func WithoutPolicy() CertifyOption { return func(o *certifyOptions) { o.noPolicy = true } }

// Validity sets the identity certificate's lifetime instead of the
// workspace's identity_validity.
func Validity(d time.Duration) CertifyOption { return func(o *certifyOptions) { o.validity = d } }

// Collateral supplies platform collateral (e.g. DCAP collateral JSON) for
// evidence whose CSR carries none, as Gramine's quotes do not. It is
// verified like collateral from the CSR: it only has to be authentic, not
// trusted.
func Collateral(b []byte) CertifyOption { return func(o *certifyOptions) { o.collateral = b } }

// NoPolicyStatement is recorded as the policy of members certified without
// one.
const NoPolicyStatement = "NONE: no attestation policy applied (certified without a policy)"

// Issued is the result of Certify.
type Issued struct {
	Member   Member
	Cert     *x509.Certificate
	CertPEM  []byte
	Claims   *attest.Claims
	Decision *policy.Decision // nil when certified without a policy
}

// Certify admits the member requested by csrPEM: it checks the CSR and its
// signature, verifies the evidence with v at now, checks that the evidence
// binds the CSR key (report data = SHA-256 of its SubjectPublicKeyInfo),
// evaluates pol for the requested role (a refusal carries the decision's
// one-line reasons), refuses a name that is already active, issues the
// identity certificate (signed by the signing CA) and appends the member to
// members.yaml. pol may be nil only with WithoutPolicy.
func (ca *CA) Certify(ctx context.Context, csrPEM []byte, pol *policy.Policy, v attest.Verifier, now time.Time, opts ...CertifyOption) (*Issued, error) {
	o := certifyOptions{validity: ca.cfg.IdentityValidity}
	for _, f := range opts {
		f(&o)
	}
	if o.validity <= 0 {
		return nil, fmt.Errorf("pki: certify: validity %s is not positive", o.validity)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	if pol == nil && !o.noPolicy {
		return nil, certifyErr(csr, "no attestation policy given (certifying without one must be explicit: --no-policy)")
	}
	if v == nil {
		return nil, certifyErr(csr, "no evidence verifier")
	}
	if now.IsZero() {
		return nil, certifyErr(csr, "no time given")
	}
	claims, err := verifyCSREvidence(ctx, csr, v, now, o.collateral)
	if err != nil {
		return nil, err
	}
	sum := summarize(claims, csr.KeyHash)
	var decision *policy.Decision
	if pol != nil {
		d := pol.Evaluate(csr.Role, claims, policy.Peer(csr.Name), policy.ReportData(csr.KeyHash[:]), policy.At(now))
		if err := d.Err(); err != nil {
			return nil, fmt.Errorf("pki: certify %q refused: %w", csr.Name, err)
		}
		decision = &d
		sum.Policy = d.String()
	} else {
		sum.Policy = NoPolicyStatement
	}
	if now.After(ca.signing.NotAfter) {
		return nil, certifyErr(csr, "signing CA expired at %s", ca.signing.NotAfter.UTC().Format(time.RFC3339))
	}

	unlock, err := ca.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	members, err := ca.loadMembers()
	if err != nil {
		return nil, err
	}
	if m := members.Active(csr.Name); m != nil {
		return nil, certifyErr(csr, "name already active (serial %s, role %s); revoke it first", m.Serial, m.Role)
	}
	t := now.UTC().Truncate(time.Second)
	cert, err := ca.issueIdentity(csr, t, o.validity)
	if err != nil {
		return nil, err
	}
	m := Member{Name: csr.Name, Role: csr.Role, Serial: formatSerial(cert.SerialNumber), Status: Active,
		CertifiedAt: t, NotAfter: cert.NotAfter.UTC(), Evidence: sum}
	certPEM := encodeCert(cert)
	// The certificate copy is written first: a member is only listed once
	// its certificate is on disk.
	if err := atomicfile.WriteBytes(filepath.Join(ca.dir, IssuedDir, m.Name+"-"+m.Serial+".pem"), certPEM, 0o644); err != nil {
		return nil, certifyErr(csr, "%w", err)
	}
	members.Members = append(members.Members, m)
	if err := members.save(filepath.Join(ca.dir, MembersFile)); err != nil {
		return nil, err
	}
	return &Issued{Member: m, Cert: cert, CertPEM: certPEM, Claims: claims, Decision: decision}, nil
}

// certifyErr is a Certify error naming the requested member and role.
func certifyErr(csr *CSR, format string, args ...any) error {
	return fmt.Errorf("pki: certify %q (%s): "+format, append([]any{csr.Name, csr.Role}, args...)...)
}

// verifyCSREvidence verifies csr's evidence with v at now (with collateral
// when the evidence carries none) and checks that it binds the CSR key:
// report data = SHA-256 of its SubjectPublicKeyInfo, zero padded.
func verifyCSREvidence(ctx context.Context, csr *CSR, v attest.Verifier, now time.Time, collateral []byte) (*attest.Claims, error) {
	ev := csr.Evidence
	if len(ev.Collateral) == 0 && len(collateral) > 0 {
		withCol := *ev
		withCol.Collateral = collateral
		ev = &withCol
	}
	claims, err := v.Verify(ctx, ev, now)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "evidence") {
			return nil, certifyErr(csr, "evidence: %w", err)
		}
		return nil, certifyErr(csr, "%w", err)
	}
	want := make([]byte, 64)
	copy(want, csr.KeyHash[:])
	if !bytes.Equal(claims.ReportData, want) {
		return nil, certifyErr(csr, "evidence is not bound to the CSR key: report data %s, want SHA-256 of the key %s zero padded",
			shortHex(claims.ReportData), hex.EncodeToString(csr.KeyHash[:]))
	}
	return claims, nil
}

// issueIdentity issues csr's identity certificate, signed by the signing
// CA, valid from t (less the clock skew allowance) for validity but not
// past the signing CA.
func (ca *CA) issueIdentity(csr *CSR, t time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notAfter := t.Add(validity)
	if notAfter.After(ca.signing.NotAfter) {
		notAfter = ca.signing.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{CommonName: csr.Name, OrganizationalUnit: []string{csr.Role},
			Organization: []string{ca.cfg.Federation}},
		NotBefore:             t.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // signs RA-TLS leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.signing, csr.Key, ca.signingKey)
	if err != nil {
		return nil, certifyErr(csr, "issuing: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, certifyErr(csr, "issuing: %w", err)
	}
	return cert, nil
}

func shortHex(b []byte) string {
	if len(b) == 0 {
		return "(none)"
	}
	s := hex.EncodeToString(b)
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return s
}

func summarize(c *attest.Claims, keyHash [32]byte) EvidenceSummary {
	s := EvidenceSummary{TEE: string(c.TEE), Simulated: c.Simulated, Debug: c.Debug,
		TCBStatus: string(c.TCBStatus), KeySHA256: hex.EncodeToString(keyHash[:])}
	switch c.TEE {
	case attest.SGX:
		s.Measurement = hex.EncodeToString(c.MREnclave)
		s.MRSigner = hex.EncodeToString(c.MRSigner)
	case attest.TDX:
		s.Measurement = hex.EncodeToString(c.MRTD)
	case attest.SNP:
		s.Measurement = hex.EncodeToString(c.Measurement)
	}
	return s
}

// reasonCodes maps RFC 5280 CRLReason names to codes; any other reason text
// is recorded in members.yaml and listed as unspecified (0) in the CRL.
var reasonCodes = map[string]int{
	"unspecified": 0, "keyCompromise": 1, "affiliationChanged": 3, "superseded": 4,
	"cessationOfOperation": 5, "privilegeWithdrawn": 9,
}

// Revoke marks name's active certificate revoked at now with reason (free
// text; RFC 5280 reason names such as keyCompromise also set the CRL reason
// code) and writes a fresh CRL.
func (ca *CA) Revoke(name, reason string, now time.Time) (*Member, error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("pki: revoke: %w", err)
	}
	if strings.ContainsAny(reason, "\n\r") || len(reason) > 200 {
		return nil, fmt.Errorf("pki: revoke %q: reason must be one line of at most 200 bytes", name)
	}
	unlock, err := ca.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	members, err := ca.loadMembers()
	if err != nil {
		return nil, err
	}
	m := members.Active(name)
	if m == nil {
		for i := len(members.Members) - 1; i >= 0; i-- {
			if e := members.Members[i]; e.Name == name {
				return nil, fmt.Errorf("pki: revoke %q: already revoked (serial %s, %s)", name, e.Serial, e.RevokedAt.Format(time.RFC3339))
			}
		}
		return nil, fmt.Errorf("pki: revoke %q: no such member", name)
	}
	t := now.UTC().Truncate(time.Second)
	m.Status, m.RevokedAt, m.RevocationReason = Revoked, &t, reason
	if err := members.save(filepath.Join(ca.dir, MembersFile)); err != nil {
		return nil, err
	}
	if _, err := ca.writeCRL(members, t); err != nil {
		return nil, fmt.Errorf("%w (members.yaml already says revoked; teeml pki bundle rewrites the CRL)", err)
	}
	out := *m
	return &out, nil
}

// writeCRL signs a CRL listing every revoked member, valid from now for the
// configured CRL validity, with a number one above the previous CRL's, and
// writes it to crl.pem.
func (ca *CA) writeCRL(m *Members, now time.Time) ([]byte, error) {
	number := big.NewInt(1)
	if b, err := os.ReadFile(filepath.Join(ca.dir, CRLFile)); err == nil {
		prev, err := parseCRLPEM(b)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", filepath.Join(ca.dir, CRLFile), err)
		}
		if prev.Number != nil {
			number.Add(prev.Number, big.NewInt(1))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pki: crl: %w", err)
	}
	var entries []x509.RevocationListEntry
	for _, e := range m.Members {
		if e.Status != Revoked {
			continue
		}
		serial, err := parseSerial(e.Serial)
		if err != nil {
			return nil, err
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: *e.RevokedAt,
			ReasonCode: reasonCodes[e.RevocationReason]})
	}
	t := now.UTC().Truncate(time.Second)
	tmpl := &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                t.Add(-clockSkew),
		NextUpdate:                t.Add(ca.cfg.CRLValidity),
		RevokedCertificateEntries: entries,
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.signing, ca.signingKey)
	if err != nil {
		return nil, fmt.Errorf("pki: crl: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(ca.dir, CRLFile), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("pki: crl: %w", err)
	}
	return der, nil
}

func parseCRLPEM(b []byte) (*x509.RevocationList, error) {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "X509 CRL" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("want exactly one PEM X509 CRL block")
	}
	return x509.ParseRevocationList(block.Bytes)
}
