// Package partysim is teeml's one simulation scheme: the measurements
// simulated parties claim, the policies that accept them, and the set-up of
// simulated parties (simulation keys, party configurations and, for a
// federation, a CA with one identity per member). Demos (quickstart) and
// tests use it; real deployments never do: every file it writes starts
// with sim.Banner, every policy it writes says allow_simulation: true, and
// every party it configures announces itself as simulated.
package partysim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/pki"
)

// Measurement is the (fake) MRENCLAVE and MRSIGNER a simulated party of
// role claims. Each role has its own enclave measurement, so a policy for
// one role never accepts a party configured as another.
func Measurement(role string) (mrEnclave, mrSigner [32]byte) {
	return sha256.Sum256([]byte("teeml SIMULATED " + role + " enclave")), sha256.Sum256([]byte("teeml SIMULATED signer"))
}

// MeasurementHex is Measurement in hex.
func MeasurementHex(role string) (mrEnclave, mrSigner string) {
	e, s := Measurement(role)
	return hex.EncodeToString(e[:]), hex.EncodeToString(s[:])
}

// Header is the comment every file this package writes starts with;
// what says what the file is.
func Header(what string) string { return "# " + sim.Banner + "\n# " + what + "\n" }

// Policy is an attest/policy file accepting, for each role, that role's
// simulated measurement, and simulation. Never use it for real data.
func Policy(roles ...string) []byte {
	var b strings.Builder
	b.WriteString(Header("Accepts SIMULATED evidence for one fake measurement per role. Never use this policy for real data."))
	b.WriteString("roles:\n")
	for _, role := range roles {
		fmt.Fprintf(&b, "  %s:\n%s    allow_debug: false\n    allow_simulation: true\n", role, sgxEntries("    ", role))
	}
	return []byte(b.String())
}

// Attestation is the attestation section of a key release policy
// (kms/release) accepting the simulated measurements of roles, indented by
// indent.
func Attestation(indent string, roles ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%sattestation:\n", indent)
	b.WriteString(sgxEntries(indent+"  ", roles...))
	fmt.Fprintf(&b, "%s  allow_debug: false\n%s  allow_simulation: true\n", indent, indent)
	return b.String()
}

func sgxEntries(indent string, roles ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%ssgx:\n", indent)
	for _, role := range roles {
		e, s := MeasurementHex(role)
		fmt.Fprintf(&b, "%s  - mr_enclave: \"%s\"\n%s    mr_signer: \"%s\"\n", indent, e, indent, s)
	}
	return b.String()
}

// TrustedKeysFile is where Parties writes the simulation public keys every
// simulated party trusts (relative to the directory).
const TrustedKeysFile = party.ConfigDir + "/sim-trusted.pem"

// Parties writes, in dir, a simulation key for every party (name -> role),
// party/<name>.yaml claiming the role's simulated measurement, and the
// simulation public keys they all trust (TrustedKeysFile). It is all an
// attestation-only party needs.
func Parties(dir string, roles map[string]string) error {
	if err := os.MkdirAll(filepath.Join(dir, party.ConfigDir), 0o700); err != nil {
		return fmt.Errorf("partysim: %w", err)
	}
	names := slices.Sorted(maps.Keys(roles))
	keys := map[string]string{}
	var trusted []byte
	for _, name := range names {
		k, err := sim.GenerateKey()
		if err != nil {
			return fmt.Errorf("partysim: %w", err)
		}
		rel := party.ConfigDir + "/" + name + "-sim-key.pem"
		if err := sim.SaveKey(filepath.Join(dir, filepath.FromSlash(rel)), k); err != nil {
			return fmt.Errorf("partysim: %w", err)
		}
		pub, err := sim.MarshalPublicKey(&k.PublicKey)
		if err != nil {
			return fmt.Errorf("partysim: %w", err)
		}
		trusted = append(trusted, pub...)
		keys[name] = rel
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, filepath.FromSlash(TrustedKeysFile)), trusted, 0o644); err != nil {
		return err
	}
	for _, name := range names {
		e, s := MeasurementHex(roles[name])
		c := &party.Config{Platform: party.PlatformSim, Sim: party.SimConfig{Key: keys[name], TEE: string(attest.SGX),
			MREnclave: e, MRSigner: s}, TrustedSimKeys: TrustedKeysFile}
		if err := WriteConfig(dir, name, c, "Evidence platform of party "+name+" (see party.Config)."); err != nil {
			return err
		}
	}
	return nil
}

// WriteConfig writes c as party/<name>.yaml in dir, headed by the banner
// and what.
func WriteConfig(dir, name string, c *party.Config, what string) error {
	return atomicfile.WriteBytes(party.ConfigFile(dir, name), append([]byte(Header(what)), c.Marshal()...), 0o644)
}

// DashboardRole is the role (and party name) of a simulated workspace's
// dashboard party (dashboard/wsdash.Role).
const DashboardRole = "dashboard"

// Federation sets dir up as a simulated federation workspace for the
// parties (name -> pki role): Parties, then a new CA (dir/ca) named
// federation, one identity per party certified under pols[role] (which
// must accept Measurement(role), as Policy does), the federation bundle and
// the pinned root, at the places party.WorkspaceFiles names. It also
// writes party/dashboard.yaml, the attestation-only party of a standalone
// `teeml dashboard` over the workspace (role DashboardRole, its own
// simulated measurement, no identity).
func Federation(ctx context.Context, dir, federation string, roles map[string]string, pols map[string]*policy.Policy) error {
	all := maps.Clone(roles)
	if _, taken := all[DashboardRole]; !taken {
		all[DashboardRole] = DashboardRole
	}
	if err := Parties(dir, all); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, party.PKIDir), 0o755); err != nil {
		return fmt.Errorf("partysim: %w", err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Now()
	ca, err := pki.InitCA(filepath.Join(dir, "ca"), pki.InitOptions{Federation: federation, Now: now.Add(-time.Minute)})
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(roles)) {
		if err := certify(ctx, ca, dir, name, roles[name], pols[roles[name]], now, quiet); err != nil {
			return err
		}
	}
	files := party.WorkspaceFiles(dir, "")
	if _, err := ca.WriteBundle(files.Bundle, now); err != nil {
		return err
	}
	root := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root().Raw})
	return atomicfile.WriteBytes(files.Root, root, 0o644)
}

func certify(ctx context.Context, ca *pki.CA, dir, name, role string, pol *policy.Policy, now time.Time, log *slog.Logger) error {
	if pol == nil {
		return fmt.Errorf("partysim: certify %s: no policy for role %s", name, role)
	}
	p, err := party.LoadAttested(party.WorkspaceFiles(dir, name), role, log)
	if err != nil {
		return err
	}
	key, err := pki.GenerateKey(pki.P256)
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(ctx, key, name, role, p.Issuer)
	if err != nil {
		return err
	}
	is, err := ca.Certify(ctx, csr, pol, p.Verifier, now)
	if err != nil {
		return fmt.Errorf("certify %s: %w", name, err)
	}
	f := party.WorkspaceFiles(dir, name)
	if err := pki.SaveKey(f.Key, key); err != nil {
		return err
	}
	return atomicfile.WriteBytes(f.Cert, is.CertPEM, 0o644)
}
