// Package verifier recognises raw evidence (SGX or TDX DCAP quote, SEV-SNP
// report, simulated quote) and sends it to the matching platform verifier.
// It is the one place that knows every platform; everything above it (the
// CLI, RA-TLS, the key broker) holds an attest.Verifier.
package verifier

import (
	"context"
	"crypto/ecdsa"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/attest/snp"
)

// Kind describes what Detect found.
type Kind struct {
	TEE       attest.TEE
	Simulated bool
	Format    string // e.g. "DCAP quote v3", "SEV-SNP report v2", "simulated quote"
}

// Detect recognises evidence by its framing only; nothing is verified.
func Detect(b []byte) (Kind, error) {
	if sim.IsSimulated(b) {
		q, err := sim.ParseQuote(b)
		if err != nil {
			return Kind{}, fmt.Errorf("evidence: %w", err)
		}
		return Kind{TEE: q.TEE, Simulated: true, Format: "simulated quote (" + sim.Magic + ")"}, nil
	}
	if len(b) == snp.ReportSize {
		if v := binary.LittleEndian.Uint32(b[0:4]); v >= 2 && v <= 5 {
			return Kind{TEE: attest.SNP, Format: fmt.Sprintf("SEV-SNP attestation report v%d", v)}, nil
		}
	}
	if len(b) >= abi.HeaderSize {
		h, err := abi.ParseHeader(b[:abi.HeaderSize])
		if err == nil {
			err = abi.CheckHeader(h)
		}
		if err == nil {
			switch {
			case h.TEEType == abi.TEETypeSGX && h.Version == abi.QuoteVersion3:
				return Kind{TEE: attest.SGX, Format: "DCAP quote v3"}, nil
			case h.TEEType == abi.TEETypeSGX:
				return Kind{TEE: attest.SGX, Format: fmt.Sprintf("DCAP quote v%d", h.Version)}, nil
			case h.TEEType == abi.TEETypeTDX:
				return Kind{TEE: attest.TDX, Format: fmt.Sprintf("DCAP quote v%d", h.Version)}, nil
			}
		}
	}
	return Kind{}, fmt.Errorf("evidence: %d bytes: not a DCAP quote, SEV-SNP report or simulated quote", len(b))
}

// Config says which evidence a Verifier accepts and what it trusts.
type Config struct {
	// DCAP configures SGX and TDX quote verification (nil: pinned Intel root,
	// collateral from the evidence).
	DCAP *dcap.Options
	// SimulationKeys are the trusted simulation keys. Without any, simulated
	// evidence is refused here, before any policy is consulted.
	SimulationKeys []*ecdsa.PublicKey
}

// Verifier dispatches to the platform verifiers. It implements
// attest.Verifier.
type Verifier struct {
	dcap *dcap.Verifier
	snp  *snp.Verifier
	sim  *sim.Verifier
}

// New builds a Verifier.
func New(cfg Config) (*Verifier, error) {
	d, err := dcap.New("", cfg.DCAP)
	if err != nil {
		return nil, err
	}
	v := &Verifier{dcap: d, snp: &snp.Verifier{}}
	if len(cfg.SimulationKeys) > 0 {
		if v.sim, err = sim.NewVerifier(cfg.SimulationKeys...); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Verify checks ev with the verifier for its kind. ev.TEE and ev.Simulated
// are filled from the evidence when empty; when set they must agree with it
// (evidence never gets to choose a weaker verifier than the caller expects).
func (v *Verifier) Verify(ctx context.Context, ev *attest.Evidence, now time.Time) (*attest.Claims, error) {
	k, err := Detect(ev.Quote)
	if err != nil {
		return nil, err
	}
	e := *ev
	if e.TEE == "" {
		e.TEE = k.TEE
	}
	if e.TEE != k.TEE {
		return nil, fmt.Errorf("evidence: declared TEE %s but the evidence is a %s", e.TEE, k.Format)
	}
	if ev.Simulated != k.Simulated && ev.TEE != "" {
		return nil, fmt.Errorf("evidence: declared simulated=%v but the evidence is a %s", ev.Simulated, k.Format)
	}
	e.Simulated = k.Simulated
	switch {
	case k.Simulated:
		if v.sim == nil {
			return nil, fmt.Errorf("evidence: simulated quote refused: no trusted simulation key configured")
		}
		return v.sim.Verify(ctx, &e, now)
	case k.TEE == attest.SNP:
		return v.snp.Verify(ctx, &e, now)
	default:
		return v.dcap.Verify(ctx, &e, now)
	}
}
