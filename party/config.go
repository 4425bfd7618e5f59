package party

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/platform"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/attest/verifier"
	"github.com/teeml/teeml/internal/yamlx"
	"github.com/teeml/teeml/pki"
)

// Config is a party's configuration: where its attestation evidence comes
// from, which simulation keys it trusts when verifying peers, and
// optionally its key broker. It is the file party/<name>.yaml of a
// workspace and the platform section of a key broker's configuration.
//
//	platform: auto            # auto | gramine | tsm | sim
//	gramine_root: /dev/attestation   # optional (gramine)
//	tsm_root: /sys/kernel/config/tsm/report  # optional (tsm)
//	sim:                      # platform sim only: INSECURE, for tests and demos
//	  key: party/col-1-sim-key.pem     # simulation signing key (relative to the base directory)
//	  tee: sgx
//	  mr_enclave: <64 hex>
//	  mr_signer: <64 hex>
//	trusted_sim_keys: party/sim-trusted.pem   # optional: PEM public keys whose simulated
//	                                          # evidence this party's verifier accepts
//	kms:                      # optional: the key broker for sealed data, models and
//	  broker: 127.0.0.1:7443  # checkpoints (see KMSConfig)
//	  policy: policies/kms.yaml
//
// Simulated evidence still has to pass the peer role's policy, which
// refuses it unless it says allow_simulation: true.
type Config struct {
	Platform       string    `yaml:"platform"`
	GramineRoot    string    `yaml:"gramine_root,omitempty"`
	TSMRoot        string    `yaml:"tsm_root,omitempty"`
	Sim            SimConfig `yaml:"sim,omitempty"`
	TrustedSimKeys string    `yaml:"trusted_sim_keys,omitempty"`
	// KMS is the optional key broker section.
	KMS *KMSConfig `yaml:"kms,omitempty"`
	// FederationReload (federation_reload, a Go duration such as "30s";
	// default pki.DefaultReloadInterval) is how often a running party
	// re-reads its federation bundle (Party.WatchFederation).
	FederationReload time.Duration `yaml:"federation_reload,omitempty"`
}

// SimConfig is the sim section of a Config.
type SimConfig struct {
	Key       string `yaml:"key,omitempty"`
	TEE       string `yaml:"tee,omitempty"`
	MREnclave string `yaml:"mr_enclave,omitempty"`
	MRSigner  string `yaml:"mr_signer,omitempty"`
}

// KMSConfig is the optional kms section of a Config: the key broker this
// party gets data keys from (sealed data files, sealed models and
// checkpoints).
//
//	kms:
//	  broker: 127.0.0.1:7443        # the broker's address
//	  policy: policies/kms.yaml     # attest/policy file with role kms: what the
//	                                # broker must run (relative to the base directory)
//	  attestation_result: ear.jwt   # optional: an EAR token file (teeml attest verify
//	                                # --output ear) sent with every data key request,
//	                                # read at each request (relative to the base directory)
//
// The party connects with its own federation identity over mutual RA-TLS
// (the same certificate and evidence as on its other channels); the broker
// must present a federation identity with role kms whose evidence satisfies
// the policy. Which keys the broker releases is the broker's decision.
type KMSConfig struct {
	Broker string `yaml:"broker"`
	Policy string `yaml:"policy"`
	// AttestationResult is a file holding an EAR token from a verifier the
	// broker trusts, bound to this party's identity key (docs/kms.md,
	// accept_ear); empty: none is sent.
	AttestationResult string `yaml:"attestation_result,omitempty"`
}

// Evidence platforms a Config may name.
const (
	PlatformAuto    = platform.Auto
	PlatformGramine = platform.Gramine
	PlatformTSM     = platform.TSM
	PlatformSim     = platform.Sim
)

// ErrConfig is wrapped by every error about a party configuration's
// content (as opposed to an unreadable file).
var ErrConfig = errors.New("party config")

