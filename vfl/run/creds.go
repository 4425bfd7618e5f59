package run

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/teeml/teeml/attest"
	flrun "github.com/teeml/teeml/fl/run"
	"github.com/teeml/teeml/ratls"
	"github.com/teeml/teeml/vfl/plan"
)

// PartyFile is where a party's evidence platform is configured by default:
// party/<role>.yaml next to the plan (the format of fl/run.PartyConfig).
func PartyFile(planDir, role string) string { return flrun.PartyFile(planDir, role) }

// attestation is a party's loaded trust material.
type attestation struct {
	party  *flrun.PartyConfig
	issuer attest.Issuer
	ev     attest.Verifier
	// own are the claims of this side's own evidence, as its verifier sees
	// them (for the model card); ownErr says why they are missing.
	own    *attest.Claims
	ownErr error
}

func loadAttestation(ctx context.Context, planDir, role string, log *slog.Logger) (*attestation, error) {
	pc, err := flrun.LoadPartyConfig(planDir, role)
	if err != nil {
		return nil, err
	}
	iss, err := pc.Issuer(planDir, log)
	if err != nil {
		return nil, err
	}
	ev, err := pc.Verifier(planDir)
	if err != nil {
		return nil, err
	}
	a := &attestation{party: pc, issuer: iss, ev: ev}
	// Our own measurement, for the model card: issue and verify a quote
	// over a fixed nonce. Best effort: a platform whose collateral is not
	// reachable still trains; the card then says why it lacks the value.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rd := make([]byte, 64)
	copy(rd, "teeml vfl model card")
	if e, err := iss.Issue(cctx, rd); err != nil {
		a.ownErr = err
	} else if c, err := ev.Verify(cctx, e, time.Now()); err != nil {
		a.ownErr = err
	} else {
		a.own = c
	}
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
	src, err := ratls.NewCertSource(ctx, a.issuer, ratls.SourceOptions{Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("RA-TLS certificate: %v", err)
	}
	v, err := ratls.NewVerifier(ratls.Config{Evidence: a.ev, Policy: p.Policy(peerRole), Role: peerRole, PeerName: peerRole, Logger: log})
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	tc := ratls.TransportConfig{Certificates: src, Verifier: v, Logger: log}
	var c credentials.TransportCredentials
	if server {
		c, err = ratls.NewServerCredentials(tc)
	} else {
		c, err = ratls.NewClientCredentials(tc)
	}
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	return c, src.Close, nil
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

// fatalDialError reports whether a failed stream open is an RA-TLS refusal
// (which retrying cannot fix) rather than an unreachable peer.
func fatalDialError(err error) bool {
	msg := err.Error()
	for _, c := range []ratls.Check{ratls.CheckParse, ratls.CheckBinding, ratls.CheckSignature, ratls.CheckValidity,
		ratls.CheckIdentity, ratls.CheckEvidence, ratls.CheckPolicy, ratls.CheckProofOfPossession} {
		if strings.Contains(msg, "("+string(c)+")") {
			return true
		}
	}
	return strings.Contains(msg, "the peer refused our certificate")
}

// ratlsReason cuts the gRPC wrapping off an RA-TLS handshake error, keeping
// the one line that names the peer and the failed check.
func ratlsReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "ratls: "); i >= 0 {
		msg = strings.TrimSuffix(msg[i:], "\"")
	}
	return strings.ReplaceAll(msg, `\"`, `"`)
}
