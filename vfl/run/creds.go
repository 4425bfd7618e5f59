package run

import (
	"context"
	"encoding/hex"
	"log/slog"

	"google.golang.org/grpc/credentials"

	"github.com/teeml/teeml/attest"
	partypkg "github.com/teeml/teeml/party"
	"github.com/teeml/teeml/vfl/plan"
)

// attestation is this side's party (attestation only: no PKI identity)
// and the claims of its own evidence.
type attestation struct {
	party *partypkg.Party
	// own are the claims of this side's own evidence, as its verifier sees
	// them (for the model card); ownErr says why they are missing.
	own    *attest.Claims
	ownErr error
}

// loadAttestation loads the party of role from planDir/party/<role>.yaml.
func loadAttestation(ctx context.Context, planDir, role string, log *slog.Logger) (*attestation, error) {
	p, err := partypkg.LoadAttested(partypkg.Files{Dir: planDir, Config: partypkg.ConfigFile(planDir, role)}, role, log)
	if err != nil {
		return nil, err
	}
	a := &attestation{party: p}
	// Best effort: a platform whose collateral is not reachable still
	// trains; the card then says why it lacks the value.
	a.own, a.ownErr = p.SelfClaims(ctx, "teeml vfl model card")
	return a, nil
}

// credentials returns RA-TLS transport credentials in attestation-only mode:
// a self-signed RA-TLS certificate carrying this side's evidence, and the
// peer verified against the plan's policy for the peer's role.
func (a *attestation) credentials(ctx context.Context, p *plan.Plan, role string, server bool, log *slog.Logger) (credentials.TransportCredentials, func(), error) {
	peerRole := RoleFollower
	if role == RoleFollower {
		peerRole = RoleLeader
	}
	return a.party.Credentials(ctx, partypkg.Peer{Role: peerRole, Policy: p.Policy(peerRole)}, server, log)
}

// Measurement is a TEE identity as recorded in a model card.
type Measurement struct {
	TEE       string `json:"tee,omitempty"`
	Simulated bool   `json:"simulated"`
	MREnclave string `json:"mr_enclave,omitempty"`
	MRSigner  string `json:"mr_signer,omitempty"`
	MRTD      string `json:"mr_td,omitempty"`
	SNP       string `json:"snp_measurement,omitempty"`
	Error     string `json:"error,omitempty"`
}

func measurementOf(c *attest.Claims) *Measurement {
	if c == nil {
		return nil
	}
	return &Measurement{TEE: string(c.TEE), Simulated: c.Simulated, MREnclave: hex.EncodeToString(c.MREnclave),
		MRSigner: hex.EncodeToString(c.MRSigner), MRTD: hex.EncodeToString(c.MRTD), SNP: hex.EncodeToString(c.Measurement)}
}
