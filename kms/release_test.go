package kms

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/ratls"
)

// Judge on claims as a hardware verifier would produce them (the broker
// only ever sees verified claims): TCB statuses, expiry of the collateral
// and of the identity.
func TestReleasePolicyJudgesVerifiedClaims(t *testing.T) {
	now := time.Now()
	pol := func(extra string) *ReleasePolicy {
		rp, err := ParseReleasePolicy(fmt.Sprintf("roles: [collaborator]\nattestation:\n  sgx:\n    - mr_enclave: %s\n%s", hexOf(mrGood), extra))
		if err != nil {
			t.Fatal(err)
		}
		return rp
	}
	peer := func(status attest.TCBStatus, validUntil, idNotAfter time.Time) *ratls.Peer {
		return &ratls.Peer{
			Identity: &ratls.Identity{Name: "col-9", Role: "collaborator", NotAfter: idNotAfter},
			Claims: &attest.Claims{TEE: attest.SGX, MREnclave: mrGood[:], MRSigner: mrSign[:], TCBStatus: status,
				ReportData: make([]byte, 64), ValidUntil: validUntil},
		}
	}
	later := now.Add(time.Hour)
	for _, c := range []struct {
		name string
		rp   *ReleasePolicy
		p    *ratls.Peer
		want string // "" = granted
	}{
		{"up to date", pol(""), peer(attest.UpToDate, later, later), ""},
		{"out of date refused by default", pol(""), peer(attest.OutOfDate, later, later), "TCB status OutOfDate not accepted"},
		{"out of date allowed", pol("  tcb_statuses: [UpToDate, OutOfDate]\n"), peer(attest.OutOfDate, later, later), ""},
		{"revoked TCB", pol("  tcb_statuses: [UpToDate, OutOfDate]\n"), peer(attest.Revoked, later, later), "TCB status Revoked"},
		{"collateral expired since the handshake", pol(""), peer(attest.UpToDate, now.Add(-time.Second), later), "claims expired"},
		{"identity expired since the handshake", pol(""), peer(attest.UpToDate, later, now.Add(-time.Second)), "identity certificate expired"},
		{"no identity", pol(""), &ratls.Peer{Claims: &attest.Claims{}}, "no verified federation identity"},
	} {
		err := c.rp.Judge(c.p, now, quiet())
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want refusal containing %q", c.name, err, c.want)
		}
	}
}
