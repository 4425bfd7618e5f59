package run

import (
	"context"
	"io"
	"log/slog"

	"google.golang.org/grpc/credentials"

	"github.com/teeml/teeml/attest/policy"
)

// Party is a workspace member's loaded trust material — identity
// certificate and key, federation bundle and pinned root, evidence issuer
// and verifier — for protocols other than horizontal FL (e.g. the vertical
// FL PSI) that need the same RA-TLS setup as the FL parties.
type Party struct {
	id *identity
}

// LoadParty loads member name, whose identity certificate must be for role
// (a pki role), from workspace ws (see the package doc for the files).
func LoadParty(ws, name, role string, log *slog.Logger) (*Party, error) {
	if log == nil {
		log = slog.Default()
	}
	id, err := loadIdentity(ws, name, role, log)
	if err != nil {
		return nil, err
	}
	return &Party{id: id}, nil
}

// Credentials returns RA-TLS credentials: certificates from the party's
// evidence issuer under its identity key; peers verified with the
// federation bundle, the party's evidence verifier and pol's entry for the
// peer's certified role. The returned func stops certificate renewal.
func (p *Party) Credentials(ctx context.Context, pol *policy.Policy, peerRole string, server bool, log *slog.Logger) (credentials.TransportCredentials, func(), error) {
	if log == nil {
		log = slog.Default()
	}
	return p.id.credentials(ctx, map[string]*policy.Policy{peerRole: pol}, peerRole, server, log)
}

// Simulated reports whether the party produces or accepts simulated
// evidence.
func (p *Party) Simulated() bool { return p.id.party.Simulated() }

// AnnounceSimulation prints and logs the simulation banner when the party
// is simulated, as every FL party does.
func (p *Party) AnnounceSimulation(out io.Writer, log *slog.Logger) {
	announceSimulation(out, log, p.id.party)
}
