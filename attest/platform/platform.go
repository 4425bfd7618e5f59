// Package platform chooses the evidence issuer for the machine teeml runs
// on: Gramine's /dev/attestation inside an SGX enclave, configfs-tsm in a
// TDX or SEV-SNP guest, or — only when asked by name — simulation.
// Auto-detection never falls back to simulation.
package platform

import (
	"crypto/ecdsa"
	"fmt"
	"log/slog"
	"os"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/gramine"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/attest/tsm"
)

// Names of the platforms.
const (
	Auto    = "auto"
	Gramine = "gramine"
	TSM     = "tsm"
	Sim     = "sim"
)

// Config selects and configures an issuer.
type Config struct {
	Platform    string // Auto (default), Gramine, TSM or Sim
	GramineRoot string // default gramine.DefaultRoot
	TSMRoot     string // default tsm.DefaultRoot
	// SimKey and SimIdentity are used only for Platform Sim.
	SimKey      *ecdsa.PrivateKey
	SimIdentity sim.Identity
	Logger      *slog.Logger
}

// Detect resolves Auto to the platform present on this machine.
func (c Config) Detect() (string, error) {
	c = c.withDefaults()
	if c.Platform != Auto {
		return c.Platform, nil
	}
	switch {
	case exists(c.GramineRoot + "/quote"):
		return Gramine, nil
	case exists(c.TSMRoot):
		return TSM, nil
	}
	return "", fmt.Errorf("no TEE found (%s, %s absent); choose platform sim for INSECURE simulated evidence", c.GramineRoot, c.TSMRoot)
}

// NewIssuer returns the issuer the configuration selects.
func NewIssuer(c Config) (attest.Issuer, error) {
	c = c.withDefaults()
	p, err := c.Detect()
	if err != nil {
		return nil, err
	}
	switch p {
	case Gramine:
		return &gramine.Issuer{Root: c.GramineRoot}, nil
	case TSM:
		return &tsm.Issuer{Root: c.TSMRoot}, nil
	case Sim:
		if c.SimKey == nil {
			return nil, fmt.Errorf("platform sim: no simulation key")
		}
		iss, err := sim.NewIssuer(c.SimKey, c.SimIdentity)
		if err != nil {
			return nil, err
		}
		iss.Logger = c.Logger
		return iss, nil
	}
	return nil, fmt.Errorf("unknown platform %q (auto, gramine, tsm, sim)", c.Platform)
}

func (c Config) withDefaults() Config {
	if c.Platform == "" {
		c.Platform = Auto
	}
	if c.GramineRoot == "" {
		c.GramineRoot = gramine.DefaultRoot
	}
	if c.TSMRoot == "" {
		c.TSMRoot = tsm.DefaultRoot
	}
	return c
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
