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
//	party/<name>.yaml                this party's evidence platform (see party.Config)
package run

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"google.golang.org/grpc/credentials"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/party"
)

func wsPath(ws, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(ws, filepath.FromSlash(p))
}

// loadParty loads workspace member name of role (see party.WorkspaceFiles).
func loadParty(ws, name, role string, log *slog.Logger) (*party.Party, error) {
	return party.Load(party.WorkspaceFiles(ws, name), name, role, log)
}

// credentials builds the RA-TLS credentials of id's channel with peers of
// peerRole, held to the plan's policy for that role.
func partyCredentials(ctx context.Context, id *party.Party, pols map[string]*policy.Policy, peerRole string, server bool, log *slog.Logger) (credentials.TransportCredentials, func(), error) {
	pol := pols[peerRole]
	if pol == nil {
		return nil, nil, fmt.Errorf("no attestation policy for role %s in the plan", peerRole)
	}
	return id.Credentials(ctx, party.Peer{Role: peerRole, Policy: pol}, server, log)
}

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
