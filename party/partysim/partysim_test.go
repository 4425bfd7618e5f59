package partysim

import (
	"strings"
	"testing"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
)

func TestMeasurementsPerRole(t *testing.T) {
	a, sa := MeasurementHex("aggregator")
	c, sc := MeasurementHex("collaborator")
	if a == c || sa != sc || len(a) != 64 {
		t.Fatalf("aggregator %s/%s collaborator %s/%s: want distinct enclaves, one signer", a, sa, c, sc)
	}
	src := Policy("aggregator", "collaborator")
	if !strings.HasPrefix(string(src), "# "+sim.Banner+"\n") {
		t.Errorf("policy does not start with the banner:\n%s", src)
	}
	p, err := policy.Parse(src, "sim")
	if err != nil {
		t.Fatal(err)
	}
	for role, mr := range map[string]string{"aggregator": a, "collaborator": c} {
		r := p.Roles[role]
		if r == nil || !r.AllowSimulation || r.AllowDebug {
			t.Fatalf("role %s: %+v", role, r)
		}
		if !strings.Contains(string(src), "  "+role+":\n    sgx:\n      - mr_enclave: \""+mr+"\"") {
			t.Errorf("role %s does not pin its own measurement:\n%s", role, src)
		}
	}
}