// Simulated reports whether the party produces or accepts simulated
// evidence.
func (c *Config) Simulated() bool { return c.Platform == PlatformSim || c.TrustedSimKeys != "" }

// LoadConfig reads a party configuration file strictly (unknown keys
// refused).
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("party config: %w", err)
	}
	return ParseConfig(b, path)
}

// MinFederationReload is the shortest federation_reload accepted.
const MinFederationReload = 100 * time.Millisecond

// MaxConfigSize bounds a party configuration file.
const MaxConfigSize = 1 << 20

// ParseConfig decodes a party configuration strictly (internal/yamlx: one
// document, unknown and duplicate keys refused); name labels errors, which
// read "party config name:line: key: reason" and wrap a *yamlx.Error.
func ParseConfig(b []byte, name string) (*Config, error) {
	var c Config
	lines, err := yamlx.Decode(b, name, "party configuration", MaxConfigSize, &c)
	if err != nil {
		return nil, fmt.Errorf("%w %w", ErrConfig, err)
	}
	if err := c.Normalize(); err != nil {
		return nil, fmt.Errorf("%w %w", ErrConfig, yamlx.Errorf(name, lines["platform"], "platform", "%s", err))
	}
	if c.FederationReload < 0 || (c.FederationReload > 0 && c.FederationReload < MinFederationReload) {
		return nil, fmt.Errorf("%w %w", ErrConfig, yamlx.Errorf(name, lines["federation_reload"], "federation_reload",
			"%s: want at least %s (or omit it: %s)", c.FederationReload, MinFederationReload, pki.DefaultReloadInterval))
	}
	return &c, nil
}

// Normalize fills the defaults (platform auto, sim.tee sgx) and checks the
// platform name. Configs embedded in other files call it after decoding.
func (c *Config) Normalize() error {
	if c.Platform == "" {
		c.Platform = PlatformAuto
	}
	switch c.Platform {
	case PlatformAuto, PlatformGramine, PlatformTSM, PlatformSim:
	default:
		return fmt.Errorf("%q: want auto, gramine, tsm or sim", c.Platform)
	}
	if c.Sim.TEE == "" {
		c.Sim.TEE = string(attest.SGX)
	}
	return nil
}

// Marshal encodes c as a party configuration file.
func (c *Config) Marshal() []byte {
	b, err := yaml.Marshal(c)
	if err != nil {
		// A struct of strings always encodes.
		panic(fmt.Sprintf("party config: marshal: %v", err))
	}
	return b
}

// resolve makes p absolute against dir.
func resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, filepath.FromSlash(p))
}

// Issuer returns the evidence issuer the configuration names; relative
// paths resolve against dir.
func (c *Config) Issuer(dir string, log *slog.Logger) (attest.Issuer, error) {
	pc := platform.Config{Platform: c.Platform, GramineRoot: c.GramineRoot, TSMRoot: c.TSMRoot, Logger: log}
	if c.Platform == PlatformSim {
		if c.Sim.Key == "" {
			return nil, fmt.Errorf("%w: platform sim needs sim.key", ErrConfig)
		}
		key, err := sim.LoadKey(resolve(dir, c.Sim.Key))
		if err != nil {
			return nil, fmt.Errorf("%w: sim.key: %w", ErrConfig, err)
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
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return iss, nil
}

// Verifier returns the evidence verifier the party checks peers with.
func (c *Config) Verifier(dir string) (attest.Verifier, error) {
	cfg := verifier.Config{}
	if c.TrustedSimKeys != "" {
		keys, err := sim.LoadPublicKeys(resolve(dir, c.TrustedSimKeys))
		if err != nil {
			return nil, fmt.Errorf("%w: trusted_sim_keys: %w", ErrConfig, err)
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
		return fmt.Errorf("%w: %s: want %d bytes of hex", ErrConfig, what, len(dst))
	}
	copy(dst, b)
	return nil
}
