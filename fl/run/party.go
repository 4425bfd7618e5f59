// Package run starts the parties of a teeml horizontal federation — the
// aggregator and the collaborators — from a workspace (fl/workspace), and runs
// a complete local federation for demonstration (Quickstart). The CLI
// (`teeml fl aggregator start`, `teeml fl collaborator start`, `teeml
// quickstart`) only parses flags and calls this package.
//
// Everything that decides trust is read from files in the workspace, never
// from flags:
//
//	plan/plan.yaml, plan/plan.hash   the frozen plan (hash checked)
//	plan/cols.yaml                   the expected collaborators
//	policies/<role>.yaml             attestation policy per role (plan's attestation.policy)
//	pki/root.pem                     the pinned federation root
//	pki/federation.bundle            the federation bundle (signing CA, CRL, members)
//	pki/<name>.crt, pki/<name>-key.pem  this party's identity certificate and key (0600)
//	party/<name>.yaml                this party's evidence platform (see PartyConfig)
package run

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/platform"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/attest/verifier"
	"github.com/teeml/teeml/pki"
	"google.golang.org/grpc/credentials"
)

// Paths inside a workspace used by the parties.
const (
	PKIDir     = "pki"
	RootFile   = "pki/root.pem"
	BundleFile = "pki/federation.bundle"
	PartyDir   = "party"
)

// SimulationBanner is printed (stdout) and logged (WARN) by every party
// whose evidence is simulated or that trusts simulated evidence.
const SimulationBanner = "SIMULATION: no TEE hardware; simulated attestation evidence proves nothing; never use this for real data"

// IdentityFiles returns the identity certificate and key paths of member
// name in workspace ws.
func IdentityFiles(ws, name string) (cert, key string) {
	return filepath.Join(ws, PKIDir, name+".crt"), filepath.Join(ws, PKIDir, name+"-key.pem")
}

// PartyFile is the path of member name's party configuration.
func PartyFile(ws, name string) string { return filepath.Join(ws, PartyDir, name+".yaml") }

// PartyConfig is party/<name>.yaml: where this party's attestation evidence
// comes from and which simulation keys it trusts when verifying peers.
//
//	platform: auto            # auto | gramine | tsm | sim
//	gramine_root: /dev/attestation   # optional (gramine)
//	tsm_root: /sys/kernel/config/tsm/report  # optional (tsm)
//	sim:                      # platform sim only: INSECURE, for tests and demos
//	  key: party/col-1-sim-key.pem     # simulation signing key (relative to the workspace)
//	  tee: sgx
//	  mr_enclave: <64 hex>
//	  mr_signer: <64 hex>
//	trusted_sim_keys: party/sim-trusted.pem   # optional: PEM public keys whose simulated
//	                                          # evidence this party's verifier accepts
//	kms:                      # optional: the key broker for sealed data, models and
//	  broker: 127.0.0.1:7443  # checkpoints (see KMSConfig)
//	  policy: policies/kms.yaml
//
// Simulated evidence still has to pass the role's policy, which refuses it
// unless it says allow_simulation: true.
type PartyConfig struct {
	Platform       string    `yaml:"platform"`
	GramineRoot    string    `yaml:"gramine_root"`
	TSMRoot        string    `yaml:"tsm_root"`
	Sim            SimConfig `yaml:"sim"`
	TrustedSimKeys string    `yaml:"trusted_sim_keys"`
	// KMS is the optional key broker section (see KMSConfig).
	KMS *KMSConfig `yaml:"kms,omitempty"`
}

// SimConfig is the sim section of a PartyConfig.
type SimConfig struct {
	Key       string `yaml:"key"`
	TEE       string `yaml:"tee"`
	MREnclave string `yaml:"mr_enclave"`
	MRSigner  string `yaml:"mr_signer"`
}

// Simulated reports whether the party produces or accepts simulated evidence.
func (c *PartyConfig) Simulated() bool { return c.Platform == "sim" || c.TrustedSimKeys != "" }

// LoadPartyConfig reads party/<name>.yaml strictly (unknown keys refused).
func LoadPartyConfig(ws, name string) (*PartyConfig, error) {
	path := PartyFile(ws, name)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("party config: %v", err)
	}
	var c PartyConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("party config %s: %v", path, err)
	}
	if c.Platform == "" {
		c.Platform = "auto"
	}
	switch c.Platform {
	case "auto", "gramine", "tsm", "sim":
	default:
		return nil, fmt.Errorf("party config %s: platform %q: want auto, gramine, tsm or sim", path, c.Platform)
	}
	if c.Sim.TEE == "" {
		c.Sim.TEE = string(attest.SGX)
	}
	return &c, nil
}

// MarshalPartyConfig encodes c as a party/<name>.yaml file.
func MarshalPartyConfig(c *PartyConfig) []byte {
	b, _ := yaml.Marshal(c)
	return b
}

func wsPath(ws, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(ws, filepath.FromSlash(p))
}

// Issuer returns the party's evidence issuer.
func (c *PartyConfig) Issuer(ws string, log *slog.Logger) (attest.Issuer, error) {
	pc := platform.Config{Platform: c.Platform, GramineRoot: c.GramineRoot, TSMRoot: c.TSMRoot, Logger: log}
	if c.Platform == platform.Sim {
		if c.Sim.Key == "" {
			return nil, fmt.Errorf("party config: platform sim needs sim.key")
		}
		key, err := sim.LoadKey(wsPath(ws, c.Sim.Key))
		if err != nil {
			return nil, err
		}
		pc.SimKey = key
		pc.SimIdentity = sim.Identity{TEE: attest.TEE(c.Sim.TEE)}
		if err := decodeHex(pc.SimIdentity.MREnclave[:], c.Sim.MREnclave, "sim.mr_enclave"); err != nil {
			return nil, err
		}
		if err := decodeHex(pc.SimIdentity.MRSigner[:], c.Sim.MRSigner, "sim.mr_signer"); err != nil {
			return nil, err
		}
	}
	iss, err := platform.NewIssuer(pc)
	if err != nil {
		return nil, fmt.Errorf("party config: %w", err)
	}
	return iss, nil
}

// Verifier returns the evidence verifier the party checks peers with.
func (c *PartyConfig) Verifier(ws string) (attest.Verifier, error) {
	cfg := verifier.Config{}
	if c.TrustedSimKeys != "" {
		keys, err := sim.LoadPublicKeys(wsPath(ws, c.TrustedSimKeys))
		if err != nil {
			return nil, err
		}
		cfg.SimulationKeys = keys
	}
	return verifier.New(cfg)
}

func decodeHex(dst []byte, s, what string) error {
	if s == "" {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(dst) {
		return fmt.Errorf("party config: %s: want %d bytes of hex", what, len(dst))
	}
	copy(dst, b)
	return nil
}

// identity is a party's loaded trust material.
type identity struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	fed    *pki.Federation
	party  *PartyConfig
	issuer attest.Issuer
	ev     attest.Verifier
}

func loadIdentity(ws, name, role string, log *slog.Logger) (*identity, error) {
	if err := pki.CheckName(name); err != nil {
		return nil, err
	}
	certPath, keyPath := IdentityFiles(ws, name)
	cert, err := pki.LoadCertificate(certPath)
	if err != nil {
		return nil, fmt.Errorf("identity certificate: %v", err)
	}
	if cert.Subject.CommonName != name {
		return nil, fmt.Errorf("identity certificate %s names %q, not %q", certPath, cert.Subject.CommonName, name)
	}
	if len(cert.Subject.OrganizationalUnit) != 1 || cert.Subject.OrganizationalUnit[0] != role {
		return nil, fmt.Errorf("identity certificate %s: role %v, want %s", certPath, cert.Subject.OrganizationalUnit, role)
	}
	key, err := pki.LoadKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("identity key: %v", err)
	}
	fed, err := pki.LoadFederation(filepath.Join(ws, filepath.FromSlash(BundleFile)), filepath.Join(ws, filepath.FromSlash(RootFile)))
	if err != nil {
		return nil, err
	}
	pc, err := LoadPartyConfig(ws, name)
	if err != nil {
		return nil, err
	}
	iss, err := pc.Issuer(ws, log)
	if err != nil {
		return nil, err
	}
	ev, err := pc.Verifier(ws)
	if err != nil {
		return nil, err
	}
	return &identity{cert: cert, key: key, fed: fed, party: pc, issuer: iss, ev: ev}, nil
}

type (
	policyT = policy.Policy
	credsT  = credentials.TransportCredentials
)

// RunDir is the aggregator's run directory for the plan with the given hash:
// its checkpoints (state/), metrics file (metrics.jsonl) and reports live
// there, so a restart with the same frozen plan finds them again.
func RunDir(ws, planHash string) string {
	// The first 16 hex digits: short enough to type, long enough that two
	// plans of one workspace never share a directory by accident (and the
	// checkpoint inside names the full hash anyway).
	h := planHash
	if len(h) > 16 {
		h = h[:16]
	}
	return filepath.Join(ws, "runs", h)
}
